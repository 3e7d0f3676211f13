//! stdio: rmcp's own client against the binary, and raw lines for the adversarial cases.

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorCode};
use rmcp::service::ServiceError;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::support::{RawStdio, Scratch};

fn args(value: Value) -> rmcp::model::JsonObject {
    value.as_object().cloned().expect("object")
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn rmcp_client_lists_and_calls_tools() {
    let scratch = Scratch::new();
    let transport = TokioChildProcess::new(scratch.command(&["mcp"])).expect("spawn");
    let client = ().serve(transport).await.expect("initialize");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().expect("serverInfo").name,
        "comfyui-agent"
    );
    assert!(
        info.instructions
            .as_deref()
            .is_some_and(|i| i.contains("ComfyUI"))
    );

    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"identify_model_family"), "{names:?}");
    assert!(names.contains(&"check_model_compatibility"), "{names:?}");

    let result = client
        .call_tool(
            CallToolRequestParams::new("identify_model_family")
                .with_arguments(args(json!({"model_name": "flux1-dev.safetensors"}))),
        )
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(false));
    let structured = result.structured_content.clone().expect("structured");
    assert_eq!(structured["family"], "flux");
    // The text block carries the same JSON, for clients that ignore structuredContent.
    let from_text: Value = serde_json::from_str(&text(&result)).expect("text is JSON");
    assert_eq!(from_text, structured);

    client.cancel().await.expect("close");
}

#[tokio::test]
async fn bad_arguments_are_one_tool_error_listing_every_problem() {
    let scratch = Scratch::new();
    let transport = TokioChildProcess::new(scratch.command(&["mcp"])).expect("spawn");
    let client = ().serve(transport).await.expect("initialize");
    let result = client
        .call_tool(
            CallToolRequestParams::new("identify_model_family")
                .with_arguments(args(json!({"model_name": 42, "colour": "red"}))),
        )
        .await
        .expect("argument problems are results, not protocol errors");
    assert_eq!(result.is_error, Some(true));
    let message = text(&result);
    assert!(
        message.contains("model_name: expected a string, got 42"),
        "{message}"
    );
    assert!(message.contains("colour"), "{message}");

    let result = client
        .call_tool(CallToolRequestParams::new("identify_model_family"))
        .await
        .expect("missing arguments are a result");
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("model_name: expected a value (it is required)"));

    let error = client
        .call_tool(CallToolRequestParams::new("no_such_tool"))
        .await
        .expect_err("unknown tool is a protocol error");
    match error {
        ServiceError::McpError(data) => {
            assert_eq!(data.code, ErrorCode::INVALID_PARAMS);
            assert!(data.message.contains("no_such_tool"));
        }
        other => panic!("unexpected error: {other:?}"),
    }
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn compatibility_reads_workflows_only_inside_allowed_folders() {
    let scratch = Scratch::new();
    let transport = TokioChildProcess::new(scratch.command(&["mcp"])).expect("spawn");
    let client = ().serve(transport).await.expect("initialize");
    let call = |arguments: Value| {
        let client = &client;
        async move {
            client
                .call_tool(
                    CallToolRequestParams::new("check_model_compatibility")
                        .with_arguments(args(arguments)),
                )
                .await
                .expect("tools/call")
        }
    };

    let ok =
        call(json!({"workflow_path": scratch.path("allowed/workflows/txt2img_sd15.json")})).await;
    assert_eq!(ok.is_error, Some(false), "{}", text(&ok));
    let report = ok.structured_content.expect("structured");
    assert_eq!(report["compatible"], true);
    assert_eq!(report["family"], "sd15");

    let mixed =
        call(json!({"workflow_path": scratch.path("allowed/workflows/mixed_families.json")})).await;
    let report = mixed.structured_content.expect("structured");
    assert_eq!(report["compatible"], false);
    assert_eq!(report["conflicts"][0]["family_a"], "sd15");
    assert_eq!(report["conflicts"][0]["family_b"], "sdxl");

    // A name given in `models` and also found in the workflow is judged once, wherever the
    // two copies stand in the combined list.
    let both = call(json!({
        "workflow_path": scratch.path("allowed/workflows/mixed_families.json"),
        "models": ["v1-5-pruned-emaonly.safetensors", "sdxl_base.safetensors"]
    }))
    .await;
    let report = both.structured_content.expect("structured");
    let conflict = &report["conflicts"][0];
    assert_eq!(
        conflict["models_a"],
        json!(["v1-5-pruned-emaonly.safetensors"])
    );
    assert_eq!(
        conflict["models_b"],
        json!(["sdxl_base.safetensors", "sdxl_detail_tweaker.safetensors"])
    );

    let outside = call(json!({"workflow_path": scratch.path("outside/secret.json")})).await;
    assert_eq!(outside.is_error, Some(true));
    assert!(
        text(&outside).contains("outside the folders"),
        "{}",
        text(&outside)
    );

    let climbing = call(
        json!({"workflow_path": format!("{}/../outside/secret.json", scratch.allowed().display())}),
    )
    .await;
    assert_eq!(climbing.is_error, Some(true));
    assert!(text(&climbing).contains("outside the folders"));

    let broken =
        call(json!({"workflow_path": scratch.path("allowed/workflows/broken.json")})).await;
    assert_eq!(broken.is_error, Some(true));
    assert!(
        text(&broken).contains("not valid JSON"),
        "{}",
        text(&broken)
    );

    let missing =
        call(json!({"workflow_path": scratch.path("allowed/workflows/absent.json")})).await;
    assert!(
        text(&missing).contains("does not exist"),
        "{}",
        text(&missing)
    );

    let inline = call(json!({"workflow": {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}}},
                             "models": ["sd3.5_large.safetensors"]})).await;
    let report = inline.structured_content.expect("structured");
    assert_eq!(report["compatible"], false);

    let nothing = call(json!({})).await;
    assert_eq!(nothing.is_error, Some(true));
    assert!(text(&nothing).contains("No models to check."));
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn malformed_lines_are_answered_and_the_process_keeps_serving() {
    let scratch = Scratch::new();
    let mut server = RawStdio::spawn(&scratch);
    // Before initialize, and after it: neither kind of garbage kills the process.
    server.send_raw(b"{\"jsonrpc\": \"2.0\", \"id\": ").await;
    let reply = server.recv().await;
    assert_eq!(reply["error"]["code"], -32700);
    assert_eq!(reply["id"], Value::Null);

    // A stray notification before initialize is dropped, not fatal.
    server
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let init = server.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "comfyui-agent");

    server
        .send(&json!([{"jsonrpc": "2.0", "id": 5, "method": "ping"}]))
        .await;
    let reply = server.recv().await;
    assert_eq!(reply["error"]["code"], -32600);
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("batches"))
    );

    server.send_raw(b"\xff\xfe not utf-8").await;
    assert_eq!(server.recv().await["error"]["code"], -32700);

    server
        .send(&json!({"jsonrpc": "1.0", "id": 6, "method": "ping"}))
        .await;
    let reply = server.recv().await;
    assert_eq!(reply["error"]["code"], -32600);
    assert_eq!(reply["id"], 6);

    server.send_raw(b"").await;
    server
        .send(&json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}))
        .await;
    let reply = server.response(7).await;
    assert_eq!(reply["result"], json!({}));

    let status = server.close_and_wait().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn oversize_messages_are_refused_without_losing_the_session() {
    let scratch = Scratch::new();
    let mut server = RawStdio::spawn(&scratch);
    server.initialize().await;
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(5 * 1024 * 1024)
    );
    server.send_raw(huge.as_bytes()).await;
    let reply = server.recv().await;
    assert_eq!(reply["error"]["code"], -32600);
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit"))
    );
    server
        .send(&json!({"jsonrpc": "2.0", "id": 10, "method": "ping"}))
        .await;
    assert_eq!(server.response(10).await["result"], json!({}));
    assert!(server.close_and_wait().await.success());
}

#[tokio::test]
async fn logging_follows_set_level() {
    let scratch = Scratch::new();
    let mut server = RawStdio::spawn(&scratch);
    server.initialize().await;
    let call = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "identify_model_family", "arguments": {"model_name": 1}}})
    };
    // No level set: no log notifications, just the result.
    server.send(&call(1)).await;
    let first = server.recv().await;
    assert_eq!(
        first["id"], 1,
        "no notification before a level is set: {first}"
    );

    server
        .send(&json!({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "warning"}}))
        .await;
    assert_eq!(server.response(2).await["result"], json!({}));
    server.send(&call(3)).await;
    let log = server.recv().await;
    assert_eq!(log["method"], "notifications/message", "{log}");
    assert_eq!(log["params"]["level"], "warning");
    assert_eq!(server.recv().await["id"], 3);

    server
        .send(&json!({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel", "params": {"level": "error"}}))
        .await;
    server.response(4).await;
    server.send(&call(5)).await;
    assert_eq!(
        server.recv().await["id"],
        5,
        "warnings are below the error level"
    );
    assert!(server.close_and_wait().await.success());
}

#[tokio::test]
async fn every_protocol_version_is_served() {
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let scratch = Scratch::new();
        let mut server = RawStdio::spawn(&scratch);
        server
            .send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                          "params": {"protocolVersion": version, "capabilities": {},
                                     "clientInfo": {"name": "v", "version": "1"}}}))
            .await;
        let reply = server.response(0).await;
        assert_eq!(reply["result"]["protocolVersion"], version);
        server.close_and_wait().await;
    }
    // 2026-07-28: no handshake; every request carries its version and capabilities.
    let scratch = Scratch::new();
    let mut server = RawStdio::spawn(&scratch);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "1"}});
    server
        .send(&json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}))
        .await;
    let discover = server.response(1).await;
    let versions = discover["result"]["supportedVersions"]
        .as_array()
        .expect("versions");
    assert!(versions.contains(&json!("2024-11-05")) && versions.contains(&json!("2026-07-28")));
    server
        .send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"_meta": meta, "name": "identify_model_family",
                                 "arguments": {"model_name": "wan2.1_t2v.safetensors"}}}))
        .await;
    let call = server.response(2).await;
    assert_eq!(
        call["result"]["structuredContent"]["family"], "wan",
        "{call}"
    );
    server.close_and_wait().await;
}

#[tokio::test]
async fn in_flight_calls_finish_when_the_client_leaves_mid_call() {
    let scratch = Scratch::new();
    let mut server = RawStdio::spawn(&scratch);
    server.initialize().await;
    for id in 1..=20 {
        server
            .send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": "identify_model_family", "arguments": {"model_name": "sdxl.safetensors"}}}))
            .await;
    }
    // Leave before reading a single answer: every queued call still completes, then the
    // process exits cleanly.
    server.close_stdin();
    let mut answered = 0;
    while answered < 20 {
        if server.recv().await.get("result").is_some() {
            answered += 1;
        }
    }
    assert!(server.close_and_wait().await.success());
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_ends_a_stdio_session_cleanly() {
    let scratch = Scratch::new();
    let mut server = RawStdio::spawn(&scratch);
    server.initialize().await;
    let exit = crate::support::terminate_and_wait(&mut server.child).await;
    assert!(exit.success(), "{exit:?}");
}
