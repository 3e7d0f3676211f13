//! HTTP: rmcp's Streamable HTTP client against the binary, the guard's refusals, legacy SSE,
//! and many sessions at once.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::support::{HttpServer, Scratch, SseEvents, http_client, initialize_body, rpc_payload};

const ACCEPT: &str = "application/json, text/event-stream";

async fn post_mcp(
    client: &reqwest::Client,
    server: &HttpServer,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client
        .post(server.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

/// The server answers 413 without reading the body and may close the connection before the
/// client has finished sending it; a send error is the same refusal seen from the client.
async fn assert_too_large(
    client: &reqwest::Client,
    server: &HttpServer,
    path: &str,
    body: reqwest::Body,
) {
    let outcome = client
        .post(server.url(path))
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .body(body)
        .send()
        .await;
    if let Ok(response) = outcome {
        assert_eq!(response.status(), 413);
    }
}

#[tokio::test]
async fn rmcp_streamable_http_client_lists_and_calls() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let transport = StreamableHttpClientTransport::from_uri(server.url("/mcp"));
    let client = ().serve(transport).await.expect("initialize over HTTP");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "check_model_compatibility"));
    let result = client
        .call_tool(
            CallToolRequestParams::new("check_model_compatibility").with_arguments(
                json!({"models": ["sdxl_base.safetensors", "v1-5-pruned.safetensors"]})
                    .as_object()
                    .cloned()
                    .expect("object"),
            ),
        )
        .await
        .expect("tools/call");
    let report = result.structured_content.expect("structured");
    assert_eq!(report["compatible"], false);
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn tokens_are_required_when_set_and_health_stays_open() {
    let scratch = Scratch::new();
    let token = "correct-horse-battery-staple";
    let server = HttpServer::spawn(&scratch, &[], &[("COMFYUI_AGENT_TOKEN", token)]).await;
    let http = http_client();

    let response = post_mcp(&http, &server, initialize_body().to_string(), &[]).await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii");
    assert!(challenge.starts_with("Bearer"));
    let body: Value = response.json().await.expect("JSON-RPC error body");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization"))
    );

    let wrong = post_mcp(
        &http,
        &server,
        initialize_body().to_string(),
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status(), 401);

    for path in ["/healthz", "/readyz"] {
        let response = http.get(server.url(path)).send().await.expect("health");
        assert_eq!(response.status(), 200, "{path}");
    }
    let sse = http.get(server.url("/sse")).send().await.expect("sse");
    assert_eq!(
        sse.status(),
        401,
        "the legacy transport needs the token too"
    );

    let mut config = StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"));
    config.auth_header = Some(token.to_string());
    let client =
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .expect("initialize with the token");
    assert!(!client.list_all_tools().await.expect("tools").is_empty());
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn host_and_origin_are_checked() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(
        &scratch,
        &["--allowed-origin", "https://studio.example"],
        &[],
    )
    .await;
    let http = http_client();
    let body = initialize_body().to_string();

    let response = post_mcp(&http, &server, body.clone(), &[("host", "evil.example")]).await;
    assert_eq!(response.status(), 403, "a rebinding Host is refused");

    let response = post_mcp(
        &http,
        &server,
        body.clone(),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(
        response.status(),
        403,
        "a foreign Origin with a good Host is refused"
    );

    for origin in ["https://studio.example", "http://localhost:5173"] {
        let response = post_mcp(&http, &server, body.clone(), &[("origin", origin)]).await;
        assert_eq!(response.status(), 200, "{origin}");
    }
    let response = post_mcp(&http, &server, body, &[]).await;
    assert_eq!(
        response.status(),
        200,
        "no Origin (a non-browser client) passes"
    );
}

#[tokio::test]
async fn malformed_batched_and_oversize_bodies_get_clear_errors() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &["--max-body-bytes", "65536"], &[]).await;
    // The server closes a connection whose oversize body it refused unread; a pooled client
    // could pick that dead connection for the next request, so use a fresh one each time.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client");

    let response = post_mcp(&http, &server, "{\"jsonrpc\": \"2.0\", \"id\":", &[]).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], -32700);

    let batch = json!([initialize_body()]).to_string();
    let response = post_mcp(&http, &server, batch, &[]).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], -32600);

    // Refused from Content-Length alone, and as a chunked body streams in past the limit.
    let huge =
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x".repeat(70_000)}});
    assert_too_large(&http, &server, "/mcp", huge.to_string().into()).await;
    let chunks = || {
        reqwest::Body::wrap_stream(futures::stream::iter(
            (0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 8192])),
        ))
    };
    assert_too_large(&http, &server, "/mcp", chunks()).await;
    // The legacy endpoint has the same limit, whatever the session id.
    assert_too_large(&http, &server, "/messages?sessionId=any", chunks()).await;

    // The server is still fine.
    let response = post_mcp(&http, &server, initialize_body().to_string(), &[]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_request_does_not_hurt_the_server() {
    use tokio::io::AsyncWriteExt;
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    for _ in 0..5 {
        let mut socket = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        socket
            .write_all(
                format!(
                    "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                     Accept: {ACCEPT}\r\nContent-Length: 5000\r\n\r\n{{\"jsonrpc\":"
                )
                .as_bytes(),
            )
            .await
            .expect("partial write");
        drop(socket);
    }
    let response = post_mcp(&http_client(), &server, initialize_body().to_string(), &[]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_hundred_concurrent_sessions() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let url = server.url("/mcp");
    let sessions = (0..100).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            let client = ().serve(StreamableHttpClientTransport::from_uri(url)).await?;
            let result = client
                .call_tool(
                    CallToolRequestParams::new("identify_model_family").with_arguments(
                        json!({"model_name": format!("sdxl_{i}.safetensors")})
                            .as_object()
                            .cloned()
                            .expect("object"),
                    ),
                )
                .await?;
            let _ = client.cancel().await;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(result)
        })
    });
    let results = futures::future::join_all(sessions).await;
    for result in results {
        let result = result.expect("task").expect("session");
        assert_eq!(
            result.structured_content.expect("structured")["family"],
            "sdxl"
        );
    }
}

#[tokio::test]
async fn sessions_are_separate_and_unknown_sessions_are_refused() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let http = http_client();
    let response = post_mcp(&http, &server, initialize_body().to_string(), &[]).await;
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body = response.text().await.expect("body");
    assert_eq!(
        rpc_payload(&body)["result"]["serverInfo"]["name"],
        "comfyui-agent"
    );

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let response = post_mcp(
        &http,
        &server,
        list.clone(),
        &[
            ("mcp-session-id", "not-a-session"),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await;
    assert_eq!(response.status(), 404);
    let response = post_mcp(
        &http,
        &server,
        list,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let tools = rpc_payload(&response.text().await.expect("body"));
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
}

#[tokio::test]
async fn modern_stateless_requests_are_served() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "1"}});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"_meta": meta, "name": "identify_model_family",
                                 "arguments": {"model_name": "qwen_image_fp8.safetensors"}}});
    let response = post_mcp(
        &http_client(),
        &server,
        body.to_string(),
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "identify_model_family"),
            ("mcp-protocol-version", "2026-07-28"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let reply = rpc_payload(&response.text().await.expect("body"));
    assert_eq!(
        reply["result"]["structuredContent"]["family"], "qwen_image",
        "{reply}"
    );
}

#[tokio::test]
async fn legacy_sse_streams_the_endpoint_then_answers() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let http = http_client();
    let response = http
        .get(server.url("/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("open stream");
    assert_eq!(response.status(), 200);
    let mut events = SseEvents::new(response);
    let endpoint = events.next_event().await;
    assert!(endpoint.contains("event: endpoint"), "{endpoint}");
    let path = endpoint
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("endpoint data")
        .to_string();
    assert!(path.starts_with("/messages?sessionId="));

    let post = |body: String| {
        http.post(server.url(&path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let accepted = post(initialize_body().to_string()).await.expect("post");
    assert_eq!(accepted.status(), 202);
    let message = events.next_event().await;
    assert!(message.contains("event: message"), "{message}");
    assert_eq!(
        rpc_payload(&message)["result"]["serverInfo"]["name"],
        "comfyui-agent"
    );

    let bad = post("{oops".into()).await.expect("post");
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.expect("json");
    assert_eq!(bad["error"]["code"], -32700);

    let unknown = http
        .post(server.url("/messages?sessionId=nope"))
        .body(initialize_body().to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), 404);
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    let scratch = Scratch::new();
    let mut server = HttpServer::spawn(&scratch, &[], &[]).await;
    // An open legacy stream must not hold the shutdown up.
    let stream = http_client()
        .get(server.url("/sse"))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    let exit = crate::support::terminate_and_wait(&mut server.child).await;
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn the_token_never_reaches_the_logs() {
    let scratch = Scratch::new();
    let token = "tok-7f3a9c1e5b2d4a6f8e0c";
    let server = HttpServer::spawn(
        &scratch,
        &[],
        &[("COMFYUI_AGENT_TOKEN", token), ("RUST_LOG", "trace")],
    )
    .await;
    let http = http_client();
    let bearer = format!("Bearer {token}");
    let ok = post_mcp(
        &http,
        &server,
        initialize_body().to_string(),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(ok.status(), 200);
    let _ = ok.text().await;
    let near_miss = format!("Bearer {token}x");
    let refused = post_mcp(
        &http,
        &server,
        initialize_body().to_string(),
        &[("authorization", &near_miss)],
    )
    .await;
    assert_eq!(refused.status(), 401);
    // Wait for the refusal's log line (bounded) rather than guessing a delay.
    let mut log = String::new();
    for _ in 0..100 {
        log = server.log.lock().expect("log").join("\n");
        if log.contains("without a valid token") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        log.contains("without a valid token"),
        "the refusal is logged"
    );
    assert!(!log.contains(token), "the token leaked into the log");
}

#[tokio::test]
async fn a_dropped_legacy_stream_ends_its_session() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let http = http_client();
    let response = http
        .get(server.url("/sse"))
        .send()
        .await
        .expect("open stream");
    let mut events = SseEvents::new(response);
    let endpoint = events.next_event().await;
    let path = endpoint
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("endpoint data")
        .to_string();
    let post = |body: Value| http.post(server.url(&path)).body(body.to_string()).send();
    // A live session: a stray notification first (dropped), then initialize is answered.
    let stray = post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    assert_eq!(stray.expect("post").status(), 202);
    assert_eq!(post(initialize_body()).await.expect("post").status(), 202);
    let reply = events.next_event().await;
    assert_eq!(
        rpc_payload(&reply)["result"]["serverInfo"]["name"],
        "comfyui-agent"
    );
    drop(events);
    // The server notices the closed connection on its next write; poll with pings.
    for id in 0..100 {
        let status = post(json!({"jsonrpc": "2.0", "id": id + 10, "method": "ping"}))
            .await
            .expect("post")
            .status();
        if status == 404 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the session outlived its stream");
}
