//! ComfyUI's live event stream (`/ws?clientId=…`): typed events read leniently from text and
//! binary frames, and [`EventStream`], which keeps one socket open across drops so a job
//! watcher sees progress, previews and completion without polling.
//!
//! ComfyUI routes a prompt's events to the socket whose `clientId` the prompt was posted with,
//! so the socket is opened first and the id is reused on every reconnect. Events sent while
//! the socket was down are lost; [`Item::Reconnected`] tells the consumer to look at
//! `/history` for what it missed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::ORIGIN;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tracing::Instrument as _;
use url::Url;

use super::budget::Jitter;
use super::client::Client;
use super::error::{ComfyError, PortHint};

/// What the socket is called in error messages.
const WHAT: &str = "the live progress connection";
/// The first message after connecting: asks ComfyUI for previews that name their prompt and
/// node (binary event 4) instead of anonymous ones (event 1). Older versions ignore it.
const FEATURE_FLAGS: &str = r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#;

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// One event from ComfyUI. Unknown event types (custom nodes send their own) arrive as
/// [`Event::Other`] / [`Event::OtherBinary`], never as errors.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Status(Status),
    ExecutionStart(ExecutionStart),
    ExecutionCached(ExecutionCached),
    Executing(Executing),
    Progress(Progress),
    ProgressState(ProgressState),
    Executed(Executed),
    ExecutionSuccess(ExecutionSuccess),
    ExecutionError(ExecutionError),
    ExecutionInterrupted(ExecutionInterrupted),
    /// A preview image (binary event 1, or 4 with metadata).
    Preview(Preview),
    /// Progress text from a node (binary event 3).
    NodeText(NodeText),
    /// A text event this module has no type for (`feature_flags`, `logs`, custom events).
    Other {
        kind: String,
        data: Value,
    },
    /// A binary event of a type this module doesn't know.
    OtherBinary {
        event_type: u32,
        len: usize,
    },
}

/// The queue length changed. Broadcast to every socket; the first one after connecting also
/// carries the socket's id.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(from = "StatusWire")]
pub struct Status {
    pub queue_remaining: Option<u64>,
    pub sid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ExecutionStart {
    #[serde(deserialize_with = "opt_id")]
    pub prompt_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[serde(deserialize_with = "opt_count")]
    pub timestamp: Option<u64>,
}

/// Nodes whose outputs were reused from an earlier run, so they won't run now.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ExecutionCached {
    #[serde(deserialize_with = "opt_id")]
    pub prompt_id: Option<String>,
    #[serde(deserialize_with = "ids")]
    pub nodes: Vec<String>,
}

/// A node started; `node: None` means the prompt is finished (after success, error or
/// interrupt alike), which is ComfyUI's completion signal.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Executing {
    #[serde(deserialize_with = "opt_id")]
    pub prompt_id: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub node: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub display_node: Option<String>,
}

impl Executing {
    pub fn prompt_finished(&self) -> bool {
        self.node.is_none()
    }
}

/// Step progress of one node (samplers and other nodes that report it).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Progress {
    #[serde(deserialize_with = "opt_id")]
    pub prompt_id: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub node: Option<String>,
    #[serde(deserialize_with = "number")]
    pub value: f64,
    #[serde(deserialize_with = "number")]
    pub max: f64,
}

/// The state of every node of a prompt that has started; re-sent on every change.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ProgressState {
    #[serde(deserialize_with = "opt_id")]
    pub prompt_id: Option<String>,
    #[serde(deserialize_with = "node_map")]
    pub nodes: BTreeMap<String, NodeProgress>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct NodeProgress {
    #[serde(deserialize_with = "number")]
    pub value: f64,
    #[serde(deserialize_with = "number")]
    pub max: f64,
    #[serde(deserialize_with = "node_state")]
    pub state: NodeState,
    #[serde(deserialize_with = "opt_id")]
    pub display_node_id: Option<String>,
    /// Set for nodes inside a subgraph: the node that contains them.
    #[serde(deserialize_with = "opt_id")]
    pub parent_node_id: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub real_node_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NodeState {
    Pending,
    Running,
    Finished,
    Error,
    /// A state newer ComfyUI versions may add; empty when the field was missing.
    Other(String),
    #[default]
    Unknown,
}

/// A node produced UI output (images, text, …); also replayed for cached output nodes.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Executed {
    #[serde(deserialize_with = "opt_id")]
    pub prompt_id: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub node: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub display_node: Option<String>,
    /// The node's UI dict as ComfyUI sent it (`{"images": [{filename, subfolder, type}]}`, …).
    pub output: Value,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ExecutionSuccess {
    #[serde(deserialize_with = "opt_id")]
    pub prompt_id: Option<String>,
    #[serde(deserialize_with = "opt_count")]
    pub timestamp: Option<u64>,
}

/// A node raised while running. No `execution_success` follows, only `executing` with no node.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ExecutionError {
    #[serde(deserialize_with = "opt_id")]
    pub prompt_id: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub node_id: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    pub node_type: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    pub exception_type: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    pub exception_message: Option<String>,
    #[serde(deserialize_with = "lines")]
    pub traceback: Vec<String>,
    /// Nodes that finished before the failure.
    #[serde(deserialize_with = "ids")]
    pub executed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ExecutionInterrupted {
    #[serde(deserialize_with = "opt_id")]
    pub prompt_id: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub node_id: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    pub node_type: Option<String>,
    #[serde(deserialize_with = "ids")]
    pub executed: Vec<String>,
}

/// A preview image. Previews without metadata (binary event 1) name no prompt or node; they
/// belong to whichever prompt is running on this socket.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Preview {
    /// `image/png`, `image/jpeg`, …; `application/octet-stream` when it can't be told.
    pub mime: String,
    pub bytes: Vec<u8>,
    pub prompt_id: Option<String>,
    pub node_id: Option<String>,
    pub display_node_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeText {
    pub node_id: String,
    pub text: String,
}

impl Event {
    /// The prompt this event belongs to, where it says.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            Self::Status(_) | Self::NodeText(_) | Self::OtherBinary { .. } => None,
            Self::ExecutionStart(e) => e.prompt_id.as_deref(),
            Self::ExecutionCached(e) => e.prompt_id.as_deref(),
            Self::Executing(e) => e.prompt_id.as_deref(),
            Self::Progress(e) => e.prompt_id.as_deref(),
            Self::ProgressState(e) => e.prompt_id.as_deref(),
            Self::Executed(e) => e.prompt_id.as_deref(),
            Self::ExecutionSuccess(e) => e.prompt_id.as_deref(),
            Self::ExecutionError(e) => e.prompt_id.as_deref(),
            Self::ExecutionInterrupted(e) => e.prompt_id.as_deref(),
            Self::Preview(e) => e.prompt_id.as_deref(),
            Self::Other { data, .. } => data.get("prompt_id").and_then(Value::as_str),
        }
    }

    /// ComfyUI's name for the event type (`"preview"`, `"node_text"` and `"binary"` for the
    /// binary frames), for logs.
    pub fn kind(&self) -> &str {
        match self {
            Self::Status(_) => "status",
            Self::ExecutionStart(_) => "execution_start",
            Self::ExecutionCached(_) => "execution_cached",
            Self::Executing(_) => "executing",
            Self::Progress(_) => "progress",
            Self::ProgressState(_) => "progress_state",
            Self::Executed(_) => "executed",
            Self::ExecutionSuccess(_) => "execution_success",
            Self::ExecutionError(_) => "execution_error",
            Self::ExecutionInterrupted(_) => "execution_interrupted",
            Self::Preview(_) => "preview",
            Self::NodeText(_) => "node_text",
            Self::Other { kind, .. } => kind,
            Self::OtherBinary { .. } => "binary",
        }
    }

    /// Reads one text frame: `{"type": …, "data": {…}}`.
    pub fn from_text(text: &str) -> Result<Self, FrameError> {
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            data: Value,
        }
        let Envelope { kind, data } =
            serde_json::from_str(text).map_err(|error| FrameError::Malformed {
                reason: error.to_string(),
            })?;
        // A missing or null `data` reads as an empty one: every field is optional.
        let data = if data.is_null() {
            Value::Object(serde_json::Map::new())
        } else {
            data
        };
        Ok(match kind.as_str() {
            "status" => Self::Status(typed(&kind, data)?),
            "execution_start" => Self::ExecutionStart(typed(&kind, data)?),
            "execution_cached" => Self::ExecutionCached(typed(&kind, data)?),
            "executing" => Self::Executing(typed(&kind, data)?),
            "progress" => Self::Progress(typed(&kind, data)?),
            "progress_state" => Self::ProgressState(typed(&kind, data)?),
            "executed" => Self::Executed(typed(&kind, data)?),
            "execution_success" => Self::ExecutionSuccess(typed(&kind, data)?),
            "execution_error" => Self::ExecutionError(typed(&kind, data)?),
            "execution_interrupted" => Self::ExecutionInterrupted(typed(&kind, data)?),
            _ => Self::Other { kind, data },
        })
    }

    /// Reads one binary frame: a big-endian u32 event type, then that event's payload.
    pub fn from_binary(frame: &[u8]) -> Result<Self, FrameError> {
        let truncated = |event_type| FrameError::Truncated {
            event_type,
            len: frame.len(),
        };
        let (event_type, payload) = split_u32(frame).ok_or_else(|| truncated(None))?;
        match event_type {
            1 => {
                let (format, image) = split_u32(payload).ok_or_else(|| truncated(Some(1)))?;
                if image.is_empty() {
                    return Err(truncated(Some(1)));
                }
                let mime = match format {
                    1 => "image/jpeg",
                    2 => "image/png",
                    _ => sniff(image),
                };
                Ok(Self::Preview(Preview {
                    mime: mime.to_string(),
                    bytes: image.to_vec(),
                    ..Preview::default()
                }))
            }
            4 => {
                let (meta, image) = split_prefixed(payload).ok_or_else(|| truncated(Some(4)))?;
                if image.is_empty() {
                    return Err(truncated(Some(4)));
                }
                let meta: PreviewMeta =
                    serde_json::from_slice(meta).map_err(|error| FrameError::BadEvent {
                        kind: "preview".into(),
                        reason: format!("its metadata isn't JSON ({error})"),
                    })?;
                let mime = meta
                    .image_type
                    .filter(|mime| mime.starts_with("image/"))
                    .unwrap_or_else(|| sniff(image).to_string());
                Ok(Self::Preview(Preview {
                    mime,
                    bytes: image.to_vec(),
                    prompt_id: meta.prompt_id,
                    node_id: meta.node_id,
                    display_node_id: meta.display_node_id,
                }))
            }
            3 => {
                let (node_id, text) = split_prefixed(payload).ok_or_else(|| truncated(Some(3)))?;
                Ok(Self::NodeText(NodeText {
                    node_id: String::from_utf8_lossy(node_id).into_owned(),
                    text: String::from_utf8_lossy(text).into_owned(),
                }))
            }
            other => Ok(Self::OtherBinary {
                event_type: other,
                len: frame.len(),
            }),
        }
    }
}

/// A frame that couldn't be read. The stream logs and skips these: one bad frame from a
/// custom node is no reason to stop following a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a binary frame of {len} bytes (event type {event_type:?}) ends before its payload")]
    Truncated { event_type: Option<u32>, len: usize },
    #[error("a text frame isn't a ComfyUI event: {reason}")]
    Malformed { reason: String },
    #[error("the {kind} event couldn't be read: {reason}")]
    BadEvent { kind: String, reason: String },
}

fn typed<T: DeserializeOwned>(kind: &str, data: Value) -> Result<T, FrameError> {
    // serde would read an array positionally into a struct; ComfyUI only ever sends objects.
    if !data.is_object() {
        return Err(FrameError::BadEvent {
            kind: kind.to_string(),
            reason: "its data isn't an object".into(),
        });
    }
    T::deserialize(data).map_err(|error| FrameError::BadEvent {
        kind: kind.to_string(),
        reason: error.to_string(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PreviewMeta {
    #[serde(deserialize_with = "opt_id")]
    prompt_id: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    node_id: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    display_node_id: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    image_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatusWire {
    status: Value,
    #[serde(deserialize_with = "opt_id")]
    sid: Option<String>,
}

impl From<StatusWire> for Status {
    fn from(wire: StatusWire) -> Self {
        Self {
            queue_remaining: wire
                .status
                .pointer("/exec_info/queue_remaining")
                .and_then(count_of),
            sid: wire.sid,
        }
    }
}

fn split_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

/// A big-endian u32 length, that many bytes, and the rest.
fn split_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = split_u32(bytes)?;
    let len = usize::try_from(len).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The image type from its first bytes, for previews whose header says something unexpected.
fn sniff(image: &[u8]) -> &'static str {
    if image.starts_with(b"\x89PNG") {
        "image/png"
    } else if image.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if image.len() >= 12 && image.starts_with(b"RIFF") && &image[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

// Lenient field readers: ComfyUI and custom nodes send ids as strings or numbers and counts
// as ints or floats; a field of an unexpected type reads as absent rather than failing the
// whole event.

fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn count_of(value: &Value) -> Option<u64> {
    if let Some(count) = value.as_u64() {
        return Some(count);
    }
    let float = number_of(value)?;
    // In range and whole: the cast is exact.
    (float.is_finite() && float >= 0.0 && float.fract() == 0.0 && float < u64::MAX as f64)
        .then_some(float as u64)
}

fn opt_id<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(id_of(&Value::deserialize(de)?))
}

fn opt_text<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(de)? {
        Value::String(text) => Some(text),
        _ => None,
    })
}

fn opt_count<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    Ok(count_of(&Value::deserialize(de)?))
}

fn number<'de, D: Deserializer<'de>>(de: D) -> Result<f64, D::Error> {
    Ok(number_of(&Value::deserialize(de)?).unwrap_or(0.0))
}

fn ids<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(de)? {
        Value::Array(items) => items.iter().filter_map(id_of).collect(),
        _ => Vec::new(),
    })
}

/// A traceback is a list of strings; a single string is kept as one line.
fn lines<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(de)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::String(text) => Some(text),
                _ => None,
            })
            .collect(),
        Value::String(text) => vec![text],
        _ => Vec::new(),
    })
}

fn node_state<'de, D: Deserializer<'de>>(de: D) -> Result<NodeState, D::Error> {
    Ok(match Value::deserialize(de)? {
        Value::String(state) => match state.as_str() {
            "pending" => NodeState::Pending,
            "running" => NodeState::Running,
            "finished" => NodeState::Finished,
            "error" => NodeState::Error,
            _ => NodeState::Other(state),
        },
        _ => NodeState::Unknown,
    })
}

/// Entries that aren't objects are skipped, so one odd node doesn't hide the others.
fn node_map<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, NodeProgress>, D::Error> {
    let Value::Object(entries) = Value::deserialize(de)? else {
        return Ok(BTreeMap::new());
    };
    Ok(entries
        .into_iter()
        .filter(|(_, entry)| entry.is_object())
        .filter_map(|(id, entry)| NodeProgress::deserialize(entry).ok().map(|node| (id, node)))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Filtering by prompt
// ---------------------------------------------------------------------------------------------

/// Keeps one prompt's events, plus `status` (queue changes concern every job). Previews and
/// node text without a prompt id are kept while that prompt is the one running on the socket.
/// Feed it every event in order: it follows which prompt is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptFilter {
    prompt_id: String,
    running: Option<String>,
}

impl PromptFilter {
    pub fn new(prompt_id: impl Into<String>) -> Self {
        Self {
            prompt_id: prompt_id.into(),
            running: None,
        }
    }

    pub fn prompt_id(&self) -> &str {
        &self.prompt_id
    }

    pub fn keep(&mut self, event: &Event) -> bool {
        if let Some(id) = event.prompt_id() {
            match event {
                Event::Executing(executing) if executing.prompt_finished() => {
                    if self.running.as_deref() == Some(id) {
                        self.running = None;
                    }
                }
                _ => {
                    if self.running.as_deref() != Some(id) {
                        self.running = Some(id.to_string());
                    }
                }
            }
            return id == self.prompt_id;
        }
        match event {
            Event::Status(_) => true,
            Event::Preview(_) | Event::NodeText(_) => {
                self.running.as_deref() == Some(self.prompt_id.as_str())
            }
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The stream
// ---------------------------------------------------------------------------------------------

/// How the stream connects and how hard it tries to get a dropped connection back.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// For one connection attempt: TCP, TLS and the WebSocket handshake together.
    pub connect_timeout: Duration,
    /// The wait before the first reconnect attempt; it doubles with each failed attempt, up to
    /// `max_backoff`, and is jittered so many watchers don't reconnect in step.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up after this many failed reconnect attempts in a row…
    pub max_attempts: u32,
    /// …or once the connection has been down this long, whichever comes first.
    pub give_up_after: Duration,
    /// After this long without a frame a ping is sent; a second silence as long counts as a
    /// dropped connection (a vanished peer otherwise leaves the socket hanging for good).
    pub keepalive: Duration,
    /// Ask for previews that name their prompt and node.
    pub preview_metadata: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            max_attempts: 10,
            give_up_after: Duration::from_secs(60),
            keepalive: Duration::from_secs(20),
            preview_metadata: true,
        }
    }
}

/// What [`EventStream::next`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Event(Event),
    /// The socket dropped and was re-opened with the same client id. Events sent in between
    /// are lost: check `/history` (and `/queue`) for the prompts being followed.
    Reconnected {
        attempts: u32,
    },
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The connection is down since `since`; survives a cancelled `next()`, so dropping that
/// future doesn't reset the reconnect bound.
#[derive(Debug)]
struct Outage {
    since: Instant,
    attempts: u32,
    /// Why the last attempt failed (or why the connection dropped, before any attempt).
    last: String,
}

/// One ComfyUI WebSocket, re-opened when it drops. `next()` is cancel-safe: dropping its
/// future loses no event.
pub struct EventStream {
    url: Url,
    /// The HTTP address, for messages.
    base: String,
    client_id: String,
    headers: HeaderMap,
    tls: Option<Arc<rustls::ClientConfig>>,
    hint: PortHint,
    config: StreamConfig,
    socket: Option<Socket>,
    outage: Option<Outage>,
    filter: Option<PromptFilter>,
    ping_sent: bool,
    finished: bool,
    jitter: Jitter,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("url", &self.url.as_str())
            .field("connected", &self.socket.is_some())
            .field("outage", &self.outage)
            .field("filter", &self.filter)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// How one frame read went.
enum Incoming {
    Event(Event),
    Nothing,
    Dropped(String),
}

impl EventStream {
    /// Opens the socket once (no retries: a caller about to queue a prompt wants to know now
    /// whether ComfyUI is there). The same `client_id` must go with the prompts posted.
    pub async fn connect(
        client: &Client,
        client_id: impl Into<String>,
        config: StreamConfig,
    ) -> Result<Self, ComfyError> {
        let client_id = client_id.into();
        let url = super::ws_url(client.base_url(), &client_id);
        let base = client.base_url().to_string();
        let tls = if url.scheme() == "wss" {
            Some(
                super::tls_config().map_err(|error| ComfyError::Unreachable {
                    url: base.clone(),
                    detail: format!("TLS could not be set up: {error}"),
                    hint: client.port_hint(),
                })?,
            )
        } else {
            None
        };
        let mut stream = Self {
            url,
            base,
            client_id,
            headers: client.headers().clone(),
            tls,
            hint: client.port_hint(),
            config,
            socket: None,
            outage: None,
            filter: None,
            ping_sent: false,
            finished: false,
            jitter: Jitter::default(),
        };
        stream.socket = Some(stream.open().await?);
        Ok(stream)
    }

    /// Keep only this prompt's events (and `status`, and [`Item::Reconnected`]).
    pub fn for_prompt(mut self, prompt_id: impl Into<String>) -> Self {
        self.filter = Some(PromptFilter::new(prompt_id));
        self
    }

    /// Switch the prompt filter, or turn it off with `None`.
    pub fn set_prompt(&mut self, prompt_id: Option<String>) {
        self.filter = prompt_id.map(PromptFilter::new);
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn is_connected(&self) -> bool {
        self.socket.is_some()
    }

    /// The next event, or [`Item::Reconnected`] after a drop. After the reconnect bound is
    /// spent it yields one error, then `None`.
    pub async fn next(&mut self) -> Option<Result<Item, ComfyError>> {
        loop {
            if self.finished {
                return None;
            }
            if self.socket.is_none() {
                return Some(match self.reconnect().await {
                    Ok(attempts) => Ok(Item::Reconnected { attempts }),
                    Err(error) => {
                        self.finished = true;
                        Err(error)
                    }
                });
            }
            match self.receive().await {
                Incoming::Nothing => {}
                Incoming::Dropped(reason) => {
                    tracing::info!(url = %self.base, %reason, "the ComfyUI event connection dropped; reconnecting");
                    self.socket = None;
                    self.outage = Some(Outage {
                        since: Instant::now(),
                        attempts: 0,
                        last: reason,
                    });
                }
                Incoming::Event(event) => {
                    if let Some(filter) = self.filter.as_mut()
                        && !filter.keep(&event)
                    {
                        continue;
                    }
                    return Some(Ok(Item::Event(event)));
                }
            }
        }
    }

    /// Closes the socket politely; the stream yields nothing more.
    pub async fn close(&mut self) {
        self.finished = true;
        if let Some(mut socket) = self.socket.take() {
            let _ = socket.close(None::<CloseFrame>).await;
        }
    }

    async fn receive(&mut self) -> Incoming {
        let Some(socket) = self.socket.as_mut() else {
            return Incoming::Dropped("not connected".into());
        };
        let keepalive = self.config.keepalive;
        let message = match tokio::time::timeout(keepalive, socket.next()).await {
            Err(_) if self.ping_sent => {
                return Incoming::Dropped(format!(
                    "no answer to a ping within {}",
                    seconds(keepalive)
                ));
            }
            Err(_) => {
                self.ping_sent = true;
                return match socket.send(Message::Ping(Bytes::new())).await {
                    Ok(()) => Incoming::Nothing,
                    Err(error) => Incoming::Dropped(error.to_string()),
                };
            }
            Ok(None) => return Incoming::Dropped("the connection closed".into()),
            Ok(Some(Err(error))) => return Incoming::Dropped(error.to_string()),
            Ok(Some(Ok(message))) => message,
        };
        self.ping_sent = false;
        let parsed = match message {
            Message::Text(text) => Event::from_text(&text),
            Message::Binary(bytes) => Event::from_binary(&bytes),
            // tungstenite queues the pong itself and sends it with the next read.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Incoming::Nothing,
            Message::Close(frame) => {
                let reason = frame
                    .map(|frame| format!(" ({} {})", u16::from(frame.code), frame.reason))
                    .unwrap_or_default();
                return Incoming::Dropped(format!("ComfyUI closed it{reason}"));
            }
        };
        match parsed {
            Ok(event) => Incoming::Event(event),
            Err(error) => {
                tracing::debug!(%error, "skipping an unreadable ComfyUI event");
                Incoming::Nothing
            }
        }
    }

    /// Re-opens the socket within the bound; the number of attempts it took.
    async fn reconnect(&mut self) -> Result<u32, ComfyError> {
        loop {
            let outage = self.outage.get_or_insert_with(|| Outage {
                since: Instant::now(),
                attempts: 0,
                last: "the connection dropped".into(),
            });
            let waited = outage.since.elapsed();
            if outage.attempts >= self.config.max_attempts || waited >= self.config.give_up_after {
                return Err(ComfyError::ConnectionLost {
                    url: self.base.clone(),
                    attempts: outage.attempts,
                    waited,
                    detail: outage.last.clone(),
                    hint: self.hint,
                });
            }
            outage.attempts += 1;
            let attempt = outage.attempts;
            let delay = reconnect_delay(
                attempt,
                self.config.first_backoff,
                self.config.max_backoff,
                self.entropy(),
            )
            .min(self.config.give_up_after.saturating_sub(waited));
            tokio::time::sleep(delay).await;
            match self.open().await {
                Ok(socket) => {
                    tracing::info!(url = %self.base, attempt, "the ComfyUI event connection is back");
                    self.socket = Some(socket);
                    self.outage = None;
                    self.ping_sent = false;
                    return Ok(attempt);
                }
                Err(error) if worth_retrying(&error) => {
                    tracing::debug!(url = %self.base, attempt, %error, "reconnect attempt failed");
                    if let Some(outage) = self.outage.as_mut() {
                        outage.last = short_reason(&error);
                    }
                }
                // Credentials or the address are wrong; waiting won't change that.
                Err(error) => return Err(error),
            }
        }
    }

    fn entropy(&mut self) -> u64 {
        self.jitter.draw()
    }

    /// One connection attempt, within the connect timeout.
    async fn open(&self) -> Result<Socket, ComfyError> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|error| self.describe(error))?;
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        // ComfyUI refuses requests whose Origin doesn't match its host.
        headers.remove(ORIGIN);
        let connector = Some(match &self.tls {
            Some(tls) => Connector::Rustls(Arc::clone(tls)),
            None => Connector::Plain,
        });
        let attempt = async {
            let (mut socket, _) =
                tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
                    .await?;
            if self.config.preview_metadata {
                socket.send(Message::text(FEATURE_FLAGS)).await?;
            }
            Ok::<_, tungstenite::Error>(socket)
        };
        let span = self.connect_span();
        let outcome = tokio::time::timeout(self.config.connect_timeout, attempt)
            .instrument(span.clone())
            .await;
        if !span.is_disabled() {
            use crate::telemetry::names::{ERROR_TYPE, OTEL_STATUS_CODE};
            let failed = match &outcome {
                Ok(Ok(_)) => None,
                Ok(Err(tungstenite::Error::Http(response))) => {
                    Some(response.status().as_u16().to_string())
                }
                Ok(Err(_)) => Some("connect".to_string()),
                Err(_) => Some("timeout".to_string()),
            };
            if let Some(kind) = failed {
                span.record(ERROR_TYPE, kind.as_str());
                span.record(OTEL_STATUS_CODE, "ERROR");
            }
        }
        match outcome {
            Ok(Ok(socket)) => Ok(socket),
            Ok(Err(error)) => Err(self.describe(error)),
            Err(_) => Err(ComfyError::Unreachable {
                url: self.base.clone(),
                detail: format!("no answer within {}", seconds(self.config.connect_timeout)),
                hint: self.hint,
            }),
        }
    }

    /// The client span for opening the socket.
    fn connect_span(&self) -> tracing::Span {
        use crate::telemetry::names::{
            ERROR_TYPE, OTEL_KIND, OTEL_STATUS_CODE, SERVER_ADDRESS, SERVER_PORT,
            SPAN_COMFY_WS_CONNECT, URL_FULL,
        };
        use tracing::field::Empty;
        let span = tracing::info_span!(
            SPAN_COMFY_WS_CONNECT,
            { OTEL_KIND } = "client",
            { URL_FULL } = Empty,
            { SERVER_ADDRESS } = self.url.host_str().unwrap_or_default(),
            { SERVER_PORT } = self.url.port_or_known_default().unwrap_or_default(),
            { ERROR_TYPE } = Empty,
            { OTEL_STATUS_CODE } = Empty,
        );
        // Credentials in the address stay out of traces.
        if self.url.username().is_empty() && self.url.password().is_none() {
            span.record(URL_FULL, self.url.as_str());
        }
        span
    }

    fn describe(&self, error: tungstenite::Error) -> ComfyError {
        let url = self.base.clone();
        match error {
            tungstenite::Error::Http(response) => ComfyError::Status {
                url,
                what: WHAT,
                status: response.status().as_u16(),
                body: response
                    .body()
                    .as_deref()
                    .map(|body| String::from_utf8_lossy(body).into_owned())
                    .unwrap_or_default(),
            },
            tungstenite::Error::Io(error) => ComfyError::Unreachable {
                url,
                detail: io_reason(&error),
                hint: self.hint,
            },
            tungstenite::Error::Tls(error) => ComfyError::Unreachable {
                url,
                detail: format!("the secure connection failed: {error}"),
                hint: self.hint,
            },
            tungstenite::Error::Url(error) => ComfyError::Unreachable {
                url,
                detail: format!("the address can't be used for a WebSocket: {error}"),
                hint: self.hint,
            },
            other => ComfyError::BadAnswer {
                url,
                what: WHAT,
                reason: format!("it didn't open a WebSocket ({other})"),
            },
        }
    }
}

/// Whether a failed reconnect attempt is worth repeating: the server is down or restarting
/// (a proxy in front answers 502–504 meanwhile), as opposed to refusing us.
fn worth_retrying(error: &ComfyError) -> bool {
    match error {
        ComfyError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
        other => other.is_unreachable() || matches!(other, ComfyError::Timeout { .. }),
    }
}

fn short_reason(error: &ComfyError) -> String {
    match error {
        ComfyError::Unreachable { detail, .. } => detail.clone(),
        ComfyError::Status { status, .. } => format!("it answered {status}"),
        other => other.to_string(),
    }
}

/// "connection refused" rather than "Connection refused (os error 111)".
fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).trim();
    if text.is_empty() {
        "no connection".into()
    } else {
        text.to_lowercase()
    }
}

fn seconds(duration: Duration) -> String {
    format!("{} s", (duration.as_secs_f64() * 10.0).round() / 10.0)
}

/// Exponential backoff with "equal jitter": half the step is fixed, half random, so retries
/// spread out but never come sooner than half the nominal wait.
fn reconnect_delay(attempt: u32, first: Duration, max: Duration, entropy: u64) -> Duration {
    let step = first
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(max);
    let half = step / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_micros(entropy % spread)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use clap::Parser;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    use tokio_tungstenite::tungstenite::http::HeaderMap as HttpHeaders;

    use super::*;
    use crate::cli::Cli;
    use crate::config::{Config, Env};

    const TRANSCRIPT: &str =
        include_str!("../../tests/fixtures/comfyui-0.3.64/ws-transcript.jsonl");
    const RUN_A: &str = "511413d5-0469-45fc-9a9d-5fd7338c99f8";
    const RUN_B: &str = "08c2b4c5-7041-49b4-8b54-4ff4fb48575e";
    const TOKEN: &str = "s3cret-token";

    fn records() -> Vec<Value> {
        TRANSCRIPT
            .lines()
            .map(|line| serde_json::from_str(line).expect("a transcript line is JSON"))
            .collect()
    }

    /// The recorded text frames the client received (not the observer), in order.
    fn client_texts() -> Vec<Value> {
        records()
            .into_iter()
            .filter(|r| r["kind"] == "text" && r["who"] == "client")
            .map(|r| r["msg"].clone())
            .collect()
    }

    fn texts_of_prompt(prompt_id: &str) -> Vec<String> {
        client_texts()
            .iter()
            .filter(|msg| msg["data"]["prompt_id"] == prompt_id)
            .map(|msg| msg.to_string())
            .collect()
    }

    fn png(len: usize) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.resize(len.max(8), 0);
        bytes
    }

    /// Rebuilds a binary frame from its recorded description (the recording keeps the header
    /// fields and the image's magic, not the bytes).
    fn frame_from_record(record: &Value) -> Vec<u8> {
        let event = u32::try_from(record["event"].as_u64().expect("event")).expect("u32");
        let len = usize::try_from(record["len"].as_u64().expect("len")).expect("usize");
        let mut frame = event.to_be_bytes().to_vec();
        match event {
            1 => {
                let format =
                    u32::try_from(record["image_format"].as_u64().expect("format")).expect("u32");
                frame.extend(format.to_be_bytes());
            }
            4 => {
                let meta = serde_json::to_vec(&record["metadata"]).expect("metadata");
                frame.extend(u32::try_from(meta.len()).expect("u32").to_be_bytes());
                frame.extend(meta);
            }
            other => panic!("unexpected recorded binary event {other}"),
        }
        let image = len.checked_sub(frame.len()).expect("room for the image");
        frame.extend(png(image));
        frame
    }

    #[test]
    fn every_recorded_text_event_parses_to_its_type() {
        let mut seen = BTreeMap::<String, usize>::new();
        for msg in records()
            .into_iter()
            .filter(|r| r["kind"] == "text")
            .map(|r| r["msg"].clone())
        {
            let kind = msg["type"].as_str().expect("type").to_string();
            let event = Event::from_text(&msg.to_string())
                .unwrap_or_else(|error| panic!("{kind} failed to parse: {error}"));
            assert_eq!(event.kind(), kind);
            let typed = !matches!(event, Event::Other { .. });
            assert_eq!(typed, kind != "feature_flags", "{kind}");
            assert_eq!(
                event.prompt_id(),
                msg["data"]["prompt_id"].as_str(),
                "{kind}"
            );
            *seen.entry(kind).or_default() += 1;
        }
        for kind in [
            "status",
            "execution_start",
            "execution_cached",
            "executing",
            "progress",
            "progress_state",
            "executed",
            "execution_success",
            "execution_error",
            "execution_interrupted",
        ] {
            assert!(seen.contains_key(kind), "the recording has no {kind}");
        }
    }

    #[test]
    fn recorded_events_keep_their_fields() {
        let events: Vec<Event> = client_texts()
            .iter()
            .map(|msg| Event::from_text(&msg.to_string()).expect("parses"))
            .collect();
        let Some(Event::Status(first)) = events.first() else {
            panic!("the first event is status");
        };
        assert_eq!(first.queue_remaining, Some(0));
        assert_eq!(first.sid.as_deref(), Some("mcp-probe-50621057"));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Status(Status {
                queue_remaining: Some(1),
                sid: None
            })
        )));
        let finished = events
            .iter()
            .filter(|e| matches!(e, Event::Executing(x) if x.prompt_finished()))
            .count();
        assert!(finished >= 8, "{finished} prompts finished");
        let error = events
            .iter()
            .find_map(|e| match e {
                Event::ExecutionError(error) => Some(error),
                _ => None,
            })
            .expect("an execution_error");
        assert_eq!(error.node_id.as_deref(), Some("20"));
        assert_eq!(error.node_type.as_deref(), Some("LoadImage"));
        assert_eq!(
            error.exception_type.as_deref(),
            Some("PIL.UnidentifiedImageError")
        );
        assert!(!error.traceback.is_empty());
        let interrupted = events
            .iter()
            .find_map(|e| match e {
                Event::ExecutionInterrupted(x) => Some(x),
                _ => None,
            })
            .expect("an execution_interrupted");
        assert_eq!(interrupted.node_type.as_deref(), Some("TestSleep"));
        // Cached re-runs send ints where fresh runs send floats.
        let cached = events
            .iter()
            .find_map(|e| match e {
                Event::ExecutionCached(c) if c.nodes.len() == 4 => Some(c),
                _ => None,
            })
            .expect("a fully cached run");
        assert_eq!(cached.nodes, ["10", "11", "12", "13"]);
        let states: Vec<&NodeProgress> = events
            .iter()
            .filter_map(|e| match e {
                Event::ProgressState(p) => Some(p.nodes.values()),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(states.iter().all(|n| n.state != NodeState::Unknown));
        assert!(states.iter().any(|n| n.state == NodeState::Running));
        assert!(states.iter().any(|n| n.state == NodeState::Finished));
        assert!(states.iter().any(|n| n.max == 2.0 && n.value == 1.0));
        let executed = events
            .iter()
            .find_map(|e| match e {
                Event::Executed(x) => Some(x),
                _ => None,
            })
            .expect("an executed");
        assert_eq!(executed.output["images"][0]["filename"], "empty_00001_.png");
    }

    #[test]
    fn odd_payloads_are_read_leniently() {
        let event = Event::from_text(
            r#"{"type":"status","data":{"status":{"exec_info":{"queue_remaining":2.0}},"extra":1}}"#,
        )
        .expect("parses");
        assert_eq!(
            event,
            Event::Status(Status {
                queue_remaining: Some(2),
                sid: None
            })
        );
        let event =
            Event::from_text(r#"{"type":"progress","data":{"value":"3","max":10,"node":7}}"#)
                .expect("parses");
        assert_eq!(
            event,
            Event::Progress(Progress {
                prompt_id: None,
                node: Some("7".into()),
                value: 3.0,
                max: 10.0
            })
        );
        let event = Event::from_text(r#"{"type":"executing"}"#).expect("no data");
        assert!(matches!(event, Event::Executing(ref x) if x.prompt_finished()));
        let event = Event::from_text(
            r#"{"type":"progress_state","data":{"prompt_id":"p","nodes":{"1":{"state":"queued","value":1},"2":"junk"}}}"#,
        )
        .expect("parses");
        let Event::ProgressState(state) = event else {
            panic!("progress_state");
        };
        assert_eq!(state.nodes.len(), 1);
        assert_eq!(state.nodes["1"].state, NodeState::Other("queued".into()));
        let event =
            Event::from_text(r#"{"type":"my_custom_node.update","data":{"prompt_id":"p","x":1}}"#)
                .expect("custom events are fine");
        assert_eq!(event.kind(), "my_custom_node.update");
        assert_eq!(event.prompt_id(), Some("p"));
        assert!(matches!(
            Event::from_text("not json"),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            Event::from_text(r#"{"data":{}}"#),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            Event::from_text(r#"{"type":"executed","data":[1,2]}"#),
            Err(FrameError::BadEvent { .. })
        ));
    }

    #[test]
    fn recorded_binary_previews_decode() {
        let binaries: Vec<Value> = records()
            .into_iter()
            .filter(|r| r["kind"] == "binary")
            .collect();
        assert_eq!(binaries.len(), 4);
        for record in &binaries {
            let frame = frame_from_record(record);
            let Event::Preview(preview) = Event::from_binary(&frame).expect("decodes") else {
                panic!("a preview");
            };
            assert_eq!(preview.mime, "image/png");
            assert!(preview.bytes.starts_with(b"\x89PNG"));
            if record["event"] == 4 {
                assert_eq!(
                    preview.prompt_id.as_deref(),
                    record["metadata"]["prompt_id"].as_str()
                );
                assert_eq!(preview.node_id.as_deref(), Some("2"));
            } else {
                assert_eq!(preview.bytes.len(), 122 - 8);
                assert_eq!(preview.prompt_id, None);
            }
        }
    }

    #[test]
    fn truncated_and_unknown_binary_frames_never_panic() {
        let with_meta = frame_from_record(&serde_json::json!({
            "event": 4, "len": 120,
            "metadata": {"node_id": "2", "prompt_id": "p", "image_type": "image/jpeg"}
        }));
        let plain =
            frame_from_record(&serde_json::json!({"event": 1, "len": 40, "image_format": 1}));
        for frame in [&with_meta, &plain] {
            for cut in 0..frame.len() {
                let prefix = &frame[..cut];
                match Event::from_binary(prefix) {
                    // Cutting the image short still leaves a (short) image.
                    Ok(Event::Preview(preview)) => assert!(!preview.bytes.is_empty()),
                    Ok(other) => panic!("{other:?} from a cut preview"),
                    Err(FrameError::Truncated { len, .. }) => assert_eq!(len, cut),
                    Err(other) => panic!("{other}"),
                }
            }
        }
        let Ok(Event::Preview(jpeg)) = Event::from_binary(&with_meta) else {
            panic!("a preview");
        };
        assert_eq!(jpeg.mime, "image/jpeg");
        assert!(
            matches!(Event::from_binary(&plain), Ok(Event::Preview(p)) if p.mime == "image/jpeg")
        );
        // A metadata length larger than the frame.
        let mut huge = 4u32.to_be_bytes().to_vec();
        huge.extend(u32::MAX.to_be_bytes());
        huge.extend(b"{}");
        assert!(matches!(
            Event::from_binary(&huge),
            Err(FrameError::Truncated {
                event_type: Some(4),
                ..
            })
        ));
        let mut bad_meta = 4u32.to_be_bytes().to_vec();
        bad_meta.extend(3u32.to_be_bytes());
        bad_meta.extend(b"{{{");
        bad_meta.extend(png(20));
        assert!(matches!(
            Event::from_binary(&bad_meta),
            Err(FrameError::BadEvent { .. })
        ));
        let mut unknown = 99u32.to_be_bytes().to_vec();
        unknown.extend([1, 2, 3]);
        assert_eq!(
            Event::from_binary(&unknown),
            Ok(Event::OtherBinary {
                event_type: 99,
                len: 7
            })
        );
        let mut text = 3u32.to_be_bytes().to_vec();
        text.extend(2u32.to_be_bytes());
        text.extend(b"12step 3/20");
        assert_eq!(
            Event::from_binary(&text),
            Ok(Event::NodeText(NodeText {
                node_id: "12".into(),
                text: "step 3/20".into()
            }))
        );
        // An unknown image format falls back to the bytes' own signature.
        let mut odd = 1u32.to_be_bytes().to_vec();
        odd.extend(7u32.to_be_bytes());
        odd.extend(png(16));
        assert!(matches!(Event::from_binary(&odd), Ok(Event::Preview(p)) if p.mime == "image/png"));
    }

    #[test]
    fn the_prompt_filter_keeps_one_prompts_events_and_status() {
        let texts = client_texts();
        let events: Vec<Event> = texts
            .iter()
            .map(|msg| Event::from_text(&msg.to_string()).expect("parses"))
            .collect();
        let mut filter = PromptFilter::new(RUN_B);
        let kept: Vec<&Event> = events.iter().filter(|e| filter.keep(e)).collect();
        let of_b = events
            .iter()
            .filter(|e| e.prompt_id() == Some(RUN_B))
            .count();
        assert!(of_b > 5);
        assert_eq!(
            kept.iter().filter(|e| e.prompt_id() == Some(RUN_B)).count(),
            of_b
        );
        assert!(
            kept.iter()
                .all(|e| e.prompt_id() == Some(RUN_B) || matches!(e, Event::Status(_)))
        );
        assert!(kept.iter().any(|e| matches!(e, Event::Status(_))));

        // Anonymous previews belong to the prompt that is running.
        let binary_section: Vec<Event> = records()
            .into_iter()
            .filter(|r| r["section"] == "ws-binary" && r["who"] == "client")
            .map(|r| match r["kind"].as_str() {
                Some("binary") => Event::from_binary(&frame_from_record(&r)).expect("binary"),
                _ => Event::from_text(&r["msg"].to_string()).expect("text"),
            })
            .collect();
        let previews = |prompt: &str| {
            let mut filter = PromptFilter::new(prompt);
            binary_section
                .iter()
                .filter(|e| filter.keep(e))
                .filter(|e| matches!(e, Event::Preview(_)))
                .count()
        };
        assert_eq!(previews("22d925f8-2777-42fc-b4a1-3e70265bdd9d"), 2);
        assert_eq!(previews("14701581-fbb1-4acb-baa8-bdc74ce46a60"), 2);
        assert_eq!(previews(RUN_A), 0);
    }

    #[test]
    fn backoff_grows_and_stays_within_its_bounds() {
        let first = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for entropy in [0, 1, 12_345, u64::MAX] {
            let delays: Vec<Duration> = (1..=8)
                .map(|attempt| reconnect_delay(attempt, first, max, entropy))
                .collect();
            assert!(delays[0] >= first / 2 && delays[0] <= first);
            assert!(delays.iter().all(|d| *d <= max));
            assert!(delays[7] >= max / 2);
        }
        assert_ne!(
            reconnect_delay(3, first, max, 1),
            reconnect_delay(3, first, max, 77_777)
        );
    }

    // --- a local WebSocket server standing in for ComfyUI ---

    fn test_client(addr: SocketAddr) -> Client {
        let url = format!("http://{addr}/");
        let cli = Cli::try_parse_from(["comfyui-agent", "mcp"]).expect("cli");
        let env = Env::from_map([("COMFYUI_URL", url.as_str()), ("COMFYUI_AUTH_TOKEN", TOKEN)]);
        let config = Config::resolve(&cli, &env).expect("config");
        Client::new(
            config.comfyui_url.clone(),
            &config.comfy,
            PortHint::Configured { port: None },
        )
        .expect("client")
    }

    fn quick() -> StreamConfig {
        StreamConfig {
            connect_timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_attempts: 3,
            give_up_after: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
            preview_metadata: true,
        }
    }

    /// What the client sent in its handshake.
    #[derive(Debug)]
    struct Handshake {
        uri: String,
        headers: HttpHeaders,
    }

    type ServerSocket = WebSocketStream<TcpStream>;

    // The callback's error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    async fn accept(listener: &TcpListener) -> (ServerSocket, Handshake) {
        let (tcp, _) = listener.accept().await.expect("accept");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let callback = move |request: &Request, response: Response| {
            let _ = tx.send(Handshake {
                uri: request.uri().to_string(),
                headers: request.headers().clone(),
            });
            Ok::<_, ErrorResponse>(response)
        };
        let socket = tokio_tungstenite::accept_hdr_async(tcp, callback)
            .await
            .expect("handshake");
        (socket, rx.await.expect("handshake seen"))
    }

    /// Answers the next handshake with `status`.
    // The callback's error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    async fn refuse(listener: &TcpListener, status: u16) {
        let (tcp, _) = listener.accept().await.expect("accept");
        let callback = move |_: &Request, _: Response| {
            let mut refusal = ErrorResponse::new(Some("no".into()));
            *refusal.status_mut() =
                tungstenite::http::StatusCode::from_u16(status).expect("status");
            Err(refusal)
        };
        let _ = tokio_tungstenite::accept_hdr_async(tcp, callback).await;
    }

    fn check_handshake(handshake: &Handshake) {
        assert_eq!(handshake.uri, "/ws?clientId=agent-test");
        assert_eq!(
            handshake.headers.get("authorization").map(|v| v.as_bytes()),
            Some(format!("Bearer {TOKEN}").as_bytes())
        );
        assert!(
            handshake.headers.get("origin").is_none(),
            "an Origin was sent"
        );
    }

    async fn send_texts(socket: &mut ServerSocket, texts: &[String]) {
        for text in texts {
            socket
                .send(Message::text(text.clone()))
                .await
                .expect("send");
        }
    }

    /// The next message the client sent, skipping pongs unless asked for.
    async fn client_says(socket: &mut ServerSocket) -> Message {
        socket
            .next()
            .await
            .expect("the client is still there")
            .expect("a readable message")
    }

    /// Reads items until one satisfies `done`, with a generous guard against hangs.
    async fn collect_until(stream: &mut EventStream, done: impl Fn(&Item) -> bool) -> Vec<Item> {
        let mut items = Vec::new();
        let reading = async {
            loop {
                let item = stream
                    .next()
                    .await
                    .expect("the stream goes on")
                    .expect("no error");
                let last = done(&item);
                items.push(item);
                if last {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), reading)
            .await
            .expect("the stream stalled");
        items
    }

    fn finishes(prompt: &'static str) -> impl Fn(&Item) -> bool {
        move |item| {
            matches!(item, Item::Event(Event::Executing(x))
                if x.prompt_finished() && x.prompt_id.as_deref() == Some(prompt))
        }
    }

    fn kinds(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                Item::Event(event) => event.kind().to_string(),
                Item::Reconnected { .. } => "RECONNECTED".to_string(),
            })
            .collect()
    }

    fn recorded_kinds(texts: &[String]) -> Vec<String> {
        texts
            .iter()
            .map(|t| Event::from_text(t).expect("parses").kind().to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_dropped_socket_is_reopened_with_the_same_client_id() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let run_a = texts_of_prompt(RUN_A);
        let run_b = texts_of_prompt(RUN_B);
        let (a, b) = (run_a.clone(), run_b.clone());
        let server = tokio::spawn(async move {
            let (mut socket, first) = accept(&listener).await;
            let flags = client_says(&mut socket).await;
            send_texts(&mut socket, &a).await;
            socket
                .send(Message::Ping(Bytes::from_static(b"still there?")))
                .await
                .expect("ping");
            let pong = client_says(&mut socket).await;
            // Gone without a close frame, like a crashed ComfyUI.
            drop(socket);
            let (mut socket, second) = accept(&listener).await;
            let _flags = client_says(&mut socket).await;
            send_texts(&mut socket, &b).await;
            // Stay up until the client has read everything.
            let _ = socket.next().await;
            (first, second, flags, pong)
        });
        let client = test_client(addr);
        let mut stream = EventStream::connect(&client, "agent-test", quick())
            .await
            .expect("connects");
        let mut items = collect_until(&mut stream, finishes(RUN_A)).await;
        items.extend(collect_until(&mut stream, finishes(RUN_B)).await);
        stream.close().await;
        assert!(stream.next().await.is_none());
        let (first, second, flags, pong) = server.await.expect("server");
        check_handshake(&first);
        check_handshake(&second);
        assert_eq!(flags, Message::text(FEATURE_FLAGS));
        assert_eq!(pong, Message::Pong(Bytes::from_static(b"still there?")));
        let mut expected = recorded_kinds(&run_a);
        expected.push("RECONNECTED".into());
        expected.extend(recorded_kinds(&run_b));
        assert_eq!(kinds(&items), expected);
    }

    #[tokio::test]
    async fn a_close_frame_also_leads_to_a_reconnect_and_the_filter_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut both = texts_of_prompt(RUN_A);
        both.extend(texts_of_prompt(RUN_B));
        let status = client_texts()[0].to_string();
        let replay = both.clone();
        let server = tokio::spawn(async move {
            let (mut socket, _) = accept(&listener).await;
            socket
                .send(Message::text(status.clone()))
                .await
                .expect("send");
            socket.close(None).await.expect("close");
            let (mut socket, _) = accept(&listener).await;
            send_texts(&mut socket, &replay).await;
            let _ = socket.next().await;
        });
        let client = test_client(addr);
        let mut config = quick();
        config.preview_metadata = false;
        let mut stream = EventStream::connect(&client, "agent-test", config)
            .await
            .expect("connects")
            .for_prompt(RUN_B);
        let items = collect_until(&mut stream, finishes(RUN_B)).await;
        stream.close().await;
        server.await.expect("server");
        assert!(matches!(items[0], Item::Event(Event::Status(_))));
        assert!(matches!(items[1], Item::Reconnected { attempts: 1 }));
        let events: Vec<&Event> = items[2..]
            .iter()
            .map(|item| match item {
                Item::Event(event) => event,
                Item::Reconnected { .. } => panic!("one reconnect only"),
            })
            .collect();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.prompt_id() == Some(RUN_B))
                .count(),
            texts_of_prompt(RUN_B).len()
        );
        assert!(events.iter().all(|e| e.prompt_id() != Some(RUN_A)));
    }

    #[tokio::test]
    async fn a_server_that_stays_down_ends_the_stream_with_a_friendly_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let status = client_texts()[0].to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = accept(&listener).await;
            socket.send(Message::text(status)).await.expect("send");
            // Both the socket and the listener go away: reconnects are refused.
        });
        let client = test_client(addr);
        let mut stream = EventStream::connect(&client, "agent-test", quick())
            .await
            .expect("connects");
        server.await.expect("server");
        let first = stream.next().await.expect("an item").expect("an event");
        assert!(matches!(first, Item::Event(Event::Status(_))));
        let error = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("gives up within its bound")
            .expect("an item")
            .expect_err("an error");
        let ComfyError::ConnectionLost { attempts, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(*attempts, 3);
        assert!(error.is_unreachable());
        let text = error.user_message();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.contains("get_execution_status"), "{text}");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_refused_reconnect_gives_up_at_once_with_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (socket, _) = accept(&listener).await;
            drop(socket);
            refuse(&listener, 401).await;
        });
        let client = test_client(addr);
        let mut config = quick();
        config.max_attempts = 50;
        let mut stream = EventStream::connect(&client, "agent-test", config)
            .await
            .expect("connects");
        let error = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("no hang")
            .expect("an item")
            .expect_err("an error");
        server.await.expect("server");
        assert!(
            matches!(error, ComfyError::Status { status: 401, .. }),
            "{error:?}"
        );
        assert!(error.user_message().contains("COMFYUI_AUTH_TOKEN"));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_silent_peer_is_pinged_then_dropped_and_reconnected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let status = client_texts()[0].to_string();
        let (release, hold) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            // Accepted, then never read from again: pings go unanswered.
            let (silent, _) = accept(&listener).await;
            let (mut socket, _) = accept(&listener).await;
            socket.send(Message::text(status)).await.expect("send");
            let _ = hold.await;
            drop(silent);
        });
        let client = test_client(addr);
        let mut config = quick();
        config.keepalive = Duration::from_millis(50);
        config.preview_metadata = false;
        let mut stream = EventStream::connect(&client, "agent-test", config)
            .await
            .expect("connects");
        let items = collect_until(&mut stream, |item| {
            matches!(item, Item::Event(Event::Status(_)))
        })
        .await;
        let _ = release.send(());
        server.await.expect("server");
        assert!(
            matches!(items[..], [Item::Reconnected { .. }, Item::Event(_)]),
            "{items:?}"
        );
    }

    #[tokio::test]
    async fn the_first_connection_fails_plainly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let client = test_client(addr);
        let error = EventStream::connect(&client, "agent-test", quick())
            .await
            .expect_err("nobody listens");
        assert!(matches!(error, ComfyError::Unreachable { .. }), "{error:?}");
        assert!(error.user_message().contains("Start ComfyUI"));

        // A port that accepts but never completes the handshake.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = test_client(addr);
        let mut config = quick();
        config.connect_timeout = Duration::from_millis(100);
        let error = EventStream::connect(&client, "agent-test", config)
            .await
            .expect_err("no handshake");
        let ComfyError::Unreachable { detail, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(detail.contains("no answer within 0.1 s"), "{detail}");
        drop(listener);
    }
}
