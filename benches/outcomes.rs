//! The outcome memory's figures against the targets:
//!
//! - `record_outcome` (one outcome committed with a synced write-ahead log, so durable before
//!   it returns): p99 under 2 ms;
//! - `get_learned_patterns` (every section, time-decayed) over 100,000 recorded outcomes:
//!   under 50 ms, for one session holding all of them and for the global scope.
//!
//! Also printed, without a target: the first read after opening (loading 100,000 rows into
//! the in-memory copy). Run with `cargo bench --bench outcomes`; it exits non-zero when a
//! figure misses its target.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use comfyui_agent::outcomes::stats::{Query, Scope, learned_patterns};
use comfyui_agent::outcomes::store::{Limits, OutcomeStore};
use comfyui_agent::outcomes::{Feedback, Outcome, workflow_hash};
use serde_json::json;

#[path = "support/figure.rs"]
mod figure;
use figure::{Figure, finish, measure};

const OUTCOMES: usize = 100_000;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A varied outcome: 12 model combinations, a handful of samplers and cfg values, spread
/// over 60 days.
fn outcome(i: usize, session: &str, now: f64) -> Outcome {
    let samplers = ["euler", "dpmpp_2m", "dpmpp_sde", "uni_pc", "ddim"];
    let key_params = json!({"cfg": 4 + i % 6, "steps": 20 + (i % 4) * 5, "sampler_name": samplers[i % 5],
                            "scheduler": if i.is_multiple_of(2) { "karras" } else { "normal" }, "denoise": 1.0,
                            "width": 1024, "height": 1024, "seed": i})
    .as_object()
    .cloned()
    .unwrap_or_default();
    Outcome {
        session: session.to_string(),
        ts: now - (i % 60) as f64 * 86_400.0 - (i % 977) as f64,
        workflow_summary: Some(format!("render {i}")),
        workflow_hash: workflow_hash(&key_params),
        key_params,
        model_combo: vec![
            format!("checkpoint_{}.safetensors", i % 12),
            "vae.safetensors".into(),
        ],
        render_time_s: Some(5.0 + (i % 30) as f64),
        quality_score: Some((i % 10) as f64 / 10.0),
        vision_notes: Vec::new(),
        user_feedback: [Feedback::Positive, Feedback::Neutral, Feedback::Negative][i % 3],
        goal_id: None,
    }
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let path = scratch.path().join("outcomes.sqlite3");
    let limits = Limits {
        per_session: 200_000,
        total: 500_000,
    };
    let now = now();
    let mut figures = Vec::new();

    // Durable single records on a fresh database.
    let store = OutcomeStore::at(path.clone(), limits);
    let mut i = 0;
    figures.push(Figure {
        name: "record_outcome (durable commit)".into(),
        target: Duration::from_millis(2),
        tail: true,
        samples: measure(1000, || {
            i += 1;
            store
                .record(&outcome(i, "bench-record", now))
                .expect("recorded");
        }),
    });
    drop(store);

    // 100,000 outcomes in one session, written in bulk.
    let store = OutcomeStore::at(path.clone(), limits);
    let batch: Vec<(Outcome, String)> = (0..OUTCOMES)
        .map(|i| (outcome(i, "studio", now), format!("bench-{i}")))
        .collect();
    store.import(&batch, "bench").expect("imported");
    drop(store);

    let store = OutcomeStore::at(path, limits);
    let scope = Scope {
        session: Some("studio"),
        model_filter: None,
        now,
    };
    let started = Instant::now();
    let count = store
        .read(|rows| learned_patterns(rows, scope, Query::All).outcomes_count)
        .expect("read");
    let first = started.elapsed();
    assert_eq!(count, OUTCOMES);
    let _ = writeln!(
        std::io::stdout().lock(),
        "first read after opening (loads {} rows): {first:.1?}",
        OUTCOMES + 1000
    );

    figures.push(Figure {
        name: "get_learned_patterns, 100,000 in the session".into(),
        target: Duration::from_millis(50),
        tail: false,
        samples: measure(50, || {
            store
                .read(|rows| learned_patterns(rows, scope, Query::All))
                .expect("read");
        }),
    });
    let global = Scope {
        session: None,
        model_filter: None,
        now,
    };
    figures.push(Figure {
        name: "get_learned_patterns, global (101,000)".into(),
        target: Duration::from_millis(50),
        tail: false,
        samples: measure(50, || {
            store
                .read(|rows| learned_patterns(rows, global, Query::All))
                .expect("read");
        }),
    });
    finish(&figures)
}
