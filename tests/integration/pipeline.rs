//! Pipelines end to end: the real binary over stdio against the fake ComfyUI. The key check:
//! stage 2 really receives stage 1's image (downloaded, uploaded, and named in its LoadImage).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_comfy::{FakeComfy, RecordedRun, tiny_png};
use crate::support::{RawStdio, Scratch, agent_for, failed, ok, solid};

/// Writes the solid workflow where the path policy allows it; returns its path.
fn solid_file(scratch: &Scratch) -> String {
    let path = scratch.allowed().join("workflows/solid_pipeline.json");
    std::fs::write(&path, solid().to_string()).expect("write");
    path.display().to_string()
}

/// Stage a makes an image; stage b (the invert template) loads it in node 1.
fn two_stages(source: &str) -> Value {
    json!([
        {"stage_id": "a", "workflow_source": source},
        {"stage_id": "b", "workflow_source": "template:invert_image",
         "input_mappings": [{"node_id": "1", "input_name": "image", "from_stage": "a"}],
         "param_overrides": {"3.filename_prefix": "piped"}}
    ])
}

async fn wait_running(fake: &FakeComfy) -> String {
    for _ in 0..200 {
        if let Some(running) = fake.running_prompt() {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no prompt started");
}

#[tokio::test]
async fn pipeline_stage_two_receives_stage_ones_image_through_an_upload() {
    let fake = FakeComfy::start().await;
    fake.set_pace(Duration::ZERO);
    let scratch = Scratch::new();
    let source = solid_file(&scratch);
    let mut agent = agent_for(&fake, &scratch, &[]).await;

    let before = agent.call_tool(1, "get_pipeline_status", json!({})).await;
    assert_eq!(ok(&before)["status"], "no_pipeline");

    let created = agent
        .call_tool(
            2,
            "create_pipeline",
            json!({"name": "solid_then_invert", "stages": two_stages(&source)}),
        )
        .await;
    let created = ok(&created);
    assert_eq!(created["created"], true);
    assert_eq!(created["stage_count"], 2);
    assert_eq!(created["stages"][1]["receives_from"], json!(["a"]));
    let idle = agent.call_tool(3, "get_pipeline_status", json!({})).await;
    assert_eq!(ok(&idle)["status"], "idle");

    let run = agent.call_tool(4, "run_pipeline", json!({})).await;
    let report = ok(&run);
    assert_eq!(report["status"], "complete", "{report}");
    assert_eq!(report["stages_completed"], 2);
    assert_eq!(report["outcome_recorded"], false);

    let prompts = fake.prompts();
    assert_eq!(prompts.len(), 2, "two stages, two prompts");
    let stage_one_image = report["stage_results"][0]["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["type"] == "image"))
        .expect("stage a made an image")
        .clone();
    let given = prompts[1].1["1"]["inputs"]["image"]
        .as_str()
        .expect("LoadImage got a file name")
        .to_string();
    assert_ne!(
        given, "example.png",
        "the template's placeholder was replaced"
    );
    // The fake serves a produced PNG as this tiny image: the upload must be those bytes.
    let uploaded = fake
        .file("input", "", &given)
        .expect("the name LoadImage got was uploaded into the input folder");
    let served = tiny_png(8, 8, [200, 60, 40]);
    assert_eq!(
        uploaded, served,
        "the upload is stage a's output, byte for byte"
    );
    assert_eq!(
        given,
        stage_one_image["filename"].as_str().unwrap(),
        "uploaded under the output's own name (no clash in an empty input folder)"
    );
    assert_eq!(prompts[1].1["3"]["inputs"]["filename_prefix"], "piped");
    // The upload came before stage b was queued.
    let seen = fake.seen();
    let upload_at = seen
        .iter()
        .position(|s| s.path.ends_with("/upload/image"))
        .expect("an upload");
    let second_prompt_at = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.method == "POST" && s.path.ends_with("/prompt"))
        .map(|(i, _)| i)
        .nth(1)
        .expect("a second prompt");
    assert!(upload_at < second_prompt_at);

    let after = agent.call_tool(5, "get_pipeline_status", json!({})).await;
    let after = ok(&after);
    assert_eq!(after["status"], "complete");
    assert_eq!(after["pipeline_name"], "solid_then_invert");
    assert!(
        after["all_outputs"]
            .as_array()
            .is_some_and(|o| o.len() >= 2)
    );
}

#[tokio::test]
async fn pipeline_validation_names_the_stage_and_field() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let source = solid_file(&scratch);
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let cases = [
        (json!([]), "no stages"),
        (
            json!([{"stage_id": "a", "workflow_source": source},
                   {"stage_id": "a", "workflow_source": source}]),
            "used twice",
        ),
        (
            json!([{"stage_id": "a", "workflow_source": ""}]),
            "workflow_source",
        ),
        (
            json!([{"stage_id": "a", "workflow_source": source,
                    "input_mappings": [{"node_id": "1", "input_name": "image", "from_stage": "b"}]},
                   {"stage_id": "b", "workflow_source": source}]),
            "not an earlier stage",
        ),
        (
            json!([{"stage_id": "a", "workflow_source": "template:no_such_template"}]),
            "no_such_template",
        ),
        (
            json!([{"stage_id": "a", "workflow_source": scratch.path("outside/secret.json")}]),
            "Stage 'a'",
        ),
        (
            json!([{"stage_id": "a", "workflow_source": source},
                   {"stage_id": "b", "workflow_source": "template:invert_image",
                    "input_mappings": [{"node_id": "42", "input_name": "image", "from_stage": "a"}]}]),
            "node 42",
        ),
        (
            json!([{"stage_id": "a", "workflow_source": source, "param_overrides": {"9.width": 8}}]),
            "node 9",
        ),
        (
            json!([{"stage_id": "a", "workflow_source": source, "param_overrides": {"width": 8}}]),
            "<node_id>.<input>",
        ),
    ];
    for (index, (stages, expected)) in cases.into_iter().enumerate() {
        let id = i64::try_from(index).unwrap() + 1;
        let result = agent
            .call_tool(id, "create_pipeline", json!({"stages": stages}))
            .await;
        let message = failed(&result);
        assert!(message.contains(expected), "case {index}: {message}");
    }
    let status = agent.call_tool(99, "get_pipeline_status", json!({})).await;
    assert_eq!(
        ok(&status)["status"],
        "no_pipeline",
        "nothing invalid was stored"
    );
}

#[tokio::test]
async fn pipeline_failing_stage_stops_or_goes_on() {
    let fake = FakeComfy::start().await;
    fake.set_pace(Duration::ZERO);
    let scratch = Scratch::new();
    let source = solid_file(&scratch);
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let pipeline = json!({"name": "p", "stages": [
        {"stage_id": "a", "workflow_source": source},
        {"stage_id": "b", "workflow_source": source}
    ]});

    fake.next_run(RecordedRun::Failure);
    let stopped = agent
        .call_tool(1, "run_pipeline", json!({"pipeline": pipeline}))
        .await;
    let stopped = ok(&stopped);
    assert_eq!(stopped["status"], "error");
    assert_eq!(stopped["stage_results"][0]["status"], "error");
    assert_eq!(stopped["stage_results"][1]["status"], "skipped");
    assert_eq!(fake.prompts().len(), 1);

    fake.next_run(RecordedRun::Failure);
    let went_on = agent
        .call_tool(
            2,
            "run_pipeline",
            json!({"pipeline": pipeline, "stop_on_error": false}),
        )
        .await;
    let went_on = ok(&went_on);
    assert_eq!(went_on["status"], "error");
    assert_eq!(went_on["stages_failed"], 1);
    assert_eq!(went_on["stage_results"][1]["status"], "complete");
    assert_eq!(fake.prompts().len(), 3);
}

#[tokio::test]
async fn pipeline_stage_past_its_timeout_is_interrupted_in_comfyui() {
    let fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Long);
    let scratch = Scratch::new();
    let source = solid_file(&scratch);
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent
        .call_tool(
            1,
            "run_pipeline",
            json!({"timeout_per_stage": 1, "pipeline": {"stages": [
                {"stage_id": "slow", "workflow_source": source}]}}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["stage_results"][0]["status"], "timeout", "{report}");
    assert_eq!(report["status"], "error");
    let prompt_id = fake.prompts()[0].0.clone();
    assert_eq!(report["stage_results"][0]["prompt_id"], prompt_id.as_str());
    assert!(
        fake.hits("/interrupt") >= 1,
        "the slow prompt was interrupted"
    );
}

#[tokio::test]
async fn pipeline_status_while_running_and_cancelling_the_call_interrupts_the_stage() {
    let fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Long);
    let scratch = Scratch::new();
    let source = solid_file(&scratch);
    let mut agent: RawStdio = agent_for(&fake, &scratch, &[]).await;
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "run_pipeline", "arguments": {"pipeline": {"name": "long", "stages": [
                          {"stage_id": "sleepy", "workflow_source": source},
                          {"stage_id": "after", "workflow_source": source}]}}}}))
        .await;
    let running = wait_running(&fake).await;
    let live = agent.call_tool(8, "get_pipeline_status", json!({})).await;
    let live = ok(&live);
    assert_eq!(live["status"], "running", "{live}");
    assert_eq!(live["current_stage"], "sleepy");
    assert_eq!(live["pipeline_name"], "long");

    agent
        .send(
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                      "params": {"requestId": 7, "reason": "changed my mind"}}),
        )
        .await;
    let interrupted = fake.wait_until_interrupted(&running).await;
    assert!(interrupted, "the running stage's prompt was interrupted");
    let mut last = Value::Null;
    for attempt in 0..100 {
        let status = agent
            .call_tool(100 + attempt, "get_pipeline_status", json!({}))
            .await;
        last = ok(&status).clone();
        if last["status"] == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "cancelled", "{last}");
    assert_eq!(last["stage_results"][1]["status"], "skipped");
    assert_eq!(fake.prompts().len(), 1, "the next stage never queued");
}

#[tokio::test]
async fn pipeline_with_comfyui_down_fails_kindly_and_the_server_keeps_serving() {
    let mut fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let source = solid_file(&scratch);
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    fake.stop().await;
    let result = agent
        .call_tool(
            1,
            "run_pipeline",
            json!({"pipeline": {"stages": [{"stage_id": "a", "workflow_source": source}]}}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["status"], "error");
    let error = report["stage_results"][0]["errors"][0].as_str().unwrap();
    assert!(error.contains("ComfyUI"), "{error}");
    let status = agent.call_tool(2, "get_pipeline_status", json!({})).await;
    assert_eq!(ok(&status)["status"], "error");
}

#[tokio::test]
async fn pipeline_definition_survives_a_restart() {
    let fake = FakeComfy::start().await;
    fake.set_pace(Duration::ZERO);
    let scratch = Scratch::new();
    let source = solid_file(&scratch);
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    ok(&agent
        .call_tool(
            1,
            "create_pipeline",
            json!({"name": "kept", "stages": two_stages(&source), "session": "night-shift"}),
        )
        .await);
    drop(agent);
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let status = agent
        .call_tool(1, "get_pipeline_status", json!({"session": "night-shift"}))
        .await;
    let status = ok(&status);
    assert_eq!(status["status"], "idle");
    assert_eq!(status["pipeline_name"], "kept");
    assert_eq!(status["stages_total"], 2);
    let other = agent.call_tool(2, "get_pipeline_status", json!({})).await;
    assert_eq!(
        ok(&other)["status"],
        "no_pipeline",
        "another session's is its own"
    );
    let run = agent
        .call_tool(3, "run_pipeline", json!({"session": "night-shift"}))
        .await;
    assert_eq!(ok(&run)["status"], "complete");
}
