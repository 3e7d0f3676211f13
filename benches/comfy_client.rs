//! The ComfyUI client's figures, against the targets:
//!
//! - parsing and indexing the recorded 496-node `/object_info` (target: under 5 ms);
//! - `get_all_nodes` and `get_node_info` answered from the cached registry, measured as the
//!   server's own time for the call: argument validation, the tool, and the JSON result
//!   (target: under 200 µs);
//! - the error a call gets while the breaker is open (target: under 10 ms).
//!
//! A small local server plays ComfyUI from the recording. Run with
//! `cargo bench --bench comfy-client`; it prints median, p99 and max per figure and exits
//! non-zero when a median misses its target.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::routing::get;
use comfyui_agent::AppState;
use comfyui_agent::comfy::nodes::NodeIndex;
use comfyui_agent::config::Config;
use comfyui_agent::mcp::ToolContext;
use serde_json::{Value, json};

#[path = "support/figure.rs"]
mod figure;
use figure::{Figure, measure};
use url::Url;

const OBJECT_INFO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/comfyui-0.3.64/object_info.json"
);

async fn measure_async<F, Fut>(iterations: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    samples
}

/// Serves `/object_info` and `/object_info/{class}` from the recording on a free port.
async fn recorded_comfyui(body: &'static [u8]) -> Url {
    let app = Router::new()
        .route(
            "/object_info",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], body) }),
        )
        .route(
            "/object_info/{class}",
            get(|Path(_class): Path<String>| async { "{}" }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url =
        Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn call(app: &AppState, tool: &str, arguments: Value) -> Result<Value, String> {
    let spec = app.registry().get(tool).expect("tool exists");
    let arguments = arguments.as_object().cloned();
    spec.call(ToolContext::detached(app.clone()), arguments)
        .await
        .map_err(|error| error.user_message())
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body: &'static [u8] = std::fs::read(OBJECT_INFO).expect("recording").leak();
    let mut figures = Vec::new();

    // Warm the allocator and caches once, then measure.
    let nodes = NodeIndex::parse(body).expect("parses").len();
    figures.push(Figure {
        name: "parse + index object_info (496 nodes)".into(),
        target: Duration::from_millis(5),
        tail: false,
        samples: measure(50, || {
            std::hint::black_box(NodeIndex::parse(body).expect("parses"));
        }),
    });
    assert_eq!(nodes, 496);

    let data = tempfile::tempdir().expect("tempdir");
    runtime.block_on(async {
        let url = recorded_comfyui(body).await;
        let config = Config::for_data_dir(data.path().to_path_buf()).with_comfyui_url(url);
        let app = AppState::new(config).expect("app");
        app.registry().warm_up();
        call(&app, "get_all_nodes", json!({"format": "names_only"}))
            .await
            .expect("fills the cache");
        figures.push(Figure {
            name: "get_all_nodes (cached, names_only, all)".into(),
            target: Duration::from_micros(200),
            tail: false,
            samples: measure_async(2000, || async {
                call(&app, "get_all_nodes", json!({"format": "names_only"}))
                    .await
                    .expect("cached");
            })
            .await,
        });
        figures.push(Figure {
            name: "get_all_nodes (cached, category filter)".into(),
            target: Duration::from_micros(200),
            tail: false,
            samples: measure_async(2000, || async {
                call(
                    &app,
                    "get_all_nodes",
                    json!({"category_filter": "sampling"}),
                )
                .await
                .expect("cached");
            })
            .await,
        });
        figures.push(Figure {
            name: "get_node_info KSampler (cached)".into(),
            target: Duration::from_micros(200),
            tail: false,
            samples: measure_async(2000, || async {
                call(&app, "get_node_info", json!({"node_type": "KSampler"}))
                    .await
                    .expect("cached");
            })
            .await,
        });

        // A ComfyUI that has gone away: a closed port, breaker opened by the first failure.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr")
        };
        let mut config = Config::for_data_dir(data.path().to_path_buf())
            .with_comfyui_url(Url::parse(&format!("http://{closed}/")).expect("url"));
        config.comfy.breaker_failures = 1;
        let down = AppState::new(config).expect("app");
        down.registry().warm_up();
        call(&down, "get_queue_status", json!({}))
            .await
            .expect_err("ComfyUI is down");
        figures.push(Figure {
            name: "get_queue_status with the breaker open".into(),
            target: Duration::from_millis(10),
            tail: false,
            samples: measure_async(2000, || async {
                let error = call(&down, "get_queue_status", json!({}))
                    .await
                    .expect_err("open");
                assert!(error.contains("wasn't tried"), "{error}");
            })
            .await,
        });
    });

    figure::finish(&figures)
}
