//! The execution tools end to end: the real binary over stdio against the fake ComfyUI, which
//! replays recorded runs over the WebSocket.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_comfy::{FakeComfy, RecordedRun, tiny_png};
use crate::support::{RawStdio, Scratch, agent_for, failed, ok, solid};

/// Sends a call with a progress token; returns the progress messages and the result.
async fn call_with_progress(
    agent: &mut RawStdio,
    id: i64,
    name: &str,
    arguments: Value,
) -> (Vec<String>, Value) {
    agent
        .send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": name, "arguments": arguments,
                                 "_meta": {"progressToken": format!("p{id}")}}}))
        .await;
    let mut progress = Vec::new();
    loop {
        let message = agent.recv().await;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], format!("p{id}"));
            progress.push(
                message["params"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        } else if message["id"] == id {
            return (progress, message["result"].clone());
        }
    }
}

#[tokio::test]
async fn a_run_completes_with_progress_timings_and_the_image_inline() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let (progress, result) = call_with_progress(
        &mut agent,
        1,
        "execute_with_progress",
        json!({"workflow": solid(), "auto_verify": true, "goal_id": "g-1"}),
    )
    .await;
    let report = ok(&result);
    assert_eq!(report["status"], "complete", "{report}");
    assert_eq!(report["monitoring"], "websocket");
    assert_eq!(report["goal_id"], "g-1");
    assert!(report["outputs"].as_array().is_some_and(|o| !o.is_empty()));
    assert!(
        report["node_timing"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(report["verification"]["all_readable"], true, "{report}");
    assert!(progress.iter().any(|p| p == "queued"), "{progress:?}");
    assert!(
        progress.iter().any(|p| p.starts_with("SaveImage")),
        "{progress:?}"
    );

    // The image comes back as image content plus a link to the full file.
    let blocks = result["content"].as_array().expect("content");
    let image = blocks
        .iter()
        .find(|b| b["type"] == "image")
        .expect("an image block");
    assert_eq!(image["mimeType"], "image/png");
    let link = blocks
        .iter()
        .find(|b| b["type"] == "resource_link")
        .expect("a resource link");
    let uri = link["uri"].as_str().expect("uri").to_string();
    assert!(uri.starts_with("comfyui://output/output/"));
    assert_eq!(report["images_shown"][0]["uri"], uri.as_str());

    agent
        .send(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": uri}}),
        )
        .await;
    let read = agent.response(2).await;
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["mimeType"], "image/png");
    assert!(contents["blob"].as_str().is_some_and(|b| !b.is_empty()));
    agent
        .send(
            &json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read",
                      "params": {"uri": "comfyui://output/output/../secret.png"}}),
        )
        .await;
    let refused = agent.response(3).await;
    assert_eq!(refused["error"]["code"], -32002, "{refused}");
    agent
        .send(
            &json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read",
                      "params": {"uri": "comfyui://output/output/missing.png"}}),
        )
        .await;
    let missing = agent.response(4).await;
    assert_eq!(missing["error"]["code"], -32002, "{missing}");
}

#[tokio::test]
async fn the_session_workflow_runs_and_a_runtime_failure_is_reported() {
    let fake = FakeComfy::start().await;
    // Replayed without pauses: the events arrive as fast as the server can take them.
    fake.set_pace(Duration::ZERO);
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    ok(&agent
        .call_tool(1, "load_workflow", json!({"workflow": solid()}))
        .await);
    let done = agent.call_tool(2, "execute_workflow", json!({})).await;
    assert_eq!(ok(&done)["status"], "complete");

    fake.next_run(RecordedRun::Failure);
    let failed_run = agent
        .call_tool(3, "execute_workflow", json!({"workflow": solid()}))
        .await;
    let report = ok(&failed_run);
    assert_eq!(report["status"], "error");
    assert_eq!(report["error"]["class_type"], "LoadImage");
    assert!(
        report["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(
        report["message"]
            .as_str()
            .is_some_and(|m| m.contains("LoadImage"))
    );
}

#[tokio::test]
async fn comfyui_refusing_the_workflow_is_explained_node_by_node() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let errors: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::fixture("comfyui-0.3.64/errors.json"))
            .expect("recording"),
    )
    .expect("JSON");
    let workflow = errors["missing_required_input"]["request"]["prompt"].clone();
    let refused = agent
        .call_tool(1, "execute_workflow", json!({"workflow": workflow}))
        .await;
    let message = failed(&refused);
    assert!(
        message.contains("Node 1") && message.contains("height"),
        "{message}"
    );
    let bad_args = agent
        .call_tool(2, "execute_workflow", json!({"timeout": 0}))
        .await;
    assert!(failed(&bad_args).contains("timeout"));
    let nothing = agent.call_tool(3, "execute_workflow", json!({})).await;
    assert!(failed(&nothing).contains("No workflow loaded"));
}

#[tokio::test]
async fn a_long_run_returns_a_handle_that_can_be_polled_and_cancelled() {
    let fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Long);
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let started = agent
        .call_tool(
            1,
            "execute_workflow",
            json!({"workflow": solid(), "timeout": 1}),
        )
        .await;
    let handle = ok(&started);
    assert_eq!(handle["status"], "running", "{handle}");
    let prompt_id = handle["prompt_id"].as_str().expect("id").to_string();
    assert!(
        handle["message"]
            .as_str()
            .is_some_and(|m| m.contains(&prompt_id))
    );

    // A second run waits behind it.
    let queued = agent
        .call_tool(
            2,
            "execute_workflow",
            json!({"workflow": solid(), "timeout": 1}),
        )
        .await;
    let queued = ok(&queued);
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["queue_position"], 1);
    let queued_id = queued["prompt_id"].as_str().expect("id").to_string();

    let status = agent
        .call_tool(3, "get_execution_status", json!({"prompt_id": prompt_id}))
        .await;
    assert_eq!(ok(&status)["status"], "running");
    let removed = agent
        .call_tool(4, "cancel_execution", json!({"prompt_id": queued_id}))
        .await;
    assert_eq!(ok(&removed)["outcome"], "removed_from_queue");
    assert_eq!(
        fake.running_prompt().as_deref(),
        Some(prompt_id.as_str()),
        "the running one is untouched"
    );
    let interrupted = agent
        .call_tool(5, "cancel_execution", json!({"prompt_id": prompt_id}))
        .await;
    assert_eq!(ok(&interrupted)["outcome"], "interrupted");
    let mut status = Value::Null;
    for attempt in 0..50 {
        let reply = agent
            .call_tool(
                6 + attempt,
                "get_execution_status",
                json!({"prompt_id": prompt_id}),
            )
            .await;
        status = ok(&reply).clone();
        if status["status"] == "interrupted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "interrupted", "{status}");
    let again = agent
        .call_tool(60, "cancel_execution", json!({"prompt_id": prompt_id}))
        .await;
    assert_eq!(ok(&again)["outcome"], "not_active");
    let unknown = agent
        .call_tool(61, "get_execution_status", json!({"prompt_id": "never"}))
        .await;
    assert_eq!(ok(&unknown)["status"], "not_found");
}

#[tokio::test]
async fn a_cancelled_call_cancels_its_prompt() {
    let fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Long);
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "execute_workflow", "arguments": {"workflow": solid(), "timeout": 600}}}))
        .await;
    let mut running = None;
    for _ in 0..100 {
        running = fake.running_prompt();
        if running.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = running.expect("the prompt started");
    agent
        .send(
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                      "params": {"requestId": 7, "reason": "the artist changed their mind"}}),
        )
        .await;
    let interrupted = fake.wait_until_interrupted(&running).await;
    assert!(interrupted, "the ComfyUI prompt was interrupted");
    // The server keeps serving.
    let status = agent
        .call_tool(8, "get_execution_status", json!({"prompt_id": running}))
        .await;
    assert_eq!(ok(&status)["status"], "interrupted");
}

#[tokio::test]
async fn comfyui_dying_mid_run_is_reported_promptly() {
    let mut fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Long);
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "execute_workflow", "arguments": {"workflow": solid(), "timeout": 600}}}))
        .await;
    for _ in 0..100 {
        if fake.running_prompt().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.stop().await;
    let reply = tokio::time::timeout(Duration::from_secs(15), agent.response(1))
        .await
        .expect("an answer soon after ComfyUI died");
    let message = failed(&reply["result"]);
    assert!(
        message.contains("stopped answering during the run"),
        "{message}"
    );
    let info = agent
        .call_tool(
            2,
            "identify_model_family",
            json!({"model_name": "sdxl.safetensors"}),
        )
        .await;
    ok(&info);
}

#[tokio::test]
async fn upload_view_and_verify() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let picture = scratch.allowed().join("photo.png");
    std::fs::write(&picture, tiny_png(8, 8, [200, 10, 10])).expect("write");
    let uploaded = agent
        .call_tool(
            1,
            "upload_image",
            json!({"path": picture.display().to_string(), "subfolder": "refs"}),
        )
        .await;
    let uploaded = ok(&uploaded);
    assert_eq!(uploaded["image"], "refs/photo.png");
    assert!(fake.file("input", "refs", "photo.png").is_some());

    let shown = agent
        .call_tool(
            2,
            "get_output_image",
            json!({"filename": "photo.png", "subfolder": "refs", "folder_type": "input"}),
        )
        .await;
    assert_eq!(ok(&shown)["width"], 8);
    assert!(
        shown["content"]
            .as_array()
            .expect("content")
            .iter()
            .any(|b| b["type"] == "image")
    );
    let missing = agent
        .call_tool(3, "get_output_image", json!({"filename": "nope.png"}))
        .await;
    assert!(failed(&missing).contains("nope.png"));

    let not_image = scratch.allowed().join("notes.txt");
    std::fs::write(&not_image, "hello").expect("write");
    let refused = agent
        .call_tool(
            4,
            "upload_image",
            json!({"path": not_image.display().to_string()}),
        )
        .await;
    assert!(failed(&refused).contains("not a PNG"));
    let outside = agent
        .call_tool(
            5,
            "upload_image",
            json!({"path": scratch.path("outside/secret.json")}),
        )
        .await;
    assert!(failed(&outside).contains("outside"));

    let run = agent
        .call_tool(6, "execute_workflow", json!({"workflow": solid()}))
        .await;
    let prompt_id = ok(&run)["prompt_id"].as_str().expect("id").to_string();
    let verified = agent
        .call_tool(
            7,
            "verify_execution",
            json!({"prompt_id": prompt_id, "analyze": true}),
        )
        .await;
    let verified = ok(&verified);
    assert_eq!(verified["status"], "complete");
    assert_eq!(verified["all_readable"], true, "{verified}");
    assert_eq!(verified["key_params"]["resolution"], "64x64");
    assert_eq!(verified["workflow_hash"].as_str().map(str::len), Some(16));
    assert!(
        verified["vision_analysis"]
            .as_str()
            .is_some_and(|v| v.contains("needs a model")),
        "without a model the verification stands and says why: {verified}"
    );
    let unknown = agent
        .call_tool(8, "verify_execution", json!({"prompt_id": "never"}))
        .await;
    assert_eq!(ok(&unknown)["status"], "not_found");
}

#[tokio::test]
async fn output_paths_need_the_comfyui_folder_and_stay_inside_it() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let unknown = agent
        .call_tool(1, "get_output_path", json!({"filename": "x.png"}))
        .await;
    assert!(failed(&unknown).contains("COMFYUI_DIR"));

    let scratch = Scratch::new();
    let install = scratch.dir.path().join("ComfyUI");
    std::fs::create_dir_all(install.join("output/portraits")).expect("mkdir");
    std::fs::write(install.join("main.py"), "").expect("write");
    std::fs::write(
        install.join("output/portraits/a.png"),
        tiny_png(2, 2, [0, 0, 0]),
    )
    .expect("write");
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let found = agent
        .call_tool(
            1,
            "get_output_path",
            json!({"filename": "a.png", "subfolder": "portraits"}),
        )
        .await;
    let found = ok(&found);
    assert_eq!(found["exists"], true);
    assert!(found["size_bytes"].as_u64().is_some_and(|s| s > 0));
    let absent = agent
        .call_tool(2, "get_output_path", json!({"filename": "b.png"}))
        .await;
    assert_eq!(ok(&absent)["exists"], false);
    for (id, (filename, subfolder)) in
        (3..).zip([("../main.py", ""), ("a.png", "../.."), ("..", "")])
    {
        let escape = agent
            .call_tool(
                id,
                "get_output_path",
                json!({"filename": filename, "subfolder": subfolder}),
            )
            .await;
        assert!(
            failed(&escape).contains("plain file name"),
            "{filename} {subfolder}"
        );
    }
}

#[tokio::test]
async fn multi_output_cached_and_long_progress_runs_are_reported() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;

    fake.next_run(RecordedRun::MultiOutput);
    let multi = agent
        .call_tool(1, "execute_workflow", json!({"workflow": solid()}))
        .await;
    let multi = ok(&multi);
    assert_eq!(multi["status"], "complete");
    let nodes: std::collections::BTreeSet<&str> = multi["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["node_id"].as_str())
        .collect();
    assert!(nodes.len() >= 2, "two output nodes: {multi}");

    fake.next_run(RecordedRun::Cached);
    let cached = agent
        .call_tool(2, "execute_workflow", json!({"workflow": solid()}))
        .await;
    let cached = ok(&cached);
    assert_eq!(cached["status"], "complete");
    assert!(
        cached["cached_nodes"].as_u64().is_some_and(|n| n >= 3),
        "{cached}"
    );

    fake.next_run(RecordedRun::Progress);
    let (progress, result) = call_with_progress(
        &mut agent,
        3,
        "execute_with_progress",
        json!({"workflow": solid()}),
    )
    .await;
    assert_eq!(ok(&result)["status"], "complete");
    assert!(
        ok(&result)["progress_events"]
            .as_u64()
            .is_some_and(|n| n > 10)
    );
    assert!(
        progress.iter().any(|p| p.contains(": step ")),
        "sampler-style steps: {progress:?}"
    );
}

#[tokio::test]
async fn a_socket_dropped_mid_run_falls_back_to_history() {
    let fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Progress);
    fake.drop_socket_after(5);
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent
        .call_tool(1, "execute_workflow", json!({"workflow": solid()}))
        .await;
    let report = ok(&result);
    assert_eq!(report["status"], "complete", "{report}");
}

#[tokio::test]
async fn two_sessions_running_at_once_see_only_their_own_runs() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut first = agent_for(&fake, &scratch, &[]).await;
    let scratch_b = Scratch::new();
    let mut second = agent_for(&fake, &scratch_b, &[]).await;
    let mut a = solid();
    a["2"]["inputs"]["filename_prefix"] = json!("first");
    let mut b = solid();
    b["2"]["inputs"]["filename_prefix"] = json!("second");
    let (one, two) = tokio::join!(
        call_with_progress(
            &mut first,
            1,
            "execute_with_progress",
            json!({"workflow": a})
        ),
        call_with_progress(
            &mut second,
            1,
            "execute_with_progress",
            json!({"workflow": b})
        ),
    );
    let (one, two) = (ok(&one.1).clone(), ok(&two.1).clone());
    assert_eq!(one["status"], "complete");
    assert_eq!(two["status"], "complete");
    assert_ne!(one["prompt_id"], two["prompt_id"]);
    for report in [&one, &two] {
        let id = report["prompt_id"].as_str().expect("id");
        let entry = fake.history_entry(id).expect("in history");
        assert_eq!(
            entry["outputs"].as_object().map(|o| o.len()),
            report["outputs"].as_array().map(|o| {
                o.iter()
                    .filter_map(|x| x["node_id"].as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            })
        );
    }
}
