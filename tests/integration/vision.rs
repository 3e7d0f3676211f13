//! Vision through the client's own model: a scripted client answering `sampling/createMessage`
//! (sessions) and `input_required` results (2026-07-28), one that refuses, a local fake
//! OpenAI-compatible endpoint, malformed answers and the repair round; and the local
//! perceptual-hash comparison.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use crate::support::fake_comfy::{FakeComfy, tiny_png};
use crate::support::{RawStdio, Scratch, agent_for, failed, ok};

const GOOD: &str = r#"{"quality_score": 0.82, "artifacts": ["slight banding"], "composition": "centred subject", "prompt_adherence": 0.9, "strengths": ["colour"], "suggestions": ["raise steps"]}"#;

fn image(scratch: &Scratch, name: &str, rgb: [u8; 3]) -> String {
    let path = scratch.allowed().join(name);
    std::fs::write(&path, tiny_png(48, 32, rgb)).expect("write");
    path.display().to_string()
}

/// A sampling result carrying `text`.
fn sampled(text: &str) -> Value {
    json!({"model": "client-vision-1", "role": "assistant", "content": {"type": "text", "text": text}})
}

/// Calls `tool`, answering each `sampling/createMessage` with the next of `answers`
/// (a result, or a JSON-RPC error when the entry has "error"); returns the tool result and
/// the sampling requests seen.
async fn call_answering(
    agent: &mut RawStdio,
    id: i64,
    tool: &str,
    arguments: Value,
    answers: &[Value],
) -> (Value, Vec<Value>) {
    agent
        .send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": tool, "arguments": arguments}}))
        .await;
    let mut asked = Vec::new();
    loop {
        let message = agent.recv().await;
        if message["method"] == "sampling/createMessage" {
            let answer = answers.get(asked.len()).cloned().unwrap_or(Value::Null);
            asked.push(message["params"].clone());
            let reply = if answer.get("error").is_some() {
                json!({"jsonrpc": "2.0", "id": message["id"], "error": answer["error"]})
            } else {
                json!({"jsonrpc": "2.0", "id": message["id"], "result": answer})
            };
            agent.send(&reply).await;
        } else if message["id"] == id {
            return (message["result"].clone(), asked);
        }
    }
}

async fn sampling_agent(fake: &FakeComfy, scratch: &Scratch) -> RawStdio {
    let mut agent = RawStdio::spawn_with(scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    agent.initialize_with(json!({"sampling": {}})).await;
    agent
}

#[tokio::test]
async fn the_clients_model_judges_an_image_through_sampling() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let path = image(&scratch, "fox.png", [200, 90, 20]);
    let mut agent = sampling_agent(&fake, &scratch).await;
    let (result, asked) = call_answering(
        &mut agent,
        1,
        "analyze_image",
        json!({"image_path": path, "prompt_used": "a red fox"}),
        &[sampled(GOOD)],
    )
    .await;
    let report = ok(&result);
    assert_eq!(report["status"], "ok");
    assert_eq!(report["via"], "client_sampling");
    assert_eq!(report["model"], "client-vision-1");
    assert_eq!(report["repaired"], false);
    assert_eq!(report["answer"]["quality_score"], 0.82);
    assert_eq!(asked.len(), 1);
    let content = &asked[0]["messages"][0]["content"];
    assert_eq!(content[0]["type"], "image", "{content}");
    assert_eq!(content[0]["mimeType"], "image/png");
    assert!(
        content[1]["text"]
            .as_str()
            .is_some_and(|t| t.contains("a red fox"))
    );
    assert!(asked[0]["systemPrompt"].is_string());
}

#[tokio::test]
async fn a_malformed_answer_is_sent_back_once_then_explained() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let a = image(&scratch, "a.png", [10, 10, 10]);
    let b = image(&scratch, "b.png", [240, 240, 240]);
    let mut agent = sampling_agent(&fake, &scratch).await;
    // Prose first, then a fenced, valid answer: repaired.
    let good = r#"```json
{"improved": true, "differences": ["brighter"], "quality_delta": 0.4, "recommendation": "keep B"}
```"#;
    let (result, asked) = call_answering(
        &mut agent,
        1,
        "compare_outputs",
        json!({"image_a": a, "image_b": b, "change_description": "cfg 9 to 6"}),
        &[sampled("B looks nicer to me."), sampled(good)],
    )
    .await;
    let report = ok(&result);
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["repaired"], true);
    assert_eq!(report["answer"]["improved"], true);
    assert_eq!(asked.len(), 2);
    assert_eq!(
        asked[0]["messages"][0]["content"].as_array().map(Vec::len),
        Some(3)
    );
    let repair = asked[1]["messages"][0]["content"][2]["text"]
        .as_str()
        .expect("text");
    assert!(
        repair.contains("B looks nicer to me.") && repair.contains("not a JSON object"),
        "{repair}"
    );

    // Out of range twice: the raw answer and the problems come back, not a guess.
    let bad = r#"{"improved": true, "differences": [], "quality_delta": 3, "recommendation": "x"}"#;
    let (result, _) = call_answering(
        &mut agent,
        2,
        "compare_outputs",
        json!({"image_a": a, "image_b": b}),
        &[sampled(bad), sampled(bad)],
    )
    .await;
    let report = ok(&result);
    assert_eq!(report["status"], "unparsed");
    assert!(report.get("answer").is_none());
    assert_eq!(report["raw_answer"], bad);
    assert!(
        report["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("quality_delta"))
    );
}

#[tokio::test]
async fn a_client_that_refuses_or_cannot_sample_gets_a_clear_error() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let path = image(&scratch, "fox.png", [200, 90, 20]);
    let mut agent = sampling_agent(&fake, &scratch).await;
    let (result, _) = call_answering(
        &mut agent,
        1,
        "analyze_image",
        json!({"image_path": path}),
        &[json!({"error": {"code": -1, "message": "User rejected sampling request"}})],
    )
    .await;
    let message = failed(&result);
    assert!(
        message.contains("did not answer") && message.contains("rejected"),
        "{message}"
    );

    let mut plain = agent_for(&fake, &scratch, &[]).await;
    let result = plain
        .call_tool(1, "analyze_image", json!({"image_path": path}))
        .await;
    let message = failed(&result);
    assert!(
        message.contains("sampling") && message.contains("COMFYUI_AGENT_MODEL_URL"),
        "{message}"
    );
    // Bad input is refused before any model is asked.
    let missing = plain
        .call_tool(
            2,
            "analyze_image",
            json!({"image_path": scratch.path("allowed/nope.png")}),
        )
        .await;
    assert!(failed(&missing).contains("nope.png"));
    let outside = plain
        .call_tool(
            3,
            "analyze_image",
            json!({"image_path": scratch.path("outside/secret.json")}),
        )
        .await;
    assert!(failed(&outside).contains("outside"));
}

#[tokio::test]
async fn a_2026_client_answers_an_input_required_result_and_the_repair_round() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let path = image(&scratch, "fox.png", [200, 90, 20]);
    let mut agent = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
                      "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "1"}});
    let call = |id: i64, extra: Value| {
        let mut params =
            json!({"_meta": meta, "name": "analyze_image", "arguments": {"image_path": path}});
        if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
            params.extend(extra.clone());
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
    };
    agent.send(&call(1, json!({}))).await;
    let first = agent.response(1).await["result"].clone();
    assert_eq!(first["resultType"], "input_required", "{first}");
    let (key, request) = first["inputRequests"]
        .as_object()
        .and_then(|r| r.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("one request");
    assert!(key.starts_with("sample-"));
    assert_eq!(request["method"], "sampling/createMessage");

    // A bad answer: the repair question comes back, with the first answer in the state.
    agent
        .send(&call(
            2,
            json!({"inputResponses": {key.clone(): sampled("no idea")}}),
        ))
        .await;
    let second = agent.response(2).await["result"].clone();
    assert_eq!(second["resultType"], "input_required", "{second}");
    let state = second["requestState"].as_str().expect("state").to_string();
    let repair_key = second["inputRequests"]
        .as_object()
        .and_then(|r| r.keys().next().cloned())
        .expect("repair request");
    assert_ne!(repair_key, key);

    agent
        .send(&call(
            3,
            json!({"inputResponses": {repair_key: sampled(GOOD)}, "requestState": state}),
        ))
        .await;
    let done = agent.response(3).await["result"].clone();
    let report = ok(&done);
    assert_eq!(report["repaired"], true, "{report}");
    assert_eq!(report["answer"]["composition"], "centred subject");
}

/// What the fake endpoint keeps: the requests seen, and the status and body it answers with.
type OpenAiState = (Arc<Mutex<Vec<Value>>>, (u16, Value));

/// A local OpenAI-compatible endpoint: records requests, answers with `reply`.
async fn fake_openai(reply: (u16, Value)) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = (Arc::clone(&seen), reply);
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |State((seen, (status, body))): State<OpenAiState>,
                 axum::Json(request): axum::Json<Value>| async move {
                    seen.lock().expect("lock").push(request);
                    (
                        axum::http::StatusCode::from_u16(status).expect("status"),
                        axum::Json(body),
                    )
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn a_configured_openai_compatible_endpoint_answers_for_clients_without_sampling() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let path = image(&scratch, "fox.png", [200, 90, 20]);
    let suggestions = r#"{"suggestions": [{"parameter": "cfg", "current_value": 9, "suggested_value": 6.5, "reason": "burnt highlights", "expected_impact": "softer contrast", "confidence": 0.7}], "priority_order": ["cfg"]}"#;
    let (url, seen) = fake_openai((
        200,
        json!({"model": "llava:13b", "choices": [{"message": {"role": "assistant", "content": suggestions}}]}),
    ))
    .await;
    let mut agent = agent_for(
        &fake,
        &scratch,
        &[
            ("COMFYUI_AGENT_MODEL_URL", url.as_str()),
            ("COMFYUI_AGENT_MODEL_NAME", "llava:13b"),
            ("COMFYUI_AGENT_MODEL_API_KEY", "local-key"),
        ],
    )
    .await;
    let result = agent
        .call_tool(
            1,
            "suggest_improvements",
            json!({"image_path": path, "workflow_summary": "SDXL, 30 steps, cfg 9", "goal": "less harsh"}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["via"], "openai_compatible", "{report}");
    assert_eq!(report["model"], "llava:13b");
    assert_eq!(report["answer"]["suggestions"][0]["parameter"], "cfg");
    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "llava:13b");
    let parts = &requests[0]["messages"][1]["content"];
    assert!(
        parts[0]["image_url"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("data:image/png;base64,")),
        "{parts}"
    );
    assert!(
        parts[1]["text"]
            .as_str()
            .is_some_and(|t| t.contains("less harsh"))
    );
}

#[tokio::test]
async fn a_provider_error_is_explained() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let path = image(&scratch, "fox.png", [200, 90, 20]);
    let (url, _) = fake_openai((401, json!({"error": {"message": "invalid api key"}}))).await;
    let mut agent = agent_for(
        &fake,
        &scratch,
        &[
            ("COMFYUI_AGENT_MODEL_URL", url.as_str()),
            ("COMFYUI_AGENT_MODEL_NAME", "m"),
        ],
    )
    .await;
    let result = agent
        .call_tool(1, "analyze_image", json!({"image_path": path}))
        .await;
    let message = failed(&result);
    assert!(
        message.contains("401") && message.contains("invalid api key"),
        "{message}"
    );
    assert!(message.contains("API key"), "{message}");
}

#[tokio::test]
async fn images_are_compared_without_a_model() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let a = image(&scratch, "a.png", [200, 90, 20]);
    let same = image(&scratch, "same.png", [200, 90, 20]);
    let other = image(&scratch, "other.png", [20, 90, 200]);
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent
        .call_tool(
            1,
            "hash_compare_images",
            json!({"image_a": a, "image_b": same}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["verdict"], "identical", "{report}");
    assert_eq!(report["resolution_a"], "48x32");
    let result = agent
        .call_tool(
            2,
            "hash_compare_images",
            json!({"image_a": a, "image_b": other}),
        )
        .await;
    let report = ok(&result);
    assert_ne!(report["verdict"], "identical");
    assert!(
        report["avg_color_delta"].as_f64().is_some_and(|d| d > 50.0),
        "{report}"
    );
    let broken = scratch.allowed().join("broken.png");
    std::fs::write(&broken, b"not an image").expect("write");
    let result = agent
        .call_tool(
            3,
            "hash_compare_images",
            json!({"image_a": a, "image_b": broken.display().to_string()}),
        )
        .await;
    assert!(failed(&result).contains("broken.png"));
}

#[tokio::test]
async fn verify_execution_analyzes_the_runs_image_with_the_clients_model() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = sampling_agent(&fake, &scratch).await;
    let run = agent
        .call_tool(
            1,
            "execute_workflow",
            json!({"workflow": crate::support::solid()}),
        )
        .await;
    let prompt_id = ok(&run)["prompt_id"].as_str().expect("id").to_string();
    let (result, asked) = call_answering(
        &mut agent,
        2,
        "verify_execution",
        json!({"prompt_id": prompt_id, "analyze": true}),
        &[sampled(GOOD)],
    )
    .await;
    let report = ok(&result);
    assert_eq!(report["all_readable"], true);
    assert_eq!(
        report["vision_analysis"]["answer"]["quality_score"], 0.82,
        "{report}"
    );
    assert!(
        report["vision_analysis"]["image_path"]
            .as_str()
            .is_some_and(|uri| uri.starts_with("comfyui://output/")),
        "{report}"
    );
    assert_eq!(asked.len(), 1);
}
