//! The model inventory's figures on an install holding 10,000 model files across 12 kinds
//! (subfolders included), against the targets:
//!
//! - `get_models_summary` cold (a fresh cache: every folder walked, every file's size read):
//!   under 50 ms. "Cold" is a fresh index in a warm process with a warm OS page cache, not a
//!   machine just booted;
//! - `get_models_summary` cached (every walked folder statted, nothing changed): under 1 ms,
//!   both the domain call and the whole tool call (thread hop and JSON included).
//!
//! Run with `cargo bench --bench install`; it prints median, p99 and max per figure and exits
//! non-zero when one misses its target.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use comfyui_agent::AppState;
use comfyui_agent::comfy::discovery::{Host, discover_install};
use comfyui_agent::config::Config;
use comfyui_agent::install::{InstallIndex, RACY_WINDOW};
use comfyui_agent::mcp::ToolContext;
use comfyui_agent::tools::inspect::summarise;

#[path = "support/figure.rs"]
mod figure;
use figure::{Figure, measure};

const FILES: usize = 10_000;

/// 12 kinds, the bigger ones with subfolders, as a well-used install has them.
fn build(base: &Path) {
    std::fs::write(base.join("main.py"), "").expect("write");
    let kinds: [(&str, usize, &str); 12] = [
        ("checkpoints", 20, "safetensors"),
        ("loras", 60, "safetensors"),
        ("vae", 1, "safetensors"),
        ("unet", 4, "gguf"),
        ("diffusion_models", 6, "safetensors"),
        ("clip", 2, "safetensors"),
        ("controlnet", 8, "pth"),
        ("upscale_models", 1, "pth"),
        ("embeddings", 10, "pt"),
        ("ipadapter", 2, "bin"),
        ("clip_vision", 1, "safetensors"),
        ("onnx", 1, "onnx"),
    ];
    let folders: usize = kinds.iter().map(|(_, n, _)| n).sum();
    let mut written = 0;
    let mut folder_no = 0;
    for (kind, subfolders, ext) in kinds {
        for sub in 0..subfolders {
            folder_no += 1;
            let dir = base.join("models").join(kind).join(format!("set_{sub:03}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let share = FILES * folder_no / folders - written;
            for n in 0..share {
                std::fs::write(dir.join(format!("model_{n:05}.{ext}")), b"x").expect("write");
            }
            // A file that is not a model, as real folders have.
            std::fs::write(dir.join("notes.txt"), b"x").expect("write");
            written += share;
        }
    }
    assert_eq!(written, FILES);
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let base = scratch.path().join("ComfyUI");
    std::fs::create_dir_all(&base).expect("mkdir");
    build(&base);
    // Folders changed within the racy window are rescanned on every call by design; let the
    // new tree age past it, as a real install has.
    std::thread::sleep(RACY_WINDOW + Duration::from_millis(500));
    let host = Host::current();
    let install = discover_install(&host, Some(&base))
        .install
        .expect("install");

    let mut figures = Vec::new();
    let mut samples = Vec::new();
    for _ in 0..30 {
        let index = InstallIndex::new(Some(install.clone()), host.clone());
        let started = Instant::now();
        let view = index.models().expect("scan");
        let summary = summarise(&view);
        samples.push(started.elapsed());
        assert!(!summary.cached);
        assert_eq!(summary.total_files, FILES);
    }
    figures.push(Figure {
        name: "get_models_summary cold (10,000 files, 128 folders)".into(),
        target: Duration::from_millis(50),
        tail: false,
        samples,
    });

    let index = InstallIndex::new(Some(install.clone()), host.clone());
    index.models().expect("prime");
    figures.push(Figure {
        name: "get_models_summary cached (domain call)".into(),
        target: Duration::from_millis(1),
        tail: false,
        samples: measure(2000, || {
            let view = index.models().expect("cached");
            assert!(view.cached);
            std::hint::black_box(summarise(&view));
        }),
    });

    let data = tempfile::tempdir().expect("tempdir");
    let mut config = Config::for_data_dir(data.path().to_path_buf());
    config.comfyui_dir = Some(base.clone());
    let app = AppState::new(config).expect("app");
    app.registry().warm_up();
    let spec = app.registry().get("get_models_summary").expect("tool");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let cx = ToolContext::detached(app.clone());
        spec.call(cx.clone(), None).await.expect("prime");
        let mut samples = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let started = Instant::now();
            let result = spec.call(cx.clone(), None).await.expect("summary");
            samples.push(started.elapsed());
            assert_eq!(result["cached"], true);
        }
        figures.push(Figure {
            name: "get_models_summary cached (tool call, JSON)".into(),
            target: Duration::from_millis(1),
            tail: false,
            samples,
        });
    });

    figure::finish(&figures)
}
