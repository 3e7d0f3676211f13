//! The server's own overhead for a queued-and-completed run, against the target of
//! 5 ms: `execute_workflow` on the recorded basic run (EmptyImage → SaveImage), with the fake
//! ComfyUI from the integration tests replaying it with no pauses, so the time measured is
//! this server's work (socket, submission, events, history, fetching and fitting the image)
//! plus the fake's.
//!
//! Run with `cargo bench --bench execution`; exits non-zero when the median misses the target.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use comfyui_agent::AppState;
use comfyui_agent::config::Config;
use comfyui_agent::mcp::ToolContext;
use serde_json::json;
use url::Url;

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/integration/support/fake_comfy.rs"]
mod fake_comfy;

/// The recorded fixtures, for the fake.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let data = tempfile::tempdir().expect("tempdir");
    let samples = runtime.block_on(async {
        let fake = fake_comfy::FakeComfy::start().await;
        fake.set_pace(Duration::ZERO);
        let url = Url::parse(&fake.url()).expect("url");
        let app = AppState::new(Config::for_data_dir(data.path().to_path_buf()).with_comfyui_url(url))
            .expect("app");
        app.registry().warm_up();
        let tool = app.registry().get("execute_workflow").expect("tool");
        let workflow = json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}
        });
        let mut samples = Vec::with_capacity(100);
        for round in 0..110 {
            let arguments = json!({"workflow": workflow.clone()}).as_object().cloned();
            let started = Instant::now();
            let report = tool
                .call(ToolContext::detached(app.clone()), arguments)
                .await
                .expect("the run completes");
            let elapsed = started.elapsed();
            assert_eq!(report["status"], "complete", "{report}");
            // The first runs warm the connection pool and caches.
            if round >= 10 {
                samples.push(elapsed);
            }
        }
        samples
    });
    let median = quantile(&samples, 0.5);
    let ok = median < Duration::from_millis(5);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<44} median {:>10.1?}  p99 {:>10.1?}  max {:>10.1?}  target median < 5ms  {}",
        "execute_workflow, queued to complete",
        median,
        quantile(&samples, 0.99),
        quantile(&samples, 1.0),
        if ok { "ok" } else { "MISSED" }
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
