//! The command line: settings errors, the refusal to serve off loopback without a token,
//! and the tool listings.

use serde_json::Value;

use crate::support::{HttpServer, Scratch};

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

#[tokio::test]
async fn healthcheck_passes_against_a_running_server() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    for extra in [&[][..], &["--ready"][..]] {
        let mut args = vec!["healthcheck", "--bind", addr.as_str()];
        args.extend_from_slice(extra);
        let output = scratch.command(&args).output().await.expect("run");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.stdout.is_empty());
    }
    // The address can come from the same setting `serve` reads.
    let output = scratch
        .command(&["healthcheck"])
        .env("COMFYUI_AGENT_BIND", &addr)
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
}

#[tokio::test]
async fn healthcheck_fails_with_one_line_when_nothing_listens() {
    let scratch = Scratch::new();
    // A port that was free a moment ago and is closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let bind = format!("0.0.0.0:{port}");
    let output = scratch
        .command(&["healthcheck", "--bind", &bind])
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(1), "unhealthy is 1, never 2");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "the wildcard bind is probed on loopback: {stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(stderr.contains("COMFYUI_AGENT_BIND"), "{stderr}");
}

/// Every setting the code reads: each `const ENV_*: &str = "..."` in `src/`, and any other
/// `"COMFYUI_*"`, `"OTEL_*"` or `"RUST_LOG"` literal outside test modules.
fn settings_read_by_the_code() -> std::collections::BTreeSet<String> {
    fn is_setting(name: &str) -> bool {
        const THIRD_PARTY: [&str; 6] = [
            "RUST_LOG",
            "ANTHROPIC_API_KEY",
            "CIVITAI_API_KEY",
            "HF_TOKEN",
            "GITHUB_TOKEN",
            "GITHUB_API_TOKEN",
        ];
        (name.starts_with("COMFYUI_") || name.starts_with("OTEL_") || THIRD_PARTY.contains(&name))
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    }
    fn visit(dir: &std::path::Path, names: &mut std::collections::BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                visit(&path, names);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for literal in code.split('"').skip(1).step_by(2) {
                if is_setting(literal) {
                    names.insert(literal.to_string());
                }
            }
        }
    }
    let mut names = std::collections::BTreeSet::new();
    visit(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut names,
    );
    names
}

#[test]
fn env_example_lists_every_setting_and_nothing_else() {
    let code = settings_read_by_the_code();
    assert!(
        code.contains("COMFYUI_AGENT_TOKEN") && code.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "the source scan found {code:?}"
    );
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example"),
    )
    .expect(".env.example exists");
    let listed: std::collections::BTreeSet<String> = example
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim();
            let (name, _) = line.split_once('=')?;
            (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .then(|| name.to_string())
        })
        .collect();
    let missing: Vec<_> = code.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&code).collect();
    assert!(
        missing.is_empty(),
        ".env.example lacks settings the code reads: {missing:?}; add each with its default and meaning"
    );
    assert!(
        unknown.is_empty(),
        ".env.example lists settings the code never reads: {unknown:?}; remove them"
    );
}
