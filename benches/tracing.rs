//! What tracing costs a small tool call: `identify_model_family` over in-process pipes, timed
//! from request line to response line, with no subscriber at all ("off"), and with the
//! production subscriber and no exporter ("on": the default log layer, INFO, with the request
//! and ComfyUI spans instrumented). Batches alternate so drift affects both alike. Metrics are
//! recorded in both (`benches/telemetry.rs` measures them). Target: under 5% added.

use std::time::Duration;

use comfyui_agent::AppState;
use comfyui_agent::config::Config;
use comfyui_agent::mcp::McpServer;
use comfyui_agent::telemetry::logs::{self, LogFormat, LogSettings};
use comfyui_agent::transport::stdio::serve_handler;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

#[path = "support/figure.rs"]
#[allow(dead_code)]
mod figure;
use figure::Figure;

const BATCHES: usize = 20;
const CALLS_PER_BATCH: usize = 200;

fn subscriber(on: bool) -> tracing::Dispatch {
    if !on {
        return tracing::Dispatch::none();
    }
    let settings = LogSettings {
        format: LogFormat::Text,
        file: None,
        directives: None,
    };
    let layer = logs::layer(&settings).expect("the default log layer");
    tracing::Dispatch::new(tracing_subscriber::registry().with(layer))
}

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let app = AppState::new(Config::for_data_dir(dir.path().to_path_buf())).expect("app");
    let (client_in, server_out) = tokio::io::duplex(1 << 20);
    let (server_in, mut to_server) = tokio::io::duplex(1 << 20);
    let mut from_server = BufReader::new(client_in).lines();
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut id = 0u64;
    let _serving = runtime.spawn(serve_handler(
        McpServer::new(app, "stdio"),
        server_in,
        server_out,
        1 << 20,
        CancellationToken::new(),
    ));
    let mut call = |method: &str, params: serde_json::Value| {
        id += 1;
        let line = format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        );
        runtime.block_on(async {
            let started = std::time::Instant::now();
            to_server.write_all(line.as_bytes()).await.expect("write");
            from_server.next_line().await.expect("read").expect("open");
            started.elapsed()
        })
    };
    call(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "bench", "version": "1"}}),
    );
    let params = json!({"name": "identify_model_family",
                        "arguments": {"model_name": "sd_xl_base_1.0.safetensors"}});
    for batch in 0..BATCHES * 2 {
        let spans = batch % 2 == 1;
        let _default = tracing::dispatcher::set_default(&subscriber(spans));
        let samples = if spans { &mut on } else { &mut off };
        for _ in 0..CALLS_PER_BATCH {
            samples.push(call("tools/call", params.clone()));
        }
    }
    let baseline = Figure {
        name: "tools/call, no subscriber".into(),
        target: Duration::from_millis(5),
        tail: false,
        samples: off,
    };
    let median = baseline.quantile(0.5);
    let traced = Figure {
        name: "tools/call, production subscriber, no exporter".into(),
        target: median + median / 20,
        tail: false,
        samples: on,
    };
    let added = traced.quantile(0.5).as_secs_f64() / median.as_secs_f64() - 1.0;
    eprintln!(
        "logs and spans (no exporter) add {:.1}% to a small tool call",
        added * 100.0
    );
    figure::finish(&[baseline, traced])
}
