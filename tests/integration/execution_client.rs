//! The execution calls of `comfy::Client` against the fake ComfyUI: queuing (accepted,
//! rejected, partly accepted, a server error), deleting a queued prompt, interrupting the
//! running one (and only that one), upload and view round trips, and no POST ever re-sent.

use std::time::Duration;

use comfyui_agent::comfy::{Client, ComfyError, PortHint, SubmitError};
use comfyui_agent::config::{ComfyConfig, Secret, UpstreamAuth};
use serde_json::{Value, json};
use url::Url;

use crate::support::fake_comfy::{FakeComfy, Fault, RecordedRun, tiny_png};
use crate::support::fixture;

fn client_for(fake: &FakeComfy, config: &ComfyConfig) -> Client {
    let url = Url::parse(&fake.url()).expect("url");
    Client::new(url, config, PortHint::Configured { port: None }).expect("client")
}

fn workflow() -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}}
    })
}

/// The workflow a recorded `/prompt` case sent.
fn recorded_request(case: &str) -> Value {
    let text = std::fs::read_to_string(fixture("comfyui-0.3.64/errors.json")).expect("fixture");
    let cases: Value = serde_json::from_str(&text).expect("json");
    cases[case]["request"]["prompt"].clone()
}

/// Waits until `check` holds, or fails after 10 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn status_of(fake: &FakeComfy, prompt_id: &str) -> Option<String> {
    fake.history_entry(prompt_id)
        .and_then(|entry| entry["status"]["status_str"].as_str().map(String::from))
}

#[tokio::test]
async fn an_accepted_prompt_is_queued_once_and_runs() {
    let fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    let submitted = client
        .submit(&workflow(), "artist-1", "run-1")
        .await
        .expect("accepted");
    assert_eq!(submitted.prompt_id, "run-1");
    assert!(submitted.number >= 1.0);
    assert!(!submitted.partially_accepted());
    assert_eq!(submitted.warning(), None);
    until("the run to finish", || {
        status_of(&fake, "run-1").as_deref() == Some("success")
    })
    .await;
    let seen = fake.seen();
    let post = seen
        .iter()
        .find(|s| s.path == "/prompt")
        .expect("posted to /prompt");
    assert_eq!(post.method, axum::http::Method::POST);
    assert_eq!(fake.hits("/prompt"), 1);
}

#[tokio::test]
async fn a_rejected_prompt_reads_as_plain_language() {
    let fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    let error = client
        .submit(
            &recorded_request("missing_linked_input_on_output_node"),
            "artist-1",
            "run-x",
        )
        .await
        .expect_err("rejected");
    let SubmitError::Rejected(rejection) = &error else {
        panic!("a rejection: {error:?}");
    };
    assert_eq!(rejection.kind, "prompt_outputs_failed_validation");
    // Without the node list, the advice stays general.
    assert!(
        error
            .user_message()
            .contains("Node 2 (SaveImage): required input images is missing — connect another node's output to it or give it a value"),
        "{}",
        error.user_message()
    );
    // With it, the advice names the type to connect.
    client.nodes(false).await.expect("node list");
    let error = client
        .submit(
            &recorded_request("missing_linked_input_on_output_node"),
            "artist-1",
            "run-y",
        )
        .await
        .expect_err("rejected");
    let text = error.user_message();
    assert!(
        text.contains(
            "Node 2 (SaveImage): required input images is missing — connect an IMAGE output"
        ),
        "{text}"
    );
    assert!(text.contains("Fix these and queue it again"), "{text}");
    assert!(fake.history_entry("run-y").is_none(), "nothing ran");

    let unknown = client
        .submit(&recorded_request("unknown_class_type"), "artist-1", "run-z")
        .await
        .expect_err("rejected");
    assert!(
        unknown
            .user_message()
            .contains("install the custom node pack"),
        "{}",
        unknown.user_message()
    );
}

#[tokio::test]
async fn a_partly_accepted_prompt_runs_and_says_what_was_dropped() {
    let fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    let submitted = client
        .submit(
            &recorded_request("two_outputs_one_invalid_still_queued"),
            "artist-1",
            "partial-1",
        )
        .await
        .expect("queued");
    assert_eq!(submitted.prompt_id, "partial-1");
    assert!(submitted.partially_accepted());
    assert_eq!(submitted.dropped_outputs(), ["4"]);
    let warning = submitted.warning().expect("a warning");
    assert!(
        warning.contains("output node 4 won't run")
            && warning.contains("Node 3 (EmptyImage): input width is 0, below the minimum of 1"),
        "{warning}"
    );
    until("the run to finish", || {
        status_of(&fake, "partial-1").is_some()
    })
    .await;
}

#[tokio::test]
async fn a_server_error_on_prompt_is_explained_and_not_retried() {
    let fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    let error = client
        .submit(&json!([1, 2]), "artist-1", "bad-1")
        .await
        .expect_err("500");
    assert!(matches!(
        error,
        SubmitError::ServerTrouble { status: 500, .. }
    ));
    assert!(
        error.user_message().contains("API-format"),
        "{}",
        error.user_message()
    );

    fake.next(Fault::Status(503));
    let error = client
        .submit(&workflow(), "artist-1", "bad-2")
        .await
        .expect_err("503");
    assert!(
        matches!(
            error,
            SubmitError::Comfy(ComfyError::Status { status: 503, .. })
        ),
        "{error:?}"
    );
    assert_eq!(fake.hits("/prompt"), 2, "a failed POST is never re-sent");
}

#[tokio::test]
async fn a_queued_prompt_can_be_deleted_and_never_runs() {
    let fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    fake.next_run(RecordedRun::Long);
    client
        .submit(&workflow(), "artist-1", "long-1")
        .await
        .expect("queued");
    client
        .submit(&workflow(), "artist-1", "waiting-2")
        .await
        .expect("queued");
    client
        .submit(&workflow(), "artist-1", "waiting-3")
        .await
        .expect("queued");
    until("the long run to start", || {
        fake.running_prompt().as_deref() == Some("long-1")
    })
    .await;
    let queue = client.queue().await.expect("queue");
    let pending: Vec<&str> = queue.pending.iter().map(|i| i.prompt_id.as_str()).collect();
    assert_eq!(
        pending,
        ["waiting-2", "waiting-3"],
        "one at a time, in order"
    );
    assert_eq!(queue.running[0].prompt_id, "long-1");

    client
        .delete_queued(&["waiting-2".to_string()])
        .await
        .expect("deleted");
    let queue = client.queue().await.expect("queue");
    let pending: Vec<&str> = queue.pending.iter().map(|i| i.prompt_id.as_str()).collect();
    assert_eq!(pending, ["waiting-3"]);
    // Deleting the running prompt does nothing: that takes an interrupt.
    client
        .delete_queued(&["long-1".to_string()])
        .await
        .expect("a no-op");
    assert_eq!(fake.running_prompt().as_deref(), Some("long-1"));

    client.interrupt(Some("long-1")).await.expect("interrupted");
    until("the next prompt to finish", || {
        status_of(&fake, "waiting-3").as_deref() == Some("success")
    })
    .await;
    assert!(
        fake.history_entry("waiting-2").is_none(),
        "a deleted prompt never runs"
    );
    assert_eq!(
        fake.hits("/queue"),
        4,
        "two deletes, two reads, none repeated"
    );
}

#[tokio::test]
async fn only_the_running_prompt_is_interrupted() {
    let fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    let mut stream = comfyui_agent::comfy::events::EventStream::connect(
        &client,
        "artist-1",
        comfyui_agent::comfy::events::StreamConfig::default(),
    )
    .await
    .expect("connect")
    .for_prompt("long-1");
    fake.next_run(RecordedRun::Long);
    client
        .submit(&workflow(), "artist-1", "long-1")
        .await
        .expect("queued");
    until("the long run to start", || {
        fake.running_prompt().as_deref() == Some("long-1")
    })
    .await;

    // Another prompt's id leaves it running.
    client.interrupt(Some("someone-else")).await.expect("200");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.running_prompt().as_deref(), Some("long-1"));
    assert!(fake.history_entry("long-1").is_none());

    client.interrupt(Some("long-1")).await.expect("200");
    until("the interrupt to land", || {
        fake.history_entry("long-1").is_some()
    })
    .await;
    let entry = fake.history_entry("long-1").expect("history");
    assert_eq!(entry["status"]["status_str"], "error");
    assert_eq!(entry["status"]["completed"], false);
    let recorded = client
        .history_entry("long-1")
        .await
        .expect("history")
        .expect("an entry");
    assert!(recorded.interrupted());

    // The client saw the recorded sequence: interrupted, status, then the end.
    let mut kinds = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events in time")
            .expect("open")
            .expect("no error");
        let comfyui_agent::comfy::events::Item::Event(event) = item else {
            continue;
        };
        let done = matches!(&event, comfyui_agent::comfy::events::Event::Executing(e) if e.prompt_finished());
        kinds.push(event.kind().to_string());
        if done {
            break;
        }
    }
    let tail: Vec<&str> = kinds
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        ["execution_interrupted", "status", "executing"],
        "{kinds:?}"
    );
    assert!(kinds.contains(&"execution_start".to_string()), "{kinds:?}");

    // With nothing running, an interrupt is a harmless 200.
    client.interrupt(None).await.expect("200");
    assert_eq!(fake.hits("/interrupt"), 3, "each interrupt posted once");
}

#[tokio::test]
async fn an_upload_comes_back_through_view_and_renames_on_a_clash() {
    let fake = FakeComfy::start().await;
    let config = ComfyConfig {
        auth: Some(UpstreamAuth {
            header: "authorization".into(),
            value: Secret::new("Bearer up-token"),
        }),
        ..ComfyConfig::default()
    };
    let client = client_for(&fake, &config);
    let png = tiny_png(4, 4, [10, 20, 30]);
    let uploaded = client
        .upload_image(png.clone(), "probe.png", None, false)
        .await
        .expect("uploaded");
    assert_eq!(uploaded.name, "probe.png");
    assert_eq!(uploaded.subfolder, "");
    assert_eq!(uploaded.folder_type, "input");
    assert_eq!(fake.file("input", "", "probe.png"), Some(png.clone()));

    // The same bytes keep the name; other bytes get a new one unless overwriting.
    let again = client
        .upload_image(png.clone(), "probe.png", None, false)
        .await
        .expect("uploaded");
    assert_eq!(again.name, "probe.png");
    let other = tiny_png(2, 2, [1, 2, 3]);
    let renamed = client
        .upload_image(other.clone(), "probe.png", None, false)
        .await
        .expect("uploaded");
    assert_eq!(renamed.name, "probe (1).png");
    let nested = client
        .upload_image(other.clone(), "probe.png", Some("refs"), true)
        .await
        .expect("uploaded");
    assert_eq!(nested.load_image_value(), "refs/probe.png");

    let viewed = client
        .view("probe (1).png", None, Some("input"))
        .await
        .expect("viewed");
    assert_eq!(viewed.bytes, other);
    assert_eq!(viewed.content_type.as_deref(), Some("image/png"));

    let seen = fake.seen();
    let upload = seen
        .iter()
        .find(|s| s.path == "/upload/image")
        .expect("uploaded");
    assert_eq!(
        upload
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer up-token"),
        "the upstream auth rides on multipart requests too"
    );
    assert!(
        upload
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("multipart/form-data; boundary=")),
        "{:?}",
        upload.headers
    );
    assert_eq!(fake.hits("/upload/image"), 4);
}

#[tokio::test]
async fn a_run_s_saved_image_can_be_viewed() {
    let fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    client
        .submit(&workflow(), "artist-1", "saves-1")
        .await
        .expect("queued");
    until("the run to finish", || {
        status_of(&fake, "saves-1").is_some()
    })
    .await;
    let entry = client
        .history_entry("saves-1")
        .await
        .expect("history")
        .expect("entry");
    let output = entry
        .output_list()
        .into_iter()
        .find(|o| o.filename.as_deref().is_some_and(|f| f.ends_with(".png")))
        .expect("an image output");
    let viewed = client
        .view(
            output.filename.as_deref().expect("name"),
            output.subfolder.as_deref(),
            output.folder_type.as_deref(),
        )
        .await
        .expect("viewed");
    assert!(viewed.bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(viewed.content_type.as_deref(), Some("image/png"));
}

#[tokio::test]
async fn view_tells_a_missing_file_from_a_refused_name_and_from_comfyui_down() {
    let mut fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    let missing = client.view("nope.png", None, None).await.expect_err("404");
    assert!(
        matches!(&missing, ComfyError::FileNotFound { file, .. } if file == "output/nope.png"),
        "{missing:?}"
    );
    assert!(!missing.is_unreachable());
    assert!(
        missing
            .user_message()
            .contains("ComfyUI has no file output/nope.png"),
        "{}",
        missing.user_message()
    );

    let refused = client.view("../x.png", None, None).await.expect_err("400");
    assert!(
        matches!(refused, ComfyError::FileRefused { status: 400, .. }),
        "{refused:?}"
    );
    let outside = client
        .view("x.png", Some("../.."), Some("input"))
        .await
        .expect_err("403");
    assert!(
        matches!(outside, ComfyError::FileRefused { status: 403, .. }),
        "{outside:?}"
    );

    fake.stop().await;
    let down = client.view("nope.png", None, None).await.expect_err("down");
    assert!(down.is_unreachable(), "{down:?}");
}

#[tokio::test]
async fn a_too_large_upload_is_refused_with_advice() {
    let fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    fake.next(Fault::Status(413));
    let error = client
        .upload_image(vec![0; 1024], "big.png", None, false)
        .await
        .expect_err("413");
    assert!(
        matches!(error, ComfyError::Status { status: 413, .. }),
        "{error:?}"
    );
    assert!(
        error.user_message().contains("--max-upload-size"),
        "{}",
        error.user_message()
    );
    assert_eq!(fake.hits("/upload/image"), 1, "an upload is never re-sent");

    let huge = client
        .upload_image(
            vec![0; comfyui_agent::comfy::client::MAX_UPLOAD_BYTES + 1],
            "huge.png",
            None,
            false,
        )
        .await
        .expect_err("too large");
    assert!(matches!(huge, ComfyError::TooLarge { .. }), "{huge:?}");
    assert!(
        huge.user_message().contains("smaller or more compressed"),
        "{}",
        huge.user_message()
    );
    assert_eq!(fake.hits("/upload/image"), 1, "refused before sending");
}
