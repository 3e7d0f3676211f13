//! The workflow engine's figures on a 500-node workflow, against the targets:
//!
//! - load and summarize (the `load_workflow` tool, inline JSON in, report out): under 2 ms;
//! - validate against the recorded 496-node registry: under 1 ms;
//! - apply a 10-operation patch and undo it: under 100 µs;
//! - save (pretty JSON, written atomically with fsync): p99 under 20 ms.
//!
//! Run with `cargo bench --bench workflow`; it prints median, p99 and max per figure and exits
//! non-zero when one misses its target (the save figure is judged on p99, the rest on the
//! median).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use comfyui_agent::AppState;
use comfyui_agent::comfy::nodes::NodeIndex;
use comfyui_agent::config::Config;
use comfyui_agent::mcp::ToolContext;
use comfyui_agent::workflow::edit::{EditState, Source};
use comfyui_agent::workflow::load::LoadedFormat;
use comfyui_agent::workflow::model::Workflow;
use comfyui_agent::workflow::patch::PatchOp;
use comfyui_agent::workflow::validate;

#[path = "support/figure.rs"]
mod figure;
use figure::{Figure, measure};
use serde_json::{Map, Value, json};

const OBJECT_INFO: &[u8] = include_bytes!("../tests/fixtures/comfyui-0.3.64/object_info.json");

/// A valid 500-node image-processing chain: a source, 498 filters, a save.
fn big_workflow() -> Value {
    let mut nodes = Map::new();
    nodes.insert(
        "1".into(),
        json!({"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0}, "_meta": {"title": "Source"}}),
    );
    for n in 2..500_u32 {
        let previous = (n - 1).to_string();
        let node = match n % 4 {
            0 => {
                json!({"class_type": "ImageBlur", "inputs": {"image": [previous, 0], "blur_radius": 1 + n % 30, "sigma": 1.5}})
            }
            1 => {
                json!({"class_type": "ImageSharpen", "inputs": {"image": [previous, 0], "sharpen_radius": 2, "sigma": 1.0, "alpha": 0.5}})
            }
            2 => {
                json!({"class_type": "ImageScaleBy", "inputs": {"image": [previous, 0], "upscale_method": "bicubic", "scale_by": 1.0}})
            }
            _ => json!({"class_type": "ImageInvert", "inputs": {"image": [previous, 0]}}),
        };
        nodes.insert(n.to_string(), node);
    }
    nodes.insert(
        "500".into(),
        json!({"class_type": "SaveImage", "inputs": {"images": ["499", 0], "filename_prefix": "bench"}}),
    );
    Value::Object(nodes)
}

fn ten_ops() -> Vec<PatchOp> {
    (0..10_u32)
        .map(|i| {
            let node = 4 * (i + 1);
            PatchOp::replace(
                format!("/{node}/inputs/blur_radius"),
                json!(1 + (i + 5) % 30),
            )
        })
        .collect()
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let index = NodeIndex::parse(OBJECT_INFO).expect("recorded registry");
    let doc = big_workflow();
    let workflow = Workflow::from_api(&doc).expect("valid API workflow");
    assert_eq!(workflow.nodes.len(), 500);
    let report = validate::validate(&workflow, &index);
    assert!(
        report.valid,
        "the bench workflow is valid: {:?}",
        report.errors.first()
    );

    let mut figures = Vec::new();
    let data = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = AppState::new(Config::for_data_dir(data.path().to_path_buf())).expect("app");
    app.registry().warm_up();
    let load = app.registry().get("load_workflow").expect("tool");
    let arguments = json!({"workflow": doc.clone()});
    runtime.block_on(async {
        let cx = ToolContext::detached(app.clone());
        let mut samples = Vec::with_capacity(200);
        // The arguments arrive parsed; copying them is not the server's work.
        let mut inputs: Vec<_> = (0..200).map(|_| arguments.as_object().cloned()).collect();
        while let Some(input) = inputs.pop() {
            let started = Instant::now();
            let result = load.call(cx.clone(), input).await.expect("loads");
            std::hint::black_box(result);
            samples.push(started.elapsed());
        }
        figures.push(Figure {
            name: "load_workflow + summary (500 nodes)".into(),
            target: Duration::from_millis(2),
            tail: false,
            samples,
        });
    });

    figures.push(Figure {
        name: "validate (500 nodes, 496-node registry)".into(),
        target: Duration::from_millis(1),
        tail: false,
        samples: measure(500, || {
            std::hint::black_box(validate::validate(&workflow, &index));
        }),
    });

    let mut state = EditState::new(Source::Inline, LoadedFormat::Api, doc.clone(), 50);
    let ops = ten_ops();
    figures.push(Figure {
        name: "apply a 10-op patch + undo (500 nodes)".into(),
        target: Duration::from_micros(100),
        tail: false,
        samples: measure(1000, || {
            state.apply(&ops).expect("applies");
            state.undo().expect("undoes");
        }),
    });
    assert_eq!(state.current(), &doc, "undo restored the workflow");

    let target = data.path().join("bench_api.json");
    figures.push(Figure {
        name: "save (pretty JSON, atomic, fsynced)".into(),
        target: Duration::from_millis(20),
        tail: true,
        samples: measure(200, || {
            let mut bytes = serde_json::to_vec_pretty(state.current()).expect("encodes");
            bytes.push(b'\n');
            comfyui_agent::fsutil::write_atomic(&target, &bytes).expect("writes");
        }),
    });

    figure::finish(&figures)
}
