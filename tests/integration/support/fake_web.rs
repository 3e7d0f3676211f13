//! A fake of the public web APIs the discovery tools read, built from their documented response
//! shapes (fixtures in `tests/fixtures/web/`): the Comfy registry under `/registry/`, CivitAI
//! under `/civitai/` and Hugging Face under `/hf/`. Each source can be made to fail the way the
//! real ones do: a status (500), a 429 with `Retry-After`, malformed JSON, or no answer at all.
//! Every request is recorded, headers included, so tests can check what was sent.

use super::fake_comfy::percent_decode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::fixture;

/// The three sources, by their path prefix on the fake.
pub const REGISTRY: &str = "registry";
pub const CIVITAI: &str = "civitai";
pub const HUGGINGFACE: &str = "hf";

/// How a source fails until healed.
#[derive(Debug, Clone)]
pub enum WebFault {
    /// This status with a short JSON error body.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    RateLimited(u64),
    /// 200 with a body that isn't JSON.
    Malformed,
    /// No answer for a minute (longer than any timeout a test sets).
    Hang,
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// `registry`, `civitai` or `hf`.
    pub source: String,
    /// The path after the source's prefix, still percent-encoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    faults: HashMap<String, WebFault>,
    seen: Vec<SeenRequest>,
}

#[derive(Debug, Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    fixtures: Arc<Fixtures>,
}

#[derive(Debug)]
struct Fixtures {
    registry_search: Value,
    registry_comfy_nodes: Value,
    civitai_models: Value,
    civitai_model_4201: Value,
    hf_models: Value,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub struct FakeWeb {
    addr: SocketAddr,
    shared: Shared,
    stop: CancellationToken,
}

fn read(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("web/{name}"))).expect("web fixture");
    serde_json::from_str(&text).expect("web fixture is JSON")
}

impl FakeWeb {
    pub async fn start() -> Self {
        let shared = Shared {
            inner: Arc::default(),
            fixtures: Arc::new(Fixtures {
                registry_search: read("registry-search.json"),
                registry_comfy_nodes: read("registry-comfy-nodes.json"),
                civitai_models: read("civitai-models.json"),
                civitai_model_4201: read("civitai-model-4201.json"),
                hf_models: read("hf-models.json"),
            }),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let signal = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { signal.cancelled().await })
                .await;
        });
        Self { addr, shared, stop }
    }

    /// The base URL of one source, as its `COMFYUI_AGENT_*_URL` setting takes it.
    pub fn url(&self, source: &str) -> String {
        format!("http://{}/{source}/", self.addr)
    }

    /// The settings that point the agent at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("COMFYUI_AGENT_REGISTRY_URL", self.url(REGISTRY)),
            ("COMFYUI_AGENT_CIVITAI_URL", self.url(CIVITAI)),
            ("COMFYUI_AGENT_HUGGINGFACE_URL", self.url(HUGGINGFACE)),
        ]
    }

    /// Every request to `source` meets `fault` until [`Self::heal`].
    pub fn fail(&self, source: &str, fault: WebFault) {
        self.shared.lock().faults.insert(source.to_string(), fault);
    }

    pub fn heal(&self, source: &str) {
        self.shared.lock().faults.remove(source);
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.shared.lock().seen.clone()
    }

    /// Requests to `source` so far.
    pub fn hits(&self, source: &str) -> usize {
        self.seen().iter().filter(|s| s.source == source).count()
    }
}

impl Drop for FakeWeb {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"message": format!("{what} not found")}),
    )
}

/// Whether any word of `query` is in one of `texts` (any case); an empty query matches all.
fn matches(query: Option<&str>, texts: &[&str]) -> bool {
    let Some(query) = query
        .map(str::to_lowercase)
        .filter(|q| !q.trim().is_empty())
    else {
        return true;
    };
    let haystack = texts.join(" ").to_lowercase();
    query.split_whitespace().any(|w| haystack.contains(w))
}

fn limit_of(params: &HashMap<String, String>, default: usize) -> usize {
    params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(default)
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().trim_start_matches('/').to_string();
    let (source, rest) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fault = {
        let mut inner = shared.lock();
        inner.seen.push(SeenRequest {
            source: source.to_string(),
            path: rest.to_string(),
            query: query.clone(),
            authorization,
        });
        inner.faults.get(source).cloned()
    };
    match fault {
        Some(WebFault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return json_response(status, &json!({"error": "injected failure"}));
        }
        Some(WebFault::RateLimited(seconds)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, seconds.to_string())],
                "slow down",
            )
                .into_response();
        }
        Some(WebFault::Malformed) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"items\": [ not json",
            )
                .into_response();
        }
        Some(WebFault::Hang) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        None => {}
    }
    let params: HashMap<String, String> = query.into_iter().collect();
    let fixtures = &shared.fixtures;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (source, segments.as_slice()) {
        (REGISTRY, ["nodes", "search"]) => {
            let search = params.get("search").map(String::as_str);
            let nodes: Vec<Value> = fixtures.registry_search["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| {
                    matches(
                        search,
                        &[
                            n["name"].as_str().unwrap_or(""),
                            n["description"].as_str().unwrap_or(""),
                            n["id"].as_str().unwrap_or(""),
                        ],
                    )
                })
                .take(limit_of(&params, 10))
                .cloned()
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"nodes": nodes, "total": nodes.len(), "page": 1, "limit": 10, "totalPages": 1}),
            )
        }
        (REGISTRY, ["comfy-nodes", name, "node"]) => {
            match fixtures.registry_comfy_nodes.get(percent_decode(name)) {
                Some(node) => json_response(StatusCode::OK, node),
                None => not_found("comfy node"),
            }
        }
        (REGISTRY, ["nodes", id]) => {
            let id = percent_decode(id);
            let all = fixtures.registry_search["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(
                    fixtures
                        .registry_comfy_nodes
                        .as_object()
                        .into_iter()
                        .flat_map(|o| o.values()),
                );
            match all.into_iter().find(|n| n["id"] == id.as_str()) {
                Some(node) => json_response(StatusCode::OK, node),
                None => not_found("node"),
            }
        }
        (CIVITAI, ["models"]) => {
            let search = params.get("query").map(String::as_str);
            let items: Vec<Value> = fixtures.civitai_models["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| {
                    let tags: Vec<&str> = m["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    matches(search, &[m["name"].as_str().unwrap_or(""), &tags.join(" ")])
                })
                .filter(|m| params.get("types").is_none_or(|t| m["type"] == t.as_str()))
                .filter(|m| {
                    params
                        .get("baseModels")
                        .is_none_or(|b| m["modelVersions"][0]["baseModel"] == b.as_str())
                })
                .take(limit_of(&params, 20))
                .cloned()
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"items": items, "metadata": {"totalItems": items.len(), "currentPage": 1, "pageSize": 20}}),
            )
        }
        (CIVITAI, ["models", "4201"]) => {
            json_response(StatusCode::OK, &fixtures.civitai_model_4201)
        }
        (CIVITAI, ["models", _]) => {
            json_response(StatusCode::NOT_FOUND, &json!({"error": "No model with id"}))
        }
        (HUGGINGFACE, ["api", "models"]) => {
            let search = params.get("search").map(String::as_str);
            let models: Vec<Value> = fixtures
                .hf_models
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| matches(search, &[m["id"].as_str().unwrap_or("")]))
                .take(limit_of(&params, 10))
                .cloned()
                .collect();
            json_response(StatusCode::OK, &Value::Array(models))
        }
        _ => not_found("route"),
    }
}
