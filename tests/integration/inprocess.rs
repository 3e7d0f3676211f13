//! The library in-process over in-memory pipes: cancellation reaching a running tool, and
//! calls not waiting on each other.

use std::time::Duration;

use comfyui_agent::AppState;
use comfyui_agent::config::Config;
use comfyui_agent::error::ToolError;
use comfyui_agent::mcp::{McpServer, ToolContext};
use comfyui_agent::registry::{Hints, Registry, tool};
use comfyui_agent::transport::stdio::serve_handler;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitParams {}

#[derive(Debug, Serialize, JsonSchema)]
struct WaitOutput {
    finished: bool,
}

/// A server whose only tool waits until it is cancelled, reporting that it saw the cancel.
fn waiting_server(observed: mpsc::UnboundedSender<&'static str>) -> McpServer {
    let spec = tool(
        "wait_for_cancel",
        "Wait for cancel",
        "Waits until the client cancels the call; used to prove cancellation reaches tools.",
        Hints::LOCAL_READ,
        move |cx: ToolContext, _params: WaitParams| {
            let observed = observed.clone();
            async move {
                tokio::select! {
                    () = cx.cancelled.cancelled() => {
                        let _ = observed.send("cancelled");
                        Err::<WaitOutput, _>(ToolError::Cancelled)
                    }
                    () = tokio::time::sleep(Duration::from_secs(30)) => Ok(WaitOutput { finished: true }),
                }
            }
        },
    );
    let dir = std::env::temp_dir().join("comfyui-agent-inprocess-test");
    let registry = Registry::new(vec![spec]).expect("registry");
    let app = AppState::with_registry(Config::for_data_dir(dir), registry).expect("app state");
    McpServer::new(app, "in-process")
}

struct Pipe {
    to_server: DuplexStream,
    from_server: Lines<BufReader<DuplexStream>>,
}

impl Pipe {
    async fn send(&mut self, message: Value) {
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        self.to_server.write_all(&line).await.expect("write");
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.from_server.next_line())
            .await
            .expect("a message in time")
            .expect("read")
            .expect("open");
        serde_json::from_str(&line).expect("JSON")
    }
}

fn start(server: McpServer) -> Pipe {
    let (client_in, server_out) = tokio::io::duplex(64 * 1024);
    let (server_in, client_out) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve_handler(
        server,
        server_in,
        server_out,
        1 << 20,
        CancellationToken::new(),
    ));
    Pipe {
        to_server: client_out,
        from_server: BufReader::new(client_in).lines(),
    }
}

async fn initialize(pipe: &mut Pipe) {
    pipe.send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "in-process", "version": "1"}}}))
        .await;
    assert_eq!(pipe.next().await["id"], 0);
    pipe.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
}

#[tokio::test]
async fn cancellation_reaches_the_running_tool_and_other_calls_proceed() {
    let (observed_tx, mut observed) = mpsc::unbounded_channel();
    let mut pipe = start(waiting_server(observed_tx));
    initialize(&mut pipe).await;

    pipe.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "wait_for_cancel", "arguments": {}}}))
        .await;
    // The waiting call does not hold up the next request.
    pipe.send(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
        .await;
    assert_eq!(pipe.next().await["id"], 2);

    pipe.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 1, "reason": "the user changed their mind"}}),
    )
    .await;
    let seen = tokio::time::timeout(Duration::from_secs(10), observed.recv())
        .await
        .expect("the tool saw the cancel in time");
    assert_eq!(seen, Some("cancelled"));

    // The session is still healthy, and the cancelled call gets no response.
    pipe.send(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
        .await;
    assert_eq!(pipe.next().await["id"], 3);
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SleepParams {
    millis: u64,
}

/// An HTTP server whose only tool sleeps, to catch calls in flight at shutdown.
fn sleeping_app() -> AppState {
    let spec = tool(
        "sleep",
        "Sleep",
        "Sleeps for the given number of milliseconds, then says it finished.",
        Hints::LOCAL_READ,
        |_cx: ToolContext, params: SleepParams| async move {
            tokio::time::sleep(Duration::from_millis(params.millis)).await;
            Ok::<_, ToolError>(WaitOutput { finished: true })
        },
    );
    let dir = std::env::temp_dir().join("comfyui-agent-inprocess-test");
    let registry = Registry::new(vec![spec]).expect("registry");
    AppState::with_registry(Config::for_data_dir(dir), registry).expect("app state")
}

#[tokio::test]
async fn shutdown_lets_an_http_call_in_flight_finish() {
    let app = sleeping_app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    let signal = CancellationToken::new();
    let server = tokio::spawn(comfyui_agent::transport::http::serve_app(
        app,
        listener,
        signal.clone(),
    ));

    let http = crate::support::http_client();
    let post = |body: Value, session: Option<String>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                          "clientInfo": {"name": "drain-test", "version": "1"}}}),
        None,
    )
    .await
    .expect("initialize");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let _ = init.text().await;
    post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(session.clone()),
    )
    .await
    .expect("initialized");

    let call = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "sleep", "arguments": {"millis": 800}}}),
        Some(session),
    );
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal.cancel();
    };
    let (response, ()) = tokio::join!(call, stopper);
    let body = response
        .expect("the call is answered")
        .text()
        .await
        .expect("body");
    assert!(
        body.contains("\"finished\":true"),
        "the in-flight call must finish, not be cancelled: {body}"
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops after draining")
        .expect("task")
        .expect("clean exit");
}
