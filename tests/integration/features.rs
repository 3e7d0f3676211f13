//! The rest of MCP over stdio, as a client sees it: resources (list, templates, read,
//! subscribe), prompts, completion, tasks, tool-list changes and log levels.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_comfy::FakeComfy;
use crate::support::{RawStdio, Scratch, agent_for, ok};

async fn request(agent: &mut RawStdio, id: i64, method: &str, params: Value) -> Value {
    agent
        .send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        .await;
    agent.response(id).await
}

async fn read(agent: &mut RawStdio, id: i64, uri: &str) -> Value {
    request(agent, id, "resources/read", json!({"uri": uri})).await
}

/// `field` of every object in the array `list`.
fn each<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("an array: {list}"))
        .iter()
        .filter_map(|item| item[field].as_str())
        .collect()
}

fn text_of(reply: &Value) -> Value {
    let text = reply["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("text contents: {reply}"));
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

#[tokio::test]
async fn capabilities_declare_what_the_server_does() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    let reply = agent.initialize_with(json!({})).await;
    let capabilities = &reply["result"]["capabilities"];
    assert_eq!(
        capabilities["resources"]["subscribe"], true,
        "{capabilities}"
    );
    assert_eq!(capabilities["resources"]["listChanged"], true);
    assert_eq!(capabilities["tools"]["listChanged"], true);
    assert!(capabilities["prompts"].is_object());
    assert!(capabilities["completions"].is_object());
    assert!(capabilities["logging"].is_object());
    assert!(
        capabilities["extensions"]["io.modelcontextprotocol/tasks"].is_object(),
        "{capabilities}"
    );
}

#[tokio::test]
async fn the_session_workflow_is_a_resource_that_notifies_its_subscribers() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    // Before any workflow: the knowledge base, templates and recent outputs, no workflow.
    let listed = request(&mut agent, 1, "resources/list", json!({})).await;
    let uris = each(&listed["result"]["resources"], "uri");
    assert!(
        uris.contains(&"comfyui://knowledge/comfyui-basics"),
        "{uris:?}"
    );
    assert!(uris.contains(&"comfyui://outputs/recent"));
    assert!(uris.iter().any(|u| u.starts_with("comfyui://templates/")));
    assert!(!uris.iter().any(|u| u.starts_with("comfyui://session/")));
    let missing = read(&mut agent, 2, "comfyui://session/default/workflow").await;
    assert_eq!(missing["error"]["code"], -32002, "{missing}");
    assert!(
        missing["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("load_workflow")),
        "{missing}"
    );

    let source = scratch.path("allowed/workflows/txt2img_lora.json");
    ok(&agent
        .call_tool(3, "load_workflow", json!({"path": source}))
        .await);
    let listed = request(&mut agent, 4, "resources/list", json!({})).await;
    assert!(
        listed
            .to_string()
            .contains("comfyui://session/default/workflow")
    );
    let subscribed = request(
        &mut agent,
        5,
        "resources/subscribe",
        json!({"uri": "comfyui://session/default/workflow"}),
    )
    .await;
    assert!(subscribed["result"].is_object(), "{subscribed}");

    agent
        .send(&json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                      "params": {"name": "set_input", "arguments": {"node_id": "6", "input_name": "seed", "value": 4242}}}))
        .await;
    let mut notified = false;
    let mut answered = false;
    while !(notified && answered) {
        let message = agent.recv().await;
        if message["method"] == "notifications/resources/updated" {
            assert_eq!(
                message["params"]["uri"],
                "comfyui://session/default/workflow"
            );
            notified = true;
        }
        if message["id"] == 6 {
            ok(&message["result"]);
            answered = true;
        }
    }
    let workflow = text_of(&read(&mut agent, 7, "comfyui://session/default/workflow").await);
    assert_eq!(workflow["6"]["inputs"]["seed"], 4242);
    let diff = read(&mut agent, 8, "comfyui://session/default/diff").await;
    assert_eq!(
        diff["result"]["contents"][0]["mimeType"],
        "application/json-patch+json"
    );
    let ops = text_of(&diff);
    assert_eq!(ops[0]["path"], "/6/inputs/seed", "{ops}");
    let base = text_of(&read(&mut agent, 9, "comfyui://session/default/base").await);
    assert_eq!(base["6"]["inputs"]["seed"], 42);

    // A read-only call changes nothing and sends nothing.
    ok(&agent.call_tool(10, "get_workflow_diff", json!({})).await);
    request(
        &mut agent,
        11,
        "resources/unsubscribe",
        json!({"uri": "comfyui://session/default/workflow"}),
    )
    .await;
    ok(&agent.call_tool(12, "undo_workflow_patch", json!({})).await);
    // Unsubscribed: the next message is the ping's answer, not a notification.
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 13, "method": "ping"}))
        .await;
    let next = agent.recv().await;
    assert_eq!(next["id"], 13, "{next}");
}

#[tokio::test]
async fn nodes_models_templates_and_knowledge_are_readable_and_unknown_uris_are_errors() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let templates = request(&mut agent, 1, "resources/templates/list", json!({})).await;
    let names = each(&templates["result"]["resourceTemplates"], "uriTemplate");
    for expected in [
        "comfyui://session/{session}/workflow",
        "comfyui://nodes/{class}",
        "comfyui://nodes/{class}/{input}",
        "comfyui://models/{folder}",
        "comfyui://templates/{name}",
        "comfyui://knowledge/{topic}",
        "comfyui://output/{type}/{+path}",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }

    let node = text_of(&read(&mut agent, 2, "comfyui://nodes/KSampler").await);
    assert_eq!(node["class_type"], "KSampler");
    assert!(node["input"]["required"]["cfg"].is_array(), "{node}");
    let input = text_of(&read(&mut agent, 3, "comfyui://nodes/KSampler/sampler_name").await);
    assert_eq!(input["section"], "required");
    assert!(
        input["spec"][0]
            .as_array()
            .is_some_and(|c| c.contains(&json!("euler"))),
        "{input}"
    );
    let wrong = read(&mut agent, 4, "comfyui://nodes/KSampler/nonsense").await;
    assert_eq!(wrong["error"]["code"], -32002);
    assert!(
        wrong["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cfg"))
    );
    let unknown_node = read(&mut agent, 5, "comfyui://nodes/KSamplr").await;
    assert!(
        unknown_node["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("KSampler")),
        "suggests the close name: {unknown_node}"
    );

    let knowledge = read(&mut agent, 6, "comfyui://knowledge/troubleshooting").await;
    assert_eq!(
        knowledge["result"]["contents"][0]["mimeType"],
        "text/markdown"
    );
    let template = text_of(&read(&mut agent, 7, "comfyui://templates/smoke_test").await);
    assert!(template.as_object().is_some_and(|t| !t.is_empty()));

    // No ComfyUI folder configured: the models resource says what to set.
    let models = read(&mut agent, 8, "comfyui://models/checkpoints").await;
    assert!(
        models["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("COMFYUI_DIR")),
        "{models}"
    );

    for (id, bad) in [
        (9, "comfyui://nowhere"),
        (10, "file:///etc/passwd"),
        (11, "comfyui://models/..%2F..%2Fetc"),
    ] {
        let reply = read(&mut agent, id, bad).await;
        assert_eq!(reply["error"]["code"], -32002, "{bad}: {reply}");
    }
}

#[tokio::test]
async fn a_finished_run_lists_its_outputs_and_tells_listeners() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    request(
        &mut agent,
        1,
        "resources/subscribe",
        json!({"uri": "comfyui://outputs/recent"}),
    )
    .await;
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "execute_workflow", "arguments": {"workflow": crate::support::solid()}}}))
        .await;
    let (mut updated, mut list_changed, mut result) = (false, false, Value::Null);
    while result.is_null() || !updated || !list_changed {
        let message = agent.recv().await;
        match message["method"].as_str() {
            Some("notifications/resources/updated") => {
                assert_eq!(message["params"]["uri"], "comfyui://outputs/recent");
                updated = true;
            }
            Some("notifications/resources/list_changed") => list_changed = true,
            _ if message["id"] == 2 => result = message["result"].clone(),
            _ => {}
        }
    }
    let file_uri = ok(&result)["outputs"][0]["uri"]
        .as_str()
        .map(String::from)
        .or_else(|| {
            ok(&result)["images_shown"][0]["uri"]
                .as_str()
                .map(String::from)
        })
        .expect("an output link");
    let recent = text_of(&read(&mut agent, 3, "comfyui://outputs/recent").await);
    assert_eq!(recent["count"], 1, "{recent}");
    assert_eq!(recent["outputs"][0]["uri"], file_uri.as_str());
    let listed = request(&mut agent, 4, "resources/list", json!({})).await;
    let entry = listed["result"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["uri"] == file_uri.as_str())
        .cloned()
        .expect("the output is listed");
    assert_eq!(entry["mimeType"], "image/png");
    let file = read(&mut agent, 5, &file_uri).await;
    assert_eq!(file["result"]["contents"][0]["mimeType"], "image/png");
    assert!(file["result"]["contents"][0]["blob"].is_string());
}

#[tokio::test]
async fn prompts_fill_in_their_arguments_and_refuse_bad_ones() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let listed = request(&mut agent, 1, "prompts/list", json!({})).await;
    let names = each(&listed["result"]["prompts"], "name");
    assert_eq!(
        names,
        [
            "generate_image",
            "debug_workflow",
            "optimize_for_gpu",
            "find_model_or_node",
            "explain_workflow"
        ]
    );
    let got = request(
        &mut agent,
        2,
        "prompts/get",
        json!({"name": "generate_image", "arguments": {"description": "a red fox in snow", "size": "832x1216"}}),
    )
    .await;
    let text = got["result"]["messages"][0]["content"]["text"]
        .as_str()
        .expect("text");
    assert!(
        text.contains("a red fox in snow") && text.contains("832x1216"),
        "{text}"
    );
    assert!(text.contains("execute_with_progress"));

    let missing = request(
        &mut agent,
        3,
        "prompts/get",
        json!({"name": "generate_image"}),
    )
    .await;
    assert_eq!(missing["error"]["code"], -32602, "{missing}");
    assert!(
        missing["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("description"))
    );
    let unknown = request(&mut agent, 4, "prompts/get", json!({"name": "make_art"})).await;
    assert_eq!(unknown["error"]["code"], -32602);
    let extra = request(
        &mut agent,
        5,
        "prompts/get",
        json!({"name": "find_model_or_node", "arguments": {"need": "x", "colour": "red"}}),
    )
    .await;
    assert_eq!(extra["error"]["code"], -32602, "{extra}");

    // With a workflow loaded, the explanation embeds it.
    let source = scratch.path("allowed/workflows/txt2img_lora.json");
    ok(&agent
        .call_tool(6, "load_workflow", json!({"path": source}))
        .await);
    let explained = request(
        &mut agent,
        7,
        "prompts/get",
        json!({"name": "explain_workflow", "arguments": {"audience": "beginner"}}),
    )
    .await;
    let embedded = &explained["result"]["messages"][1]["content"];
    assert_eq!(embedded["type"], "resource", "{explained}");
    assert_eq!(
        embedded["resource"]["uri"],
        "comfyui://session/default/workflow"
    );
}

#[tokio::test]
async fn completion_ranks_node_classes_inputs_templates_and_prompt_choices() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let complete = |id: i64, reference: Value, name: &str, value: &str, context: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "completion/complete",
               "params": {"ref": reference, "argument": {"name": name, "value": value}, "context": {"arguments": context}}})
    };
    let node_ref = json!({"type": "ref/resource", "uri": "comfyui://nodes/{class}"});
    agent
        .send(&complete(
            1,
            node_ref.clone(),
            "class",
            "ksampler",
            json!({}),
        ))
        .await;
    let classes = agent.response(1).await;
    let values = classes["result"]["completion"]["values"]
        .as_array()
        .expect("values");
    assert_eq!(values[0], "KSampler", "{classes}");
    assert!(values.contains(&json!("KSamplerAdvanced")));

    agent
        .send(&complete(2, node_ref, "class", "", json!({})))
        .await;
    let all = agent.response(2).await;
    assert_eq!(
        all["result"]["completion"]["values"]
            .as_array()
            .map(Vec::len),
        Some(100)
    );
    assert_eq!(all["result"]["completion"]["total"], 496);
    assert_eq!(all["result"]["completion"]["hasMore"], true);

    let input_ref = json!({"type": "ref/resource", "uri": "comfyui://nodes/{class}/{input}"});
    agent
        .send(&complete(
            3,
            input_ref,
            "input",
            "s",
            json!({"class": "KSampler"}),
        ))
        .await;
    let inputs = agent.response(3).await;
    let values = inputs["result"]["completion"]["values"].clone();
    assert_eq!(values[0], "seed", "{inputs}");
    assert!(
        values
            .as_array()
            .is_some_and(|v| v.contains(&json!("sampler_name")))
    );

    let prompt_ref = json!({"type": "ref/prompt", "name": "optimize_for_gpu"});
    agent
        .send(&complete(4, prompt_ref, "goal", "mem", json!({})))
        .await;
    assert_eq!(
        agent.response(4).await["result"]["completion"]["values"],
        json!(["memory"])
    );
    // Without a ComfyUI folder here, ComfyUI's own loader lists the files it sees.
    let vae_ref = json!({"type": "ref/resource", "uri": "comfyui://models/{folder}"});
    agent
        .send(&complete(5, vae_ref, "folder", "lor", json!({})))
        .await;
    assert_eq!(
        agent.response(5).await["result"]["completion"]["values"],
        json!(["loras"])
    );
    let bad_ref = json!({"type": "ref/prompt", "name": "no_such_prompt"});
    agent.send(&complete(6, bad_ref, "x", "", json!({}))).await;
    assert_eq!(agent.response(6).await["error"]["code"], -32602);

    // With a ComfyUI folder, model files come from it.
    let comfy = scratch.dir.path().join("ComfyUI");
    let checkpoints = comfy.join("models/checkpoints");
    std::fs::create_dir_all(&checkpoints).expect("mkdir");
    std::fs::write(comfy.join("main.py"), b"").expect("write");
    for name in [
        "sd_xl_base_1.0.safetensors",
        "dreamshaper_8.safetensors",
        "flux1-dev-fp8.safetensors",
    ] {
        std::fs::write(checkpoints.join(name), b"x").expect("write");
    }
    let comfy_dir = comfy.display().to_string();
    let mut local = RawStdio::spawn_with(
        &scratch,
        &[
            ("COMFYUI_URL", fake.url().as_str()),
            ("COMFYUI_DIR", comfy_dir.as_str()),
        ],
    );
    local.initialize().await;
    let ckpt_ref = json!({"type": "ref/prompt", "name": "generate_image"});
    local
        .send(&complete(7, ckpt_ref, "checkpoint", "xl", json!({})))
        .await;
    assert_eq!(
        local.response(7).await["result"]["completion"]["values"],
        json!(["sd_xl_base_1.0.safetensors"])
    );
}

#[tokio::test]
async fn execute_runs_as_a_task_for_clients_that_declare_tasks() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    agent
        .initialize_with(json!({"extensions": {"io.modelcontextprotocol/tasks": {}}}))
        .await;
    let created = agent
        .call_tool(
            1,
            "execute_workflow",
            json!({"workflow": crate::support::solid()}),
        )
        .await;
    let task_id = created["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a task handle: {created}"))
        .to_string();
    assert_eq!(created["resultType"], "task");
    assert_eq!(created["status"], "working");
    let mut id = 10;
    let finished = loop {
        id += 1;
        let got = request(&mut agent, id, "tasks/get", json!({"taskId": task_id})).await;
        let status = got["result"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if status == "completed" {
            break got;
        }
        assert_eq!(status, "working", "{got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let result = &finished["result"]["result"];
    assert_eq!(
        result["structuredContent"]["status"], "complete",
        "{finished}"
    );

    // Not a task tool: a plain answer even for task-capable clients.
    let plain = agent
        .call_tool(50, "list_workflow_templates", json!({}))
        .await;
    assert!(plain.get("taskId").is_none(), "{plain}");

    let unknown = request(&mut agent, 51, "tasks/get", json!({"taskId": "nope"})).await;
    assert!(unknown["error"].is_object(), "{unknown}");
}

#[tokio::test]
async fn a_cancelled_task_cancels_its_comfyui_prompt() {
    let fake = FakeComfy::start().await;
    fake.set_pace(Duration::from_secs(30));
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    agent
        .initialize_with(json!({"extensions": {"io.modelcontextprotocol/tasks": {}}}))
        .await;
    let created = agent
        .call_tool(
            1,
            "execute_workflow",
            json!({"workflow": crate::support::solid(), "timeout": 600}),
        )
        .await;
    let task_id = created["taskId"].as_str().expect("task").to_string();
    let prompt_id = loop {
        if let Some(prompt_id) = fake.running_prompt() {
            break prompt_id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cancelled = request(&mut agent, 2, "tasks/cancel", json!({"taskId": task_id})).await;
    assert!(cancelled["result"].is_object(), "{cancelled}");
    assert!(fake.wait_until_interrupted(&prompt_id).await);
    let mut id = 10;
    loop {
        id += 1;
        let got = request(&mut agent, id, "tasks/get", json!({"taskId": task_id})).await;
        if got["result"]["status"] == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
#[tokio::test]
async fn disabling_a_tool_on_sighup_changes_the_list_and_tells_the_client() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let listed = request(&mut agent, 1, "tools/list", json!({})).await;
    let before = listed["result"]["tools"]
        .as_array()
        .map(Vec::len)
        .expect("tools");
    std::fs::write(
        scratch.dir.path().join(".env"),
        "COMFYUI_AGENT_DISABLED_TOOLS=upload_image,cancel_execution\n",
    )
    .expect("write .env");
    let pid = agent.child.id().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    loop {
        let message = agent.recv().await;
        if message["method"] == "notifications/tools/list_changed" {
            break;
        }
    }
    let listed = request(&mut agent, 2, "tools/list", json!({})).await;
    let tools = listed["result"]["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), before - 2);
    assert!(!tools.iter().any(|t| t["name"] == "upload_image"));
    let refused = request(
        &mut agent,
        3,
        "tools/call",
        json!({"name": "upload_image", "arguments": {"path": "x.png"}}),
    )
    .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("turned off")),
        "{refused}"
    );
    // A typo on the next reload is refused and the tool set stays.
    std::fs::write(
        scratch.dir.path().join(".env"),
        "COMFYUI_AGENT_DISABLED_TOOLS=uplod_image\n",
    )
    .expect("write .env");
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed = request(&mut agent, 4, "tools/list", json!({})).await;
    assert_eq!(
        listed["result"]["tools"].as_array().map(Vec::len),
        Some(before - 2)
    );
}

#[tokio::test]
async fn log_messages_follow_the_level_the_client_set() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    // No level set: no log messages at all.
    ok(&agent
        .call_tool(1, "list_workflow_templates", json!({}))
        .await);
    request(&mut agent, 2, "logging/setLevel", json!({"level": "debug"})).await;
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "list_workflow_templates", "arguments": {}}}))
        .await;
    let mut saw_debug = false;
    loop {
        let message = agent.recv().await;
        if message["method"] == "notifications/message" {
            assert_eq!(message["params"]["level"], "debug");
            saw_debug = true;
        }
        if message["id"] == 3 {
            break;
        }
    }
    // Debug lines may come after the answer; give them a moment.
    if !saw_debug {
        let message = agent.recv().await;
        assert_eq!(message["method"], "notifications/message", "{message}");
    }
    request(&mut agent, 4, "logging/setLevel", json!({"level": "error"})).await;
    ok(&agent
        .call_tool(5, "list_workflow_templates", json!({}))
        .await);
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}))
        .await;
    assert_eq!(
        agent.recv().await["id"],
        6,
        "no debug message above the level"
    );
}

#[tokio::test]
async fn a_2026_client_listens_for_changes_and_gets_2026_error_codes() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "1"}});
    let unknown = request(
        &mut agent,
        1,
        "resources/read",
        json!({"_meta": meta, "uri": "comfyui://nowhere"}),
    )
    .await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");

    let source = scratch.path("allowed/workflows/txt2img_lora.json");
    let loaded = request(
        &mut agent,
        2,
        "tools/call",
        json!({"_meta": meta, "name": "load_workflow", "arguments": {"path": source}}),
    )
    .await;
    ok(&loaded["result"]);
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 3, "method": "subscriptions/listen",
                      "params": {"_meta": meta, "notifications": {
                          "toolsListChanged": true,
                          "promptsListChanged": true,
                          "resourceSubscriptions": ["comfyui://session/default/workflow", "comfyui://nowhere"]}}}))
        .await;
    let acknowledged = agent.recv().await;
    assert_eq!(
        acknowledged["method"], "notifications/subscriptions/acknowledged",
        "{acknowledged}"
    );
    let accepted = &acknowledged["params"]["notifications"];
    assert_eq!(accepted["toolsListChanged"], true, "{accepted}");
    assert!(
        accepted.get("promptsListChanged").is_none(),
        "prompts never change"
    );
    assert_eq!(
        accepted["resourceSubscriptions"],
        json!(["comfyui://session/default/workflow"])
    );
    agent
        .send(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                      "params": {"_meta": meta, "name": "set_input",
                                 "arguments": {"node_id": "6", "input_name": "steps", "value": 9}}}))
        .await;
    let (mut updated, mut answered) = (false, false);
    while !(updated && answered) {
        let message = agent.recv().await;
        if message["method"] == "notifications/resources/updated" {
            assert_eq!(
                message["params"]["uri"],
                "comfyui://session/default/workflow"
            );
            assert_eq!(
                message["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 3,
                "{message}"
            );
            updated = true;
        }
        if message["id"] == 4 {
            ok(&message["result"]);
            answered = true;
        }
    }
}

/// An rmcp client that records resource updates and answers questions with yes.
#[derive(Clone, Default)]
struct Recorder {
    updated: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl rmcp::ClientHandler for Recorder {
    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.updated.lock().expect("lock").push(params.uri);
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        if let rmcp::model::ElicitRequestParams::FormElicitationParams { message, .. } = request {
            self.asked.lock().expect("lock").push(message);
        }
        let mut answer = rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept);
        answer.content = Some(json!({"confirm": true}));
        Ok(answer)
    }

    fn get_info(&self) -> rmcp::model::ClientConfig {
        let capabilities = rmcp::model::ClientCapabilities::builder()
            .enable_elicitation()
            .build();
        rmcp::model::ClientConfig::new(
            capabilities,
            rmcp::model::Implementation::new("recorder", "1"),
        )
    }
}

// The session negotiated at initialize uses resources/subscribe (legacy, deprecated in rmcp for
// 2026-07-28 clients, which listen instead; that path is tested above).
#[allow(deprecated)]
#[tokio::test]
async fn the_rust_sdk_over_http_reads_subscribes_completes_and_answers_questions() {
    use rmcp::ServiceExt as _;
    use rmcp::model::{
        CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams,
        SubscribeRequestParams,
    };

    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let url = fake.url();
    let server =
        crate::support::HttpServer::spawn(&scratch, &[], &[("COMFYUI_URL", url.as_str())]).await;
    let recorder = Recorder::default();
    let client = recorder
        .clone()
        .serve(rmcp::transport::StreamableHttpClientTransport::from_uri(
            server.url("/mcp"),
        ))
        .await
        .expect("connects");
    let resources = client.list_all_resources().await.expect("resources");
    assert!(
        resources
            .iter()
            .any(|r| r.uri == "comfyui://knowledge/recipes")
    );
    let page = client
        .read_resource(ReadResourceRequestParams::new(
            "comfyui://knowledge/recipes",
        ))
        .await
        .expect("read");
    assert!(format!("{page:?}").contains("text/markdown"));
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("find_model_or_node").with_arguments(
                serde_json::from_value(json!({"need": "an upscaler"})).expect("arguments"),
            ),
        )
        .await
        .expect("prompt");
    assert!(format!("{prompt:?}").contains("an upscaler"));
    let classes = client
        .complete_resource_simple("comfyui://nodes/{class}", "class", "vaedec")
        .await
        .expect("completion");
    assert_eq!(classes.first().map(String::as_str), Some("VAEDecode"));

    // This connection's workflow has its own name; subscribe to it and change it.
    let call = |name: &'static str, arguments: Value| {
        CallToolRequestParams::new(name)
            .with_arguments(arguments.as_object().cloned().unwrap_or_default())
    };
    let source = scratch.path("allowed/workflows/txt2img_lora.json");
    client
        .call_tool(call("load_workflow", json!({"path": source})))
        .await
        .expect("load");
    let uri = client
        .list_all_resources()
        .await
        .expect("resources")
        .into_iter()
        .map(|r| r.uri.clone())
        .find(|uri| uri.starts_with("comfyui://session/http-") && uri.ends_with("/workflow"))
        .expect("this connection's workflow is listed");
    client
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .expect("subscribe");
    client
        .call_tool(call(
            "set_input",
            json!({"node_id": "6", "input_name": "steps", "value": 12}),
        ))
        .await
        .expect("set");
    for _ in 0..200 {
        if recorder.updated.lock().expect("lock").contains(&uri) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(recorder.updated.lock().expect("lock").contains(&uri));

    // Overwriting the loaded file asks, the client says yes, the file is saved.
    let saved = client
        .call_tool(call("save_workflow", json!({})))
        .await
        .expect("save");
    assert_ne!(saved.is_error, Some(true), "{saved:?}");
    assert_eq!(recorder.asked.lock().expect("lock").len(), 1);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&source).expect("read")).expect("json");
    assert_eq!(written["6"]["inputs"]["steps"], 12);
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn with_comfyui_down_resources_say_so_and_completion_stays_quiet() {
    let mut fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    fake.stop().await;
    let node = read(&mut agent, 1, "comfyui://nodes/KSampler").await;
    assert_eq!(node["error"]["code"], -32603, "{node}");
    assert!(
        node["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("isn't answering")),
        "{node}"
    );
    let file = read(&mut agent, 2, "comfyui://output/output/ComfyUI_00001_.png").await;
    assert!(
        file["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("isn't answering")),
        "{file}"
    );
    // Everything that doesn't need ComfyUI still answers.
    let listed = request(&mut agent, 3, "resources/list", json!({})).await;
    assert!(
        listed["result"]["resources"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    let classes = request(
        &mut agent,
        4,
        "completion/complete",
        json!({"ref": {"type": "ref/resource", "uri": "comfyui://nodes/{class}"},
               "argument": {"name": "class", "value": "ksam"}}),
    )
    .await;
    assert_eq!(
        classes["result"]["completion"]["values"],
        json!([]),
        "{classes}"
    );
    let templates = request(
        &mut agent,
        5,
        "completion/complete",
        json!({"ref": {"type": "ref/resource", "uri": "comfyui://templates/{name}"},
               "argument": {"name": "name", "value": "smoke"}}),
    )
    .await;
    assert_eq!(templates["result"]["completion"]["values"][0], "smoke_test");
}
