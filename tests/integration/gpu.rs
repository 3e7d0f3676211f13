//! `get_gpu_status` and `comfyui-agent gpu` end to end against the fake ComfyUI. These tests
//! run on machines without a GPU (the NVML-absent path); on one with an NVIDIA driver they
//! check the NVML answer instead.

use serde_json::{Value, json};

use crate::support::fake_comfy::FakeComfy;
use crate::support::{Scratch, agent_for, failed, ok};

/// What ComfyUI on a one-GPU CUDA machine reports.
fn cuda_box() -> Value {
    json!({
        "system": {"os": "posix", "ram_total": 68_719_476_736_u64, "ram_free": 60_000_000_000_u64,
                   "comfyui_version": "0.3.64"},
        "devices": [{"name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "type": "cuda",
                     "index": 0, "vram_total": 25_757_220_864_u64, "vram_free": 20_000_000_000_u64,
                     "torch_vram_total": 4_000_000_000_u64, "torch_vram_free": 1_000_000_000_u64}]
    })
}

/// Whether this machine answered through its own NVIDIA driver (then the fallback isn't used).
fn from_nvml(report: &Value) -> bool {
    report["nvml"] == "available"
}

/// The profile always knows this machine's cores and OS.
fn check_profile(report: &Value) {
    let hardware = &report["hardware"];
    assert_eq!(hardware["machine"], "this_machine", "{report}");
    assert!(
        hardware["cpu_logical_cores"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
    assert_eq!(hardware["os"], std::env::consts::OS);
}

#[tokio::test]
async fn without_nvml_the_gpus_come_from_comfyuis_own_report() {
    let fake = FakeComfy::start().await;
    fake.set_system_stats(cuda_box());
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent.call_tool(1, "get_gpu_status", json!({})).await;
    let report = ok(&result);
    check_profile(report);
    if from_nvml(report) {
        assert_eq!(report["source"], "nvml");
        return;
    }
    assert_eq!(report["source"], "comfyui_system_stats", "{report}");
    assert_eq!(report["comfyui_on_this_machine"], true);
    let gpu = &report["gpus"][0];
    assert_eq!(gpu["name"], "NVIDIA GeForce RTX 4090");
    assert_eq!(gpu["index"], 0);
    assert_eq!(gpu["device_type"], "cuda");
    assert_eq!(gpu["vram_total_bytes"], 25_757_220_864_u64);
    assert_eq!(gpu["vram_used_bytes"], 5_757_220_864_u64);
    assert_eq!(gpu["torch_vram_free_bytes"], 1_000_000_000_u64);
    assert_eq!(
        report["summary"],
        "GPU 0 · NVIDIA GeForce RTX 4090 · 5.4 / 24.0 GiB VRAM used"
    );
    let note = report["note"].as_str().expect("a note says why");
    assert!(
        note.contains("No NVIDIA GPU found on this machine"),
        "{note}"
    );
    assert_eq!(report["hardware"]["gpu_source"], "comfyui_system_stats");
    assert_eq!(
        report["hardware"]["gpus"][0]["name"],
        "NVIDIA GeForce RTX 4090"
    );
    // The text block carries the same answer for clients that read only text.
    let text = result["content"][0]["text"].as_str().expect("text");
    assert!(text.contains("RTX 4090"), "{text}");
}

#[tokio::test]
async fn a_cpu_only_comfyui_is_reported_as_such() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent
        .call_tool(1, "get_gpu_status", json!({"include_processes": false}))
        .await;
    let report = ok(&result);
    if from_nvml(report) {
        return;
    }
    assert_eq!(report["source"], "comfyui_system_stats", "{report}");
    assert_eq!(report["gpus"], json!([]));
    let summary = report["summary"].as_str().expect("summary");
    assert!(summary.contains("runs on the CPU"), "{summary}");
    assert!(report["hint"].as_str().is_some_and(|h| h.contains("--cpu")));
}

#[tokio::test]
async fn with_comfyui_down_and_no_nvml_the_answer_is_plain_not_an_error() {
    let mut fake = FakeComfy::start().await;
    let url = fake.url();
    fake.stop().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent.call_tool(1, "get_gpu_status", json!({})).await;
    let report = ok(&result);
    check_profile(report);
    if from_nvml(report) {
        return;
    }
    assert_eq!(report["source"], "none", "{report}");
    assert_eq!(report["gpus"], json!([]));
    let summary = report["summary"].as_str().expect("summary");
    assert!(
        summary.starts_with("No NVIDIA GPU found on this machine (")
            && summary.contains(&format!("ComfyUI isn't answering at {url}")),
        "{summary}"
    );
    assert!(
        report["hint"]
            .as_str()
            .is_some_and(|h| h.contains("Start ComfyUI"))
    );
    assert!(report["comfyui_error"].is_string());
    assert_eq!(report["hardware"]["gpu_source"], "none");

    // The server is fine: the next call is answered too.
    let again = agent
        .call_tool(2, "get_gpu_status", json!({"gpu": 0}))
        .await;
    assert_eq!(ok(&again)["source"], "none");
}

#[tokio::test]
async fn bad_arguments_are_refused_with_what_was_expected() {
    let fake = FakeComfy::start().await;
    fake.set_system_stats(cuda_box());
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;

    let unknown = failed(
        &agent
            .call_tool(1, "get_gpu_status", json!({"device": 0}))
            .await,
    );
    assert!(
        unknown.contains("device") && unknown.contains("include_processes"),
        "{unknown}"
    );

    let wrong_type = failed(
        &agent
            .call_tool(2, "get_gpu_status", json!({"include_processes": "yes"}))
            .await,
    );
    assert!(wrong_type.contains("true or false"), "{wrong_type}");

    let negative = failed(
        &agent
            .call_tool(3, "get_gpu_status", json!({"gpu": -1}))
            .await,
    );
    assert!(negative.contains("gpu"), "{negative}");

    let result = agent
        .call_tool(4, "get_gpu_status", json!({"gpu": 0}))
        .await;
    let report = ok(&result);
    assert_eq!(report["gpus"].as_array().map(Vec::len), Some(1));

    let missing = failed(
        &agent
            .call_tool(5, "get_gpu_status", json!({"gpu": 7}))
            .await,
    );
    assert!(missing.contains("There is no GPU 7"), "{missing}");
}

#[tokio::test]
async fn the_gpu_command_prints_the_probe_as_json() {
    let fake = FakeComfy::start().await;
    fake.set_system_stats(cuda_box());
    let scratch = Scratch::new();
    let output = scratch
        .command(&["gpu", "--no-processes"])
        .env("COMFYUI_URL", fake.url())
        .output()
        .await
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    check_profile(&report);
    if !from_nvml(&report) {
        assert_eq!(report["source"], "comfyui_system_stats", "{report}");
        assert_eq!(report["gpus"][0]["name"], "NVIDIA GeForce RTX 4090");
    }
}
