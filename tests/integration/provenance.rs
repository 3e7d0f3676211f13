//! The image provenance tools end to end over stdio: metadata written into a ComfyUI-style PNG
//! without disturbing its chunks or pixels, read back, and reconstructed; WebP and JPEG read.

use serde_json::json;

use crate::support::fake_comfy::FakeComfy;
use crate::support::{Scratch, agent_for, failed, fixture, ok};

/// Copies the provenance fixtures into the allowed folder.
fn images(scratch: &Scratch) -> std::path::PathBuf {
    let dir = scratch.allowed().join("output");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for name in [
        "comfyui_output.png",
        "comfyui_output.webp",
        "comfyui_output.jpg",
    ] {
        std::fs::copy(fixture("provenance").join(name), dir.join(name)).expect("copy");
    }
    dir
}

/// The raw bytes of every chunk but ours, in order.
fn other_chunks(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes")) as usize;
        let raw = &bytes[at..at + 12 + len];
        if !raw[8..].starts_with(b"comfyui_agent\0") {
            out.push(raw.to_vec());
        }
        at += 12 + len;
    }
    out
}

/// Rewriting images outside the data folder asks first (tests/integration/consent.rs); these
/// tests are about the rewriting, so the operator has approved it.
const PRE_APPROVED: &[(&str, &str)] = &[("COMFYUI_AGENT_PRE_APPROVE", "write_image_metadata")];

#[tokio::test]
async fn metadata_round_trips_through_a_comfyui_png() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let dir = images(&scratch);
    let png = dir.join("comfyui_output.png");
    let original = std::fs::read(&png).unwrap();
    let mut agent = agent_for(&fake, &scratch, PRE_APPROVED).await;
    let path = png.display().to_string();

    let metadata = json!({
        "schema_version": 1,
        "timestamp": "2026-12-03T06:00:00Z",
        "intent": {"user_request": "un renard roux dans la neige, 雪の中の狐", "interpretation": "winter fox, soft light", "style_references": ["Hokusai"], "session_context": "first try"},
        "iterations": [{"iteration": 1, "type": "initial", "trigger": "request"}, {"iteration": 2, "type": "refinement", "trigger": "too dark", "feedback": "brighter"}],
        "accepted_iteration": 2,
        "session": {"session_name": "fox", "workflow_path": "workflows/fox.json", "model_combo": ["v1-5-pruned-emaonly.safetensors"]}
    });
    let written = agent
        .call_tool(
            1,
            "write_image_metadata",
            json!({"image_path": path, "metadata": metadata}),
        )
        .await;
    let report = ok(&written);
    assert_eq!(report["status"], "ok");
    assert_eq!(report["chunk_key"], "comfyui_agent");
    assert_eq!(report["replaced_previous"], false);
    assert_eq!(
        report["metadata_keys"],
        json!([
            "accepted_iteration",
            "intent",
            "iterations",
            "schema_version",
            "session",
            "timestamp"
        ])
    );
    let after = std::fs::read(&png).unwrap();
    assert_eq!(other_chunks(&original), other_chunks(&after));
    let pixels = |b: &[u8]| image::load_from_memory(b).unwrap().to_rgba8().into_raw();
    assert_eq!(pixels(&original), pixels(&after));

    let read = agent
        .call_tool(2, "read_image_metadata", json!({"image_path": path}))
        .await;
    let read = ok(&read);
    assert_eq!(read["has_creative_metadata"], true);
    assert_eq!(read["metadata"], metadata);
    assert_eq!(read["has_comfyui_native"], true);
    assert_eq!(read["native_chunk_keys"], json!(["prompt", "workflow"]));

    // A second write replaces ours rather than adding another.
    let again = agent
        .call_tool(
            3,
            "write_image_metadata",
            json!({"image_path": path, "metadata": {"schema_version": 1, "timestamp": "later"}}),
        )
        .await;
    assert_eq!(ok(&again)["replaced_previous"], true);
    let twice = std::fs::read(&png).unwrap();
    assert_eq!(
        twice
            .windows(14)
            .filter(|w| w == b"comfyui_agent\0")
            .count(),
        1
    );
    assert_eq!(other_chunks(&original), other_chunks(&twice));

    let context = agent
        .call_tool(
            4,
            "write_image_metadata",
            json!({"image_path": path, "metadata": metadata}),
        )
        .await;
    ok(&context);
    let context = agent
        .call_tool(5, "reconstruct_context", json!({"image_path": path}))
        .await;
    let context = ok(&context);
    assert_eq!(context["has_context"], true);
    assert_eq!(context["context"]["created_at"], "2026-12-03T06:00:00Z");
    assert_eq!(
        context["context"]["intent"]["what_artist_wanted"],
        "un renard roux dans la neige, 雪の中の狐"
    );
    assert_eq!(
        context["context"]["iteration_history"]["total_iterations"],
        2
    );
    assert_eq!(
        context["context"]["iteration_history"]["journey"][1]["type"],
        "refinement"
    );
    assert_eq!(context["context"]["session"]["name"], "fox");
    assert_eq!(context["comfyui"]["seed"], 123456);
    assert_eq!(context["comfyui"]["positive"], "a red fox in snow");
    let summary = context["summary"].as_str().unwrap();
    assert!(
        summary.contains("雪の中の狐") && summary.contains("seed 123456"),
        "{summary}"
    );
}

#[tokio::test]
async fn comfyui_outputs_without_our_record_still_explain_themselves() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let dir = images(&scratch);
    let mut agent = agent_for(&fake, &scratch, PRE_APPROVED).await;
    for (id, name, format) in [
        (1, "comfyui_output.png", "png"),
        (2, "comfyui_output.webp", "webp"),
        (3, "comfyui_output.jpg", "jpeg"),
    ] {
        let path = dir.join(name).display().to_string();
        let read = agent
            .call_tool(id, "read_image_metadata", json!({"image_path": path}))
            .await;
        let read = ok(&read);
        assert_eq!(read["format"], format);
        assert_eq!(read["has_creative_metadata"], false);
        assert_eq!(read["metadata"], serde_json::Value::Null);
        assert_eq!(read["has_comfyui_native"], true);
        let context = agent
            .call_tool(id + 10, "reconstruct_context", json!({"image_path": path}))
            .await;
        let context = ok(&context);
        assert_eq!(context["has_context"], false);
        assert_eq!(context["context"], serde_json::Value::Null);
        assert_eq!(
            context["comfyui"]["checkpoints"],
            json!(["v1-5-pruned-emaonly.safetensors"])
        );
        assert_eq!(context["comfyui"]["sampler_name"], "dpmpp_2m");
        assert_eq!(context["comfyui"]["width"], 64);
        assert_eq!(context["comfyui"]["negative"], "watermark");
        assert!(context["summary"].as_str().unwrap().contains("25 steps"));
    }
}

#[tokio::test]
async fn metadata_writes_refuse_what_they_must_and_leave_files_untouched() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let dir = images(&scratch);
    let mut agent = agent_for(&fake, &scratch, PRE_APPROVED).await;
    let good = json!({"schema_version": 1, "timestamp": "t"});

    let webp = dir.join("comfyui_output.webp").display().to_string();
    let refused = agent
        .call_tool(
            1,
            "write_image_metadata",
            json!({"image_path": webp, "metadata": good}),
        )
        .await;
    assert!(failed(&refused).contains("Only PNG"));

    let png = dir.join("comfyui_output.png");
    let path = png.display().to_string();
    for (id, metadata, expected) in [
        (2, json!({"timestamp": "t"}), "schema_version must be 1"),
        (3, json!({"schema_version": 1}), "timestamp is required"),
        (
            4,
            json!({"schema_version": 1, "timestamp": "t", "iterations": [{"type": "remix"}]}),
            "iterations[0].type",
        ),
    ] {
        let refused = agent
            .call_tool(
                id,
                "write_image_metadata",
                json!({"image_path": path, "metadata": metadata}),
            )
            .await;
        assert!(failed(&refused).contains(expected));
    }

    // Damaged PNGs: a bad checksum, a truncated file, a file that is not a PNG at all.
    let original = std::fs::read(&png).unwrap();
    let mut bad_crc = original.clone();
    let last = bad_crc.len() - 40;
    bad_crc[last] ^= 0x55;
    let damaged = [
        ("bad_crc.png", bad_crc),
        ("truncated.png", original[..original.len() / 2].to_vec()),
        ("not_really.png", b"this is text".to_vec()),
    ];
    for (id, (name, bytes)) in (5..).zip(damaged) {
        let file = dir.join(name);
        std::fs::write(&file, &bytes).unwrap();
        let refused = agent
            .call_tool(
                id,
                "write_image_metadata",
                json!({"image_path": file.display().to_string(), "metadata": good}),
            )
            .await;
        let text = failed(&refused);
        assert!(
            text.contains("damaged") || text.contains("not a PNG"),
            "{text}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{name} was changed");
    }

    // Outside the allowed folders, for writing and for reading.
    let outside = scratch.dir.path().join("outside/picture.png");
    std::fs::write(&outside, &original).unwrap();
    let outside = outside.display().to_string();
    let refused = agent
        .call_tool(
            10,
            "write_image_metadata",
            json!({"image_path": outside, "metadata": good}),
        )
        .await;
    assert!(failed(&refused).contains("outside"));
    let refused = agent
        .call_tool(11, "read_image_metadata", json!({"image_path": outside}))
        .await;
    assert!(failed(&refused).contains("outside"));
    assert_eq!(std::fs::read(&png).unwrap(), original);
}

#[tokio::test]
async fn the_record_fills_itself_from_the_sessions_intent_and_iterations() {
    let fake = FakeComfy::start().await;
    let scratch = Scratch::new();
    let dir = images(&scratch);
    let path = dir.join("comfyui_output.png").display().to_string();
    let mut agent = agent_for(&fake, &scratch, PRE_APPROVED).await;
    let session = json!("fox");
    ok(&agent
        .call_tool(1, "capture_intent", json!({"user_request": "a fox in snow", "interpretation": "winter fox, soft light", "style_references": ["Hokusai"], "session": session}))
        .await);
    ok(&agent
        .call_tool(
            2,
            "start_iteration_tracking",
            json!({"intent_summary": "fox", "session": session}),
        )
        .await);
    for (id, (iteration, kind, trigger)) in
        [(1, "initial", "request"), (2, "refinement", "too dark")]
            .into_iter()
            .enumerate()
    {
        ok(&agent
            .call_tool(
                3 + id as i64,
                "record_iteration_step",
                json!({"iteration": iteration, "type": kind, "trigger": trigger, "params": {"cfg": 6}, "session": session}),
            )
            .await);
    }
    ok(&agent
        .call_tool(
            5,
            "finalize_iterations",
            json!({"accepted_iteration": 2, "session": session}),
        )
        .await);

    let written = agent
        .call_tool(
            6,
            "write_image_metadata",
            json!({"image_path": path, "session": session,
                   "metadata": {"schema_version": 1, "timestamp": "2026-12-03T09:00:00Z"}}),
        )
        .await;
    assert_eq!(
        ok(&written)["filled_from_session"],
        json!(["intent", "iterations", "accepted_iteration"])
    );
    let read = agent
        .call_tool(7, "read_image_metadata", json!({"image_path": path}))
        .await;
    let record = &ok(&read)["metadata"];
    assert_eq!(record["intent"]["user_request"], "a fox in snow", "{read}");
    assert_eq!(record["iterations"][1]["trigger"], "too dark");
    assert_eq!(record["accepted_iteration"], 2);

    // What the caller gives wins; a session with no memory fills nothing.
    let written = agent
        .call_tool(
            8,
            "write_image_metadata",
            json!({"image_path": path, "session": session,
                   "metadata": {"schema_version": 1, "timestamp": "t", "intent": {"user_request": "mine"}}}),
        )
        .await;
    assert_eq!(
        ok(&written)["filled_from_session"],
        json!(["iterations", "accepted_iteration"])
    );
    let written = agent
        .call_tool(
            9,
            "write_image_metadata",
            json!({"image_path": path, "session": "empty", "metadata": {"schema_version": 1, "timestamp": "t"}}),
        )
        .await;
    assert!(ok(&written).get("filled_from_session").is_none());
}
