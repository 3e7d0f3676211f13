//! Tracing and logs: request spans and their ComfyUI children checked with an in-memory
//! exporter, OTLP export received by a loopback collector, and JSON log lines kept off stdout.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use comfyui_agent::AppState;
use comfyui_agent::config::Config;
use comfyui_agent::mcp::McpServer;
use comfyui_agent::transport::stdio::serve_handler;
use opentelemetry::Value as OtelValue;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

use crate::support::fake_comfy::FakeComfy;
use crate::support::{Scratch, agent_for};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";

struct Pipe {
    to_server: DuplexStream,
    from_server: Lines<BufReader<DuplexStream>>,
}

impl Pipe {
    fn start(server: McpServer) -> Self {
        let (client_in, server_out) = tokio::io::duplex(1 << 20);
        let (server_in, client_out) = tokio::io::duplex(1 << 20);
        tokio::spawn(serve_handler(
            server,
            server_in,
            server_out,
            1 << 20,
            CancellationToken::new(),
        ));
        Self {
            to_server: client_out,
            from_server: BufReader::new(client_in).lines(),
        }
    }

    async fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        self.to_server.write_all(&line).await.expect("write");
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.from_server.next_line())
                .await
                .expect("an answer in time")
                .expect("read")
                .expect("open");
            let reply: Value = serde_json::from_str(&line).expect("JSON");
            if reply["id"] == id {
                return reply;
            }
        }
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            OtelValue::String(s) => s.as_str().to_string(),
            other => other.to_string(),
        })
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
            panic!("no span {name:?} among {names:?}")
        })
}

#[tokio::test]
async fn request_spans_carry_mcp_attributes_and_parent_their_comfyui_calls() {
    let fake = FakeComfy::start().await;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    // This thread only (the test runtime is single-threaded, so every task sees it).
    let subscriber =
        tracing_subscriber::registry().with(comfyui_agent::telemetry::trace_layer(&provider));
    let _default = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().expect("dir");
    let config = Config::for_data_dir(dir.path().to_path_buf())
        .with_comfyui_url(url::Url::parse(&fake.url()).expect("url"));
    let app = AppState::new(config).expect("app");
    let mut pipe = Pipe::start(McpServer::new(app, "stdio"));
    pipe.request(
        0,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "trace-test", "version": "1"}}),
    )
    .await;
    let reply = pipe
        .request(
            1,
            "tools/call",
            json!({"name": "is_comfyui_running", "arguments": {},
                   "_meta": {"traceparent": format!("00-{TRACE_ID}-{PARENT_ID}-01")}}),
        )
        .await;
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    let reply = pipe
        .request(
            2,
            "tools/call",
            json!({"name": "load_workflow", "arguments": {"path": "/no/such/workflow.json"}}),
        )
        .await;
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    let reply = pipe
        .request(3, "tools/call", json!({"name": "no_such_tool"}))
        .await;
    assert!(reply["error"]["code"].is_number(), "{reply}");
    pipe.request(4, "tools/list", json!({})).await;

    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");

    let init = named(&spans, "initialize");
    assert_eq!(
        attribute(init, "mcp.session.id").as_deref(),
        Some("stdio-1")
    );
    assert_eq!(
        attribute(init, "network.transport").as_deref(),
        Some("pipe")
    );

    let call = named(&spans, "tools/call is_comfyui_running");
    assert_eq!(call.span_kind, SpanKind::Server);
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "is_comfyui_running"),
        ("jsonrpc.request.id", "1"),
        ("network.transport", "pipe"),
        ("mcp.session.id", "stdio-1"),
        ("mcp.protocol.version", "2025-06-18"),
    ] {
        assert_eq!(attribute(call, key).as_deref(), Some(value), "{key}");
    }
    assert_eq!(attribute(call, "error.type"), None);
    // The client's trace, from `_meta`.
    assert_eq!(call.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(call.parent_span_id.to_string(), PARENT_ID);

    let comfy = spans
        .iter()
        .find(|span| {
            attribute(span, "comfyui.operation").as_deref() == Some("system_stats")
                && span.span_context.trace_id() == call.span_context.trace_id()
        })
        .expect("a ComfyUI span in the call's trace");
    assert_eq!(comfy.name, "GET");
    assert_eq!(comfy.span_kind, SpanKind::Client);
    assert_eq!(comfy.parent_span_id, call.span_context.span_id());
    assert_eq!(
        attribute(comfy, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attribute(comfy, "http.response.status_code").as_deref(),
        Some("200")
    );
    let url = url::Url::parse(&fake.url()).expect("url");
    assert_eq!(
        attribute(comfy, "server.port"),
        url.port().map(|p| p.to_string())
    );
    assert_eq!(
        attribute(comfy, "url.full"),
        Some(url.join("system_stats").expect("url").to_string())
    );

    let failed = named(&spans, "tools/call load_workflow");
    assert_eq!(
        attribute(failed, "error.type").as_deref(),
        Some("tool_error")
    );
    assert!(matches!(failed.status, Status::Error { .. }));
    // Not the client's trace: only the request that named it joins it.
    assert_ne!(failed.span_context.trace_id(), call.span_context.trace_id());

    let unknown = named(&spans, "tools/call no_such_tool");
    assert_eq!(attribute(unknown, "error.type").as_deref(), Some("-32602"));
    named(&spans, "tools/list");
}

/// What the loopback collector received: (path, content type, body).
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

async fn collector() -> (String, Received, CancellationToken) {
    let received: Received = Arc::default();
    let record = |path: &'static str, received: Received| {
        post(move |headers: HeaderMap, body: Bytes| async move {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            received
                .lock()
                .expect("lock")
                .push((path.to_string(), content_type, body.to_vec()));
            // An empty ExportTraceServiceResponse / ExportMetricsServiceResponse.
            (
                [("content-type", "application/x-protobuf")],
                Vec::<u8>::new(),
            )
        })
    };
    let router = Router::new()
        .route("/v1/traces", record("/v1/traces", Arc::clone(&received)))
        .route("/v1/metrics", record("/v1/metrics", Arc::clone(&received)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
    });
    (format!("http://{addr}"), received, stop)
}

#[tokio::test]
async fn spans_and_metrics_reach_an_otlp_collector_over_http() {
    let fake = FakeComfy::start().await;
    let (endpoint, received, stop) = collector().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(
        &fake,
        &scratch,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "trace-e2e"),
        ],
    )
    .await;
    let result = agent.call_tool(1, "is_comfyui_running", json!({})).await;
    assert_eq!(result["isError"], false, "{result}");
    let status = agent.close_and_wait().await;
    assert!(status.success(), "{status}");
    stop.cancel();

    let received = received.lock().expect("lock").clone();
    let traces: Vec<_> = received
        .iter()
        .filter(|(path, _, _)| path == "/v1/traces")
        .collect();
    assert!(!traces.is_empty(), "no trace export arrived");
    let contains = |needle: &[u8]| {
        traces
            .iter()
            .any(|(_, _, body)| body.windows(needle.len()).any(|w| w == needle))
    };
    for (_, content_type, body) in &traces {
        assert_eq!(content_type, "application/x-protobuf");
        assert!(!body.is_empty());
    }
    assert!(contains(b"tools/call is_comfyui_running"), "span name");
    assert!(contains(b"trace-e2e"), "service name");
    assert!(contains(b"system_stats"), "the ComfyUI call");

    // The meter provider flushes at exit: the tool call's duration and the ComfyUI request.
    let metrics: Vec<_> = received
        .iter()
        .filter(|(path, _, _)| path == "/v1/metrics")
        .collect();
    assert!(!metrics.is_empty(), "no metrics export arrived");
    let in_metrics = |needle: &[u8]| {
        metrics
            .iter()
            .any(|(_, _, body)| body.windows(needle.len()).any(|w| w == needle))
    };
    assert!(
        in_metrics(b"mcp.server.operation.duration"),
        "duration histogram"
    );
    assert!(in_metrics(b"is_comfyui_running"), "the tool label");
    assert!(in_metrics(b"comfyui.request.duration"), "ComfyUI requests");
    assert!(in_metrics(b"trace-e2e"), "service name");
}

async fn run_stdio(scratch: &Scratch, env: &[(&str, &str)]) -> (String, String) {
    let mut command = scratch.command(&["mcp"]);
    command
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    for message in [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                          "clientInfo": {"name": "log-test", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "load_workflow", "arguments": {"path": "/no/such.json"}}}),
    ] {
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .expect("write");
    }
    // Let the answers come before stdin closes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("exits when stdin closes")
        .expect("output");
    (
        String::from_utf8(output.stdout).expect("utf-8"),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

fn assert_protocol_only(stdout: &str) {
    assert!(!stdout.is_empty());
    for line in stdout.lines() {
        let message: Value = serde_json::from_str(line).expect("stdout holds JSON-RPC only");
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
    }
}

fn assert_json_logs(logs: &str) {
    assert!(logs.contains("client connected"), "{logs}");
    assert!(logs.contains("tool call failed"), "{logs}");
    for line in logs.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(entry["level"].is_string() && entry["timestamp"].is_string());
    }
}

#[tokio::test]
async fn json_logs_go_to_stderr_and_stdout_stays_protocol() {
    let scratch = Scratch::new();
    let (stdout, stderr) = run_stdio(
        &scratch,
        &[("COMFYUI_AGENT_LOG_FORMAT", "json"), ("RUST_LOG", "info")],
    )
    .await;
    assert_protocol_only(&stdout);
    assert_json_logs(&stderr);
    // The failing call's log line names the request it belongs to.
    assert!(stderr.contains("tools/call load_workflow"), "{stderr}");
}

#[tokio::test]
async fn logs_can_go_to_a_file_instead() {
    let scratch = Scratch::new();
    let file = scratch.path("agent.log");
    let (stdout, stderr) = run_stdio(
        &scratch,
        &[
            ("COMFYUI_AGENT_LOG_FORMAT", "json"),
            ("COMFYUI_AGENT_LOG_FILE", file.as_str()),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    assert_protocol_only(&stdout);
    assert!(stderr.is_empty(), "{stderr}");
    assert_json_logs(&std::fs::read_to_string(&file).expect("the log file"));
}

#[tokio::test]
async fn a_bad_log_format_stops_start_up_with_one_line() {
    let scratch = Scratch::new();
    let output = scratch
        .command(&["mcp"])
        .env("COMFYUI_AGENT_LOG_FORMAT", "yaml")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("COMFYUI_AGENT_LOG_FORMAT"), "{stderr}");
    assert!(output.stdout.is_empty());
}
