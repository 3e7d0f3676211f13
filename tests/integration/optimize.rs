//! GPU-aware optimization on the original project's templates for several machines (the
//! hardware comes from ComfyUI's /system_stats here: no NVIDIA driver on the test machine),
//! each applied change undone cleanly; and background sub-tasks.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_comfy::FakeComfy;
use crate::support::{RawStdio, Scratch, agent_for, failed, fixture, ok};

fn stats(device: &str, kind: &str, vram_gib: f64) -> Value {
    let bytes = (vram_gib * 1024.0 * 1024.0 * 1024.0) as u64;
    json!({
        "system": {"os": "posix", "ram_total": 68_719_476_736u64, "ram_free": 60_000_000_000u64,
                   "comfyui_version": "0.3.64", "python_version": "3.11.7", "pytorch_version": "2.8.0+cu128",
                   "embedded_python": false, "argv": ["main.py"]},
        "devices": [{"name": device, "type": kind, "index": 0, "vram_total": bytes, "vram_free": bytes,
                     "torch_vram_total": bytes, "torch_vram_free": bytes}]
    })
}

/// The ids of a suggest_optimizations answer, in its order.
fn ids_of(suggested: &Value) -> Vec<&str> {
    suggested["optimizations"]
        .as_array()
        .expect("a list of optimizations")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect()
}

fn template(name: &str) -> Value {
    let text =
        std::fs::read_to_string(fixture(&format!("seed-templates/{name}"))).expect("template");
    serde_json::from_str(&text).expect("json")
}

async fn agent_on(fake: &FakeComfy, scratch: &Scratch, machine: Option<Value>) -> RawStdio {
    if let Some(machine) = machine {
        fake.set_system_stats(machine);
    }
    agent_for(fake, scratch, &[]).await
}

#[tokio::test]
async fn every_suggested_fix_applies_and_undoes_cleanly_on_each_machine() {
    let machines = [
        (
            "cuda:0 NVIDIA GeForce RTX 3060 : cudaMallocAsync",
            "cuda",
            12.0,
            "ampere",
        ),
        (
            "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
            "cuda",
            24.0,
            "ada",
        ),
        (
            "cuda:0 NVIDIA GeForce RTX 5090 : cudaMallocAsync",
            "cuda",
            32.0,
            "blackwell",
        ),
        (
            "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync",
            "cuda",
            80.0,
            "hopper",
        ),
    ];
    for template_name in [
        "txt2img_sdxl.json",
        "txt2img_sd15.json",
        "img2img.json",
        "txt2img_lora.json",
    ] {
        for (device, kind, vram, arch) in machines {
            let fake = FakeComfy::start().await;
            let scratch = Scratch::new();
            let mut agent = agent_on(&fake, &scratch, Some(stats(device, kind, vram))).await;
            let workflow = template(template_name);
            ok(&agent
                .call_tool(1, "load_workflow", json!({"workflow": workflow}))
                .await);
            let profiled = agent.call_tool(2, "profile_workflow", json!({})).await;
            let profile = ok(&profiled);
            assert_eq!(profile["machine"]["arch"], arch, "{device}: {profile}");
            assert!(
                profile["estimate"]["peak_gib"]
                    .as_f64()
                    .is_some_and(|p| p > 0.5)
            );
            // Stress it: a 4K batch of 8 makes every memory fix apply.
            let stressed_suggestions = agent
                .call_tool(
                    3,
                    "suggest_optimizations",
                    json!({"workflow": stressed(&template(template_name))}),
                )
                .await;
            let suggestions = ok(&stressed_suggestions);
            assert!(
                suggestions["optimization_count"]
                    .as_u64()
                    .is_some_and(|n| n >= 3),
                "{suggestions}"
            );
            // Then fix the stressed version in the session, and take every fix back.
            ok(&agent
                .call_tool(
                    4,
                    "load_workflow",
                    json!({"workflow": stressed(&template(template_name))}),
                )
                .await);
            let suggested = agent.call_tool(5, "suggest_optimizations", json!({})).await;
            let suggested = ok(&suggested);
            let applicable: Vec<String> = suggested["optimizations"]
                .as_array()
                .expect("list")
                .iter()
                .filter(|o| o["auto_apply"] == true)
                .filter_map(|o| o["id"].as_str().map(String::from))
                .collect();
            // img2img takes its size from the loaded image, which the workflow doesn't state.
            let least = if template_name == "img2img.json" {
                1
            } else {
                3
            };
            assert!(
                applicable.len() >= least,
                "{template_name} on {arch}: {applicable:?}"
            );
            let mut id = 10;
            for optimization in &applicable {
                id += 1;
                let applied = agent
                    .call_tool(
                        id,
                        "apply_optimization",
                        json!({"optimization_id": optimization}),
                    )
                    .await;
                assert_eq!(
                    ok(&applied)["applied"],
                    true,
                    "{template_name} on {arch}: {optimization}: {applied}"
                );
            }
            for _ in &applicable {
                id += 1;
                ok(&agent.call_tool(id, "undo_workflow_patch", json!({})).await);
            }
            id += 1;
            let diff = agent.call_tool(id, "get_workflow_diff", json!({})).await;
            assert_eq!(
                ok(&diff)["changes"],
                0,
                "{template_name} on {arch}: undone to the original: {diff}"
            );
        }
    }
}

/// The template at 3840x2160, batch 8.
fn stressed(workflow: &Value) -> Value {
    let mut workflow = workflow.clone();
    if let Some(nodes) = workflow.as_object_mut() {
        for node in nodes.values_mut() {
            if node["class_type"] == "EmptyLatentImage" {
                node["inputs"]["width"] = json!(3840);
                node["inputs"]["height"] = json!(2160);
                node["inputs"]["batch_size"] = json!(8);
            }
        }
    }
    workflow
}

#[tokio::test]
async fn a_small_card_gets_memory_fixes_and_a_cpu_machine_is_told_plainly() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_on(
        &fake,
        &scratch,
        Some(stats(
            "cuda:0 NVIDIA GeForce RTX 3050 : native",
            "cuda",
            6.0,
        )),
    )
    .await;
    let workflow = stressed(&template("txt2img_sdxl.json"));
    let suggested = agent
        .call_tool(1, "suggest_optimizations", json!({"workflow": workflow}))
        .await;
    let suggested = ok(&suggested);
    let ids = ids_of(suggested);
    for expected in ["vae_tiling", "batch_size", "native_resolution"] {
        assert!(ids.contains(&expected), "{expected} in {ids:?}");
    }
    assert_eq!(
        suggested["estimate"]["verdict"], "does_not_fit",
        "{suggested}"
    );

    // Planning for another GPU by name.
    let planned = agent
        .call_tool(
            2,
            "suggest_optimizations",
            json!({"workflow": template("txt2img_sdxl.json"), "gpu_name": "NVIDIA H200", "vram_gb": 141}),
        )
        .await;
    let planned = ok(&planned);
    assert_eq!(planned["machine"]["arch"], "hopper");
    assert_eq!(planned["estimate"]["verdict"], "fits");

    let fake_cpu = FakeComfy::start().await;
    let mut cpu = agent_on(&fake_cpu, &scratch, None).await;
    let profiled = cpu
        .call_tool(
            1,
            "profile_workflow",
            json!({"workflow": template("txt2img_sd15.json")}),
        )
        .await;
    let profiled = ok(&profiled);
    assert_eq!(profiled["machine"]["arch"], "cpu_only", "{profiled}");
    assert!(
        profiled["message"]
            .as_str()
            .is_some_and(|m| m.contains("CPU"))
    );
    let suggested = cpu
        .call_tool(
            2,
            "suggest_optimizations",
            json!({"workflow": template("txt2img_sd15.json")}),
        )
        .await;
    assert_eq!(ok(&suggested)["optimizations"][0]["id"], "cpu_only");
    let tensorrt = cpu.call_tool(3, "check_tensorrt_status", json!({})).await;
    let tensorrt = ok(&tensorrt);
    assert_eq!(tensorrt["trt_supported"], false);
    assert_eq!(tensorrt["ready"], false);
    assert!(
        tensorrt["next_steps"][0]
            .as_str()
            .is_some_and(|s| s.contains("NVIDIA"))
    );
}

#[tokio::test]
async fn applying_refuses_what_it_cannot_do_and_needs_a_workflow() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_on(&fake, &scratch, None).await;
    let none = agent
        .call_tool(
            1,
            "apply_optimization",
            json!({"optimization_id": "vae_tiling"}),
        )
        .await;
    assert!(failed(&none).contains("no workflow"), "{none}");
    ok(&agent
        .call_tool(
            2,
            "load_workflow",
            json!({"workflow": template("txt2img_sd15.json")}),
        )
        .await);
    let tensorrt = agent
        .call_tool(
            3,
            "apply_optimization",
            json!({"optimization_id": "tensorrt"}),
        )
        .await;
    assert!(
        failed(&tensorrt).contains("vae_tiling"),
        "lists the ones that can: {tensorrt}"
    );
    let fp8 = agent
        .call_tool(
            4,
            "apply_optimization",
            json!({"optimization_id": "fp8_weights"}),
        )
        .await;
    assert!(failed(&fp8).contains("no node"), "{fp8}");
    let bad = agent
        .call_tool(
            5,
            "apply_optimization",
            json!({"optimization_id": "batch_size", "params": {"batch_size": 500}}),
        )
        .await;
    assert!(failed(&bad).contains("1-64"), "{bad}");
    let steps = agent
        .call_tool(
            6,
            "apply_optimization",
            json!({"optimization_id": "step_optimization", "params": {"steps": 18}}),
        )
        .await;
    assert_eq!(
        ok(&steps)["changes"].as_array().map(Vec::len),
        Some(1),
        "{steps}"
    );
}

#[tokio::test]
async fn sub_tasks_run_in_the_background_within_their_profile_and_limits() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let refused = agent
        .call_tool(
            1,
            "spawn_subtask",
            json!({"task_description": "sneaky", "profile": "researcher",
                   "tool_calls": [{"tool": "get_node_info", "input": {"node_type": "KSampler"}},
                                  {"tool": "save_workflow", "input": {}}]}),
        )
        .await;
    let message = failed(&refused);
    assert!(message.contains("may not use save_workflow"), "{message}");
    assert!(
        message.contains("get_node_info"),
        "lists what it may use: {message}"
    );

    let spawned = agent
        .call_tool(
            2,
            "spawn_subtask",
            json!({"task_description": "look around", "profile": "researcher",
                   "tool_calls": [{"tool": "get_node_info", "input": {"node_type": "KSampler"}},
                                  {"tool": "identify_model_family", "input": {"model_name": 5}},
                                  {"tool": "list_workflow_templates", "input": {}}]}),
        )
        .await;
    let task_id = ok(&spawned)["task_id"].as_str().expect("id").to_string();
    let mut id = 10;
    let task = loop {
        id += 1;
        let checked = agent
            .call_tool(id, "check_subtasks", json!({"task_ids": [task_id]}))
            .await;
        let task = ok(&checked)["tasks"][0].clone();
        if task["status"] != "running" {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The bad arguments of the second call were caught as in a direct call; it stopped there.
    assert_eq!(task["status"], "error", "{task}");
    assert_eq!(task["results"][0]["ok"], true);
    assert_eq!(task["results"][0]["result"]["class_type"], "KSampler");
    assert!(
        task["results"][1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("model_name"))
    );
    assert_eq!(task["calls_done"], 2);

    // Slow runs: three at once, a fourth refused, one cancelled, one timed out.
    fake.set_pace(Duration::from_secs(30));
    let run = |timeout: u64| {
        json!({"task_description": "run it", "profile": "validator", "timeout_s": timeout,
               "tool_calls": [{"tool": "execute_workflow", "input": {"workflow": crate::support::solid(), "timeout": 600}}]})
    };
    let mut ids = Vec::new();
    for (n, timeout) in [(50, 600), (51, 600), (52, 3)] {
        let spawned = agent.call_tool(n, "spawn_subtask", run(timeout)).await;
        ids.push(ok(&spawned)["task_id"].as_str().expect("id").to_string());
    }
    let fourth = agent.call_tool(53, "spawn_subtask", run(600)).await;
    assert!(failed(&fourth).contains("at most 3"), "{fourth}");
    // Wait until all three prompts reach ComfyUI, then cancel the first sub-task.
    for _ in 0..1000 {
        if fake.prompts().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.prompts().len(), 3, "all three runs reached ComfyUI");
    let cancelled = agent
        .call_tool(54, "check_subtasks", json!({"cancel": [ids[0]]}))
        .await;
    assert_eq!(ok(&cancelled)["cancelled_now"], json!([ids[0]]));
    let mut id = 60;
    loop {
        id += 1;
        let checked = agent.call_tool(id, "check_subtasks", json!({})).await;
        let tasks = ok(&checked)["tasks"].as_array().cloned().expect("tasks");
        let status = |wanted: &str| {
            tasks
                .iter()
                .find(|t| t["task_id"] == wanted)
                .map(|t| t["status"].as_str().unwrap_or_default().to_string())
                .unwrap_or_default()
        };
        if status(&ids[0]) == "cancelled" && status(&ids[2]) == "timed_out" {
            assert_eq!(status(&ids[1]), "running");
            break;
        }
        assert!(id < 400, "sub-tasks did not settle: {tasks:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The cancelled and the timed-out runs were cancelled in ComfyUI too.
    let interrupts = fake
        .seen()
        .iter()
        .filter(|seen| {
            seen.method == axum::http::Method::POST
                && (seen.path == "/interrupt" || seen.path == "/queue")
        })
        .count();
    assert!(
        interrupts >= 2,
        "{:?}",
        fake.seen()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );
    // A slot is free again.
    let again = agent.call_tool(500, "spawn_subtask", run(600)).await;
    ok(&again);
}

#[tokio::test]
async fn with_comfyui_down_the_hardware_is_unknown_not_cpu_only() {
    let mut fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    fake.stop().await;
    let workflow = template("txt2img_sdxl.json");
    let profiled = agent
        .call_tool(1, "profile_workflow", json!({"workflow": workflow}))
        .await;
    let profiled = ok(&profiled);
    assert_eq!(profiled["machine"]["arch"], "unknown", "{profiled}");
    assert_eq!(profiled["estimate"]["verdict"], "unknown");
    assert!(
        profiled["message"]
            .as_str()
            .is_some_and(|m| m.contains("ComfyUI") && m.contains("gpu_name")),
        "{profiled}"
    );
    let suggested = agent
        .call_tool(
            2,
            "suggest_optimizations",
            json!({"workflow": stressed(&workflow)}),
        )
        .await;
    let suggested = ok(&suggested);
    let ids = ids_of(suggested);
    assert_eq!(ids[0], "hardware_unknown", "{ids:?}");
    assert!(
        !ids.contains(&"batch_size") && !ids.contains(&"low_vram_mode"),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"native_resolution"),
        "quality advice still stands: {ids:?}"
    );
    // Planning for a named GPU works without ComfyUI.
    let planned = agent
        .call_tool(
            3,
            "suggest_optimizations",
            json!({"workflow": workflow, "gpu_name": "RTX 4090", "vram_gb": 24}),
        )
        .await;
    assert_eq!(ok(&planned)["estimate"]["verdict"], "fits");
    ok(&agent
        .call_tool(4, "load_workflow", json!({"workflow": stressed(&workflow)}))
        .await);
    let batch = agent
        .call_tool(
            5,
            "apply_optimization",
            json!({"optimization_id": "batch_size"}),
        )
        .await;
    assert!(failed(&batch).contains("params.batch_size"), "{batch}");
    let tensorrt = agent.call_tool(6, "check_tensorrt_status", json!({})).await;
    let tensorrt = ok(&tensorrt);
    assert_eq!(tensorrt["trt_supported"], false);
    assert_eq!(tensorrt["loaded_nodes"], json!([]));
}
