//! A fake ComfyUI built from the recordings of a live 0.3.64 server: the same routes (with and
//! without the `/api` prefix), the same bodies, and the faults a real one shows in the field:
//! 5xx answers, slow answers, and going away and coming back on the same port.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
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
}

#[derive(Debug)]
struct Recorded {
    object_info: Value,
    system_stats: Value,
    errors: Value,
}

#[derive(Clone, Debug)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    recorded: Arc<Recorded>,
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
        let recorded = Recorded {
            object_info: read_fixture("object_info.json"),
            system_stats: samples["GET /system_stats"]["body"].clone(),
            errors: read_fixture("errors.json"),
        };
        let mut inner = Inner::default();
        if let Value::Object(entries) = read_fixture("history-outputs.json") {
            inner.history.extend(entries);
        }
        let shared = Shared {
            inner: Arc::new(Mutex::new(inner)),
            recorded: Arc::new(recorded),
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
        let app = Router::new()
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
    json_answer(
        StatusCode::OK,
        &json!({"prompt_id": prompt_id, "number": number, "node_errors": {}}),
    )
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
