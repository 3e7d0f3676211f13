//! `Client`: one per ComfyUI endpoint, shared by every session. Pooled HTTP/1.1 connections,
//! a timeout per operation, the circuit breaker, retries of idempotent reads within the retry
//! budget (a prompt is never re-posted), and the cached node registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use super::api::{History, HistoryEntry, Queue, SystemStats};
use super::breaker::{Breaker, BreakerSnapshot};
use super::budget::{Jitter, RetryBudget, backoff};
use super::error::{ComfyError, PortHint};
use super::nodes::{Node, NodeIndex};
use crate::config::ComfyConfig;
use crate::telemetry::metrics::{ComfyMetrics, RequestOutcome};

/// How long a fetched node registry is trusted before it is fetched again.
pub const NODE_CACHE_TTL: Duration = Duration::from_secs(300);
/// Retries after the first attempt, for idempotent reads.
const MAX_RETRIES: u32 = 2;
/// The largest answer read for the node registry (the stock one is about 0.7 MB; big custom
/// node collections reach tens of MB).
const MAX_OBJECT_INFO_BYTES: usize = 128 * 1024 * 1024;
/// The largest answer read for anything else.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// The largest file read through `GET /view` (a 4K 16-bit PNG is about 50 MB).
pub const MAX_VIEW_BYTES: usize = 64 * 1024 * 1024;
/// The largest image sent to `POST /upload/image`: ComfyUI's default request limit
/// (`--max-upload-size`, 100 MB), less room for the form around the file.
pub const MAX_UPLOAD_BYTES: usize = 100 * 1024 * 1024 - 64 * 1024;

/// One kind of call to ComfyUI: its name for settings and logs, its default timeout, what it
/// is in words, and whether it may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    SystemStats,
    ObjectInfo,
    NodeInfo,
    Queue,
    History,
    /// POST /prompt: never retried; a retry could run the job twice.
    Prompt,
    /// POST /queue `{"delete": …}` and POST /interrupt: never retried (an interrupt without
    /// a prompt id, repeated late, could stop the next prompt).
    Cancel,
    /// POST /upload/image (multipart).
    Upload,
    /// GET /view: one output or input file.
    View,
}

impl Operation {
    pub const ALL: [Self; 9] = [
        Self::SystemStats,
        Self::ObjectInfo,
        Self::NodeInfo,
        Self::Queue,
        Self::History,
        Self::Prompt,
        Self::Cancel,
        Self::Upload,
        Self::View,
    ];

    /// The name used in `COMFYUI_AGENT_TIMEOUTS`.
    pub fn name(self) -> &'static str {
        match self {
            Self::SystemStats => "system_stats",
            Self::ObjectInfo => "object_info",
            Self::NodeInfo => "node_info",
            Self::Queue => "queue",
            Self::History => "history",
            Self::Prompt => "prompt",
            Self::Cancel => "cancel",
            Self::Upload => "upload",
            Self::View => "view",
        }
    }

    /// The operation a `COMFYUI_AGENT_TIMEOUTS` key names: an operation name, or the name
    /// of a tool that makes that call (`get_queue_status=10` is `queue=10`).
    pub fn from_setting(key: &str) -> Option<Self> {
        let key = key.trim();
        if let Some(op) = Self::ALL.into_iter().find(|op| op.name() == key) {
            return Some(op);
        }
        match key {
            "is_comfyui_running" | "get_system_stats" => Some(Self::SystemStats),
            "get_all_nodes" => Some(Self::ObjectInfo),
            "get_node_info" => Some(Self::NodeInfo),
            "get_queue_status" => Some(Self::Queue),
            "get_history" => Some(Self::History),
            "execute_workflow" | "execute_with_progress" => Some(Self::Prompt),
            "cancel_execution" | "interrupt" | "delete_queued" => Some(Self::Cancel),
            "upload_image" => Some(Self::Upload),
            "get_output_image" => Some(Self::View),
            _ => None,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::SystemStats => "the system check",
            Self::ObjectInfo => "the node list request",
            Self::NodeInfo => "the node details request",
            Self::Queue => "the queue request",
            Self::History => "the history request",
            Self::Prompt => "the queued workflow",
            Self::Cancel => "the cancel request",
            Self::Upload => "the image upload",
            Self::View => "the file request",
        }
    }

    pub fn default_timeout(self) -> Duration {
        Duration::from_secs(match self {
            Self::SystemStats | Self::Queue => 5,
            Self::NodeInfo | Self::History | Self::Cancel => 10,
            Self::ObjectInfo | Self::Prompt | Self::View => 30,
            // 100 MB over a slow link to a remote ComfyUI.
            Self::Upload => 120,
        })
    }

    fn idempotent(self) -> bool {
        !matches!(self, Self::Prompt | Self::Cancel | Self::Upload)
    }

    fn max_bytes(self) -> usize {
        match self {
            Self::ObjectInfo => MAX_OBJECT_INFO_BYTES,
            Self::View => MAX_VIEW_BYTES,
            _ => MAX_ANSWER_BYTES,
        }
    }
}

/// A status and body from ComfyUI (any status below 500; 5xx are errors).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The `Content-Type` header, when ComfyUI sent one.
    pub content_type: Option<String>,
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    Json(Vec<u8>),
    /// An image for `POST /upload/image`, sent as the multipart form ComfyUI reads.
    Image {
        bytes: Vec<u8>,
        filename: String,
        subfolder: String,
        overwrite: bool,
    },
}

/// Call counts and latency, for `/readyz`, tools and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallStats {
    pub calls: u64,
    pub failures: u64,
    pub retries: u64,
    pub last_latency: Option<Duration>,
    pub max_latency: Duration,
    pub total_latency: Duration,
}

#[derive(Debug)]
struct CachedIndex {
    index: Arc<NodeIndex>,
    fetched: Instant,
    /// The size of ComfyUI's answer it was parsed from.
    bytes: usize,
}

#[derive(Debug)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    headers: HeaderMap,
    hint: PortHint,
    breaker: Breaker,
    budget: Mutex<RetryBudget>,
    timeouts: HashMap<&'static str, Duration>,
    stats: Mutex<CallStats>,
    nodes: RwLock<Option<CachedIndex>>,
    /// Held while the registry is being fetched, so concurrent callers wait for one fetch.
    nodes_refresh: tokio::sync::Mutex<()>,
    jitter: Jitter,
    /// Request durations and outcomes, retries; shared by every client of one server.
    metrics: Arc<ComfyMetrics>,
}

/// Settings that make the HTTP client unusable (a bad auth header value, no TLS support).
#[derive(Debug, thiserror::Error)]
#[error("the ComfyUI client could not be set up: {0}")]
pub struct ClientSetupError(String);

impl Client {
    pub fn new(base: Url, config: &ComfyConfig, hint: PortHint) -> Result<Self, ClientSetupError> {
        let mut headers = HeaderMap::new();
        if let Some(auth) = &config.auth {
            let name = HeaderName::from_bytes(auth.header.as_bytes())
                .map_err(|e| ClientSetupError(format!("COMFYUI_AUTH_HEADER: {e}")))?;
            let mut value = HeaderValue::from_str(auth.value.expose()).map_err(|_| {
                ClientSetupError("COMFYUI_AUTH_TOKEN is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let tls = super::tls_config().map_err(|e| ClientSetupError(format!("TLS: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("comfyui-agent/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers.clone())
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .tcp_nodelay(true)
            .tls_backend_preconfigured((*tls).clone());
        // A proxy from the environment must not sit between us and a local ComfyUI.
        if base.host().is_some_and(|host| {
            matches!(host, url::Host::Domain("localhost")) || is_loopback(&host)
        }) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| ClientSetupError(e.to_string()))?;
        let mut timeouts: HashMap<&'static str, Duration> = Operation::ALL
            .iter()
            .map(|op| (op.name(), op.default_timeout()))
            .collect();
        // Settings are validated when read, so every name here is known.
        for (name, duration) in &config.timeouts {
            if let Some(op) = Operation::from_setting(name) {
                timeouts.insert(op.name(), *duration);
            }
        }
        Ok(Self {
            base,
            http,
            headers,
            hint,
            breaker: Breaker::new(config.breaker_failures),
            budget: Mutex::new(RetryBudget::new()),
            timeouts,
            stats: Mutex::new(CallStats::default()),
            nodes: RwLock::new(None),
            nodes_refresh: tokio::sync::Mutex::new(()),
            jitter: Jitter::default(),
            metrics: Arc::default(),
        })
    }

    /// Records this client's requests into `metrics` (the server's), instead of its own.
    pub fn with_metrics(mut self, metrics: Arc<ComfyMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The headers sent with every request (the upstream auth), for the WebSocket.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Which port advice fits this endpoint, for errors raised outside the HTTP path (the
    /// WebSocket).
    pub fn port_hint(&self) -> PortHint {
        self.hint
    }

    pub fn breaker(&self) -> BreakerSnapshot {
        self.breaker.snapshot()
    }

    pub fn stats(&self) -> CallStats {
        *lock(&self.stats)
    }

    pub fn timeout(&self, op: Operation) -> Duration {
        self.timeouts
            .get(op.name())
            .copied()
            .unwrap_or_else(|| op.default_timeout())
    }

    fn url(&self, path: &str) -> Url {
        // Paths are relative ("system_stats"), so a base path like /comfy/ is kept.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    /// GET `path` and read the body as JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        op: Operation,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ComfyError> {
        let answer = self
            .call(op, reqwest::Method::GET, path, query, None)
            .await?;
        self.expect_ok(op, &answer)?;
        self.parse(op, &answer.body)
    }

    /// POST a JSON body once (never retried). Any status below 500 comes back for the caller
    /// to read: ComfyUI's 400s carry structured validation errors.
    pub async fn post_json(
        &self,
        op: Operation,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, ComfyError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ComfyError::BadAnswer {
            url: self.base.to_string(),
            what: op.what(),
            reason: format!("the request could not be encoded ({e})"),
        })?;
        self.call(
            op,
            reqwest::Method::POST,
            path,
            &[],
            Some(Payload::Json(bytes)),
        )
        .await
    }

    pub fn parse<T: DeserializeOwned>(&self, op: Operation, body: &[u8]) -> Result<T, ComfyError> {
        // ComfyUI answers some calls with an empty 200; read that as an empty object.
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            body
        };
        serde_json::from_slice(body).map_err(|error| ComfyError::BadAnswer {
            url: self.base.to_string(),
            what: op.what(),
            reason: format!("it isn't the JSON ComfyUI sends ({error})"),
        })
    }

    pub(crate) fn expect_ok(&self, op: Operation, answer: &Answer) -> Result<(), ComfyError> {
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        Err(ComfyError::Status {
            url: self.base.to_string(),
            what: op.what(),
            status: answer.status,
            body: String::from_utf8_lossy(&answer.body).into_owned(),
        })
    }

    /// One logical call: breaker, timeout, and for idempotent reads, budgeted retries.
    pub(crate) async fn call(
        &self,
        op: Operation,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        mut body: Option<Payload>,
    ) -> Result<Answer, ComfyError> {
        lock(&self.budget).record_request();
        let mut attempt = 0;
        loop {
            // Only retried calls need the body again; an upload isn't copied.
            let this = if op.idempotent() {
                body.clone()
            } else {
                body.take()
            };
            let outcome = self.attempt(op, &method, path, query, this, attempt).await;
            let retryable = match &outcome {
                Err(Failure::Connect(_)) => true,
                Err(Failure::Status(answer)) => matches!(answer.status, 502..=504),
                _ => false,
            };
            let granted = retryable && op.idempotent() && attempt < MAX_RETRIES && {
                let granted = lock(&self.budget).try_retry();
                self.metrics.record_retry(granted);
                granted
            };
            if granted {
                attempt += 1;
                lock(&self.stats).retries += 1;
                let wait = backoff(attempt, self.jitter.draw());
                tracing::debug!(
                    operation = op.name(),
                    attempt,
                    ?wait,
                    "retrying a ComfyUI read"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return outcome.map_err(|failure| self.describe(op, failure));
        }
    }

    /// Asks ComfyUI for its system stats now, even while the breaker is open (an explicit
    /// health check shouldn't wait for the probe schedule); the answer closes or re-opens it.
    pub async fn check_now(&self) -> Result<SystemStats, ComfyError> {
        let op = Operation::SystemStats;
        let permit = self.breaker.force_probe();
        let answer = self
            .exchange(
                op,
                permit,
                &reqwest::Method::GET,
                "system_stats",
                &[],
                None,
                0,
            )
            .await
            .map_err(|failure| self.describe(op, failure))?;
        self.expect_ok(op, &answer)?;
        self.parse(op, &answer.body)
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        op: Operation,
        method: &reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Payload>,
        resend: u32,
    ) -> Result<Answer, Failure> {
        let permit = match self.breaker.admit() {
            Ok(permit) => permit,
            Err(rejected) => {
                // Refused without a request: still a span, so traces show why.
                self.metrics
                    .record_request(op, RequestOutcome::BreakerOpen, Duration::ZERO);
                let span = self.span(op, method, resend);
                let failure = Failure::Open(rejected);
                record_failure(&span, &failure);
                return Err(failure);
            }
        };
        self.exchange(op, permit, method, path, query, body, resend)
            .await
    }

    /// The client span for one request (HTTP client semantic conventions). `url.full` is
    /// recorded only when someone listens, and without credentials.
    fn span(&self, op: Operation, method: &reqwest::Method, resend: u32) -> tracing::Span {
        use crate::telemetry::names::{
            COMFYUI_OPERATION, ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_REQUEST_RESEND_COUNT,
            HTTP_RESPONSE_STATUS_CODE, OTEL_KIND, OTEL_NAME, OTEL_STATUS_CODE, SERVER_ADDRESS,
            SERVER_PORT, SPAN_COMFY_HTTP, URL_FULL,
        };
        use tracing::field::Empty;
        let span = tracing::info_span!(
            SPAN_COMFY_HTTP,
            { OTEL_NAME } = method.as_str(),
            { OTEL_KIND } = "client",
            { HTTP_REQUEST_METHOD } = method.as_str(),
            { URL_FULL } = Empty,
            { SERVER_ADDRESS } = self.base.host_str().unwrap_or_default(),
            { SERVER_PORT } = self.base.port_or_known_default().unwrap_or_default(),
            { COMFYUI_OPERATION } = op.name(),
            { HTTP_REQUEST_RESEND_COUNT } = Empty,
            { HTTP_RESPONSE_STATUS_CODE } = Empty,
            { ERROR_TYPE } = Empty,
            { OTEL_STATUS_CODE } = Empty,
        );
        if resend > 0 {
            span.record(HTTP_REQUEST_RESEND_COUNT, resend);
        }
        span
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        op: Operation,
        permit: super::breaker::Permit<'_>,
        method: &reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Payload>,
        resend: u32,
    ) -> Result<Answer, Failure> {
        use tracing::Instrument as _;
        let mut url = self.url(path);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let span = self.span(op, method, resend);
        if !span.is_disabled() {
            record_url(&span, &url);
        }
        let outcome = self
            .send(op, permit, method, url, body)
            .instrument(span.clone())
            .await;
        if !span.is_disabled() {
            match &outcome {
                Ok(answer) => record_status(&span, answer.status),
                Err(failure) => record_failure(&span, failure),
            }
        }
        outcome
    }

    async fn send(
        &self,
        op: Operation,
        permit: super::breaker::Permit<'_>,
        method: &reqwest::Method,
        url: Url,
        body: Option<Payload>,
    ) -> Result<Answer, Failure> {
        let timeout = self.timeout(op);
        let started = Instant::now();
        let mut request = self.http.request(method.clone(), url);
        match body {
            Some(Payload::Json(body)) => {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body);
            }
            Some(Payload::Image {
                bytes,
                filename,
                subfolder,
                overwrite,
            }) => {
                let part = reqwest::multipart::Part::bytes(bytes)
                    .file_name(filename.clone())
                    .mime_str(image_mime(&filename))
                    .map_err(|e| Failure::Connect(root_cause(&e)))?;
                let mut form = reqwest::multipart::Form::new()
                    .part("image", part)
                    .text("type", "input")
                    .text("subfolder", subfolder);
                if overwrite {
                    form = form.text("overwrite", "true");
                }
                request = request.multipart(form);
            }
            None => {}
        }
        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(String::from);
            let body = crate::httpbody::read_capped(&mut response, op.max_bytes()).await?;
            Ok::<_, reqwest::Error>(body.map(|body| Answer {
                status,
                body,
                content_type,
            }))
        };
        let result = tokio::time::timeout(timeout, exchange).await;
        let elapsed = started.elapsed();
        let outcome = match result {
            Err(_) => Err(Failure::Timeout(timeout)),
            Ok(Err(error)) if error.is_timeout() => Err(Failure::Timeout(timeout)),
            Ok(Err(error)) => Err(Failure::Connect(root_cause(&error))),
            Ok(Ok(Err(size))) => Err(Failure::TooLarge(size)),
            Ok(Ok(Ok(answer))) if answer.status >= 500 => Err(Failure::Status(answer)),
            Ok(Ok(Ok(answer))) => Ok(answer),
        };
        let failed = matches!(
            outcome,
            Err(Failure::Connect(_) | Failure::Timeout(_) | Failure::Status(_))
        );
        if failed {
            permit.failed();
        } else {
            permit.succeeded();
        }
        let recorded = match &outcome {
            Ok(answer) => RequestOutcome::of_status(answer.status),
            Err(Failure::Status(answer)) => RequestOutcome::of_status(answer.status),
            Err(Failure::Timeout(_)) => RequestOutcome::Timeout,
            Err(Failure::Connect(_)) => RequestOutcome::Unreachable,
            Err(Failure::TooLarge(_)) => RequestOutcome::TooLarge,
            Err(Failure::Open(_)) => RequestOutcome::BreakerOpen,
        };
        self.metrics.record_request(op, recorded, elapsed);
        let mut stats = lock(&self.stats);
        stats.calls += 1;
        stats.failures += u64::from(failed);
        stats.last_latency = Some(elapsed);
        stats.max_latency = stats.max_latency.max(elapsed);
        stats.total_latency += elapsed;
        outcome
    }

    fn describe(&self, op: Operation, failure: Failure) -> ComfyError {
        let url = self.base.to_string();
        match failure {
            Failure::Open(rejected) => ComfyError::BreakerOpen {
                url,
                retry_in: rejected.retry_in,
                failures: rejected.consecutive_failures,
                hint: self.hint,
            },
            Failure::Connect(detail) => ComfyError::Unreachable {
                url,
                detail,
                hint: self.hint,
            },
            Failure::Timeout(after) => ComfyError::Timeout {
                url,
                operation: op.name(),
                what: op.what(),
                after,
            },
            Failure::Status(answer) => ComfyError::Status {
                url,
                what: op.what(),
                status: answer.status,
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            },
            Failure::TooLarge(size) if op == Operation::View => ComfyError::TooLarge {
                url,
                what: op.what(),
                size: size as u64,
                limit: op.max_bytes() as u64,
            },
            Failure::TooLarge(size) => ComfyError::BadAnswer {
                url,
                what: op.what(),
                reason: format!(
                    "it is larger than the {} MB this server reads (at least {} MB)",
                    op.max_bytes() / (1024 * 1024),
                    size / (1024 * 1024)
                ),
            },
        }
    }

    /// Whether a ComfyUI answers at this address within `within`, for port discovery. Outside
    /// the breaker: probing a port nobody listens on is expected to fail.
    pub async fn probe(&self, within: Duration) -> bool {
        let request = self.http.get(self.url("system_stats")).timeout(within);
        let Ok(Ok(response)) = tokio::time::timeout(within, request.send()).await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        let Ok(Ok(body)) = tokio::time::timeout(within, response.bytes()).await else {
            return false;
        };
        serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|value| {
            value
                .get("system")
                .is_some_and(serde_json::Value::is_object)
        })
    }

    pub async fn system_stats(&self) -> Result<SystemStats, ComfyError> {
        self.get_json(Operation::SystemStats, "system_stats", &[])
            .await
    }

    pub async fn queue(&self) -> Result<Queue, ComfyError> {
        self.get_json(Operation::Queue, "queue", &[]).await
    }

    /// The newest `max_items` runs (all of them when `None`), oldest first.
    pub async fn history(&self, max_items: Option<u32>) -> Result<History, ComfyError> {
        let query: Vec<(&str, String)> = max_items
            .map(|n| vec![("max_items", n.to_string())])
            .unwrap_or_default();
        self.get_json(Operation::History, "history", &query).await
    }

    /// One run, or `None` when ComfyUI has no finished run with that id (it may be queued).
    pub async fn history_entry(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ComfyError> {
        let path = format!("history/{}", encode_segment(prompt_id));
        let history: History = self.get_json(Operation::History, &path, &[]).await?;
        Ok(history
            .entries
            .into_iter()
            .find(|(id, _)| id == prompt_id)
            .map(|(_, entry)| entry))
    }

    /// The node registry, from the cache while it is fresh. `refresh` fetches it anew. When a
    /// refresh fails but an older copy exists, the older copy is served (and logged).
    pub async fn nodes(&self, refresh: bool) -> Result<Arc<NodeIndex>, ComfyError> {
        if !refresh && let Some(index) = self.cached_nodes(NODE_CACHE_TTL) {
            return Ok(index);
        }
        let asked = Instant::now();
        let _fetching = self.nodes_refresh.lock().await;
        // Someone else may have fetched it while this call waited: for a refresh, only a
        // fetch that finished after this call asked is new enough.
        let max_age = if refresh {
            asked.elapsed()
        } else {
            NODE_CACHE_TTL
        };
        if let Some(index) = self.cached_nodes(max_age) {
            return Ok(index);
        }
        match self.fetch_nodes().await {
            Ok(index) => Ok(index),
            Err(error) => match self.cached_nodes(Duration::MAX) {
                Some(stale) if !refresh => {
                    tracing::info!(error = %error, "serving the node list from an older copy");
                    Ok(stale)
                }
                _ => Err(error),
            },
        }
    }

    /// The cached node list's size: node classes, and bytes of the answer it came from.
    pub fn node_cache(&self) -> Option<(usize, usize)> {
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|cached| (cached.index.len(), cached.bytes))
    }

    /// How long ago the cached node list was fetched, if there is one.
    pub fn node_list_age(&self) -> Option<Duration> {
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|cached| cached.fetched.elapsed())
    }

    pub(super) fn cached_nodes(&self, max_age: Duration) -> Option<Arc<NodeIndex>> {
        let cache = self
            .nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .as_ref()
            .filter(|cached| cached.fetched.elapsed() < max_age)
            .map(|cached| Arc::clone(&cached.index))
    }

    async fn fetch_nodes(&self) -> Result<Arc<NodeIndex>, ComfyError> {
        let op = Operation::ObjectInfo;
        let answer = self
            .call(op, reqwest::Method::GET, "object_info", &[], None)
            .await?;
        self.expect_ok(op, &answer)?;
        let index = NodeIndex::parse(&answer.body).map_err(|error| ComfyError::BadAnswer {
            url: self.base.to_string(),
            what: op.what(),
            reason: error.to_string(),
        })?;
        let index = Arc::new(index);
        *self
            .nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(CachedIndex {
            index: Arc::clone(&index),
            fetched: Instant::now(),
            bytes: answer.body.len(),
        });
        Ok(index)
    }

    /// One node class straight from ComfyUI (`{}` means there is none), for a name the
    /// cached registry lacks: a custom node installed since the last fetch shows up here.
    pub async fn node(&self, class: &str) -> Result<Option<Node>, ComfyError> {
        let op = Operation::NodeInfo;
        let path = format!("object_info/{}", encode_segment(class));
        let answer = self
            .call(op, reqwest::Method::GET, &path, &[], None)
            .await?;
        self.expect_ok(op, &answer)?;
        let index = NodeIndex::parse(&answer.body).map_err(|error| ComfyError::BadAnswer {
            url: self.base.to_string(),
            what: op.what(),
            reason: error.to_string(),
        })?;
        Ok(index.into_node(class))
    }
}

fn record_url(span: &tracing::Span, url: &Url) {
    use crate::telemetry::names::URL_FULL;
    if url.username().is_empty() && url.password().is_none() {
        span.record(URL_FULL, url.as_str());
    } else {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        span.record(URL_FULL, shown.as_str());
    }
}

fn record_status(span: &tracing::Span, status: u16) {
    use crate::telemetry::names::{ERROR_TYPE, HTTP_RESPONSE_STATUS_CODE, OTEL_STATUS_CODE};
    span.record(HTTP_RESPONSE_STATUS_CODE, status);
    // 4xx and 5xx are errors of a client span (HTTP conventions).
    if status >= 400 {
        span.record(ERROR_TYPE, status.to_string().as_str());
        span.record(OTEL_STATUS_CODE, "ERROR");
    }
}

fn record_failure(span: &tracing::Span, failure: &Failure) {
    use crate::telemetry::names::{ERROR_TYPE, OTEL_STATUS_CODE};
    let kind = match failure {
        Failure::Status(answer) => return record_status(span, answer.status),
        Failure::Open(_) => "breaker_open",
        Failure::Connect(_) => "connect",
        Failure::Timeout(_) => "timeout",
        Failure::TooLarge(_) => "too_large",
    };
    span.record(ERROR_TYPE, kind);
    span.record(OTEL_STATUS_CODE, "ERROR");
}

/// Why one attempt failed, before it is put into words.
#[derive(Debug)]
enum Failure {
    Open(super::breaker::Rejected),
    Connect(String),
    Timeout(Duration),
    Status(Answer),
    TooLarge(usize),
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters and a small budget: a panic elsewhere can't leave them inconsistent.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(_) => false,
    }
}

/// The innermost cause of a connection error, which is the readable one ("Connection
/// refused (os error 111)" rather than "error sending request").
fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    let text = text
        .split(" (os error")
        .next()
        .unwrap_or(&text)
        .trim()
        .to_string();
    if text.is_empty() {
        "no connection".into()
    } else {
        text.to_lowercase()
    }
}

/// The content type for an uploaded image, from its extension (ComfyUI doesn't check it,
/// but a browser-like form is the least surprising).
fn image_mime(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        _ => "application/octet-stream",
    }
}

/// Percent-encodes one path segment (node class names may hold spaces, `+`, `/` or `|`).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("KSampler"), "KSampler");
        assert_eq!(
            encode_segment("Image Blend/Mix+|x"),
            "Image%20Blend%2FMix%2B%7Cx"
        );
    }

    #[test]
    fn operations_have_names_and_timeouts() {
        let config = ComfyConfig {
            timeouts: vec![
                ("object_info".into(), Duration::from_secs(90)),
                ("bogus".into(), Duration::from_secs(1)),
            ],
            ..ComfyConfig::default()
        };
        let client = Client::new(
            Url::parse("http://127.0.0.1:1/").expect("url"),
            &config,
            PortHint::Discovered,
        )
        .expect("client");
        assert_eq!(
            client.timeout(Operation::ObjectInfo),
            Duration::from_secs(90)
        );
        assert_eq!(
            client.timeout(Operation::SystemStats),
            Duration::from_secs(5)
        );
        assert_eq!(
            client.url("system_stats").as_str(),
            "http://127.0.0.1:1/system_stats"
        );
    }

    #[test]
    fn execution_operations_take_their_tool_names() {
        for (key, op) in [
            ("execute_workflow", Operation::Prompt),
            ("execute_with_progress", Operation::Prompt),
            ("cancel_execution", Operation::Cancel),
            ("interrupt", Operation::Cancel),
            ("upload_image", Operation::Upload),
            ("get_output_image", Operation::View),
            ("view", Operation::View),
            ("upload", Operation::Upload),
        ] {
            assert_eq!(Operation::from_setting(key), Some(op), "{key}");
        }
        for op in Operation::ALL {
            assert_eq!(Operation::from_setting(op.name()), Some(op));
        }
        assert!(!Operation::Cancel.idempotent() && !Operation::Upload.idempotent());
        assert!(Operation::View.idempotent());
        assert_eq!(image_mime("A.JPG"), "image/jpeg");
        assert_eq!(image_mime("noext"), "application/octet-stream");
    }

    #[test]
    fn base_paths_are_kept() {
        let client = Client::new(
            Url::parse("https://proxy.example/comfy/").expect("url"),
            &ComfyConfig::default(),
            PortHint::Configured { port: None },
        )
        .expect("client");
        assert_eq!(
            client.url("object_info/KSampler").as_str(),
            "https://proxy.example/comfy/object_info/KSampler"
        );
    }
}
