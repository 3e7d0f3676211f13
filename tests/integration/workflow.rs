//! The workflow and session tools end to end: the real binary, over stdio and Streamable HTTP,
//! against the fake ComfyUI for the node list.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use crate::support::fake_comfy::FakeComfy;
use crate::support::{HttpServer, RawStdio, Scratch, agent_for, failed, ok, solid};

#[tokio::test]
async fn load_edit_undo_diff_and_reset_a_workflow_file() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let path = scratch.path("allowed/workflows/txt2img_sd15.json");

    let loaded = agent
        .call_tool(1, "load_workflow", json!({"path": path}))
        .await;
    let report = ok(&loaded);
    assert_eq!(report["format"], "api");
    assert_eq!(report["loaded_into_session"], true);
    assert!(report["node_count"].as_u64().is_some_and(|n| n >= 7));
    assert!(
        report["summary"]
            .as_str()
            .is_some_and(|s| s.contains("connections") && s.contains("Data flow"))
    );
    let sampler = report["nodes"]
        .as_object()
        .expect("nodes")
        .iter()
        .find(|(_, node)| node["class_type"] == "KSampler")
        .map(|(id, _)| id.clone())
        .expect("a KSampler");

    let set = agent
        .call_tool(
            2,
            "set_input",
            json!({"node_id": sampler, "input_name": "seed", "value": 7}),
        )
        .await;
    let set = ok(&set);
    assert_eq!(set["new_value"], 7);
    assert_eq!(set["checked_against"], "ComfyUI's node list");

    let out_of_range = agent
        .call_tool(
            3,
            "set_input",
            json!({"node_id": sampler, "input_name": "steps", "value": 0}),
        )
        .await;
    assert!(failed(&out_of_range).contains("steps"));
    let unknown_input = agent
        .call_tool(
            4,
            "set_input",
            json!({"node_id": sampler, "input_name": "seeed", "value": 1}),
        )
        .await;
    assert!(
        failed(&unknown_input).contains("seed"),
        "lists the real names"
    );

    let diff = agent.call_tool(5, "get_workflow_diff", json!({})).await;
    assert_eq!(ok(&diff)["changes"], 1);
    assert_eq!(ok(&diff)["diff"][0]["op"], "replace");

    let patch = agent
        .call_tool(
            6,
            "apply_workflow_patch",
            json!({"patches": [{"op": "replace", "path": format!("/{sampler}/inputs/steps"), "value": 30},
                               {"op": "test", "path": format!("/{sampler}/inputs/seed"), "value": 7}]}),
        )
        .await;
    let patch = ok(&patch);
    assert_eq!(patch["applied"], 2);
    assert_eq!(patch["total_changes_from_base"], 2);

    // A failing test op rolls the whole patch back.
    let failing = agent
        .call_tool(
            7,
            "apply_workflow_patch",
            json!({"patches": [{"op": "replace", "path": format!("/{sampler}/inputs/cfg"), "value": 3},
                               {"op": "test", "path": format!("/{sampler}/inputs/seed"), "value": 8}]}),
        )
        .await;
    assert!(failed(&failing).contains("nothing changed"));
    let diff = agent.call_tool(8, "get_workflow_diff", json!({})).await;
    assert_eq!(ok(&diff)["changes"], 2, "the failed patch left no trace");

    let preview = agent
        .call_tool(
            9,
            "preview_workflow_patch",
            json!({"patches": [{"op": "replace", "path": format!("/{sampler}/inputs/cfg"), "value": 4.5}]}),
        )
        .await;
    let preview = ok(&preview);
    assert_eq!(preview["would_succeed"], true);
    assert_eq!(preview["preview"][0]["new_value"], 4.5);
    let diff = agent.call_tool(10, "get_workflow_diff", json!({})).await;
    assert_eq!(ok(&diff)["changes"], 2, "a preview changes nothing");

    let undo = agent.call_tool(11, "undo_workflow_patch", json!({})).await;
    assert_eq!(ok(&undo)["remaining_changes_from_base"], 1);
    let reset = agent.call_tool(12, "reset_workflow", json!({})).await;
    assert_eq!(ok(&reset)["reset"], true);
    let nothing = agent.call_tool(13, "undo_workflow_patch", json!({})).await;
    assert!(failed(&nothing).contains("Nothing to undo"));
    let diff = agent.call_tool(14, "get_workflow_diff", json!({})).await;
    assert_eq!(ok(&diff)["changes"], 0);
}

#[tokio::test]
async fn editing_before_loading_and_bad_patches_get_clear_errors() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    for (id, tool, args) in [
        (1, "get_workflow_diff", json!({})),
        (2, "undo_workflow_patch", json!({})),
        (
            3,
            "set_input",
            json!({"node_id": "1", "input_name": "x", "value": 1}),
        ),
        (
            4,
            "save_workflow",
            json!({"output_path": "workflows/x.json"}),
        ),
    ] {
        let message = failed(&agent.call_tool(id, tool, args).await);
        assert!(message.contains("No workflow loaded"), "{tool}: {message}");
        assert!(message.contains("load_workflow"), "{tool}: says how");
    }
    ok(&agent
        .call_tool(5, "load_workflow", json!({"workflow": solid()}))
        .await);
    let bad_op = agent
        .call_tool(
            6,
            "apply_workflow_patch",
            json!({"patches": [{"op": "frobnicate", "path": "/1"}]}),
        )
        .await;
    failed(&bad_op);
    let missing = agent
        .call_tool(
            7,
            "apply_workflow_patch",
            json!({"patches": [{"op": "remove", "path": "/9/inputs/x"}]}),
        )
        .await;
    assert!(failed(&missing).contains("patches[0]"));
    let broken = agent
        .call_tool(
            8,
            "load_workflow",
            json!({"path": scratch.path("allowed/workflows/broken.json")}),
        )
        .await;
    assert!(failed(&broken).contains("isn't valid JSON"));
    let outside = agent
        .call_tool(
            9,
            "load_workflow",
            json!({"path": scratch.path("outside/secret.json")}),
        )
        .await;
    assert!(failed(&outside).contains("outside"));
    let both = agent
        .call_tool(
            10,
            "load_workflow",
            json!({"path": "x.json", "workflow": solid()}),
        )
        .await;
    assert!(failed(&both).contains("Both"));
    let not_a_workflow = agent
        .call_tool(11, "load_workflow", json!({"workflow": {"hello": "world"}}))
        .await;
    assert!(failed(&not_a_workflow).contains("isn't a ComfyUI workflow"));
}

#[tokio::test]
async fn a_ui_only_workflow_is_converted_with_the_live_node_list() {
    let mut fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let ui: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::fixture("workflows/ui/txt2img_sd15_ui.json"))
            .expect("fixture"),
    )
    .expect("JSON");
    let api: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::fixture(
            "workflows/ui/txt2img_sd15_api.json",
        ))
        .expect("fixture"),
    )
    .expect("JSON");
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let loaded = agent
        .call_tool(1, "load_workflow", json!({"workflow": ui.clone()}))
        .await;
    let report = ok(&loaded);
    assert_eq!(report["format"], "ui_only");
    assert_eq!(
        report["node_count"].as_u64(),
        Some(api.as_object().expect("object").len() as u64)
    );

    // As text, too (a client may pass the file's contents).
    let as_text = agent
        .call_tool(2, "load_workflow", json!({"workflow": ui.to_string()}))
        .await;
    assert_eq!(ok(&as_text)["format"], "ui_only");

    fake.stop().await;
    let scratch = Scratch::new();
    let mut offline = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    offline.initialize().await;
    let refused = offline
        .call_tool(1, "load_workflow", json!({"workflow": ui}))
        .await;
    let message = failed(&refused);
    assert!(
        message.contains("UI-only") && message.contains("Start ComfyUI"),
        "{message}"
    );
    // An API workflow loads without ComfyUI.
    ok(&offline
        .call_tool(2, "load_workflow", json!({"workflow": solid()}))
        .await);
}

#[tokio::test]
async fn validation_agrees_with_comfyui_and_needs_it_running() {
    let mut fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let url = fake.url();
    let mut agent = RawStdio::spawn_with(
        &scratch,
        &[
            ("COMFYUI_URL", url.as_str()),
            ("COMFYUI_AGENT_BREAKER_FAILURES", "1"),
        ],
    );
    agent.initialize().await;
    let good = agent
        .call_tool(1, "validate_workflow", json!({"workflow": solid()}))
        .await;
    let good = ok(&good);
    assert_eq!(good["valid"], true, "{good}");
    assert!(
        good["node_list"]
            .as_str()
            .is_some_and(|s| s.starts_with("ComfyUI's node list at"))
    );

    let mut bad = solid();
    bad["1"]["inputs"]["width"] = json!(0);
    bad["2"]["inputs"]["images"] = json!(["9", 0]);
    bad["3"] = json!({"class_type": "KSamplr", "inputs": {}});
    let report = agent
        .call_tool(2, "validate_workflow", json!({"workflow": bad}))
        .await;
    let report = ok(&report);
    assert_eq!(report["valid"], false);
    let kinds: Vec<&str> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["below_min", "link_to_missing_node", "unknown_class"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(
        report["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .all(|e| e["fix"].is_string())
    );

    // Without arguments: the session's workflow.
    ok(&agent
        .call_tool(
            3,
            "get_workflow_template",
            json!({"template": "smoke_test"}),
        )
        .await);
    let session = agent.call_tool(4, "validate_workflow", json!({})).await;
    assert_eq!(ok(&session)["valid"], true);

    fake.stop().await;
    // Once a call has found ComfyUI gone (the breaker opens at the first failure here),
    // validation goes on from the cached node list and says so.
    failed(&agent.call_tool(50, "get_queue_status", json!({})).await);
    let cached = agent.call_tool(5, "validate_workflow", json!({})).await;
    assert_eq!(ok(&cached)["valid"], true);
    assert!(
        ok(&cached)["node_list"]
            .as_str()
            .is_some_and(|s| s.contains("isn't answering")),
        "says it used a copy: {cached}"
    );
    let scratch = Scratch::new();
    let mut offline = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    offline.initialize().await;
    let down = offline
        .call_tool(1, "validate_workflow", json!({"workflow": solid()}))
        .await;
    let message = failed(&down);
    assert!(
        message.contains("isn't answering") && message.contains("node"),
        "{message}"
    );
}

#[tokio::test]
async fn add_and_connect_nodes_are_checked_and_undoable() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    ok(&agent
        .call_tool(1, "load_workflow", json!({"workflow": solid()}))
        .await);
    let added = agent
        .call_tool(2, "add_node", json!({"class_type": "ImageInvert"}))
        .await;
    let added = ok(&added);
    assert_eq!(added["node_id"], "3");
    let connected = agent
        .call_tool(
            3,
            "connect_nodes",
            json!({"from_node": "1", "from_output": 0, "to_node": "3", "to_input": "image"}),
        )
        .await;
    assert_eq!(ok(&connected)["connected"], true);
    let rewire = agent
        .call_tool(
            4,
            "connect_nodes",
            json!({"from_node": "3", "from_output": 0, "to_node": "2", "to_input": "images"}),
        )
        .await;
    assert_eq!(ok(&rewire)["previous_value"], json!(["1", 0]));
    let wrong_type = agent
        .call_tool(
            5,
            "connect_nodes",
            json!({"from_node": "1", "from_output": 0, "to_node": "2", "to_input": "filename_prefix"}),
        )
        .await;
    failed(&wrong_type);
    let unknown = agent
        .call_tool(6, "add_node", json!({"class_type": "ImageInvrt"}))
        .await;
    assert!(
        failed(&unknown).contains("ImageInvert"),
        "suggests the real name"
    );
    let valid = agent.call_tool(7, "validate_workflow", json!({})).await;
    assert_eq!(ok(&valid)["valid"], true);
    for id in 8..11 {
        ok(&agent.call_tool(id, "undo_workflow_patch", json!({})).await);
    }
    let diff = agent.call_tool(11, "get_workflow_diff", json!({})).await;
    assert_eq!(ok(&diff)["changes"], 0);
}

#[tokio::test]
async fn save_writes_atomically_inside_the_roots_and_never_over_a_ui_file() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    // Overwriting asks first (consent.rs); this test is about the writing.
    let mut agent = agent_for(
        &fake,
        &scratch,
        &[("COMFYUI_AGENT_PRE_APPROVE", "save_workflow")],
    )
    .await;
    let source = scratch.path("allowed/workflows/txt2img_lora.json");
    ok(&agent
        .call_tool(1, "load_workflow", json!({"path": source}))
        .await);
    ok(&agent
        .call_tool(2, "apply_workflow_patch", json!({"patches": [{"op": "add", "path": "/99", "value": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}]}))
        .await);
    let copy = scratch.path("allowed/workflows/copy_api.json");
    let saved = agent
        .call_tool(3, "save_workflow", json!({"output_path": copy}))
        .await;
    assert_eq!(ok(&saved)["changes_from_base"], 1);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&copy).expect("written")).expect("JSON");
    assert_eq!(written["99"]["class_type"], "PreviewImage");
    // Default target: the file it came from.
    ok(&agent.call_tool(4, "save_workflow", json!({})).await);
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(&source).expect("read")).expect("JSON");
    assert!(original.get("99").is_some());
    let outside = agent
        .call_tool(
            5,
            "save_workflow",
            json!({"output_path": scratch.path("outside/evil.json")}),
        )
        .await;
    assert!(failed(&outside).contains("outside"));
    assert!(!std::path::Path::new(&scratch.path("outside/evil.json")).exists());
    let no_folder = agent
        .call_tool(
            6,
            "save_workflow",
            json!({"output_path": scratch.path("allowed/nope/x.json")}),
        )
        .await;
    assert!(failed(&no_folder).contains("does not exist"));

    // Inline workflows have no file to go back to.
    ok(&agent
        .call_tool(7, "load_workflow", json!({"workflow": solid()}))
        .await);
    let nowhere = agent.call_tool(8, "save_workflow", json!({})).await;
    assert!(failed(&nowhere).contains("output_path"));

    // A UI file is never overwritten with API JSON.
    let ui_path = scratch.path("allowed/workflows/ui_save.json");
    std::fs::copy(
        crate::support::fixture("workflows/ui/txt2img_sd15_ui.json"),
        &ui_path,
    )
    .expect("copy");
    ok(&agent
        .call_tool(9, "load_workflow", json!({"path": ui_path}))
        .await);
    let refused = agent.call_tool(10, "save_workflow", json!({})).await;
    assert!(failed(&refused).contains("UI workflow"));
    let ui_after: Value =
        serde_json::from_str(&std::fs::read_to_string(&ui_path).expect("read")).expect("JSON");
    assert!(ui_after.get("nodes").is_some(), "the UI file is untouched");
}

#[tokio::test]
async fn templates_are_listed_with_availability_and_load_into_the_session() {
    let mut fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let list = agent
        .call_tool(1, "list_workflow_templates", json!({}))
        .await;
    let list = ok(&list);
    let by_name = |name: &str| {
        list["templates"]
            .as_array()
            .expect("templates")
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .expect("listed")
    };
    assert_eq!(by_name("smoke_test")["available"], true);
    let sd15 = by_name("txt2img_sd15");
    assert_eq!(
        sd15["available"], false,
        "the recorded ComfyUI has no checkpoints"
    );
    assert!(sd15["missing"].as_array().is_some_and(|m| !m.is_empty()));

    let loaded = agent
        .call_tool(
            2,
            "get_workflow_template",
            json!({"template": "txt2img_sdxl"}),
        )
        .await;
    let loaded = ok(&loaded);
    assert_eq!(loaded["node_count"], 7);
    let fields = agent
        .call_tool(
            3,
            "get_editable_fields",
            json!({"class_filter": "ksampler"}),
        )
        .await;
    let fields = ok(&fields);
    assert!(
        fields["fields_by_class"]["KSampler"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["field"] == "seed" && f["type"] == "int"))
    );

    let unknown = agent
        .call_tool(4, "get_workflow_template", json!({"template": "../Cargo"}))
        .await;
    assert!(failed(&unknown).contains("smoke_test"), "lists what exists");

    fake.stop().await;
    let scratch = Scratch::new();
    let mut offline = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", fake.url().as_str())]);
    offline.initialize().await;
    let list = offline
        .call_tool(1, "list_workflow_templates", json!({}))
        .await;
    assert!(ok(&list)["templates"][0]["available"].is_null());
}

#[tokio::test]
async fn sessions_save_restore_list_and_keep_notes_across_processes() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    {
        let mut agent = agent_for(&fake, &scratch, &[]).await;
        ok(&agent
            .call_tool(
                1,
                "get_workflow_template",
                json!({"template": "smoke_test"}),
            )
            .await);
        ok(&agent
            .call_tool(
                2,
                "set_input",
                json!({"node_id": "1", "input_name": "width", "value": 128}),
            )
            .await);
        let saved = agent
            .call_tool(3, "save_session", json!({"name": "color study"}))
            .await;
        assert_eq!(ok(&saved)["has_workflow"], true);
        let note = agent
            .call_tool(
                4,
                "add_note",
                json!({"session_name": "color study", "note": "128 px is enough"}),
            )
            .await;
        assert_eq!(ok(&note)["total_notes"], 1);
        let bad = agent
            .call_tool(5, "save_session", json!({"name": "../escape"}))
            .await;
        assert!(failed(&bad).contains("name"));
        let reserved = agent
            .call_tool(6, "add_note", json!({"session_name": "CON", "note": "x"}))
            .await;
        failed(&reserved);
        agent.close_and_wait().await;
    }
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let list = agent.call_tool(1, "list_sessions", json!({})).await;
    let list = ok(&list);
    assert_eq!(list["count"], 1);
    assert_eq!(list["sessions"][0]["name"], "color study");
    assert_eq!(list["sessions"][0]["notes_count"], 1);
    let restored = agent
        .call_tool(2, "load_session", json!({"name": "color study"}))
        .await;
    let restored = ok(&restored);
    assert_eq!(restored["workflow_restored"], true);
    assert_eq!(restored["changes_from_base"], 1);
    assert_eq!(restored["notes"][0]["text"], "128 px is enough");
    let fields = agent.call_tool(3, "get_editable_fields", json!({})).await;
    let fields = ok(&fields);
    let width = fields["fields_by_class"]["EmptyImage"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["field"] == "width")
        .expect("width")
        .clone();
    assert_eq!(width["value"], 128);
    let missing = agent
        .call_tool(4, "load_session", json!({"name": "nope"}))
        .await;
    assert!(
        failed(&missing).contains("color study"),
        "names what exists"
    );

    // A damaged file is set aside and reported, never silently replaced.
    let sessions_dir = scratch.dir.path().join("data/sessions");
    std::fs::write(sessions_dir.join("broken.json"), "{ not json").expect("write");
    let damaged = agent
        .call_tool(5, "load_session", json!({"name": "broken"}))
        .await;
    failed(&damaged);
    let set_aside = std::fs::read_dir(&sessions_dir)
        .expect("dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("broken.json.corrupt")
        });
    assert!(set_aside);
}

#[tokio::test]
async fn a_named_session_is_shared_by_name_and_separate_from_the_connection() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    ok(&agent
        .call_tool(
            1,
            "get_workflow_template",
            json!({"template": "smoke_test", "session": "shared"}),
        )
        .await);
    let none_here = agent.call_tool(2, "get_workflow_diff", json!({})).await;
    assert!(failed(&none_here).contains("No workflow loaded"));
    ok(&agent
        .call_tool(
            3,
            "set_input",
            json!({"node_id": "1", "input_name": "height", "value": 32, "session": "shared"}),
        )
        .await);
    let diff = agent
        .call_tool(4, "get_workflow_diff", json!({"session": "shared"}))
        .await;
    assert_eq!(ok(&diff)["changes"], 1);
}

/// 50 Streamable HTTP sessions edit their own workflows at once; none sees another's.
#[tokio::test]
async fn fifty_http_sessions_edit_different_workflows_at_once() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let url = fake.url();
    let server = HttpServer::spawn(&scratch, &[], &[("COMFYUI_URL", url.as_str())]).await;
    let endpoint = server.url("/mcp");
    let mut tasks = Vec::new();
    for n in 0..50_i64 {
        let endpoint = endpoint.clone();
        tasks.push(tokio::spawn(async move {
            let client =
                ().serve(StreamableHttpClientTransport::from_uri(endpoint))
                    .await
                    .expect("initialize");
            let call = |name: &'static str, args: Value| {
                CallToolRequestParams::new(name)
                    .with_arguments(args.as_object().cloned().expect("object"))
            };
            let template = if n % 2 == 0 {
                "smoke_test"
            } else {
                "invert_image"
            };
            let loaded = client
                .call_tool(call("get_workflow_template", json!({"template": template})))
                .await
                .expect("template");
            assert_eq!(loaded.is_error, Some(false));
            let prefix = format!("run-{n}");
            let node = if n % 2 == 0 { "2" } else { "3" };
            let set = client
                .call_tool(call(
                    "set_input",
                    json!({"node_id": node, "input_name": "filename_prefix", "value": prefix}),
                ))
                .await
                .expect("set");
            assert_eq!(set.is_error, Some(false));
            let diff = client
                .call_tool(call("get_workflow_diff", json!({})))
                .await
                .expect("diff");
            let diff = diff.structured_content.expect("structured");
            assert_eq!(diff["changes"], 1, "session {n} sees only its own change");
            assert_eq!(diff["diff"][0]["value"], format!("run-{n}"));
            assert_eq!(diff["loaded_from"], format!("template {template}"));
            client.cancel().await.expect("close");
        }));
    }
    for task in tasks {
        task.await.expect("session task");
    }
}

/// Stateless (2026-07-28) HTTP requests carry no connection: they share the `default` named
/// session unless they name another, so a workflow loaded by one request is there for the next.
#[tokio::test]
async fn stateless_requests_keep_their_workflow_in_a_named_session() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let url = fake.url();
    let server = HttpServer::spawn(&scratch, &[], &[("COMFYUI_URL", url.as_str())]).await;
    let http = crate::support::http_client();
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "1"}});
    let call = |id: i64, name: &'static str, arguments: Value| {
        let http = http.clone();
        let endpoint = server.url("/mcp");
        let meta = meta.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                              "params": {"_meta": meta, "name": name, "arguments": arguments}});
            let response = http
                .post(endpoint)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-method", "tools/call")
                .header("mcp-name", name)
                .header("mcp-protocol-version", "2026-07-28")
                .body(body.to_string())
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 200);
            crate::support::rpc_payload(&response.text().await.expect("body"))["result"].clone()
        }
    };
    ok(&call(
        1,
        "get_workflow_template",
        json!({"template": "smoke_test"}),
    )
    .await);
    ok(&call(
        2,
        "set_input",
        json!({"node_id": "1", "input_name": "width", "value": 300}),
    )
    .await);
    let diff = call(3, "get_workflow_diff", json!({})).await;
    assert_eq!(
        ok(&diff)["changes"],
        1,
        "the next request sees the same workflow"
    );
    let elsewhere = call(4, "get_workflow_diff", json!({"session": "another"})).await;
    assert!(failed(&elsewhere).contains("No workflow loaded"));
}
