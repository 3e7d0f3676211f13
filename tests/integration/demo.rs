//! The guided demos end to end over stdio: listing, starting, stepping through, refusals, and
//! a damaged demo file set aside.

use serde_json::json;

use crate::support::{RawStdio, Scratch, failed, ok};

#[tokio::test]
async fn start_demo_lists_starts_and_steps_through_a_scenario() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let listed = agent
        .call_tool(1, "start_demo", json!({"scenario": "list"}))
        .await;
    let listed = ok(&listed);
    assert_eq!(listed["status"], "listed");
    assert!(
        listed["scenarios"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "model_free"))
    );

    let started = agent
        .call_tool(
            2,
            "start_demo",
            json!({"scenario": "model_swap", "session": "demo-a"}),
        )
        .await;
    let started = ok(&started);
    assert_eq!(started["status"], "started");
    assert_eq!(started["current_step"]["id"], "inventory");
    assert!(started["current_step"]["without_models"].is_string());

    let wrong = agent
        .call_tool(
            3,
            "demo_checkpoint",
            json!({"step_completed": "run", "session": "demo-a"}),
        )
        .await;
    assert!(
        failed(&wrong).contains("'inventory'"),
        "names the expected step"
    );

    let mut last = json!(null);
    for (id, step) in [(4, "inventory"), (5, "swap"), (6, "run")] {
        let done = agent
            .call_tool(
                id,
                "demo_checkpoint",
                json!({"step_completed": step, "notes": format!("did {step}"), "session": "demo-a"}),
            )
            .await;
        last = ok(&done).clone();
    }
    assert_eq!(last["status"], "completed");
    assert_eq!(last["steps_done"], 3);
    assert_eq!(last["notes"].as_array().map(Vec::len), Some(3));
    assert!(
        std::path::Path::new(&scratch.path("data/memory/demos/demo-a.json")).is_file(),
        "progress is kept on disk"
    );
}

#[tokio::test]
async fn demo_tools_refuse_unknown_scenarios_and_missing_demos() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let unknown = agent
        .call_tool(1, "start_demo", json!({"scenario": "teleport"}))
        .await;
    assert!(
        failed(&unknown).contains("model_swap"),
        "lists the real ones"
    );

    let none = agent
        .call_tool(
            2,
            "demo_checkpoint",
            json!({"step_completed": "check", "session": "nobody"}),
        )
        .await;
    assert!(failed(&none).contains("start_demo"));
}

#[tokio::test]
async fn a_damaged_demo_file_is_set_aside() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path().join("data/memory/demos");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("broken.json"), "{ not json").expect("write");
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let checkpoint = agent
        .call_tool(
            1,
            "demo_checkpoint",
            json!({"step_completed": "check", "session": "broken"}),
        )
        .await;
    let message = failed(&checkpoint);
    assert!(message.contains("moved aside"), "{message}");

    std::fs::write(dir.join("broken.json"), "{ not json").expect("write");
    let started = agent
        .call_tool(
            2,
            "start_demo",
            json!({"scenario": "model_free", "session": "broken"}),
        )
        .await;
    let started = ok(&started);
    assert!(started["set_aside"].is_string(), "{started}");
    assert_eq!(started["current_step"]["id"], "check");
}
