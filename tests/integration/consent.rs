//! Consent: tools that overwrite outside the data folder, replace uploads or run paid API
//! nodes ask the user through the client (an `elicitation/create` request on a session, an
//! `input_required` result on 2026-07-28), fail closed when the client can't ask, and go
//! ahead unasked only when the operator pre-approved them.

use serde_json::{Value, json};

use crate::support::fake_comfy::FakeComfy;
use crate::support::{RawStdio, Scratch, agent_for, failed, ok};

/// Loads a workflow and returns the path it came from (saving over it needs consent).
async fn loaded(agent: &mut RawStdio, scratch: &Scratch) -> String {
    let source = scratch.path("allowed/workflows/txt2img_lora.json");
    ok(&agent
        .call_tool(1, "load_workflow", json!({"path": source}))
        .await);
    ok(&agent
        .call_tool(
            2,
            "set_input",
            json!({"node_id": "6", "input_name": "seed", "value": 7}),
        )
        .await);
    source
}

fn seed_of(path: &str) -> Value {
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON");
    saved["6"]["inputs"]["seed"].clone()
}

#[tokio::test]
async fn a_client_that_cannot_ask_gets_a_refusal_and_nothing_is_overwritten() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let source = loaded(&mut agent, &scratch).await;
    let before = std::fs::read(&source).expect("read");
    let refused = agent.call_tool(3, "save_workflow", json!({})).await;
    let message = failed(&refused);
    assert!(message.contains("Overwrite"), "{message}");
    assert!(message.contains("can't ask you"), "{message}");
    assert!(message.contains("COMFYUI_AGENT_PRE_APPROVE"), "{message}");
    assert_eq!(std::fs::read(&source).expect("read"), before);
    // A new file needs no question.
    let copy = scratch.path("allowed/workflows/new_copy.json");
    ok(&agent
        .call_tool(4, "save_workflow", json!({"output_path": copy}))
        .await);
    assert_eq!(seed_of(&copy), json!(7));
}

#[tokio::test]
async fn the_operator_can_pre_approve_a_tool() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(
        &fake,
        &scratch,
        &[("COMFYUI_AGENT_PRE_APPROVE", "upload_image, save_workflow")],
    )
    .await;
    let source = loaded(&mut agent, &scratch).await;
    ok(&agent.call_tool(3, "save_workflow", json!({})).await);
    assert_eq!(seed_of(&source), json!(7));
}

#[tokio::test]
async fn an_unknown_tool_name_in_the_allow_list_stops_the_server_with_a_clear_error() {
    let scratch = Scratch::new();
    let output = scratch
        .command(&["tools", "--json"])
        .env("COMFYUI_AGENT_PRE_APPROVE", "save_workflw")
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("COMFYUI_AGENT_PRE_APPROVE"), "{stderr}");
    assert!(stderr.contains("did you mean save_workflow"), "{stderr}");
}

/// Answers the server's `elicitation/create` with `answer` and returns the tool result.
async fn answer_elicitation(agent: &mut RawStdio, call_id: i64, answer: Value) -> (Value, Value) {
    loop {
        let message = agent.recv().await;
        if message["method"] == "elicitation/create" {
            let question = message["params"].clone();
            agent
                .send(&json!({"jsonrpc": "2.0", "id": message["id"], "result": answer}))
                .await;
            let reply = agent.response(call_id).await;
            return (question, reply["result"].clone());
        }
        assert_ne!(
            message.get("id"),
            Some(&Value::from(call_id)),
            "the call ended without asking: {message}"
        );
    }
}

#[tokio::test]
async fn a_session_client_is_asked_and_its_answer_decides() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    agent.initialize_with(json!({"elicitation": {}})).await;
    let source = loaded(&mut agent, &scratch).await;
    let before = std::fs::read(&source).expect("read");

    // No: nothing changes.
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "save_workflow", "arguments": {}}}))
        .await;
    let (question, result) = answer_elicitation(&mut agent, 3, json!({"action": "decline"})).await;
    assert!(
        question["message"]
            .as_str()
            .is_some_and(|m| m.contains("Overwrite") && m.contains("txt2img_lora.json")),
        "{question}"
    );
    assert_eq!(
        question["requestedSchema"]["properties"]["confirm"]["type"],
        "boolean"
    );
    assert!(failed(&result).contains("You said no"), "{result}");
    assert_eq!(std::fs::read(&source).expect("read"), before);

    // Accepted but unticked is still no.
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                      "params": {"name": "save_workflow", "arguments": {}}}))
        .await;
    let (_, result) = answer_elicitation(
        &mut agent,
        4,
        json!({"action": "accept", "content": {"confirm": false}}),
    )
    .await;
    assert!(failed(&result).contains("You said no"), "{result}");
    assert_eq!(std::fs::read(&source).expect("read"), before);

    // Yes: saved.
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "save_workflow", "arguments": {}}}))
        .await;
    let (_, result) = answer_elicitation(
        &mut agent,
        5,
        json!({"action": "accept", "content": {"confirm": true}}),
    )
    .await;
    ok(&result);
    assert_eq!(seed_of(&source), json!(7));
}

fn modern_meta(capabilities: Value) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientCapabilities": capabilities,
           "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "1"}})
}

#[tokio::test]
async fn a_2026_client_gets_input_required_and_retries_with_the_answer() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    let meta = modern_meta(json!({"elicitation": {}}));
    let source = scratch.path("allowed/workflows/txt2img_lora.json");
    let call = |id: i64, name: &str, arguments: Value, extra: Value| {
        let mut params = json!({"_meta": meta, "name": name, "arguments": arguments});
        if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
            params.extend(extra.clone());
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
    };
    agent
        .send(&call(
            1,
            "load_workflow",
            json!({"path": source}),
            json!({}),
        ))
        .await;
    ok(&agent.response(1).await["result"]);
    agent
        .send(&call(
            2,
            "set_input",
            json!({"node_id": "6", "input_name": "seed", "value": 11}),
            json!({}),
        ))
        .await;
    ok(&agent.response(2).await["result"]);

    agent
        .send(&call(3, "save_workflow", json!({}), json!({})))
        .await;
    let asked = agent.response(3).await["result"].clone();
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    let requests = asked["inputRequests"].as_object().expect("input requests");
    assert_eq!(requests.len(), 1);
    let (key, request) = requests.iter().next().expect("one");
    assert!(key.starts_with("confirm-"), "{key}");
    assert_eq!(request["method"], "elicitation/create", "{request}");
    assert_ne!(seed_of(&source), json!(11));

    // A forged answer for some other question approves nothing.
    agent
        .send(&call(
            4,
            "save_workflow",
            json!({}),
            json!({"inputResponses": {"confirm-000000000000": {"action": "accept", "content": {"confirm": true}}}}),
        ))
        .await;
    assert_eq!(
        agent.response(4).await["result"]["resultType"],
        "input_required"
    );

    agent
        .send(&call(
            5,
            "save_workflow",
            json!({}),
            json!({"inputResponses": {key.clone(): {"action": "accept", "content": {"confirm": true}}}}),
        ))
        .await;
    ok(&agent.response(5).await["result"]);
    assert_eq!(seed_of(&source), json!(11));

    // Without elicitation in its capabilities, a 2026 client is refused.
    let plain = modern_meta(json!({}));
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                      "params": {"_meta": plain, "name": "save_workflow", "arguments": {}}}))
        .await;
    let refused = agent.response(6).await["result"].clone();
    assert!(failed(&refused).contains("can't ask you"), "{refused}");
}

#[tokio::test]
async fn paid_api_nodes_are_named_and_refused_without_an_answer() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let workflow = json!({
        "1": {"class_type": "OpenAIDalle3", "inputs": {"prompt": "a fox", "seed": 1, "quality": "standard", "style": "natural", "size": "1024x1024"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "paid"}}
    });
    let refused = agent
        .call_tool(1, "execute_workflow", json!({"workflow": workflow}))
        .await;
    let message = failed(&refused);
    assert!(message.contains("paid API node OpenAIDalle3"), "{message}");
    assert!(fake.prompts().is_empty(), "nothing was queued");
    // A workflow without paid nodes runs without a question.
    let solid = crate::support::solid();
    let ran = agent
        .call_tool(2, "execute_workflow", json!({"workflow": solid}))
        .await;
    assert_eq!(ok(&ran)["status"], "complete", "{ran}");
}

#[tokio::test]
async fn replacing_an_upload_asks_first() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let image = scratch.path("allowed/fox.png");
    std::fs::write(
        &image,
        crate::support::fake_comfy::tiny_png(4, 4, [200, 80, 10]),
    )
    .expect("write");
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let refused = agent
        .call_tool(1, "upload_image", json!({"path": image, "overwrite": true}))
        .await;
    assert!(failed(&refused).contains("Replace fox.png"), "{refused}");
    assert!(fake.file("input", "", "fox.png").is_none());
    ok(&agent
        .call_tool(2, "upload_image", json!({"path": image}))
        .await);
    assert!(fake.file("input", "", "fox.png").is_some());
}
