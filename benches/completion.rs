//! Argument completion against the target: under 1 ms of server time per answer for
//! the 496-node `object_info` recorded from ComfyUI 0.3.64.
//!
//! Each figure does what `completion/complete` does once ComfyUI's node list is cached:
//! collect the candidates from the parsed index and rank them for what was typed. Run with
//! `cargo bench --bench completion`; it prints median, p99 and max per figure and exits
//! non-zero when one misses its target (judged on p99).

use std::process::ExitCode;
use std::time::Duration;

use comfyui_agent::comfy::nodes::{NodeIndex, Section};
use comfyui_agent::mcp::complete::rank;

#[path = "support/figure.rs"]
mod figure;
use figure::{Figure, measure};

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/comfyui-0.3.64/object_info.json"
    ))
    .expect("the recorded object_info");
    let index = NodeIndex::parse(&body).expect("parses");
    assert_eq!(index.len(), 496);
    let classes = || -> Vec<String> { index.nodes().iter().map(|n| n.name.clone()).collect() };
    assert_eq!(
        rank(classes().iter().map(String::as_str), "ksampler").values[0],
        "KSampler"
    );

    let mut figures = Vec::new();
    for typed in ["", "k", "ksampler", "vae", "xyzzy_nothing"] {
        figures.push(Figure {
            name: format!("node classes for {typed:?} (496 nodes)"),
            target: Duration::from_millis(1),
            tail: true,
            samples: measure(2000, || {
                let candidates = classes();
                std::hint::black_box(rank(candidates.iter().map(String::as_str), typed));
            }),
        });
    }
    figures.push(Figure {
        name: "KSampler's inputs for \"s\"".into(),
        target: Duration::from_millis(1),
        tail: true,
        samples: measure(2000, || {
            let node = index.find("ksampler").expect("KSampler");
            let inputs: Vec<String> = node
                .inputs
                .iter()
                .filter(|input| input.section != Section::Hidden)
                .map(|input| input.name.clone())
                .collect();
            std::hint::black_box(rank(inputs.iter().map(String::as_str), "s"));
        }),
    });
    figure::finish(&figures)
}
