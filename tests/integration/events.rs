//! The WebSocket event stream against the fake ComfyUI replaying recorded runs: typed events in
//! order, progress, previews, run-time failures, a socket dropped mid-run, ComfyUI gone for good.

use std::time::Duration;

use comfyui_agent::comfy::events::{Event, EventStream, Item, StreamConfig};
use comfyui_agent::comfy::{Client, ComfyError, Operation, PortHint};
use comfyui_agent::config::{ComfyConfig, Secret, UpstreamAuth};
use serde_json::json;
use url::Url;

use crate::support::fake_comfy::{FakeComfy, RecordedRun};

fn client_for(fake: &FakeComfy, config: &ComfyConfig) -> Client {
    let url = Url::parse(&fake.url()).expect("url");
    Client::new(url, config, PortHint::Configured { port: None }).expect("client")
}

/// Short bounds so a test that expects giving up doesn't wait a minute.
fn quick() -> StreamConfig {
    StreamConfig {
        connect_timeout: Duration::from_secs(2),
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_attempts: 3,
        give_up_after: Duration::from_secs(5),
        ..StreamConfig::default()
    }
}

async fn queue(client: &Client, client_id: &str, prompt_id: &str) {
    let body = json!({
        "prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                   "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}}},
        "client_id": client_id,
        "prompt_id": prompt_id,
    });
    let answer = client
        .post_json(Operation::Prompt, "prompt", &body)
        .await
        .expect("queued");
    assert_eq!(answer.status, 200);
}

/// Reads items until the prompt finishes (`executing` with no node) or an error ends the run.
async fn until_finished(stream: &mut EventStream) -> Vec<Item> {
    let mut items = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("events in time")
            .expect("the stream is open")
            .expect("no stream error");
        let done = matches!(&item, Item::Event(Event::Executing(e)) if e.prompt_finished())
            || matches!(&item, Item::Event(Event::ExecutionError(_)));
        items.push(item);
        if done {
            return items;
        }
    }
}

fn kinds(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            Item::Event(event) => event.kind().to_string(),
            Item::Reconnected { .. } => "reconnected".to_string(),
        })
        .collect()
}

#[tokio::test]
async fn a_queued_prompt_s_events_arrive_typed_in_order_and_reach_history() {
    let fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    let mut stream = EventStream::connect(&client, "artist-1", quick())
        .await
        .expect("connect")
        .for_prompt("run-1");
    queue(&client, "artist-1", "run-1").await;
    let items = until_finished(&mut stream).await;
    let kinds = kinds(&items);
    let position = |kind: &str| kinds.iter().position(|k| k == kind);
    let start = position("execution_start").expect("start");
    let executed = position("executed").expect("executed");
    let success = position("execution_success").expect("success");
    assert!(start < executed && executed < success, "{kinds:?}");
    for item in &items {
        if let Item::Event(event) = item
            && let Some(id) = event.prompt_id()
        {
            assert_eq!(id, "run-1", "the recorded id was replaced and filtered");
        }
    }
    let entry = client
        .history_entry("run-1")
        .await
        .expect("history")
        .expect("the run is in history");
    assert!(entry.completed);
    assert!(!entry.output_list().is_empty());
    // The socket greeted with the client id as its session id, and asked for preview metadata.
    assert!(
        fake.client_messages()
            .iter()
            .any(|message| message["type"] == "feature_flags")
    );
}

#[tokio::test]
async fn progress_and_progress_state_are_reported() {
    let fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Progress);
    let client = client_for(&fake, &ComfyConfig::default());
    let mut stream = EventStream::connect(&client, "artist-2", quick())
        .await
        .expect("connect")
        .for_prompt("slow-1");
    queue(&client, "artist-2", "slow-1").await;
    let items = until_finished(&mut stream).await;
    let progress: Vec<f64> = items
        .iter()
        .filter_map(|item| match item {
            Item::Event(Event::Progress(p)) => Some(p.value / p.max),
            _ => None,
        })
        .collect();
    assert!(progress.len() > 10, "{} progress events", progress.len());
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows"
    );
    assert!(items.iter().any(|item| matches!(
        item,
        Item::Event(Event::ProgressState(state)) if !state.nodes.is_empty()
    )));
}

#[tokio::test]
async fn a_run_time_failure_arrives_as_an_execution_error() {
    let fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Failure);
    let client = client_for(&fake, &ComfyConfig::default());
    let mut stream = EventStream::connect(&client, "artist-3", quick())
        .await
        .expect("connect")
        .for_prompt("bad-1");
    queue(&client, "artist-3", "bad-1").await;
    let items = until_finished(&mut stream).await;
    let Some(Item::Event(Event::ExecutionError(error))) = items.last() else {
        panic!("ends in an execution error: {:?}", kinds(&items));
    };
    assert_eq!(error.prompt_id.as_deref(), Some("bad-1"));
    assert_eq!(error.node_type.as_deref(), Some("LoadImage"));
    assert!(
        error
            .exception_message
            .as_deref()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn binary_previews_name_their_prompt_and_node() {
    let fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Previews);
    let client = client_for(&fake, &ComfyConfig::default());
    let mut stream = EventStream::connect(&client, "artist-4", quick())
        .await
        .expect("connect")
        .for_prompt("pix-1");
    queue(&client, "artist-4", "pix-1").await;
    let items = until_finished(&mut stream).await;
    let previews: Vec<_> = items
        .iter()
        .filter_map(|item| match item {
            Item::Event(Event::Preview(preview)) => Some(preview),
            _ => None,
        })
        .collect();
    assert!(!previews.is_empty(), "{:?}", kinds(&items));
    for preview in previews {
        assert_eq!(preview.mime, "image/png");
        assert_eq!(preview.prompt_id.as_deref(), Some("pix-1"));
        assert_eq!(preview.node_id.as_deref(), Some("2"));
        assert!(preview.bytes.starts_with(&[0x89, b'P', b'N', b'G']));
    }
}

#[tokio::test]
async fn a_socket_dropped_mid_run_reconnects_and_history_has_the_result() {
    let fake = FakeComfy::start().await;
    fake.next_run(RecordedRun::Progress);
    fake.drop_socket_after(8);
    let client = client_for(&fake, &ComfyConfig::default());
    let mut stream = EventStream::connect(&client, "artist-5", quick())
        .await
        .expect("connect")
        .for_prompt("drop-1");
    queue(&client, "artist-5", "drop-1").await;
    let reconnected = loop {
        let item = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("no error");
        if let Item::Reconnected { attempts } = item {
            break attempts;
        }
    };
    assert!(reconnected >= 1);
    let sockets: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|seen| seen.path == "/ws")
        .collect();
    assert_eq!(sockets.len(), 2, "the same client id connected again");
    assert!(
        sockets
            .iter()
            .all(|s| s.query.as_deref() == Some("clientId=artist-5"))
    );
    // What was sent while the socket was down is lost; history has the outcome.
    let entry = loop {
        if let Some(entry) = client.history_entry("drop-1").await.expect("history") {
            break entry;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(entry.completed);
}

#[tokio::test]
async fn a_comfyui_that_stays_gone_ends_the_stream_with_a_clear_error() {
    let mut fake = FakeComfy::start().await;
    let client = client_for(&fake, &ComfyConfig::default());
    let mut stream = EventStream::connect(&client, "artist-6", quick())
        .await
        .expect("connect");
    // The greeting.
    let first = stream.next().await.expect("open").expect("greeting");
    assert!(matches!(first, Item::Event(Event::Status(_))));
    fake.stop().await;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("gives up in time")
        {
            Some(Err(error)) => break error,
            Some(Ok(_)) => {}
            None => panic!("ended without saying why"),
        }
    };
    assert!(
        matches!(error, ComfyError::ConnectionLost { .. }),
        "{error:?}"
    );
    let message = error.user_message();
    assert!(message.contains(&fake.url()), "{message}");
    assert!(stream.next().await.is_none(), "ends after the error");
}

#[tokio::test]
async fn the_socket_carries_upstream_auth_and_no_origin() {
    let fake = FakeComfy::start().await;
    let config = ComfyConfig {
        auth: Some(UpstreamAuth {
            header: "authorization".into(),
            value: Secret::new("Bearer ws-token"),
        }),
        ..ComfyConfig::default()
    };
    let client = client_for(&fake, &config);
    let mut stream = EventStream::connect(&client, "artist-7", quick())
        .await
        .expect("connect");
    stream.next().await.expect("open").expect("greeting");
    let socket = fake
        .seen()
        .into_iter()
        .find(|seen| seen.path == "/ws")
        .expect("a socket");
    assert_eq!(
        socket
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer ws-token")
    );
    assert!(socket.headers.get("origin").is_none());
}
