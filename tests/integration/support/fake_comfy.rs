//! A fake ComfyUI built from the recordings of a live 0.3.64 server: the same routes (with and
//! without the `/api` prefix), the same bodies, the recorded WebSocket sequence of a run replayed
//! to the client that queued it, and the faults a real one shows in the field: 5xx answers,
//! slow answers, a WebSocket dropped mid-run, and going away and coming back on the same port.

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
}

impl RecordedRun {
    fn source(self) -> (&'static str, &'static str) {
        match self {
            Self::Basic => ("ws-basic", "511413d5-0469-45fc-9a9d-5fd7338c99f8"),
            Self::Progress => ("ws-testing", "85cd2605-1ab0-438d-9011-a10029e66b6c"),
            Self::Failure => ("ws-basic", "12517713-281a-4dcb-8041-6e54c58845c7"),
            Self::Previews => ("ws-binary", "14701581-fbb1-4acb-baa8-bdc74ce46a60"),
        }
    }
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
    /// The open WebSocket per client id (a reconnect replaces it, as in ComfyUI).
    sockets: HashMap<String, mpsc::UnboundedSender<ToSocket>>,
    /// Text messages clients sent on their sockets (`feature_flags`).
    from_clients: Vec<Value>,
    next_run: Option<RecordedRun>,
    /// Drop the socket after this many frames of the next run.
    drop_after: Option<usize>,
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
    route(&shared, &parts.method, path, query, &body)
}

fn route(shared: &Shared, method: &Method, path: &str, query: &str, body: &Bytes) -> Response {
    let recorded = &shared.recorded;
    match (method, path) {
        (&Method::GET, "/system_stats") => json_answer(StatusCode::OK, &recorded.system_stats),
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
        (&Method::POST, "/interrupt") => StatusCode::OK.into_response(),
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
    if let Value::Object(cases) = &shared.recorded.errors {
        for case in cases.values() {
            if case["request"]["prompt"] == request["prompt"] && case["response"]["status"] != 200 {
                let status = case["response"]["status"].as_u64().unwrap_or(400);
                let status = StatusCode::from_u16(u16::try_from(status).unwrap_or(400))
                    .unwrap_or(StatusCode::BAD_REQUEST);
                return json_answer(status, &case["response"]["body"]);
            }
        }
    }
    let mut inner = shared.lock();
    inner.prompts_queued += 1;
    let prompt_id = request["prompt_id"]
        .as_str()
        .map_or_else(|| format!("fake-{}", inner.prompts_queued), String::from);
    let number = inner.prompts_queued;
    let run = inner.next_run.take().unwrap_or(RecordedRun::Basic);
    let drop_after = inner.drop_after.take();
    inner.running.push(queue_item(0, &prompt_id));
    drop(inner);
    tokio::spawn(replay(
        shared.clone(),
        run,
        prompt_id.clone(),
        request["client_id"].as_str().map(String::from),
        request["prompt"].clone(),
        drop_after,
    ));
    json_answer(
        StatusCode::OK,
        &json!({"prompt_id": prompt_id, "number": number, "node_errors": {}}),
    )
}

/// The frames of a recorded run: what the recording's client received between the note that
/// queued it and the next note.
fn recorded_frames(recorded: &Recorded, run: RecordedRun) -> Vec<Frame> {
    let (section, recorded_id) = run.source();
    let mut frames = Vec::new();
    let mut inside = false;
    for record in &recorded.transcript {
        if record["section"] != section {
            continue;
        }
        if record["kind"] == "note" {
            inside = record["note"]
                .as_str()
                .is_some_and(|note| note.contains(recorded_id));
            continue;
        }
        if !inside || record["who"] != "client" {
            continue;
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

/// Plays a recorded run to the client that queued it, then records it in history.
async fn replay(
    shared: Shared,
    run: RecordedRun,
    prompt_id: String,
    client_id: Option<String>,
    prompt: Value,
    drop_after: Option<usize>,
) {
    let (_, recorded_id) = run.source();
    let frames = recorded_frames(&shared.recorded, run);
    let mut outputs = serde_json::Map::new();
    let mut messages = Vec::new();
    let mut failed = false;
    let mut recorded = false;
    for (sent, frame) in frames.into_iter().enumerate() {
        let frame = match frame {
            Frame::Text(text) => Frame::Text(text.replace(recorded_id, &prompt_id)),
            Frame::Binary(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                if text.contains(recorded_id) {
                    // Metadata frames name the prompt; the image bytes are not UTF-8-safe, so
                    // swap the id inside the metadata only.
                    Frame::Binary(swap_in_metadata(&bytes, recorded_id, &prompt_id))
                } else {
                    Frame::Binary(bytes)
                }
            }
        };
        if let Frame::Text(text) = &frame {
            let message: Value = serde_json::from_str(text).expect("JSON");
            match message["type"].as_str() {
                Some("executed") => {
                    let node = message["data"]["node"].as_str().unwrap_or("?").to_string();
                    outputs.insert(node, message["data"]["output"].clone());
                }
                Some(
                    kind @ ("execution_start"
                    | "execution_success"
                    | "execution_error"
                    | "execution_interrupted"
                    | "execution_cached"),
                ) => {
                    failed |= kind == "execution_error";
                    messages.push(json!([kind, message["data"]]));
                }
                _ => {}
            }
        }
        // As in ComfyUI, the run is in history before the final `executing` (node null).
        if let Frame::Text(text) = &frame
            && serde_json::from_str::<Value>(text)
                .is_ok_and(|m| m["type"] == "executing" && m["data"]["node"].is_null())
        {
            record_history(
                &shared,
                &prompt_id,
                client_id.as_deref(),
                &prompt,
                &outputs,
                &messages,
                failed,
            );
            recorded = true;
        }
        if drop_after == Some(sent)
            && let Some(client) = &client_id
            && let Some(socket) = shared.lock().sockets.remove(client)
        {
            let _ = socket.send(ToSocket::Drop);
        }
        if let Some(client) = &client_id {
            let socket = shared.lock().sockets.get(client).cloned();
            if let Some(socket) = socket {
                let _ = socket.send(ToSocket::Frame(frame));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if !recorded {
        record_history(
            &shared,
            &prompt_id,
            client_id.as_deref(),
            &prompt,
            &outputs,
            &messages,
            failed,
        );
    }
}

fn record_history(
    shared: &Shared,
    prompt_id: &str,
    client_id: Option<&str>,
    prompt: &Value,
    outputs: &serde_json::Map<String, Value>,
    messages: &[Value],
    failed: bool,
) {
    let mut inner = shared.lock();
    inner
        .running
        .retain(|item| item[1].as_str() != Some(prompt_id));
    let number = inner.prompts_queued;
    let status = if failed { "error" } else { "success" };
    inner.history.insert(
        prompt_id.to_string(),
        json!({
            "prompt": [number, prompt_id, prompt, {"client_id": client_id}, outputs.keys().collect::<Vec<_>>()],
            "outputs": outputs,
            "status": {"status_str": status, "completed": !failed, "messages": messages},
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

fn percent_decode(segment: &str) -> String {
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
