//! Metrics: `/metrics` scraped from the real binary after real MCP calls, and the
//! `get_server_health` tool with ComfyUI up, down, and given bad input.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use comfyui_agent::comfy::breaker::{BreakerSnapshot, BreakerState};
use comfyui_agent::comfy::client::Operation;
use comfyui_agent::telemetry::metrics::{
    BREAKER_STATE, BREAKER_TRANSITIONS, BUCKETS, CACHE_ENTRIES, CACHE_SIZE, CATALOGUE,
    COMFY_OPERATION, COMFY_OUTCOME, COMFY_REQUEST_DURATION, COMFY_RETRIES, ERROR_TYPE,
    EndpointGauges, GaugeSource, Gauges, MEMORY, METHOD, McpMethod, Metrics, OPERATION_DURATION,
    RequestOutcome, SESSIONS, TOOL, TOOL_ERRORS, UPTIME, resident_bytes,
};
use opentelemetry::KeyValue;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::support::fake_comfy::FakeComfy;
use crate::support::{HttpServer, Scratch, agent_for, failed, http_client, ok};

/// One sample of the text format: name, labels, value. Panics on a malformed line or a
/// histogram whose buckets don't add up.
fn samples(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let (samples, _) = parse(text);
    check_histograms(&samples);
    samples
        .into_iter()
        .map(|s| (s.name, s.labels.into_iter().collect(), s.value))
        .collect()
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

fn sample_gauges() -> Gauges {
    Gauges {
        endpoints: vec![EndpointGauges {
            url: "http://127.0.0.1:8188/".into(),
            breaker: BreakerSnapshot {
                state: BreakerState::Open,
                consecutive_failures: 5,
                transitions: 1,
                retry_in: Duration::from_secs(5),
            },
        }],
        named_sessions: 2,
        node_cache_entries: 700,
        node_cache_bytes: 700_000,
        resident_bytes: Some(12_345_678),
        gpus: vec![comfyui_agent::gpu::GpuGauges {
            index: 0,
            name: "NVIDIA H200".into(),
            uuid: None,
            vram_used_bytes: Some(12_000_000_000),
            vram_total_bytes: Some(150_000_000_000),
            gpu_utilization_percent: Some(45),
            memory_utilization_percent: Some(20),
            temperature_c: Some(38),
            power_draw_watts: Some(120.5),
            power_limit_watts: Some(700.0),
            sm_clock_mhz: Some(1980),
        }],
    }
}

/// A sample line: name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A small parser for the text format: every line is a comment (`# HELP`/`# TYPE`) or a
/// well-formed sample; panics otherwise. Returns the samples and the declared types.
fn parse(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty());
            helped.insert(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(helped.contains(name), "HELP before TYPE: {line}");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split("\",")
                    .map(|pair| {
                        let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
                        (key.to_string(), value.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "{name}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no TYPE for {name}");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    (samples, types)
}

/// For each histogram series: buckets cumulative, `+Inf` equal to `_count`.
fn check_histograms(samples: &[Sample]) {
    let mut buckets: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    let mut counts: HashMap<String, f64> = HashMap::new();
    for sample in samples {
        let key_labels: Vec<String> = sample
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if let Some(base) = sample.name.strip_suffix("_bucket") {
            let le = sample
                .labels
                .iter()
                .find(|(k, _)| k == "le")
                .map(|(_, v)| {
                    if v == "+Inf" {
                        f64::INFINITY
                    } else {
                        v.parse().expect("le")
                    }
                })
                .expect("le label");
            buckets
                .entry(format!("{base}{key_labels:?}"))
                .or_default()
                .push((le, sample.value));
        } else if let Some(base) = sample.name.strip_suffix("_count") {
            counts.insert(format!("{base}{key_labels:?}"), sample.value);
        }
    }
    assert!(!buckets.is_empty());
    for (series, list) in &buckets {
        assert!(list.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        let (le, last) = list[list.len() - 1];
        assert!(le.is_infinite(), "{series} ends with +Inf");
        assert_eq!(Some(&last), counts.get(series), "{series}: +Inf == _count");
    }
}

/// The whole catalogue renders as well-formed text that reads back to what was recorded.
#[test]
fn prometheus_text_parses_back() {
    let metrics = Metrics::new(None, ["get_queue_status", "load_workflow"]);
    for ms in [1, 3, 40, 700] {
        metrics.record_tool_call("get_queue_status", Duration::from_millis(ms), None);
    }
    metrics.record_tool_call(
        "load_workflow",
        Duration::from_millis(2),
        Some("invalid_arguments"),
    );
    metrics.record_method(McpMethod::Initialize, Duration::from_micros(300), None);
    metrics.comfy().record_request(
        Operation::Queue,
        RequestOutcome::Ok,
        Duration::from_millis(2),
    );
    metrics.comfy().record_request(
        Operation::Queue,
        RequestOutcome::Unreachable,
        Duration::from_millis(1),
    );
    metrics.comfy().record_retry(true);
    metrics.comfy().record_retry(false);
    let _connection = metrics.connection_opened();
    let text = metrics.render_prometheus(&sample_gauges());
    let (samples, types) = parse(&text);
    check_histograms(&samples);
    for def in CATALOGUE {
        assert_eq!(
            types.get(def.prometheus).map(String::as_str),
            Some(def.kind.as_str()),
            "{}",
            def.prometheus
        );
    }
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
            .value
    };
    let count = "mcp_server_operation_duration_seconds_count";
    assert_eq!(
        value(count, &[("gen_ai_tool_name", "get_queue_status")]),
        4.0
    );
    assert_eq!(value(count, &[("mcp_method_name", "initialize")]), 1.0);
    assert_eq!(
        value(
            "mcp_server_operation_duration_seconds_bucket",
            &[("gen_ai_tool_name", "get_queue_status"), ("le", "0.005")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "comfyui_agent_tool_errors_total",
            &[
                ("gen_ai_tool_name", "load_workflow"),
                ("error_type", "invalid_arguments")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            "comfyui_request_duration_seconds_count",
            &[
                ("comfyui_operation", "queue"),
                ("comfyui_outcome", "unreachable")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            "comfyui_retries_total",
            &[("comfyui_retry_outcome", "refused")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "comfyui_breaker_state",
            &[("comfyui_endpoint", "http://127.0.0.1:8188/")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "comfyui_agent_sessions_active",
            &[("comfyui_agent_session_kind", "connection")]
        ),
        1.0
    );
    assert_eq!(value("process_memory_usage_bytes", &[]), 12_345_678.0);
    assert_eq!(
        value(
            "comfyui_agent_cache_entries",
            &[("comfyui_agent_cache_name", "object_info")]
        ),
        700.0
    );
    assert!(
        !text.contains("gen_ai_tool_name=\"other\""),
        "no empty series"
    );
}
/// The OpenTelemetry bridge: the same names, units, attributes and values come out of an
/// SDK pipeline as go into `/metrics`.
#[test]
fn the_otel_bridge_records_names_units_attributes_and_values() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let metrics = Arc::new(Metrics::new(
        Some(provider.meter("comfyui-agent")),
        ["get_queue_status"],
    ));
    struct Fixed;
    impl GaugeSource for Fixed {
        fn gauges(&self) -> Gauges {
            sample_gauges()
        }
    }
    let source: Arc<dyn GaugeSource> = Arc::new(Fixed);
    metrics.observe(Arc::downgrade(&source));
    metrics.record_tool_call("get_queue_status", Duration::from_millis(3), None);
    metrics.record_tool_call(
        "get_queue_status",
        Duration::from_millis(30),
        Some("comfyui_unreachable"),
    );
    metrics.comfy().record_request(
        Operation::Queue,
        RequestOutcome::Timeout,
        Duration::from_secs(5),
    );
    metrics.comfy().record_retry(false);
    provider.force_flush().expect("flush");
    let exported = exporter.get_finished_metrics().expect("metrics");
    let all: Vec<&opentelemetry_sdk::metrics::data::Metric> = exported
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .collect();
    let find = |name: &str| {
        *all.iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{name} not exported"))
    };
    let attrs = |kvs: Vec<&KeyValue>| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = kvs
            .into_iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        out.sort();
        out
    };

    let duration = find(OPERATION_DURATION.name);
    assert_eq!(duration.unit(), "s");
    let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = duration.data() else {
        panic!("a histogram of f64: {:?}", duration.data());
    };
    let mut points: Vec<_> = histogram.data_points().collect();
    assert_eq!(points.len(), 2, "one point per attribute set");
    points.sort_by_key(|p| p.attributes().count());
    assert_eq!(
        attrs(points[0].attributes().collect()),
        [
            (TOOL.to_string(), "get_queue_status".to_string()),
            (METHOD.to_string(), "tools/call".to_string()),
        ]
    );
    assert_eq!(points[0].count(), 1);
    assert!((points[0].sum() - 0.003).abs() < 1e-9);
    assert_eq!(points[0].bounds().collect::<Vec<_>>(), BUCKETS);
    assert!(
        attrs(points[1].attributes().collect())
            .contains(&(ERROR_TYPE.to_string(), "comfyui_unreachable".to_string()))
    );

    let errors = find(TOOL_ERRORS.name);
    let AggregatedMetrics::U64(MetricData::Sum(sum)) = errors.data() else {
        panic!("a u64 sum");
    };
    let point = sum.data_points().next().expect("a point");
    assert_eq!(point.value(), 1);
    assert_eq!(
        attrs(point.attributes().collect()),
        [
            (ERROR_TYPE.to_string(), "comfyui_unreachable".to_string()),
            (TOOL.to_string(), "get_queue_status".to_string()),
        ]
    );

    let requests = find(COMFY_REQUEST_DURATION.name);
    let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = requests.data() else {
        panic!("a histogram");
    };
    let point = histogram.data_points().next().expect("a point");
    assert_eq!(
        attrs(point.attributes().collect()),
        [
            (COMFY_OPERATION.to_string(), "queue".to_string()),
            (COMFY_OUTCOME.to_string(), "timeout".to_string()),
        ]
    );

    let breaker = find(BREAKER_STATE.name);
    let AggregatedMetrics::I64(MetricData::Gauge(gauge)) = breaker.data() else {
        panic!("an i64 gauge");
    };
    assert_eq!(gauge.data_points().next().expect("a point").value(), 2);
    if resident_bytes().is_some() {
        assert_eq!(find(MEMORY.name).unit(), "By");
    }
    for def in [
        COMFY_RETRIES,
        BREAKER_TRANSITIONS,
        SESSIONS,
        CACHE_ENTRIES,
        CACHE_SIZE,
        UPTIME,
    ] {
        assert_eq!(find(def.name).unit(), def.unit, "{}", def.name);
    }
}
