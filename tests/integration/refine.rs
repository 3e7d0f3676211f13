//! The planning tools end to end over stdio: `classify_intent` needs no ComfyUI at all.

use serde_json::json;

use crate::support::{RawStdio, Scratch, failed, ok};

#[tokio::test]
async fn classify_intent_routes_requests_through_the_real_binary() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let fresh = agent
        .call_tool(
            1,
            "classify_intent",
            json!({"user_intent": "make a cat portrait", "workflow_state": "empty"}),
        )
        .await;
    let fresh = ok(&fresh);
    assert_eq!(fresh["intent_type"], "generation");
    assert_eq!(
        fresh["delegation_sequence"],
        json!(["intent", "execution", "verify"])
    );
    assert_eq!(fresh["workflow_state"], "empty");

    let judged = agent
        .call_tool(
            2,
            "classify_intent",
            json!({"user_intent": "rate this image", "workflow_state": "has_output"}),
        )
        .await;
    assert_eq!(ok(&judged)["delegation_sequence"], json!(["verify"]));

    // The default state is `configured`, where "renew" is not "new".
    let tweak = agent
        .call_tool(
            3,
            "classify_intent",
            json!({"user_intent": "renew the colours"}),
        )
        .await;
    let tweak = ok(&tweak);
    assert_eq!(tweak["intent_type"], "modification");
    assert_eq!(tweak["workflow_state"], "configured");
}

#[tokio::test]
async fn classify_intent_refuses_bad_input_in_words() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let bad_state = agent
        .call_tool(
            1,
            "classify_intent",
            json!({"user_intent": "sharper", "workflow_state": "finished"}),
        )
        .await;
    assert!(failed(&bad_state).contains("workflow_state"));

    let blank = agent
        .call_tool(2, "classify_intent", json!({"user_intent": "   "}))
        .await;
    assert!(failed(&blank).contains("user_intent"));
}

/// The loop moves on with each new output: planned, refined, then accepted, across a
/// restart, and the parameters stay inside the profile's ranges.
#[tokio::test]
async fn iterative_refine_reaches_refined_then_accepted() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    let request = json!({"user_intent": "sharper, less saturated", "model_id": "sd_xl_base_1.0.safetensors",
                         "workflow_state": {"state": "has_output", "cfg": 9, "steps": 30, "sampler_name": "euler"}});

    let planned = agent
        .call_tool(1, "iterative_refine", request.clone())
        .await;
    let planned = ok(&planned).clone();
    assert_eq!(planned["status"], "planned");
    assert_eq!(planned["intent_spec"]["model_profile"], "sdxl");
    assert!(
        planned["intent_spec"]["profile_reason"]
            .as_str()
            .is_some_and(|r| r.contains("sd_xl"))
    );
    assert_eq!(planned["next_params"]["cfg"], 8.0);
    assert_eq!(planned["next_params"]["steps"], 35);
    assert_eq!(planned["next_params"]["sampler_name"], "dpmpp_2m_sde");
    assert_eq!(planned["iterations"], 1);

    let mut first = request.clone();
    first["output_analysis"] =
        json!({"quality_score": 0.6, "artifacts": ["still oversaturated"], "matches_intent": 0.6});
    let refined = agent.call_tool(2, "iterative_refine", first).await;
    let refined = ok(&refined).clone();
    assert_eq!(refined["status"], "refined", "{refined}");
    assert_eq!(refined["iterations"], 2);
    assert_eq!(refined["verification"]["decision"], "refine");
    let cfg = refined["next_params"]["cfg"].as_f64().expect("cfg");
    assert!((2.0..8.0).contains(&cfg), "{cfg}");
    assert_eq!(agent.close_and_wait().await.code(), Some(0));

    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    let mut second = request.clone();
    second["output_analysis"] = json!({"quality_score": 0.9, "matches_intent": true});
    let accepted = agent.call_tool(3, "iterative_refine", second.clone()).await;
    let accepted = ok(&accepted);
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    assert_eq!(accepted["iterations"], 2);
    assert_eq!(accepted["history"].as_array().map(Vec::len), Some(2));
    // A finished loop is not continued: the same call starts afresh.
    let again = agent
        .call_tool(4, "iterative_refine", request.clone())
        .await;
    assert_eq!(ok(&again)["status"], "planned");
}

#[tokio::test]
async fn iterative_refine_asks_escalates_and_refuses_bad_input() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let unclear = agent
        .call_tool(
            1,
            "iterative_refine",
            json!({"user_intent": "more purple elephants", "model_id": "flux1-dev"}),
        )
        .await;
    let unclear = ok(&unclear);
    assert_eq!(unclear["status"], "needs_clarification");
    assert!(
        unclear["message"]
            .as_str()
            .is_some_and(|m| m.contains("sharper"))
    );

    // Several outputs at once, never good enough: escalated at max_iterations.
    let escalated = agent
        .call_tool(
            2,
            "iterative_refine",
            json!({"user_intent": "sharper", "model_id": "sd15", "max_iterations": 2,
                   "output_analysis": [{"quality_score": 0.5, "matches_intent": 0.5},
                                       {"quality_score": 0.5, "matches_intent": 0.5}],
                   "schemas": {"intent": "fancy", "critic": "x"}}),
        )
        .await;
    let escalated = ok(&escalated);
    assert_eq!(escalated["status"], "escalated", "{escalated}");
    let warnings = escalated["precondition_warnings"].to_string();
    assert!(
        warnings.contains("fancy") && warnings.contains("critic"),
        "{warnings}"
    );
    assert_eq!(escalated["schemas_used"]["intent"], "default");

    let judged = agent
        .call_tool(
            3,
            "iterative_refine",
            json!({"user_intent": "rate this render", "model_id": "wan2.1_t2v.safetensors",
                   "workflow_state": {"state": "has_output"},
                   "output_analysis": {"quality_score": 0.9, "matches_intent": 0.9}}),
        )
        .await;
    let judged = ok(&judged);
    assert_eq!(judged["status"], "evaluated");
    assert_eq!(judged["verification"]["decision"], "accept");

    for (id, arguments, expected) in [
        (
            4,
            json!({"user_intent": "sharper", "model_id": "sdxl", "max_iterations": 20}),
            "max_iterations",
        ),
        (
            5,
            json!({"user_intent": "sharper", "model_id": "sdxl", "output_analysis": "great"}),
            "output_analysis",
        ),
        (
            6,
            json!({"user_intent": "sharper", "model_id": "sdxl", "workflow_state": {"state": "sleeping"}}),
            "state",
        ),
        (7, json!({"user_intent": "  ", "model_id": "sdxl"}), "empty"),
        (
            8,
            json!({"user_intent": "rate it", "model_id": "sdxl", "workflow_state": {"state": "has_output"}}),
            "output_analysis",
        ),
        (9, json!({"user_intent": "sharper"}), "model_id"),
    ] {
        let text = failed(&agent.call_tool(id, "iterative_refine", arguments).await);
        assert!(text.contains(expected), "{expected}: {text}");
    }
}
