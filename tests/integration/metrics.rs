//! Metrics: `/metrics` scraped from the real binary after real MCP calls, and the
//! `get_server_health` tool with ComfyUI up, down, and given bad input.

use std::collections::HashMap;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::support::fake_comfy::FakeComfy;
use crate::support::{HttpServer, Scratch, agent_for, failed, http_client, ok};

/// One sample of the text format: name, labels, value. Panics on a malformed line.
fn samples(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().expect("name").to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"))
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split("\",")
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("label");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), HashMap::new()),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
            .unwrap_or(&name)
            .to_string();
        assert!(typed.contains(&family), "no # TYPE for {name}");
        out.push((name, labels, value));
    }
    out
}

fn value(
    samples: &[(String, HashMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|have| have == v))
        })
        .map(|(_, _, v)| *v)
}

#[tokio::test]
async fn metrics_are_scraped_after_real_calls_and_need_the_token() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let token = "metrics-scrape-token";
    let url = fake.url();
    let server = HttpServer::spawn(
        &scratch,
        &[],
        &[
            ("COMFYUI_AGENT_TOKEN", token),
            ("COMFYUI_URL", url.as_str()),
        ],
    )
    .await;
    let mut config = StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"));
    config.auth_header = Some(token.to_string());
    let client =
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .expect("initialize");
    let call = |name: &'static str, arguments: Value| {
        CallToolRequestParams::new(name)
            .with_arguments(arguments.as_object().cloned().expect("object"))
    };
    for _ in 0..3 {
        let result = client
            .call_tool(call("get_queue_status", json!({})))
            .await
            .expect("tools/call");
        assert_ne!(result.is_error, Some(true));
    }
    let failing = client
        .call_tool(call("get_queue_status", json!({"bogus": 1})))
        .await
        .expect("tools/call");
    assert_eq!(failing.is_error, Some(true));
    assert!(
        client
            .call_tool(call("no_such_tool", json!({})))
            .await
            .is_err()
    );

    let http = http_client();
    let wrong = http
        .get(server.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .expect("scrape");
    assert_eq!(wrong.status(), 401, "a wrong token is refused");
    let bare = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(bare.status(), 401, "no token is refused");

    let response = http
        .get(server.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    let all = samples(&text);
    let tool = [
        ("mcp_method_name", "tools/call"),
        ("gen_ai_tool_name", "get_queue_status"),
    ];
    assert_eq!(
        value(&all, "mcp_server_operation_duration_seconds_count", &tool),
        Some(4.0),
        "{text}"
    );
    let mut inf = tool.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        value(&all, "mcp_server_operation_duration_seconds_bucket", &inf),
        Some(4.0)
    );
    assert_eq!(
        value(
            &all,
            "comfyui_agent_tool_errors_total",
            &[
                ("gen_ai_tool_name", "get_queue_status"),
                ("error_type", "invalid_arguments")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            "comfyui_agent_tool_errors_total",
            &[
                ("gen_ai_tool_name", "other"),
                ("error_type", "unknown_tool")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            "mcp_server_operation_duration_seconds_count",
            &[("mcp_method_name", "initialize")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            "comfyui_request_duration_seconds_count",
            &[("comfyui_operation", "queue"), ("comfyui_outcome", "ok")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &all,
            "comfyui_breaker_state",
            &[("comfyui_endpoint", url.as_str())]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &all,
            "comfyui_agent_sessions_active",
            &[("comfyui_agent_session_kind", "connection")]
        ),
        Some(1.0)
    );
    assert!(value(&all, "process_memory_usage_bytes", &[]).is_some_and(|b| b > 0.0));
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn server_health_reports_calls_latencies_and_comfyui() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    for id in 1..=3 {
        ok(&agent.call_tool(id, "get_queue_status", json!({})).await);
    }
    failed(
        &agent
            .call_tool(4, "get_node_info", json!({"node_type": "NoSuchNode"}))
            .await,
    );
    let result = agent.call_tool(5, "get_server_health", json!({})).await;
    let health = ok(&result);
    assert_eq!(health["comfyui"]["reachable"], true, "{health}");
    assert_eq!(health["comfyui"]["breaker"], "closed");
    assert_eq!(health["sessions"]["connections"], 1);
    let tools = health["tools"].as_array().expect("tools");
    let queue = tools
        .iter()
        .find(|t| t["tool"] == "get_queue_status")
        .expect("queue calls reported");
    assert_eq!(queue["calls"], 3);
    assert_eq!(queue["errors"], 0);
    assert!(queue["p50_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    assert!(queue["p99_ms"].as_f64() >= queue["p50_ms"].as_f64());
    let node = tools
        .iter()
        .find(|t| t["tool"] == "get_node_info")
        .expect("node calls reported");
    assert_eq!(node["errors_by_type"]["rejected"], 1);
    assert_eq!(node["error_rate"], 1.0);
    assert_eq!(health["totals"]["calls"], 4);
    let requests = health["comfyui"]["requests"].as_array().expect("requests");
    assert!(
        requests
            .iter()
            .any(|r| r["operation"] == "queue" && r["outcome"] == "ok" && r["count"] == 3),
        "{requests:?}"
    );
    let summary = health["summary"].as_str().expect("summary");
    assert!(summary.contains("ComfyUI answers"), "{summary}");
    assert!(summary.contains("4 tool calls"), "{summary}");

    let one = agent
        .call_tool(6, "get_server_health", json!({"tool": "get_queue_status"}))
        .await;
    let one = ok(&one);
    assert_eq!(one["tools"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["totals"]["calls"], 3);
}

#[tokio::test]
async fn server_health_with_comfyui_down_says_so_and_the_server_keeps_serving() {
    let mut fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    fake.stop().await;
    failed(&agent.call_tool(1, "get_queue_status", json!({})).await);
    let result = agent.call_tool(2, "get_server_health", json!({})).await;
    let health = ok(&result);
    assert_eq!(health["comfyui"]["reachable"], false);
    let error = health["comfyui"]["error"].as_str().expect("an explanation");
    assert!(error.contains("ComfyUI isn't answering"), "{error}");
    let summary = health["summary"].as_str().expect("summary");
    assert!(summary.contains("isn't reachable"), "{summary}");
    let queue = health["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["tool"] == "get_queue_status"))
        .expect("the failed call is counted");
    assert_eq!(queue["errors_by_type"]["comfyui_unreachable"], 1);
    // Offline tools still answer.
    ok(&agent
        .call_tool(
            3,
            "check_model_compatibility",
            json!({"models": ["sdxl_base.safetensors"]}),
        )
        .await);
}

#[tokio::test]
async fn server_health_refuses_unknown_parameters_and_tools() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let text = failed(
        &agent
            .call_tool(1, "get_server_health", json!({"verbose": true}))
            .await,
    );
    assert!(
        text.contains("verbose") && text.contains("unknown parameter"),
        "{text}"
    );
    let text = failed(
        &agent
            .call_tool(2, "get_server_health", json!({"tool": "make_coffee"}))
            .await,
    );
    assert!(text.contains("no tool called \"make_coffee\""), "{text}");
}

#[tokio::test]
async fn comfyui_requests_record_outcomes_retries_and_the_open_breaker() {
    use std::sync::Arc;

    use comfyui_agent::comfy::{Client, PortHint};
    use comfyui_agent::config::ComfyConfig;
    use comfyui_agent::telemetry::metrics::ComfyMetrics;

    use crate::support::fake_comfy::Fault;

    let fake = FakeComfy::start().await;
    let recorder = Arc::new(ComfyMetrics::default());
    let config = ComfyConfig {
        breaker_failures: 3,
        ..ComfyConfig::default()
    };
    let url = url::Url::parse(&fake.url()).expect("url");
    let client = Client::new(url, &config, PortHint::Configured { port: None })
        .expect("client")
        .with_metrics(Arc::clone(&recorder));
    client.queue().await.expect("the queue answers");
    fake.always(Fault::Status(503));
    client.queue().await.expect_err("503 every time");
    client.queue().await.expect_err("the breaker is open now");
    let count = |operation: &str, outcome: &str| {
        recorder
            .requests()
            .iter()
            .find(|r| r.operation == operation && r.outcome == outcome)
            .map_or(0, |r| r.count)
    };
    assert_eq!(count("queue", "ok"), 1);
    assert_eq!(count("queue", "5xx"), 3, "{:?}", recorder.requests());
    assert_eq!(count("queue", "breaker_open"), 1);
    assert_eq!(
        recorder.retries(),
        (2, 0),
        "two retries, both within the budget"
    );
}
