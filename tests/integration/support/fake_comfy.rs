//! A fake ComfyUI built from the recordings of a live 0.3.64 server: the same routes (with and
//! without the `/api` prefix), the same bodies, the recorded WebSocket sequence of a run replayed
//! to the client that queued it, and the faults a real one shows in the field: 5xx answers,
//! slow answers, a WebSocket dropped mid-run, and going away and coming back on the same port.
//! Prompts run one at a time in queue order, so queue positions, deleting a pending prompt
//! and interrupting the running one behave as in ComfyUI; uploads are kept in memory and
//! served back by `/view`, along with a small PNG for every image a run saved.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fixture;

/// What the next requests meet.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and a short text body.
    Status(u16),
    /// Wait this long before answering normally.
    Delay(Duration),
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// The path as sent, `/api` prefix included, without the query.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
}

/// A run recorded on the live server, replayed (with the new prompt id) when a prompt is
/// queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedRun {
    /// EmptyImage → SaveImage: start, cached, executing, executed, success.
    Basic,
    /// EmptyImage → a 1 s sleep → PreviewImage: many `progress` and `progress_state` messages.
    Progress,
    /// LoadImage of a missing file: `execution_error` at run time.
    Failure,
    /// SaveImageWebsocket with preview metadata: binary preview frames naming prompt and node.
    Previews,
    /// A 30 s TestSleep: its start and first progress, then it runs until interrupted
    /// (`POST /interrupt`), which plays the recorded interrupt sequence.
    Long,
    /// LoadImage → ImageInvert → SaveImage plus a PreviewImage: two output nodes.
    MultiOutput,
    /// The multi-output run again: every node cached, nothing executed.
    Cached,
}

/// The run the interrupt was recorded on (TestSleep 30 s, interrupted after about 1.5 s).
const INTERRUPTED_RUN: &str = "74e7f1cd-2f9e-433f-a633-b560eeecdc04";

impl RecordedRun {
    /// The transcript section, the recorded prompt id, and the text of the note that
    /// started the run.
    fn source(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Basic => (
                "ws-basic",
                "511413d5-0469-45fc-9a9d-5fd7338c99f8",
                "511413d5-0469-45fc-9a9d-5fd7338c99f8",
            ),
            Self::Progress => (
                "ws-testing",
                "85cd2605-1ab0-438d-9011-a10029e66b6c",
                "85cd2605-1ab0-438d-9011-a10029e66b6c",
            ),
            Self::Failure => (
                "ws-basic",
                "12517713-281a-4dcb-8041-6e54c58845c7",
                "12517713-281a-4dcb-8041-6e54c58845c7",
            ),
            Self::Previews => (
                "ws-binary",
                "14701581-fbb1-4acb-baa8-bdc74ce46a60",
                "14701581-fbb1-4acb-baa8-bdc74ce46a60",
            ),
            Self::Long => ("ws-testing", INTERRUPTED_RUN, "run I ("),
            Self::MultiOutput => (
                "ws-basic",
                "08c2b4c5-7041-49b4-8b54-4ff4fb48575e",
                "08c2b4c5-7041-49b4-8b54-4ff4fb48575e",
            ),
            Self::Cached => (
                "ws-basic",
                "f2f71fe5-daf3-4701-86f5-a512b9f532e9",
                "f2f71fe5-daf3-4701-86f5-a512b9f532e9",
            ),
        }
    }
}

/// A queued prompt waiting for its turn.
#[derive(Debug, Clone)]
struct Job {
    prompt_id: String,
    number: u64,
    client_id: Option<String>,
    prompt: Value,
    run: RecordedRun,
    drop_after: Option<usize>,
}

/// One WebSocket frame of a recorded run.
#[derive(Debug, Clone)]
enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// What a client's socket task is told to do.
#[derive(Debug)]
enum ToSocket {
    Frame(Frame),
    /// Drop the connection without a close frame, as a crashed server or a proxy does.
    Drop,
}

#[derive(Debug, Default)]
struct Inner {
    /// Faults for the next requests, in order; an empty queue falls back to `standing`.
    queued: VecDeque<Fault>,
    standing: Option<Fault>,
    seen: Vec<Seen>,
    history: BTreeMap<String, Value>,
    running: Vec<Value>,
    pending: Vec<Value>,
    prompts_queued: u64,
    /// Every prompt queued, in order: (prompt id, the workflow as posted).
    prompts: Vec<(String, Value)>,
    /// The open WebSocket per client id (a reconnect replaces it, as in ComfyUI).
    sockets: HashMap<String, mpsc::UnboundedSender<ToSocket>>,
    /// Text messages clients sent on their sockets (`feature_flags`).
    from_clients: Vec<Value>,
    next_run: Option<RecordedRun>,
    /// The pause between replayed frames (2 ms unless a test or bench sets it).
    pace: Option<Duration>,
    /// Drop the socket after this many frames of the next run.
    drop_after: Option<usize>,
    /// Queued prompts in run order (their `pending` items list them for `GET /queue`).
    waiting: VecDeque<Job>,
    /// The prompt running now, and the token that interrupts it.
    current: Option<(String, CancellationToken)>,
    /// Uploaded files by (folder type, subfolder, name).
    files: HashMap<(String, String, String), Vec<u8>>,
    /// Replaces the recorded `/system_stats` answer (a GPU machine's, say).
    system_stats: Option<Value>,
}

#[derive(Debug)]
struct Recorded {
    object_info: Value,
    system_stats: Value,
    errors: Value,
    transcript: Vec<Value>,
}

#[derive(Clone, Debug)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    recorded: Arc<Recorded>,
    /// Cancelled when the fake stops, ending every socket.
    stop: CancellationToken,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub struct FakeComfy {
    addr: SocketAddr,
    shared: Shared,
    stop: Option<CancellationToken>,
}

impl FakeComfy {
    /// Starts on a free loopback port, its history holding the recorded outputs.
    pub async fn start() -> Self {
        let samples = read_fixture("http-samples.json");
        let transcript = std::fs::read_to_string(fixture("comfyui-0.3.64/ws-transcript.jsonl"))
            .expect("recorded transcript")
            .lines()
            .map(|line| serde_json::from_str(line).expect("transcript line is JSON"))
            .collect();
        let recorded = Recorded {
            object_info: read_fixture("object_info.json"),
            system_stats: samples["GET /system_stats"]["body"].clone(),
            errors: read_fixture("errors.json"),
            transcript,
        };
        let mut inner = Inner::default();
        if let Value::Object(entries) = read_fixture("history-outputs.json") {
            inner.history.extend(entries);
        }
        let shared = Shared {
            inner: Arc::new(Mutex::new(inner)),
            recorded: Arc::new(recorded),
            stop: CancellationToken::new(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut fake = Self {
            addr,
            shared,
            stop: None,
        };
        fake.serve(listener);
        fake
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        self.shared.stop = stop.clone();
        let app = Router::new()
            .route("/ws", axum::routing::get(socket))
            .route("/api/ws", axum::routing::get(socket))
            .fallback(handle)
            .with_state(self.shared.clone());
        let signal = stop.clone();
        // As ComfyUI's server does: small answers go out at once, not after Nagle's delay.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { signal.cancelled().await })
                .await;
        });
        self.stop = Some(stop);
    }

    /// The base URL, with a trailing slash, as `COMFYUI_URL` takes it.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Every answer from now on meets `fault` (until [`Self::heal`]).
    pub fn always(&self, fault: Fault) {
        self.shared.lock().standing = Some(fault);
    }

    /// The next request meets `fault`; later ones are served normally (or meet later queued
    /// faults).
    pub fn next(&self, fault: Fault) {
        self.shared.lock().queued.push_back(fault);
    }

    pub fn heal(&self) {
        let mut inner = self.shared.lock();
        inner.standing = None;
        inner.queued.clear();
    }

    /// Stops listening: connections are refused, as when ComfyUI is closed.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
        // Until the listener is really closed, connections could still be accepted.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the fake ComfyUI did not stop listening");
    }

    /// Listens again on the same port, as when ComfyUI is restarted.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        self.serve(listener);
    }

    /// Answers `/system_stats` with `stats` from now on instead of the recording.
    pub fn set_system_stats(&self, stats: Value) {
        self.shared.lock().system_stats = Some(stats);
    }

    /// The pause between replayed frames; zero replays a run as fast as it can, so what a
    /// client measures is its own work.
    pub fn set_pace(&self, pace: Duration) {
        self.shared.lock().pace = Some(pace);
    }

    /// The run the next queued prompt replays (by default [`RecordedRun::Basic`]).
    pub fn next_run(&self, run: RecordedRun) {
        self.shared.lock().next_run = Some(run);
    }

    /// The next run's socket is dropped (no close frame) after `frames` frames; the run
    /// goes on, and what it sends before the client reconnects is lost, as with ComfyUI.
    pub fn drop_socket_after(&self, frames: usize) {
        self.shared.lock().drop_after = Some(frames);
    }

    /// Text messages clients sent on their sockets.
    pub fn client_messages(&self) -> Vec<Value> {
        self.shared.lock().from_clients.clone()
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().seen.clone()
    }

    /// How many requests reached `path` (with or without `/api`).
    pub fn hits(&self, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.path.strip_prefix("/api").unwrap_or(&seen.path) == path)
            .count()
    }

    /// Puts a prompt in the running slot of the queue, as ComfyUI lists it.
    pub fn set_running(&self, prompt_id: &str) {
        self.shared.lock().running = vec![queue_item(0, prompt_id)];
    }

    /// A file as uploaded (folder type, subfolder, name), if there is one.
    pub fn file(&self, folder: &str, subfolder: &str, name: &str) -> Option<Vec<u8>> {
        self.shared
            .lock()
            .files
            .get(&(folder.into(), subfolder.into(), name.into()))
            .cloned()
    }

    /// The prompt running now, if any (set when a queued prompt starts, cleared when it
    /// ends).
    pub fn running_prompt(&self) -> Option<String> {
        self.shared
            .lock()
            .current
            .as_ref()
            .map(|(id, _)| id.clone())
    }

    /// A run's history entry, once it has one.
    pub fn history_entry(&self, prompt_id: &str) -> Option<Value> {
        self.shared.lock().history.get(prompt_id).cloned()
    }

    /// Waits up to about 5 s for the prompt's history to record an interruption.
    pub async fn wait_until_interrupted(&self, prompt_id: &str) -> bool {
        for _ in 0..100 {
            if self
                .history_entry(prompt_id)
                .is_some_and(|entry| entry.to_string().contains("execution_interrupted"))
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    /// Every prompt queued so far, in order: (prompt id, the workflow as posted).
    pub fn prompts(&self) -> Vec<(String, Value)> {
        self.shared.lock().prompts.clone()
    }

    pub fn add_pending(&self, prompt_id: &str) {
        let mut inner = self.shared.lock();
        let number = i64::try_from(inner.pending.len()).unwrap_or(0) + 1;
        inner.pending.push(queue_item(number, prompt_id));
    }
}

impl Drop for FakeComfy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
    }
}

fn read_fixture(name: &str) -> Value {
    let path = fixture("comfyui-0.3.64").join(name);
    let text = std::fs::read_to_string(&path).expect("recorded fixture");
    serde_json::from_str(&text).expect("recorded fixture is JSON")
}

fn queue_item(number: i64, prompt_id: &str) -> Value {
    json!([number, prompt_id, {"1": {"class_type": "EmptyImage", "inputs": {}}}, {"client_id": "x"}, ["9"]])
}

fn json_answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let fault = {
        let mut inner = shared.lock();
        inner.seen.push(Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(String::from),
            headers: parts.headers.clone(),
        });
        inner.queued.pop_front().or_else(|| inner.standing.clone())
    };
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).expect("a valid status");
            return (status, format!("{code} fault injected by the fake")).into_response();
        }
        Some(Fault::Delay(wait)) => tokio::time::sleep(wait).await,
        None => {}
    }
    // ComfyUI's own rule: a browser Origin that doesn't match Host is refused.
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !origin.to_str().unwrap_or_default().ends_with(host) {
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    let path = parts.uri.path();
    let path = path.strip_prefix("/api").unwrap_or(path);
    let query = parts.uri.query().unwrap_or_default();
    route(&shared, &parts.method, path, query, &parts.headers, &body)
}

fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let recorded = &shared.recorded;
    match (method, path) {
        (&Method::GET, "/system_stats") => {
            let replaced = shared.lock().system_stats.clone();
            json_answer(
                StatusCode::OK,
                replaced.as_ref().unwrap_or(&recorded.system_stats),
            )
        }
        (&Method::GET, "/object_info") => json_answer(StatusCode::OK, &recorded.object_info),
        (&Method::GET, p) if p.starts_with("/object_info/") => {
            let class = percent_decode(&p["/object_info/".len()..]);
            let body = recorded
                .object_info
                .get(&class)
                .map_or_else(|| json!({}), |node| json!({ class: node }));
            json_answer(StatusCode::OK, &body)
        }
        (&Method::GET, "/queue") => {
            let inner = shared.lock();
            json_answer(
                StatusCode::OK,
                &json!({"queue_running": inner.running, "queue_pending": inner.pending}),
            )
        }
        (&Method::GET, "/prompt") => {
            let inner = shared.lock();
            let remaining = inner.running.len() + inner.pending.len();
            json_answer(
                StatusCode::OK,
                &json!({"exec_info": {"queue_remaining": remaining}}),
            )
        }
        (&Method::GET, "/history") => {
            let max = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("max_items="))
                .and_then(|n| n.parse::<usize>().ok());
            let inner = shared.lock();
            // ComfyUI keeps insertion order and `max_items` takes the newest.
            let skip = max.map_or(0, |max| inner.history.len().saturating_sub(max));
            let entries: serde_json::Map<String, Value> = inner
                .history
                .iter()
                .skip(skip)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            json_answer(StatusCode::OK, &Value::Object(entries))
        }
        (&Method::GET, p) if p.starts_with("/history/") => {
            let id = percent_decode(&p["/history/".len()..]);
            let inner = shared.lock();
            let body = inner
                .history
                .get(&id)
                .map_or_else(|| json!({}), |entry| json!({ id: entry }));
            json_answer(StatusCode::OK, &body)
        }
        (&Method::POST, "/prompt") => post_prompt(shared, body),
        (&Method::POST, "/interrupt") => interrupt(shared, body),
        (&Method::POST, "/queue") => edit_queue(shared, body),
        (&Method::POST, "/upload/image") => upload(shared, headers, body),
        (&Method::GET, "/view") => view(shared, query),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Replays the recorded validation answer for a recorded request; queues anything else.
fn post_prompt(shared: &Shared, body: &Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error\n\nServer got itself in trouble",
        )
            .into_response();
    };
    // A recorded partial acceptance queues the prompt and reports the dropped branch.
    let mut node_errors = json!({});
    if let Value::Object(cases) = &shared.recorded.errors {
        for case in cases.values() {
            if case["request"]["prompt"] != request["prompt"] {
                continue;
            }
            if case["response"]["status"] != 200 {
                let status = case["response"]["status"].as_u64().unwrap_or(400);
                let status = StatusCode::from_u16(u16::try_from(status).unwrap_or(400))
                    .unwrap_or(StatusCode::BAD_REQUEST);
                return json_answer(status, &case["response"]["body"]);
            }
            node_errors = case["response"]["body"]["node_errors"].clone();
        }
    }
    let mut inner = shared.lock();
    inner.prompts_queued += 1;
    let prompt_id = request["prompt_id"]
        .as_str()
        .map_or_else(|| format!("fake-{}", inner.prompts_queued), String::from);
    let number = inner.prompts_queued;
    inner
        .prompts
        .push((prompt_id.clone(), request["prompt"].clone()));
    let job = Job {
        prompt_id: prompt_id.clone(),
        number,
        client_id: request["client_id"].as_str().map(String::from),
        prompt: request["prompt"].clone(),
        run: inner.next_run.take().unwrap_or(RecordedRun::Basic),
        drop_after: inner.drop_after.take(),
    };
    let item = queue_item(i64::try_from(number).unwrap_or(0), &prompt_id);
    inner.pending.push(item);
    inner.waiting.push_back(job);
    drop(inner);
    start_next(shared);
    json_answer(
        StatusCode::OK,
        &json!({"prompt_id": prompt_id, "number": number, "node_errors": node_errors}),
    )
}

/// Starts the next waiting prompt unless one is running: one at a time, in queue order.
fn start_next(shared: &Shared) {
    let mut inner = shared.lock();
    if inner.current.is_some() {
        return;
    }
    let Some(job) = inner.waiting.pop_front() else {
        return;
    };
    inner
        .pending
        .retain(|item| item[1].as_str() != Some(job.prompt_id.as_str()));
    inner.running.push(queue_item(
        i64::try_from(job.number).unwrap_or(0),
        &job.prompt_id,
    ));
    let interrupt = CancellationToken::new();
    inner.current = Some((job.prompt_id.clone(), interrupt.clone()));
    drop(inner);
    tokio::spawn(replay(shared.clone(), job, interrupt));
}

/// `POST /interrupt`: stops the running prompt; with a `prompt_id`, only if it is that one.
fn interrupt(shared: &Shared, body: &Bytes) -> Response {
    let wanted = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["prompt_id"].as_str().map(String::from));
    let inner = shared.lock();
    if let Some((running, token)) = &inner.current
        && wanted.as_ref().is_none_or(|id| id == running)
    {
        token.cancel();
    }
    StatusCode::OK.into_response()
}

/// `POST /queue`: `{"delete": [ids]}` drops pending prompts (never the running one);
/// `{"clear": true}` drops them all. Answers 200 with an empty body, as ComfyUI does.
fn edit_queue(shared: &Shared, body: &Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error\n\nServer got itself in trouble",
        )
            .into_response();
    };
    let mut inner = shared.lock();
    if request["clear"] == true {
        inner.pending.clear();
        inner.waiting.clear();
    }
    if let Some(ids) = request["delete"].as_array() {
        let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
        inner
            .pending
            .retain(|item| !item[1].as_str().is_some_and(|id| ids.contains(&id)));
        inner
            .waiting
            .retain(|job| !ids.contains(&job.prompt_id.as_str()));
    }
    StatusCode::OK.into_response()
}

/// The frames of a recorded run: what the recording's client received between the note that
/// queued it and the next note. A long run keeps only its own frames before the interrupt.
fn recorded_frames(recorded: &Recorded, run: RecordedRun) -> Vec<Frame> {
    let (section, recorded_id, marker) = run.source();
    let mut frames = Vec::new();
    let mut inside = false;
    let mut started = false;
    for record in &recorded.transcript {
        if record["section"] != section {
            continue;
        }
        if record["kind"] == "note" {
            inside = record["note"]
                .as_str()
                .is_some_and(|note| note.contains(marker));
            continue;
        }
        if !inside || record["who"] != "client" {
            continue;
        }
        if run == RecordedRun::Long {
            let message = &record["msg"];
            if message["type"] == "execution_interrupted" {
                break;
            }
            let own = message["data"]["prompt_id"] == recorded_id;
            started |= own;
            if !(own || (!started && message["type"] == "status")) {
                continue;
            }
        }
        match record["kind"].as_str() {
            Some("text") => frames.push(Frame::Text(record["msg"].to_string())),
            Some("binary") => frames.push(Frame::Binary(binary_frame(record))),
            _ => {}
        }
    }
    assert!(!frames.is_empty(), "the recording has run {run:?}");
    frames
}

/// What ComfyUI sent when the recorded run was interrupted: `execution_interrupted`, then
/// `status`, then `executing` with no node.
fn interrupt_frames(recorded: &Recorded) -> Vec<Value> {
    let mut frames = Vec::new();
    for record in &recorded.transcript {
        if record["section"] != "ws-testing" || record["who"] != "client" {
            continue;
        }
        let message = &record["msg"];
        if frames.is_empty() {
            if message["type"] == "execution_interrupted"
                && message["data"]["prompt_id"] == INTERRUPTED_RUN
            {
                frames.push(message.clone());
            }
            continue;
        }
        frames.push(message.clone());
        if message["type"] == "executing" && message["data"]["node"].is_null() {
            break;
        }
    }
    assert_eq!(frames.len(), 3, "the recording has the interrupt sequence");
    frames
}

/// Rebuilds a recorded binary frame (the recording keeps its header and the image's size).
fn binary_frame(record: &Value) -> Vec<u8> {
    let event = u32::try_from(record["event"].as_u64().expect("event")).expect("u32");
    let len = usize::try_from(record["len"].as_u64().expect("len")).expect("size");
    let mut frame = event.to_be_bytes().to_vec();
    if event == 4 {
        let metadata = record["metadata"].to_string();
        frame.extend(u32::try_from(metadata.len()).expect("u32").to_be_bytes());
        frame.extend(metadata.as_bytes());
    } else {
        let format = u32::try_from(record["image_format"].as_u64().unwrap_or(2)).expect("u32");
        frame.extend(format.to_be_bytes());
    }
    frame.extend([0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]);
    if frame.len() < len {
        frame.resize(len, 0);
    }
    frame
}

/// What a run has produced so far, for its history entry.
#[derive(Debug, Default)]
struct Progress {
    outputs: serde_json::Map<String, Value>,
    messages: Vec<Value>,
    failed: bool,
    /// The node that last started (`executing`), where an interrupt lands.
    node: Option<String>,
}

impl Progress {
    fn note(&mut self, message: &Value) {
        match message["type"].as_str() {
            Some("executed") => {
                let node = message["data"]["node"].as_str().unwrap_or("?").to_string();
                self.outputs.insert(node, message["data"]["output"].clone());
            }
            Some("executing") => {
                if let Some(node) = message["data"]["node"].as_str() {
                    self.node = Some(node.to_string());
                }
            }
            Some(
                kind @ ("execution_start"
                | "execution_success"
                | "execution_error"
                | "execution_interrupted"
                | "execution_cached"),
            ) => {
                self.failed |= matches!(kind, "execution_error" | "execution_interrupted");
                self.messages.push(json!([kind, message["data"]]));
            }
            _ => {}
        }
    }
}

/// Sends a frame to the client that queued the run, if it is connected.
fn send(shared: &Shared, client_id: Option<&str>, frame: Frame) {
    if let Some(client) = client_id {
        let socket = shared.lock().sockets.get(client).cloned();
        if let Some(socket) = socket {
            let _ = socket.send(ToSocket::Frame(frame));
        }
    }
}

/// Plays a recorded run to the client that queued it, then records it in history and starts
/// the next waiting prompt. An interrupt stops it at the next frame.
async fn replay(shared: Shared, job: Job, interrupt: CancellationToken) {
    let (_, recorded_id, _) = job.run.source();
    let client_id = job.client_id.as_deref();
    let frames = recorded_frames(&shared.recorded, job.run);
    let mut progress = Progress::default();
    let mut recorded = false;
    let mut interrupted = false;
    for (sent, frame) in frames.into_iter().enumerate() {
        if interrupt.is_cancelled() {
            interrupted = true;
            break;
        }
        let frame = match frame {
            Frame::Text(text) => Frame::Text(text.replace(recorded_id, &job.prompt_id)),
            Frame::Binary(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                if text.contains(recorded_id) {
                    // Metadata frames name the prompt; the image bytes are not UTF-8-safe, so
                    // swap the id inside the metadata only.
                    Frame::Binary(swap_in_metadata(&bytes, recorded_id, &job.prompt_id))
                } else {
                    Frame::Binary(bytes)
                }
            }
        };
        if let Frame::Text(text) = &frame {
            let message: Value = serde_json::from_str(text).expect("JSON");
            progress.note(&message);
            // As in ComfyUI, the run is in history before the final `executing` (node null).
            if message["type"] == "executing" && message["data"]["node"].is_null() {
                record_history(&shared, &job, &progress);
                recorded = true;
            }
        }
        if job.drop_after == Some(sent)
            && let Some(client) = client_id
            && let Some(socket) = shared.lock().sockets.remove(client)
        {
            let _ = socket.send(ToSocket::Drop);
        }
        send(&shared, client_id, frame);
        let pace = shared.lock().pace.unwrap_or(Duration::from_millis(2));
        if !pace.is_zero() {
            tokio::select! {
                () = interrupt.cancelled() => {}
                () = tokio::time::sleep(pace) => {}
            }
        }
    }
    if !interrupted && !recorded && job.run == RecordedRun::Long {
        tokio::select! {
            () = interrupt.cancelled() => interrupted = true,
            () = shared.stop.cancelled() => {}
        }
    }
    if interrupted && !recorded {
        play_interrupt(&shared, &job, &mut progress);
    } else if !recorded {
        record_history(&shared, &job, &progress);
    }
    {
        let mut inner = shared.lock();
        if inner
            .current
            .as_ref()
            .is_some_and(|(id, _)| *id == job.prompt_id)
        {
            inner.current = None;
        }
    }
    start_next(&shared);
}

/// The recorded interrupt sequence for this prompt, at the node it was running; the run goes
/// into history as ComfyUI records an interrupt (status "error", not completed).
fn play_interrupt(shared: &Shared, job: &Job, progress: &mut Progress) {
    let node = progress.node.clone();
    let remaining = shared.lock().waiting.len();
    for mut message in interrupt_frames(&shared.recorded) {
        let data = &mut message["data"];
        if data.get("prompt_id").is_some() {
            data["prompt_id"] = json!(job.prompt_id);
        }
        match message["type"].as_str() {
            Some("execution_interrupted") => {
                if let Some(node) = &node {
                    message["data"]["node_id"] = json!(node);
                    message["data"]["node_type"] = job.prompt[node.as_str()]["class_type"].clone();
                }
                let executed: Vec<Value> = progress.outputs.keys().map(|id| json!(id)).collect();
                message["data"]["executed"] = json!(executed);
            }
            Some("status") => {
                message["data"]["status"]["exec_info"]["queue_remaining"] = json!(remaining);
            }
            Some("executing") => record_history(shared, job, progress),
            _ => {}
        }
        progress.note(&message);
        send(
            shared,
            job.client_id.as_deref(),
            Frame::Text(message.to_string()),
        );
    }
}

fn record_history(shared: &Shared, job: &Job, progress: &Progress) {
    let mut inner = shared.lock();
    inner
        .running
        .retain(|item| item[1].as_str() != Some(job.prompt_id.as_str()));
    let status = if progress.failed { "error" } else { "success" };
    inner.history.insert(
        job.prompt_id.clone(),
        json!({
            "prompt": [job.number, job.prompt_id, job.prompt, {"client_id": job.client_id}, progress.outputs.keys().collect::<Vec<_>>()],
            "outputs": progress.outputs,
            "status": {"status_str": status, "completed": !progress.failed, "messages": progress.messages},
            "meta": {}
        }),
    );
}

fn swap_in_metadata(frame: &[u8], from: &str, to: &str) -> Vec<u8> {
    let len = u32::from_be_bytes(frame[4..8].try_into().expect("4 bytes")) as usize;
    let metadata = String::from_utf8_lossy(&frame[8..8 + len]).replace(from, to);
    let mut out = frame[..4].to_vec();
    out.extend(u32::try_from(metadata.len()).expect("u32").to_be_bytes());
    out.extend(metadata.as_bytes());
    out.extend(&frame[8 + len..]);
    out
}

/// `/ws?clientId=…`: greets with `status` (its `sid` is the client id), then forwards what
/// runs send to this client until the client leaves, the fake stops, or a fault drops it.
async fn socket(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    request_headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    shared.lock().seen.push(Seen {
        method: Method::GET,
        path: "/ws".into(),
        query: Some(format!(
            "clientId={}",
            query.get("clientId").cloned().unwrap_or_default()
        )),
        headers: request_headers,
    });
    let client_id = query
        .get("clientId")
        .cloned()
        .unwrap_or_else(|| "anonymous".into());
    upgrade.on_upgrade(move |socket| talk(shared, client_id, socket))
}

async fn talk(shared: Shared, client_id: String, mut socket: WebSocket) {
    let (to_socket, mut outgoing) = mpsc::unbounded_channel();
    let remaining = {
        let mut inner = shared.lock();
        inner.sockets.insert(client_id.clone(), to_socket);
        inner.running.len() + inner.pending.len()
    };
    let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": client_id}});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            command = outgoing.recv() => match command {
                Some(ToSocket::Frame(Frame::Text(text))) => {
                    if socket.send(Message::Text(text.into())).await.is_err() { return; }
                }
                Some(ToSocket::Frame(Frame::Binary(bytes))) => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() { return; }
                }
                // Returning drops the socket without a close frame.
                Some(ToSocket::Drop) | None => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(value) = serde_json::from_str::<Value>(&text) {
                        shared.lock().from_clients.push(value);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
}

/// `POST /upload/image`: stores the `image` part under its folder type and subfolder. A
/// clash with different bytes gets "name (1).ext" unless `overwrite` is "true" or "1";
/// identical bytes keep the name, as ComfyUI's hash check does.
fn upload(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Response {
    let Some(parts) = multipart_parts(headers, body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let field = |name: &str| {
        parts
            .iter()
            .find(|part| part.name == name)
            .map(|part| String::from_utf8_lossy(&part.bytes).into_owned())
    };
    let Some(image) = parts
        .iter()
        .find(|part| part.name == "image" && part.filename.is_some())
    else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let folder = field("type")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "input".into());
    let subfolder = field("subfolder").unwrap_or_default();
    let overwrite = field("overwrite").is_some_and(|o| o == "true" || o == "1");
    let filename = image.filename.clone().unwrap_or_default();
    if filename.is_empty()
        || filename.contains(['/', '\\'])
        || subfolder.split(['/', '\\']).any(|s| s == "..")
        || subfolder.starts_with('/')
        || !["input", "output", "temp"].contains(&folder.as_str())
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let mut inner = shared.lock();
    let (stem, ext) = filename
        .rsplit_once('.')
        .map_or((filename.as_str(), String::new()), |(stem, ext)| {
            (stem, format!(".{ext}"))
        });
    let mut name = filename.clone();
    let mut n = 1;
    while !overwrite
        && let Some(existing) = inner
            .files
            .get(&(folder.clone(), subfolder.clone(), name.clone()))
        && *existing != image.bytes
    {
        name = format!("{stem} ({n}){ext}");
        n += 1;
    }
    inner.files.insert(
        (folder.clone(), subfolder.clone(), name.clone()),
        image.bytes.clone(),
    );
    json_answer(
        StatusCode::OK,
        &json!({"name": name, "subfolder": subfolder, "type": folder}),
    )
}

/// `GET /view`: an uploaded file, or a small PNG for an image a run saved (history lists
/// it). 400 for a bad name, 403 for a subfolder outside the folder, 404 for anything else.
fn view(shared: &Shared, query: &str) -> Response {
    let param = |key: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| percent_decode(&v.replace('+', " ")))
        })
    };
    let filename = param("filename").unwrap_or_default();
    if filename.is_empty() || filename.starts_with('/') || filename.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let folder = param("type")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "output".into());
    let subfolder = param("subfolder").unwrap_or_default();
    if subfolder.split(['/', '\\']).any(|s| s == "..") || subfolder.starts_with('/') {
        return StatusCode::FORBIDDEN.into_response();
    }
    let inner = shared.lock();
    let stored = inner
        .files
        .get(&(folder.clone(), subfolder.clone(), filename.clone()))
        .cloned();
    let produced = || {
        inner.history.values().any(|entry| {
            entry["outputs"].as_object().is_some_and(|outputs| {
                outputs.values().any(|ui| {
                    ui["images"].as_array().is_some_and(|images| {
                        images.iter().any(|image| {
                            image["filename"] == filename.as_str()
                                && image["subfolder"].as_str().unwrap_or_default() == subfolder
                                && image["type"].as_str().unwrap_or("output") == folder
                        })
                    })
                })
            })
        })
    };
    let bytes = match stored {
        Some(bytes) => bytes,
        None if filename.to_ascii_lowercase().ends_with(".png") && produced() => {
            tiny_png(8, 8, [200, 60, 40])
        }
        None => return StatusCode::NOT_FOUND.into_response(),
    };
    let content_type = if filename.to_ascii_lowercase().ends_with(".png") {
        "image/png"
    } else if filename.to_ascii_lowercase().ends_with(".webp") {
        "image/webp"
    } else {
        "application/octet-stream"
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("filename=\"{filename}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// One part of a multipart form.
#[derive(Debug)]
struct Part {
    name: String,
    filename: Option<String>,
    bytes: Vec<u8>,
}

/// Splits a `multipart/form-data` body into its parts; `None` when it isn't one.
fn multipart_parts(headers: &HeaderMap, body: &[u8]) -> Option<Vec<Part>> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = body;
    // Skip the preamble up to the first delimiter.
    let first = find(rest, &delimiter)?;
    rest = &rest[first + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = find(rest, &delimiter)?;
        let part = rest[..end].strip_suffix(b"\r\n")?;
        rest = &rest[end + delimiter.len()..];
        let split = find(part, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..split]);
        let bytes = part[split + 4..].to_vec();
        let disposition = head
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with("content-disposition"))?;
        let attribute = |key: &str| {
            disposition.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(key)
                    .and_then(|v| v.strip_prefix('='))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        parts.push(Part {
            name: attribute("name")?,
            filename: attribute("filename"),
            bytes,
        });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A valid PNG of one flat colour: 8-bit RGB rows, one stored (uncompressed) deflate block,
/// with real CRCs and Adler-32, so decoders accept it.
pub fn tiny_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend(u32::try_from(data.len()).expect("small").to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFF_u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    // Each row: filter type 0 (none), then the pixels.
    let mut row = vec![0_u8];
    for _ in 0..width {
        row.extend(rgb);
    }
    let raw = row.repeat(height as usize);
    assert!(raw.len() <= 0xFFFF, "one stored block holds the image");
    let len = u16::try_from(raw.len()).expect("small");
    let (mut a, mut b) = (1_u32, 0_u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend(len.to_le_bytes());
    zlib.extend((!len).to_le_bytes());
    zlib.extend(&raw);
    zlib.extend(((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// `%xx` escapes in a URL path segment or query value undone (invalid ones kept as they are).
pub fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = segment.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
