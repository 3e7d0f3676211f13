//! The command line: settings errors, the refusal to serve off loopback without a token,
//! and the tool listings.

use serde_json::Value;

use crate::support::Scratch;

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_one_clear_line() {
    let scratch = Scratch::new();
    let output = scratch
        .command(&["mcp"])
        .env("COMFYUI_URL", "ftp://studio-box")
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "stdout stays clean");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().last().expect("a line");
    assert!(
        line.contains("COMFYUI_URL is set to \"ftp://studio-box\""),
        "{stderr}"
    );
    assert!(line.contains("http://127.0.0.1:8188"), "{stderr}");
}

#[tokio::test]
async fn serving_beyond_loopback_needs_a_token() {
    let scratch = Scratch::new();
    let output = scratch
        .command(&["serve", "--bind", "0.0.0.0:0"])
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("COMFYUI_AGENT_BIND") && stderr.contains("COMFYUI_AGENT_TOKEN"),
        "{stderr}"
    );
}

#[tokio::test]
async fn dotenv_in_the_working_directory_is_read() {
    let scratch = Scratch::new();
    std::fs::write(scratch.dir.path().join(".env"), "COMFYUI_PORT=not-a-port\n").expect("write");
    let output = scratch.command(&["mcp"]).output().await.expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("COMFYUI_PORT"));
}

#[tokio::test]
async fn tools_json_lists_every_declaration() {
    let scratch = Scratch::new();
    let output = scratch
        .command(&["tools", "--json"])
        .output()
        .await
        .expect("run");
    assert!(output.status.success());
    let tools: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON array");
    let identify = tools
        .iter()
        .find(|t| t["name"] == "identify_model_family")
        .expect("identify_model_family");
    for key in [
        "title",
        "description",
        "inputSchema",
        "outputSchema",
        "annotations",
    ] {
        assert!(identify.get(key).is_some(), "{key} missing");
    }
    assert_eq!(identify["annotations"]["readOnlyHint"], true);

    // The whole tools/list surface is pinned: a change to a name, schema or annotation must
    // be deliberate (regenerate with `cargo run -- tools --json > tests/snapshots/tools.json`).
    let snapshot: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/tools.json"),
        )
        .expect("snapshot exists"),
    )
    .expect("snapshot is JSON");
    assert_eq!(
        tools, snapshot,
        "the tool surface changed; review and regenerate the snapshot"
    );
}

#[tokio::test]
async fn docs_tools_md_is_the_generated_reference() {
    let scratch = Scratch::new();
    let output = scratch
        .command(&["tools", "--markdown"])
        .output()
        .await
        .expect("run");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tools.md"),
    )
    .expect("docs/tools.md exists");
    assert_eq!(
        committed.trim_end(),
        generated.trim_end(),
        "docs/tools.md is stale: run `cargo run -- tools --markdown > docs/tools.md`"
    );
}
