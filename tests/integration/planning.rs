//! The session's memory of plans, intents and iterations, through real clients: stdio that
//! keeps its plan across a restart, HTTP connections that never see each other's plan, damaged
//! files moved aside, and bad input refused with the fix.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use crate::support::{HttpServer, RawStdio, Scratch, failed, ok};

fn plan_file(scratch: &Scratch, kind: &str, session: &str) -> std::path::PathBuf {
    scratch
        .dir
        .path()
        .join("data/memory")
        .join(kind)
        .join(format!("{session}.json"))
}

#[tokio::test]
async fn a_plan_is_followed_replanned_and_survives_a_restart() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let planned = agent
        .call_tool(
            1,
            "plan_goal",
            json!({"goal": "Fix my workflow, it fails with a red node"}),
        )
        .await;
    let planned = ok(&planned).clone();
    assert_eq!(planned["pattern"], "debug_workflow");
    assert_eq!(planned["session"], "default");
    let goal_id = planned["goal_id"].as_str().expect("goal_id").to_string();
    assert_eq!(goal_id.len(), 12);
    assert!(goal_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(planned["current_step"], "reproduce");
    assert!(
        planned["steps"][0]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );

    let done = agent
        .call_tool(
            2,
            "complete_step",
            json!({"step_id": "reproduce", "result": "node 4 fails"}),
        )
        .await;
    let done = ok(&done);
    assert_eq!(done["progress"], "1/5");
    assert_eq!(done["next_step"], "find_missing");
    assert_eq!(done["already_done"], false);

    let replanned = agent
        .call_tool(
            3,
            "replan",
            json!({"reason": "a model is missing, not a node",
                   "new_remaining_steps": [
                       {"id": "get_model", "action": "Download the VAE", "tools": ["get_install_instructions"]},
                       {"id": "rerun", "action": "Run again"}]}),
        )
        .await;
    let replanned = ok(&replanned);
    assert_eq!(replanned["completed_preserved"], 1);
    assert_eq!(replanned["new_steps"], json!(["get_model", "rerun"]));
    assert_eq!(replanned["current_step"], "get_model");
    assert_eq!(agent.close_and_wait().await.code(), Some(0));

    // A new process (a restarted client) finds the same plan in the default scope.
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    let plan = agent.call_tool(4, "get_plan", json!({})).await;
    let plan = ok(&plan);
    assert_eq!(plan["goal_id"], goal_id.as_str());
    assert_eq!(plan["progress"], "1/3");
    assert_eq!(plan["current_step"], "get_model");
    assert_eq!(plan["current_tools"], json!(["get_install_instructions"]));
    assert_eq!(
        plan["replan_history"][0]["reason"],
        "a model is missing, not a node"
    );
    assert_eq!(plan["steps"][0]["result"], "node 4 fails");

    for (id, step) in [(5, "get_model"), (6, "rerun")] {
        let done = agent
            .call_tool(
                id,
                "complete_step",
                json!({"step_id": step, "result": "ok"}),
            )
            .await;
        ok(&done);
    }
    let plan = agent.call_tool(7, "get_plan", json!({})).await;
    assert_eq!(ok(&plan)["status"], "completed");
    let again = agent
        .call_tool(
            8,
            "complete_step",
            json!({"step_id": "rerun", "result": "ok again"}),
        )
        .await;
    assert_eq!(ok(&again)["already_done"], true);
}

#[tokio::test]
async fn plan_tools_refuse_bad_input_with_the_fix() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let text = failed(&agent.call_tool(1, "get_plan", json!({})).await);
    assert!(
        text.contains("No active plan") && text.contains("plan_goal"),
        "{text}"
    );
    let text = failed(
        &agent
            .call_tool(2, "complete_step", json!({"step_id": "x", "result": "y"}))
            .await,
    );
    assert!(text.contains("No active plan"), "{text}");

    ok(&agent
        .call_tool(3, "plan_goal", json!({"goal": "a quiet harbour"}))
        .await);
    let text = failed(
        &agent
            .call_tool(
                4,
                "complete_step",
                json!({"step_id": "nope", "result": "y"}),
            )
            .await,
    );
    assert!(
        text.contains("no step 'nope'") && text.contains("understand"),
        "{text}"
    );
    assert!(text.contains("get_plan"), "{text}");

    let text = failed(
        &agent
            .call_tool(5, "plan_goal", json!({"goal": "   "}))
            .await,
    );
    assert!(text.contains("goal is empty"), "{text}");
    let text = failed(&agent.call_tool(6, "plan_goal", json!({"goal": 42})).await);
    assert!(text.contains("goal"), "{text}");
    let text = failed(
        &agent
            .call_tool(7, "plan_goal", json!({"goal": "x", "colour": "red"}))
            .await,
    );
    assert!(text.contains("colour"), "{text}");
    let text = failed(
        &agent
            .call_tool(8, "plan_goal", json!({"goal": "x", "session": "../../etc"}))
            .await,
    );
    assert!(text.contains("session name"), "{text}");
    let text = failed(
        &agent
            .call_tool(
                9,
                "replan",
                json!({"reason": "x", "new_remaining_steps": [{"id": "understand", "action": "again"}, {"id": "understand", "action": "twice"}]}),
            )
            .await,
    );
    assert!(text.contains("used twice"), "{text}");
    let text = failed(
        &agent
            .call_tool(
                10,
                "replan",
                json!({"reason": "x", "new_remaining_steps": [{"id": "a"}]}),
            )
            .await,
    );
    assert!(text.contains("action"), "{text}");
    // Nothing above damaged the plan.
    let plan = agent.call_tool(11, "get_plan", json!({})).await;
    assert_eq!(ok(&plan)["progress"], "0/4");
}

#[tokio::test]
async fn a_damaged_plan_is_moved_aside_and_a_newer_one_left_alone() {
    let scratch = Scratch::new();
    let file = plan_file(&scratch, "plans", "studio");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, b"{\"format_version\": 1, \"data\": {\"goal\": ").expect("write");
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let text = failed(
        &agent
            .call_tool(1, "get_plan", json!({"session": "studio"}))
            .await,
    );
    assert!(
        text.contains("moved aside as studio.json.corrupt-"),
        "{text}"
    );
    assert!(!file.exists());
    let planned = agent
        .call_tool(
            2,
            "plan_goal",
            json!({"goal": "swap the checkpoint", "session": "studio"}),
        )
        .await;
    assert_eq!(ok(&planned)["pattern"], "swap_model");
    let aside = std::fs::read_dir(file.parent().expect("parent"))
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        })
        .count();
    assert_eq!(aside, 1, "the damaged copy is kept");

    let newer = plan_file(&scratch, "plans", "future");
    std::fs::write(&newer, b"{\"format_version\": 9, \"data\": {}}").expect("write");
    let text = failed(
        &agent
            .call_tool(3, "plan_goal", json!({"goal": "x", "session": "future"}))
            .await,
    );
    assert!(text.contains("newer comfyui-agent"), "{text}");
    assert_eq!(
        std::fs::read(&newer).expect("read"),
        b"{\"format_version\": 9, \"data\": {}}"
    );
}

#[tokio::test]
async fn an_unwritable_data_folder_is_explained_and_the_server_keeps_serving() {
    let scratch = Scratch::new();
    // The memory folder can't be made: a file is in its way.
    let data = scratch.dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("memory"), b"x").expect("write");
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    let text = failed(
        &agent
            .call_tool(1, "plan_goal", json!({"goal": "a harbour"}))
            .await,
    );
    assert!(text.contains("COMFYUI_AGENT_DATA_DIR"), "{text}");
    let text = failed(
        &agent
            .call_tool(
                2,
                "capture_intent",
                json!({"user_request": "a", "interpretation": "b"}),
            )
            .await,
    );
    assert!(text.contains("COMFYUI_AGENT_DATA_DIR"), "{text}");
    ok(&agent
        .call_tool(
            3,
            "check_model_compatibility",
            json!({"models": ["a.safetensors"]}),
        )
        .await);
}

async fn http_client(server: &HttpServer) -> RunningService<RoleClient, ()> {
    ().serve(StreamableHttpClientTransport::from_uri(server.url("/mcp")))
        .await
        .expect("initialize over HTTP")
}

async fn call(client: &RunningService<RoleClient, ()>, name: &str, arguments: Value) -> Value {
    let result = client
        .call_tool(
            CallToolRequestParams::new(name.to_string())
                .with_arguments(arguments.as_object().cloned().expect("object")),
        )
        .await
        .expect("tools/call");
    assert_ne!(result.is_error, Some(true), "{name}: {result:?}");
    result.structured_content.expect("structured")
}

#[tokio::test]
async fn http_connections_plan_at_once_and_never_see_each_others_plans() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let (a, b) = tokio::join!(http_client(&server), http_client(&server));
    let (planned_a, planned_b) = tokio::join!(
        call(&a, "plan_goal", json!({"goal": "add a depth controlnet"})),
        call(&b, "plan_goal", json!({"goal": "make some music"})),
    );
    assert_ne!(planned_a["session"], planned_b["session"]);
    assert!(
        planned_a["session"]
            .as_str()
            .is_some_and(|s| s.starts_with("http-"))
    );
    let (plan_a, plan_b) = tokio::join!(
        call(&a, "get_plan", json!({})),
        call(&b, "get_plan", json!({}))
    );
    assert_eq!(plan_a["pattern"], "add_controlnet");
    assert_eq!(plan_b["pattern"], "generate_audio");

    // A named session is shared on purpose: both connections see one plan.
    call(
        &a,
        "plan_goal",
        json!({"goal": "swap the model", "session": "team"}),
    )
    .await;
    let shared = call(&b, "get_plan", json!({"session": "team"})).await;
    assert_eq!(shared["pattern"], "swap_model");
    // Concurrent step completions on the shared plan lose nothing.
    let (one, two) = tokio::join!(
        call(
            &a,
            "complete_step",
            json!({"step_id": "list_candidates", "result": "3 found", "session": "team"})
        ),
        call(
            &b,
            "complete_step",
            json!({"step_id": "check_family", "result": "sdxl", "session": "team"})
        ),
    );
    assert!(one["completed"] == "list_candidates" && two["completed"] == "check_family");
    let shared = call(&a, "get_plan", json!({"session": "team"})).await;
    assert_eq!(shared["progress"], "2/4");
    a.cancel().await.expect("close");
    b.cancel().await.expect("close");
}

#[tokio::test]
async fn intent_and_iterations_are_kept_per_session_and_checked() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let empty = agent.call_tool(1, "get_current_intent", json!({})).await;
    assert_eq!(ok(&empty)["status"], "empty");
    let captured = agent
        .call_tool(
            2,
            "capture_intent",
            json!({"user_request": "moody harbour at dawn", "interpretation": "low key, teal and orange, fog",
                   "style_references": ["Turner", "  "], "session_context": "poster series"}),
        )
        .await;
    let captured = ok(&captured);
    assert_eq!(captured["status"], "captured");
    assert_eq!(captured["intent"]["style_references"], json!(["Turner"]));
    agent
        .call_tool(
            3,
            "capture_intent",
            json!({"user_request": "brighter", "interpretation": "lift exposure"}),
        )
        .await;
    let current = agent.call_tool(4, "get_current_intent", json!({})).await;
    let current = ok(&current);
    assert_eq!(current["intent"]["user_request"], "brighter");
    assert_eq!(current["history_count"], 1);
    let other = agent
        .call_tool(5, "get_current_intent", json!({"session": "other"}))
        .await;
    assert_eq!(ok(&other)["status"], "empty");

    let text = failed(
        &agent
            .call_tool(
                6,
                "record_iteration_step",
                json!({"iteration": 1, "type": "initial", "trigger": "first"}),
            )
            .await,
    );
    assert!(text.contains("start_iteration_tracking"), "{text}");
    ok(&agent
        .call_tool(
            7,
            "start_iteration_tracking",
            json!({"intent_summary": "moody harbour"}),
        )
        .await);
    let text = failed(
        &agent
            .call_tool(
                8,
                "record_iteration_step",
                json!({"iteration": 1, "type": "remix", "trigger": "x"}),
            )
            .await,
    );
    assert!(text.contains("type"), "{text}");
    for (id, iteration, kind, trigger) in [
        (9, 1, "initial", "first render"),
        (10, 2, "refinement", "too dark"),
    ] {
        let recorded = agent
            .call_tool(
                id,
                "record_iteration_step",
                json!({"iteration": iteration, "type": kind, "trigger": trigger,
                       "patches": [{"op": "replace", "path": "/3/inputs/cfg", "value": 6}],
                       "params": {"cfg": 6, "seed": 7}, "feedback": "closer"}),
            )
            .await;
        assert_eq!(ok(&recorded)["total_steps"], iteration);
    }
    let text = failed(
        &agent
            .call_tool(11, "finalize_iterations", json!({"accepted_iteration": 5}))
            .await,
    );
    assert!(text.contains("recorded iterations: 1, 2"), "{text}");
    assert_eq!(agent.close_and_wait().await.code(), Some(0));

    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    let finished = agent
        .call_tool(12, "finalize_iterations", json!({"accepted_iteration": 2}))
        .await;
    let finished = ok(&finished);
    assert_eq!(finished["intent_summary"], "moody harbour");
    assert_eq!(finished["total_steps"], 2);
    assert_eq!(finished["iterations"][1]["type"], "refinement");
    assert_eq!(finished["iterations"][1]["params"]["seed"], 7);
    let text = failed(
        &agent
            .call_tool(
                13,
                "record_iteration_step",
                json!({"iteration": 3, "type": "variation", "trigger": "x"}),
            )
            .await,
    );
    assert!(text.contains("already finalized"), "{text}");
    let restarted = agent
        .call_tool(
            14,
            "start_iteration_tracking",
            json!({"intent_summary": "next poster"}),
        )
        .await;
    assert_eq!(ok(&restarted)["replaced_steps"], 2);
    let current = agent.call_tool(15, "get_current_intent", json!({})).await;
    assert_eq!(ok(&current)["intent"]["user_request"], "brighter");
}
