//! The metrics figures, against the targets:
//!
//! - `/metrics` renders in under 1 ms with every tool, every MCP method and every ComfyUI
//!   operation and outcome holding samples (the render alone, and with the gauges read the
//!   way the handler reads them);
//! - recording a tool call (its clock reads included) adds under 5% to a small in-process tool
//!   call. The in-process call skips rmcp's JSON-RPC parsing and the transport, so the share
//!   reported is an upper bound on what recording adds to a served call.
//!
//! Run with `cargo bench --bench telemetry`; it prints median, p99 and max per figure and the
//! recorder's share, and exits non-zero when a figure misses its target.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use comfyui_agent::AppState;
use comfyui_agent::comfy::Operation;
use comfyui_agent::config::Config;
use comfyui_agent::mcp::ToolContext;
use comfyui_agent::telemetry::metrics::{ERROR_TYPES, McpMethod, RequestOutcome};
use serde_json::json;

#[path = "support/figure.rs"]
mod figure;
use figure::{Figure, measure};

/// Recorder calls per timed sample: one call is too short for the clock.
const BATCH: u32 = 1000;

fn main() -> ExitCode {
    let data = tempfile::tempdir().expect("tempdir");
    let app = AppState::new(Config::for_data_dir(data.path().to_path_buf())).expect("app");
    app.registry().warm_up();
    let metrics = app.metrics();
    let names: Vec<String> = app
        .registry()
        .tools()
        .iter()
        .map(|tool| tool.name.to_string())
        .collect();

    // Every series holds samples, spread over the buckets, with a few errors of each kind.
    for (n, name) in names.iter().enumerate() {
        for i in 0..200_u64 {
            let elapsed = Duration::from_micros(50 + (i * 7919 + n as u64 * 104_729) % 3_000_000);
            let error = (i % 25 == 0).then(|| ERROR_TYPES[(i as usize / 25) % ERROR_TYPES.len()]);
            metrics.record_tool_call(name, elapsed, error);
        }
    }
    for method in McpMethod::ALL {
        metrics.record_method(method, Duration::from_micros(120), None);
    }
    for op in Operation::ALL {
        for outcome in RequestOutcome::ALL {
            metrics
                .comfy()
                .record_request(op, outcome, Duration::from_millis(3));
        }
    }
    metrics.comfy().record_retry(true);
    metrics.comfy().record_retry(false);

    let mut figures = Vec::new();
    let gauges = app.gauges();
    let text = metrics.render_prometheus(&gauges);
    let lines = text.lines().count();
    figures.push(Figure {
        name: format!("/metrics render ({} tools, {lines} lines)", names.len()),
        target: Duration::from_millis(1),
        tail: false,
        samples: measure(2000, || {
            std::hint::black_box(metrics.render_prometheus(&gauges));
        }),
    });
    figures.push(Figure {
        name: "/metrics render + gauges read".into(),
        target: Duration::from_millis(1),
        tail: false,
        samples: measure(2000, || {
            std::hint::black_box(metrics.render_prometheus(&app.gauges()));
        }),
    });

    // A small tool call, in process: schema check, handler, JSON out.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let spec = app.registry().get("identify_model_family").expect("tool");
    let arguments = json!({"model_name": "sd_xl_base_1.0.safetensors"});
    let call_samples = runtime.block_on(async {
        let cx = ToolContext::detached(app.clone());
        let mut samples = Vec::with_capacity(3000);
        for _ in 0..3000 {
            let input = arguments.as_object().cloned();
            let started = Instant::now();
            let result = spec.call(cx.clone(), input).await.expect("identifies");
            std::hint::black_box(result);
            samples.push(started.elapsed());
        }
        samples
    });
    let call = Figure {
        name: "small tool call in process (identify_model_family)".into(),
        target: Duration::from_millis(1),
        tail: false,
        samples: call_samples,
    };
    let call_median = call.quantile(0.5);
    figures.push(call);

    // What call_tool adds per call: the clock read around the call and the record.
    let name = "identify_model_family";
    let per_call: Vec<Duration> = measure(2000, || {
        for _ in 0..BATCH {
            let started = Instant::now();
            metrics.record_tool_call(
                std::hint::black_box(name),
                std::hint::black_box(started.elapsed()),
                None,
            );
        }
    })
    .into_iter()
    .map(|batch| batch / BATCH)
    .collect();
    let recorder = Figure {
        name: "recording one tool call (5% of the call above)".into(),
        target: call_median / 20,
        tail: false,
        samples: per_call,
    };
    let share = recorder.quantile(0.5).as_secs_f64() / call_median.as_secs_f64() * 100.0;
    figures.push(recorder);

    let code = figure::finish(&figures);
    let _ = writeln!(
        std::io::stdout(),
        "recording adds {share:.2}% to the small tool call (median {:?})",
        call_median
    );
    code
}
