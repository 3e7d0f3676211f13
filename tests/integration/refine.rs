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
