//! The outcome memory through real clients: recording and learning, sessions apart and
//! together, import of the original project's files, a damaged database, and SIGKILL in the
//! middle of writes leaving every acknowledged record intact.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use crate::support::{HttpServer, RawStdio, Scratch, failed, ok};

fn database(scratch: &Scratch) -> std::path::PathBuf {
    scratch.dir.path().join("data/memory/outcomes.sqlite3")
}

fn outcome(summary: &str, combo: &str, cfg: f64, quality: f64, feedback: &str) -> Value {
    json!({"workflow_summary": summary, "model_combo": [combo],
           "key_params": {"cfg": cfg, "steps": 30, "sampler_name": "dpmpp_2m"},
           "render_time_s": 12.5, "quality_score": quality, "user_feedback": feedback})
}

#[tokio::test]
async fn outcomes_are_recorded_learned_from_and_kept_across_restarts() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let empty = agent.call_tool(1, "get_learned_patterns", json!({})).await;
    let empty = ok(&empty);
    assert_eq!(empty["outcomes_count"], 0);
    assert!(
        empty["message"]
            .as_str()
            .is_some_and(|m| m.contains("record_outcome"))
    );

    let first = agent
        .call_tool(
            2,
            "record_outcome",
            outcome(
                "foggy harbour poster",
                "sdxl_base.safetensors",
                6.0,
                0.9,
                "positive",
            ),
        )
        .await;
    let first = ok(&first).clone();
    assert_eq!(first["recorded"], true);
    assert_eq!(first["total_outcomes"], 1);
    assert_eq!(first["session"], "default");
    assert_eq!(first["workflow_hash"].as_str().map(str::len), Some(16));
    for (id, (combo, cfg, quality, feedback)) in [
        ("sdxl_base.safetensors", 7.0, 0.8, "positive"),
        ("sd15.safetensors", 12.0, 0.2, "negative"),
        ("sd15.safetensors", 11.0, 0.3, "negative"),
    ]
    .into_iter()
    .enumerate()
    {
        let recorded = agent
            .call_tool(
                3 + id as i64,
                "record_outcome",
                outcome("harbour", combo, cfg, quality, feedback),
            )
            .await;
        ok(&recorded);
    }
    // The same key_params in another order give the same hash; a given hash is ignored.
    let again = agent
        .call_tool(
            9,
            "record_outcome",
            json!({"key_params": {"sampler_name": "dpmpp_2m", "steps": 30, "cfg": 6.0}, "workflow_hash": "made-up"}),
        )
        .await;
    assert_eq!(ok(&again)["workflow_hash"], first["workflow_hash"]);
    assert_eq!(agent.close_and_wait().await.code(), Some(0));

    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    let patterns = agent.call_tool(10, "get_learned_patterns", json!({})).await;
    let patterns = ok(&patterns);
    assert_eq!(patterns["outcomes_count"], 5);
    assert_eq!(
        patterns["best_model_combos"][0]["model_combo"],
        "sdxl_base.safetensors"
    );
    let cfg = patterns["optimal_params"]["cfg"]["best_value"]
        .as_f64()
        .expect("cfg");
    assert!((6.0..=7.0).contains(&cfg), "{cfg}");
    assert_eq!(patterns["quality_trends"]["feedback"]["negative"], 2);
    assert!(
        patterns["speed_analysis"]["avg_render_time_s"]
            .as_f64()
            .is_some()
    );

    let only = agent
        .call_tool(
            11,
            "get_learned_patterns",
            json!({"query": "speed_analysis", "model_filter": "SD15"}),
        )
        .await;
    let only = ok(&only);
    assert_eq!(only["outcomes_count"], 2);
    assert!(only.get("best_model_combos").is_none());

    let recs = agent
        .call_tool(
            12,
            "get_recommendations",
            json!({"current_model": "sd15", "current_params": {"cfg": 12}, "goal": "a harbour at dawn"}),
        )
        .await;
    let recs = ok(&recs);
    let kinds: Vec<&str> = recs["recommendations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"model_combo") && kinds.contains(&"parameter"),
        "{recs}"
    );
    assert!(kinds.contains(&"warning"), "{recs}");
    assert!(
        recs["avoidance_patterns"].to_string().contains("sd15"),
        "{recs}"
    );
    assert_eq!(recs["based_on"], 5);

    let feedback = agent
        .call_tool(13, "detect_implicit_feedback", json!({"window": 10}))
        .await;
    let feedback = ok(&feedback);
    assert_eq!(feedback["outcomes_analyzed"], 5);
    assert!(feedback["summary"]["inferred_satisfaction"].is_string());

    // Another session has its own memory; global sees everything.
    let other = agent
        .call_tool(
            14,
            "record_outcome",
            json!({"session": "client-b", "quality_score": 0.5}),
        )
        .await;
    assert_eq!(ok(&other)["total_outcomes"], 1);
    let mine = agent
        .call_tool(15, "get_learned_patterns", json!({"session": "client-b"}))
        .await;
    assert_eq!(ok(&mine)["outcomes_count"], 1);
    let global = agent
        .call_tool(16, "get_learned_patterns", json!({"scope": "global"}))
        .await;
    let global = ok(&global);
    assert_eq!(global["outcomes_count"], 6);
    assert_eq!(global["scope"], "global");
}

#[tokio::test]
async fn bad_outcomes_are_refused_with_the_fix() {
    let scratch = Scratch::new();
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    for (id, arguments, expected) in [
        (1, json!({"quality_score": 1.5}), "quality_score"),
        (2, json!({"user_feedback": "meh"}), "user_feedback"),
        (3, json!({"render_time_s": "slow"}), "render_time_s"),
        (4, json!({"key_params": [1, 2]}), "key_params"),
        (5, json!({"mood": "happy"}), "mood"),
        (6, json!({"session": "../../etc/passwd"}), "session name"),
        (
            7,
            json!({"workflow_summary": "x".repeat(3000)}),
            "longer than",
        ),
        (
            8,
            json!({"key_params": {"blob": "x".repeat(20_000)}}),
            "key_params",
        ),
    ] {
        let text = failed(&agent.call_tool(id, "record_outcome", arguments).await);
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let text = failed(
        &agent
            .call_tool(9, "get_learned_patterns", json!({"query": "everything"}))
            .await,
    );
    assert!(text.contains("query"), "{text}");
    let text = failed(
        &agent
            .call_tool(10, "get_learned_patterns", json!({"scope": "world"}))
            .await,
    );
    assert!(text.contains("scope"), "{text}");
    let text = failed(
        &agent
            .call_tool(11, "detect_implicit_feedback", json!({"window": 0}))
            .await,
    );
    assert!(text.contains("window"), "{text}");
    // Nothing was recorded by the refusals.
    let patterns = agent.call_tool(12, "get_learned_patterns", json!({})).await;
    assert_eq!(ok(&patterns)["outcomes_count"], 0);
}

#[tokio::test]
async fn a_damaged_database_is_moved_aside_and_the_memory_starts_afresh() {
    let scratch = Scratch::new();
    let file = database(&scratch);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, vec![b'x'; 4096]).expect("write");
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    let recorded = agent
        .call_tool(1, "record_outcome", json!({"quality_score": 0.7}))
        .await;
    let recorded = ok(&recorded);
    let moved = recorded["set_aside"].as_str().expect("set aside");
    assert!(moved.starts_with("outcomes.sqlite3.corrupt-"), "{moved}");
    let kept = file.with_file_name(moved);
    assert_eq!(std::fs::read(kept).expect("kept"), vec![b'x'; 4096]);
    let patterns = agent.call_tool(2, "get_learned_patterns", json!({})).await;
    assert_eq!(ok(&patterns)["outcomes_count"], 1);
}

#[tokio::test]
async fn two_connections_record_at_once_and_nothing_is_lost() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[]).await;
    let url = server.url("/mcp");
    let writers = (0..2).map(|client| {
        let url = url.clone();
        tokio::spawn(async move {
            let peer =
                ().serve(StreamableHttpClientTransport::from_uri(url))
                    .await
                    .expect("initialize");
            let calls = (0..25).map(|i| {
                peer.call_tool(
                    CallToolRequestParams::new("record_outcome").with_arguments(
                        json!({"session": if client == 0 { "left" } else { "right" },
                               "workflow_summary": format!("{client}-{i}"), "quality_score": 0.5})
                        .as_object()
                        .cloned()
                        .expect("object"),
                    ),
                )
            });
            for result in futures::future::join_all(calls).await {
                assert_ne!(result.expect("call").is_error, Some(true));
            }
            peer.cancel().await.expect("close");
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.expect("writer");
    }
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    for (id, session) in [(1, "left"), (2, "right")] {
        let patterns = agent
            .call_tool(id, "get_learned_patterns", json!({"session": session}))
            .await;
        assert_eq!(ok(&patterns)["outcomes_count"], 25, "{session}");
    }
}

#[tokio::test]
async fn the_original_projects_files_are_imported_once() {
    let scratch = Scratch::new();
    let old = scratch.allowed().join("old-sessions");
    std::fs::create_dir_all(&old).expect("mkdir");
    let line = |ts: f64, quality: f64| {
        json!({"schema_version": 1, "timestamp": ts, "session": "portrait", "key_params": {"cfg": 7},
               "model_combo": ["sdxl.safetensors"], "quality_score": quality, "user_feedback": "positive",
               "workflow_hash": "abc"})
        .to_string()
    };
    std::fs::write(
        old.join("portrait_outcomes.jsonl"),
        format!(
            "{}\n{}\nnot json\n",
            line(1_700_000_000.0, 0.8),
            line(1_700_000_100.0, 0.6)
        ),
    )
    .expect("write");
    std::fs::write(
        old.join("portrait_outcomes.jsonl.1"),
        format!("{}\n", line(1_690_000_000.0, 0.4)),
    )
    .expect("write");
    std::fs::write(old.join("portrait_goals.json"), "{}").expect("write");
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;

    let path = old.display().to_string();
    let report = agent
        .call_tool(1, "import_outcomes", json!({"path": path}))
        .await;
    let report = ok(&report).clone();
    assert_eq!(report["imported"], 3, "{report}");
    assert_eq!(report["malformed"], 1);
    assert_eq!(report["files"].as_array().map(Vec::len), Some(2));
    let again = agent
        .call_tool(2, "import_outcomes", json!({"path": path}))
        .await;
    let again = ok(&again);
    assert_eq!(again["imported"], 0);
    assert_eq!(again["already_present"], 3);
    let patterns = agent
        .call_tool(3, "get_learned_patterns", json!({"session": "portrait"}))
        .await;
    assert_eq!(ok(&patterns)["outcomes_count"], 3);

    let outside = scratch.path("outside");
    let text = failed(
        &agent
            .call_tool(4, "import_outcomes", json!({"path": outside}))
            .await,
    );
    assert!(
        text.contains("outside") || text.contains("allowed"),
        "{text}"
    );
    let empty = scratch.allowed().join("workflows").display().to_string();
    let text = failed(
        &agent
            .call_tool(5, "import_outcomes", json!({"path": empty}))
            .await,
    );
    assert!(text.contains("_outcomes.jsonl"), "{text}");
}

/// Kills the server with SIGKILL while it records, a few times, then checks the database:
/// it opens, passes SQLite's integrity check, and holds every record that was acknowledged.
#[tokio::test]
async fn sigkill_during_writes_loses_no_acknowledged_outcome() {
    let scratch = Scratch::new();
    let mut acknowledged = Vec::new();
    for round in 0..4 {
        let mut agent = RawStdio::spawn(&scratch);
        agent.initialize().await;
        // 40 calls in flight; kill after 15 answers, while the rest are being written.
        for i in 0..40 {
            agent
                .send(&json!({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
                    "params": {"name": "record_outcome",
                               "arguments": {"workflow_summary": format!("r{round}-{i}"), "quality_score": 0.5}}}))
                .await;
        }
        let mut answered = 0;
        while answered < 15 {
            let message = agent.recv().await;
            let Some(id) = message.get("id").and_then(Value::as_i64) else {
                continue;
            };
            assert_ne!(message["result"]["isError"], true, "{message}");
            acknowledged.push(format!("r{round}-{}", id - 100));
            answered += 1;
        }
        agent.child.start_kill().expect("kill");
        agent.child.wait().await.expect("reaped");
    }
    let conn = rusqlite::Connection::open(database(&scratch)).expect("open");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    let mut statement = conn
        .prepare("SELECT workflow_summary FROM outcomes")
        .expect("prepare");
    let stored: std::collections::HashSet<String> = statement
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for summary in &acknowledged {
        assert!(
            stored.contains(summary),
            "{summary} was acknowledged but is missing"
        );
    }
    // And the server still works on that database.
    let mut agent = RawStdio::spawn(&scratch);
    agent.initialize().await;
    let patterns = agent.call_tool(1, "get_learned_patterns", json!({})).await;
    assert!(
        ok(&patterns)["outcomes_count"]
            .as_u64()
            .is_some_and(|n| n as usize >= acknowledged.len())
    );
}
