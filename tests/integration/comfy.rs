//! The live-instance tools through the real binary against the fake ComfyUI: happy paths, bad
//! input, ComfyUI down, the breaker opening and recovering, slow answers, retries, upstream
//! auth, base paths, and `/readyz`.

use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use crate::support::fake_comfy::{FakeComfy, Fault};
use crate::support::{HttpServer, RawStdio, Scratch, agent_for, failed, http_client, ok};

#[tokio::test]
async fn is_comfyui_running_reports_version_and_address() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent.call_tool(1, "is_comfyui_running", json!({})).await;
    let report = ok(&result);
    assert_eq!(report["running"], true);
    assert_eq!(report["url"], fake.url());
    assert_eq!(report["comfyui_version"], "0.3.64");
    assert_eq!(
        report["gpu"], "no GPU detected",
        "the recording is CPU-only"
    );
    assert!(
        report["python"]
            .as_str()
            .is_some_and(|p| p.starts_with("3.11"))
    );
    assert!(report.get("error").is_none());

    let bad = agent
        .call_tool(2, "is_comfyui_running", json!({"verbose": true}))
        .await;
    assert!(
        failed(&bad).contains("verbose"),
        "unknown arguments are named"
    );
}

#[tokio::test]
async fn is_comfyui_running_answers_when_comfyui_is_down() {
    let mut fake = FakeComfy::start().await;
    fake.stop().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent.call_tool(1, "is_comfyui_running", json!({})).await;
    let report = ok(&result);
    assert_eq!(report["running"], false);
    let error = report["error"].as_str().expect("a reason");
    assert!(error.contains("isn't answering"), "{error}");
    assert!(error.contains(&fake.url()), "{error}");
    assert!(error.contains("COMFYUI_URL"), "says what to do: {error}");
}

#[tokio::test]
async fn get_all_nodes_lists_filters_and_formats() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;

    let all = agent.call_tool(1, "get_all_nodes", json!({})).await;
    let all = ok(&all);
    assert_eq!(all["count"], 496, "every recorded node class");
    assert_eq!(all["nodes"]["KSampler"]["category"], "sampling");

    let sampling = agent
        .call_tool(
            2,
            "get_all_nodes",
            json!({"category_filter": "SAMPLING", "format": "names_only"}),
        )
        .await;
    let names = ok(&sampling)["nodes"].as_array().expect("names").clone();
    assert!(names.contains(&json!("KSampler")));
    assert!(names.iter().all(Value::is_string));
    assert!(names.len() < 496);

    let full = agent
        .call_tool(
            3,
            "get_all_nodes",
            json!({"name_filter": "ksampleradvanced", "format": "full"}),
        )
        .await;
    let node = &ok(&full)["nodes"]["KSamplerAdvanced"];
    assert_eq!(node["output_types"], json!(["LATENT"]));
    assert!(
        node["input_types"]
            .as_array()
            .is_some_and(|i| i.contains(&json!("noise_seed")))
    );

    let none = agent
        .call_tool(4, "get_all_nodes", json!({"name_filter": "zzzz-nothing"}))
        .await;
    let none = ok(&none);
    assert_eq!(none["count"], 0);
    assert!(none["hint"].as_str().is_some_and(|h| h.contains("shorter")));

    // The node list was fetched once and then served from the cache.
    assert_eq!(fake.hits("/object_info"), 1);
    let refreshed = agent
        .call_tool(
            5,
            "get_all_nodes",
            json!({"refresh": true, "format": "names_only"}),
        )
        .await;
    ok(&refreshed);
    assert_eq!(fake.hits("/object_info"), 2, "refresh asks ComfyUI again");

    let bad = agent
        .call_tool(
            6,
            "get_all_nodes",
            json!({"format": "everything", "limit": 3}),
        )
        .await;
    let message = failed(&bad);
    assert!(
        message.contains("format") && message.contains("limit"),
        "{message}"
    );
}

#[tokio::test]
async fn get_node_info_describes_suggests_and_rejects() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;

    let result = agent
        .call_tool(1, "get_node_info", json!({"node_type": "ksampler"}))
        .await;
    let node = ok(&result);
    assert_eq!(
        node["class_type"], "KSampler",
        "names are matched case-insensitively"
    );
    assert_eq!(node["output"], json!(["LATENT"]));
    assert_eq!(node["input_order"]["required"][0], "model");
    assert!(
        node["input"]["required"]["seed"].is_object()
            || node["input"]["required"]["seed"].is_array()
    );

    let unknown = agent
        .call_tool(2, "get_node_info", json!({"node_type": "KSamplr"}))
        .await;
    let message = failed(&unknown);
    assert!(message.contains("no node called \"KSamplr\""), "{message}");
    assert!(
        message.contains("KSampler"),
        "suggests the close name: {message}"
    );
    assert!(message.contains("class name"), "says what to do: {message}");

    let missing = agent.call_tool(3, "get_node_info", json!({})).await;
    assert!(failed(&missing).contains("node_type"));
    let wrong_type = agent
        .call_tool(4, "get_node_info", json!({"node_type": 7}))
        .await;
    assert!(failed(&wrong_type).contains("node_type"));
}

#[tokio::test]
async fn a_node_installed_since_the_list_was_cached_is_found() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    ok(&agent
        .call_tool(1, "get_all_nodes", json!({"format": "names_only"}))
        .await);
    // Not a new node in the fake, but an unknown name makes the tool ask ComfyUI directly
    // before giving up, so a pack installed after the list was cached is still found.
    let unknown = agent
        .call_tool(2, "get_node_info", json!({"node_type": "BrandNewNode"}))
        .await;
    failed(&unknown);
    assert_eq!(fake.hits("/object_info/BrandNewNode"), 1);
}

#[tokio::test]
async fn get_system_stats_passes_comfyui_report_through() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent.call_tool(1, "get_system_stats", json!({})).await;
    let stats = ok(&result);
    assert_eq!(stats["system"]["comfyui_version"], "0.3.64");
    assert_eq!(stats["devices"][0]["type"], "cpu");
    let bad = agent
        .call_tool(2, "get_system_stats", json!({"gpu": 0}))
        .await;
    assert!(failed(&bad).contains("gpu"));
}

#[tokio::test]
async fn get_queue_status_lists_running_and_pending_in_order() {
    let fake = FakeComfy::start().await;
    fake.set_running("run-a");
    fake.add_pending("next-b");
    fake.add_pending("then-c");
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let result = agent.call_tool(1, "get_queue_status", json!({})).await;
    let queue = ok(&result);
    assert_eq!(queue["running_count"], 1);
    assert_eq!(queue["pending_count"], 2);
    assert_eq!(queue["running"][0]["prompt_id"], "run-a");
    assert_eq!(queue["pending"][0]["prompt_id"], "next-b");
    assert_eq!(queue["pending"][1]["prompt_id"], "then-c");
}

#[tokio::test]
async fn get_history_reads_runs_places_in_queue_and_unknown_ids() {
    let fake = FakeComfy::start().await;
    fake.add_pending("waiting-1");
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;

    let recent = agent
        .call_tool(1, "get_history", json!({"max_items": 1}))
        .await;
    let recent = ok(&recent);
    assert_eq!(recent["count"], 1);
    assert_eq!(
        fake.seen().last().and_then(|s| s.query.clone()).as_deref(),
        Some("max_items=1")
    );

    let everything = agent.call_tool(2, "get_history", json!({})).await;
    let runs = ok(&everything)["runs"].as_array().expect("runs").clone();
    assert!(!runs.is_empty());
    let id = runs[0]["prompt_id"].as_str().expect("id").to_string();
    assert!(runs.iter().any(|run| {
        run["outputs"]
            .as_array()
            .is_some_and(|outputs| !outputs.is_empty())
    }));

    let one = agent
        .call_tool(3, "get_history", json!({"prompt_id": id}))
        .await;
    let one = ok(&one);
    assert_eq!(one["count"], 1);
    assert_eq!(one["runs"][0]["prompt_id"], id.as_str());
    assert_eq!(one["runs"][0]["completed"], true);

    let queued = agent
        .call_tool(4, "get_history", json!({"prompt_id": "waiting-1"}))
        .await;
    let queued = ok(&queued);
    assert_eq!(queued["runs"][0]["status"], "queued");
    assert_eq!(queued["runs"][0]["queue_position"], 1);

    let unknown = agent
        .call_tool(5, "get_history", json!({"prompt_id": "never-ran"}))
        .await;
    let message = failed(&unknown);
    assert!(
        message.contains("never-ran") && message.contains("restart"),
        "{message}"
    );

    for (id, bad) in [
        (6, json!({"max_items": 0})),
        (7, json!({"max_items": "five"})),
        (8, json!({"prompt_id": ""})),
    ] {
        let result = agent.call_tool(id, "get_history", bad.clone()).await;
        failed(&result);
    }
}

#[tokio::test]
async fn every_tool_gives_a_friendly_error_when_comfyui_is_down() {
    let mut fake = FakeComfy::start().await;
    fake.stop().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    let calls = [
        ("get_all_nodes", json!({})),
        ("get_node_info", json!({"node_type": "KSampler"})),
        ("get_system_stats", json!({})),
        ("get_queue_status", json!({})),
        ("get_history", json!({})),
    ];
    for (id, (tool, args)) in (1..).zip(calls) {
        let result = agent.call_tool(id, tool, args).await;
        let message = failed(&result);
        assert!(message.contains("isn't answering"), "{tool}: {message}");
        assert!(message.contains("Start ComfyUI"), "{tool}: {message}");
    }
    // The server is still fine.
    let info = agent
        .call_tool(
            9,
            "identify_model_family",
            json!({"model_name": "sdxl_base.safetensors"}),
        )
        .await;
    ok(&info);
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_recovers_when_comfyui_returns() {
    let mut fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[("COMFYUI_AGENT_BREAKER_FAILURES", "2")]).await;
    ok(&agent.call_tool(1, "get_queue_status", json!({})).await);

    fake.always(Fault::Status(500));
    for id in 2..4 {
        let message = failed(&agent.call_tool(id, "get_queue_status", json!({})).await);
        assert!(message.contains("500"), "{message}");
    }
    let hits_when_open = fake.hits("/queue");
    let message = failed(&agent.call_tool(4, "get_queue_status", json!({})).await);
    assert!(message.contains("wasn't tried"), "{message}");
    assert!(message.contains("next check is in"), "says when: {message}");
    assert_eq!(
        fake.hits("/queue"),
        hits_when_open,
        "an open breaker sends nothing"
    );

    // ComfyUI restarts; an explicit check doesn't wait for the probe schedule.
    fake.heal();
    fake.stop().await;
    fake.restart().await;
    let running = agent.call_tool(5, "is_comfyui_running", json!({})).await;
    assert_eq!(ok(&running)["running"], true);
    ok(&agent.call_tool(6, "get_queue_status", json!({})).await);
}

#[tokio::test]
async fn a_half_open_probe_that_gets_an_error_status_reopens_instead_of_wedging() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[("COMFYUI_AGENT_BREAKER_FAILURES", "1")]).await;
    fake.always(Fault::Status(502));
    failed(&agent.call_tool(1, "get_system_stats", json!({})).await);
    // The explicit check is the probe: it meets the 502 and re-opens the breaker.
    let down = agent.call_tool(2, "is_comfyui_running", json!({})).await;
    assert_eq!(ok(&down)["running"], false);
    // ComfyUI is healthy again: the next explicit check closes it, and calls flow.
    fake.heal();
    let up = agent.call_tool(3, "is_comfyui_running", json!({})).await;
    assert_eq!(ok(&up)["running"], true);
    ok(&agent.call_tool(4, "get_system_stats", json!({})).await);
}

#[tokio::test]
async fn a_slow_answer_times_out_with_advice_and_the_server_keeps_serving() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[("COMFYUI_AGENT_TIMEOUTS", "queue=0.3")]).await;
    fake.always(Fault::Delay(Duration::from_secs(3)));
    let message = failed(&agent.call_tool(1, "get_queue_status", json!({})).await);
    assert!(message.contains("took longer than 0.3 s"), "{message}");
    assert!(
        message.contains("COMFYUI_AGENT_TIMEOUTS=queue="),
        "{message}"
    );
    fake.heal();
    ok(&agent.call_tool(2, "get_queue_status", json!({})).await);
}

#[tokio::test]
async fn a_transient_gateway_error_on_a_read_is_retried() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[]).await;
    fake.next(Fault::Status(503));
    let result = agent.call_tool(1, "get_queue_status", json!({})).await;
    ok(&result);
    assert_eq!(fake.hits("/queue"), 2, "one failure, one retry");
}

#[tokio::test]
async fn upstream_auth_is_sent_and_origin_never_is() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(
        &fake,
        &scratch,
        &[
            ("COMFYUI_AUTH_TOKEN", "s3cret"),
            ("COMFYUI_AUTH_HEADER", "X-API-Key"),
        ],
    )
    .await;
    ok(&agent.call_tool(1, "get_system_stats", json!({})).await);
    ok(&agent.call_tool(2, "get_queue_status", json!({})).await);
    let seen = fake.seen();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(
            request
                .headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok()),
            Some("s3cret"),
            "{}",
            request.path
        );
        assert!(
            request.headers.get("origin").is_none(),
            "no Origin: {}",
            request.path
        );
        assert_eq!(request.method, "GET", "the read-only tools only read");
    }

    let default_header = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&default_header, &scratch, &[("COMFYUI_AUTH_TOKEN", "tok")]).await;
    ok(&agent.call_tool(1, "get_queue_status", json!({})).await);
    let seen = default_header.seen();
    assert_eq!(
        seen[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer tok")
    );
}

#[tokio::test]
async fn a_base_path_for_a_reverse_proxy_is_kept() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let url = format!("{}api/", fake.url());
    let mut agent = RawStdio::spawn_with(&scratch, &[("COMFYUI_URL", url.as_str())]);
    agent.initialize().await;
    ok(&agent.call_tool(1, "get_queue_status", json!({})).await);
    ok(&agent
        .call_tool(2, "get_node_info", json!({"node_type": "SaveImage"}))
        .await);
    let paths: Vec<String> = fake.seen().into_iter().map(|s| s.path).collect();
    assert!(paths.iter().all(|p| p.starts_with("/api/")), "{paths:?}");
}

#[tokio::test]
async fn readyz_reports_the_comfyui_connection_without_touching_it() {
    let mut fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let url = fake.url();
    let server = HttpServer::spawn(
        &scratch,
        &[],
        &[
            ("COMFYUI_URL", url.as_str()),
            ("COMFYUI_AGENT_BREAKER_FAILURES", "1"),
        ],
    )
    .await;
    let http = http_client();
    let ready: Value = http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["comfyui"]["url"], url.as_str());
    assert_eq!(ready["comfyui"]["breaker"], "closed");
    assert_eq!(ready["comfyui"]["discovered"], false);
    assert!(fake.seen().is_empty(), "readiness never calls ComfyUI");

    // After a failed call the breaker is open, and readiness says so (while staying ready:
    // the server still answers, with clear errors).
    fake.stop().await;
    let transport = StreamableHttpClientTransport::from_uri(server.url("/mcp"));
    let client = ().serve(transport).await.expect("initialize over HTTP");
    let result = client
        .call_tool(CallToolRequestParams::new("get_queue_status"))
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(true));
    let ready: Value = http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["comfyui"]["breaker"], "open");
    assert!(
        ready["comfyui"]["retry_in_s"]
            .as_f64()
            .is_some_and(|s| s > 0.0 && s <= 5.0)
    );
    assert_eq!(ready["comfyui"]["consecutive_failures"], 1);
}

#[tokio::test]
async fn the_comfyui_folder_is_found_in_the_home_folder_and_becomes_the_first_root() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    // HOME is the scratch folder: a stock install at ~/ComfyUI.
    let install = scratch.dir.path().join("ComfyUI");
    std::fs::create_dir_all(install.join("models/checkpoints")).expect("mkdir");
    std::fs::create_dir_all(install.join("user/default/workflows")).expect("mkdir");
    std::fs::write(install.join("main.py"), "# ComfyUI\n").expect("write");
    std::fs::copy(
        crate::support::fixture("workflows/txt2img_sd15.json"),
        install.join("user/default/workflows/portrait.json"),
    )
    .expect("copy");
    let mut agent = agent_for(&fake, &scratch, &[]).await;

    let report = agent.call_tool(1, "is_comfyui_running", json!({})).await;
    let report = ok(&report);
    let found = std::path::PathBuf::from(report["comfyui_dir"].as_str().expect("a folder"));
    assert_eq!(
        found.canonicalize().expect("exists"),
        install.canonicalize().expect("exists")
    );
    assert_eq!(report["comfyui_dir_source"], "a usual ComfyUI location");

    // Relative paths resolve against the found folder.
    let result = agent
        .call_tool(
            2,
            "check_model_compatibility",
            json!({"workflow_path": "user/default/workflows/portrait.json"}),
        )
        .await;
    assert_eq!(ok(&result)["family"], "sd15");
}

#[tokio::test]
async fn a_configured_comfyui_folder_is_reported_as_configured() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let folder = scratch.dir.path().join("somewhere/ComfyUI");
    std::fs::create_dir_all(folder.join("models")).expect("mkdir");
    std::fs::write(folder.join("main.py"), "").expect("write");
    let folder_text = folder.display().to_string();
    let mut agent = agent_for(&fake, &scratch, &[("COMFYUI_DIR", folder_text.as_str())]).await;
    let report = agent.call_tool(1, "is_comfyui_running", json!({})).await;
    assert_eq!(
        ok(&report)["comfyui_dir_source"],
        "the configured ComfyUI folder"
    );
}

/// The live tools that need ComfyUI, each with arguments that are valid.
fn live_calls() -> Vec<(&'static str, Value)> {
    vec![
        ("get_all_nodes", json!({"refresh": true})),
        ("get_node_info", json!({"node_type": "KSampler"})),
        ("get_system_stats", json!({})),
        ("get_queue_status", json!({})),
        ("get_history", json!({"max_items": 2})),
    ]
}

#[tokio::test]
async fn every_live_tool_times_out_with_advice_when_comfyui_is_slow() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let limits = "system_stats=0.3,object_info=0.3,node_info=0.3,queue=0.3,history=0.3";
    let mut agent = agent_for(
        &fake,
        &scratch,
        &[
            ("COMFYUI_AGENT_TIMEOUTS", limits),
            ("COMFYUI_AGENT_BREAKER_FAILURES", "100"),
        ],
    )
    .await;
    fake.always(Fault::Delay(Duration::from_secs(3)));
    for (id, (tool, args)) in (1..).zip(live_calls()) {
        let message = failed(&agent.call_tool(id, tool, args).await);
        assert!(
            message.contains("took longer than 0.3 s"),
            "{tool}: {message}"
        );
        assert!(
            message.contains("COMFYUI_AGENT_TIMEOUTS="),
            "{tool}: {message}"
        );
    }
    let report = agent.call_tool(50, "is_comfyui_running", json!({})).await;
    let report = ok(&report);
    assert_eq!(report["running"], false);
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("took longer")),
        "{report}"
    );
}

#[tokio::test]
async fn every_live_tool_fails_fast_while_the_breaker_is_open_and_works_once_it_closes() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let mut agent = agent_for(&fake, &scratch, &[("COMFYUI_AGENT_BREAKER_FAILURES", "1")]).await;
    fake.always(Fault::Status(500));
    let first = failed(&agent.call_tool(1, "get_system_stats", json!({})).await);
    assert!(first.contains("500"), "{first}");
    let hits = fake.seen().len();
    for (id, (tool, args)) in (2..).zip(live_calls()) {
        let message = failed(&agent.call_tool(id, tool, args).await);
        assert!(message.contains("wasn't tried"), "{tool}: {message}");
    }
    assert_eq!(
        fake.seen().len(),
        hits,
        "nothing reached ComfyUI while open"
    );

    fake.heal();
    let up = agent.call_tool(20, "is_comfyui_running", json!({})).await;
    assert_eq!(ok(&up)["running"], true);
    for (id, (tool, args)) in (21..).zip(live_calls()) {
        ok(&agent.call_tool(id, tool, args).await);
    }
}
