//! Metrics: the catalogue of every metric this server exports (name, type, unit, labels and a
//! one-line meaning, mirrored in `docs/operations.md`), and [`Metrics`], the recorder.
//!
//! The recorder is lock-free on the hot path: every series is a fixed set of atomics created
//! at start-up. Labels come from closed sets (the registry's tool names, [`Operation`], the
//! error kinds in [`ERROR_TYPES`], the outcomes in [`RequestOutcome`]), so the number of
//! series is bounded: a tool name the registry doesn't know is counted as `other`.
//!
//! The same numbers reach two places: Prometheus text at `/metrics` (rendered from the
//! atomics), and, when a [`Meter`] is given, OpenTelemetry instruments (recorded alongside, and
//! observable gauges that read the same sources as `/metrics`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};

use crate::comfy::Operation;
use crate::comfy::breaker::{BreakerSnapshot, BreakerState};

/// The kind of a metric, as both OpenTelemetry and Prometheus name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Histogram,
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Histogram => "histogram",
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The OpenTelemetry name (semantic-convention names where one exists).
    pub name: &'static str,
    /// The Prometheus name: dots become underscores, the unit becomes a suffix, counters end
    /// in `_total` (a test checks it follows from the other fields).
    pub prometheus: &'static str,
    pub kind: Kind,
    /// UCUM, as OpenTelemetry writes units (`s`, `By`, `{call}`).
    pub unit: &'static str,
    /// OpenTelemetry attribute names; Prometheus labels are the same with `_` for `.`.
    pub labels: &'static [&'static str],
    pub description: &'static str,
}

// Attribute (label) names.
pub const METHOD: &str = "mcp.method.name";
pub const TOOL: &str = "gen_ai.tool.name";
pub const ERROR_TYPE: &str = "error.type";
pub const COMFY_OPERATION: &str = "comfyui.operation";
pub const COMFY_OUTCOME: &str = "comfyui.outcome";
pub const COMFY_ENDPOINT: &str = "comfyui.endpoint";
pub const RETRY_OUTCOME: &str = "comfyui.retry.outcome";
pub const SESSION_KIND: &str = "comfyui_agent.session.kind";
pub const CACHE: &str = "comfyui_agent.cache.name";

pub const OPERATION_DURATION: MetricDef = MetricDef {
    name: "mcp.server.operation.duration",
    prometheus: "mcp_server_operation_duration_seconds",
    kind: Kind::Histogram,
    unit: "s",
    labels: &[METHOD, TOOL, ERROR_TYPE],
    description: "How long the server took to answer an MCP request (tools/call per tool; error.type only over OTLP).",
};
pub const TOOL_ERRORS: MetricDef = MetricDef {
    name: "comfyui_agent.tool.errors",
    prometheus: "comfyui_agent_tool_errors_total",
    kind: Kind::Counter,
    unit: "{error}",
    labels: &[TOOL, ERROR_TYPE],
    description: "Tool calls that ended in an error, by tool and kind of error.",
};
pub const COMFY_REQUEST_DURATION: MetricDef = MetricDef {
    name: "comfyui.request.duration",
    prometheus: "comfyui_request_duration_seconds",
    kind: Kind::Histogram,
    unit: "s",
    labels: &[COMFY_OPERATION, COMFY_OUTCOME],
    description: "One HTTP attempt at ComfyUI (retries count separately), by operation and outcome.",
};
pub const COMFY_RETRIES: MetricDef = MetricDef {
    name: "comfyui.retries",
    prometheus: "comfyui_retries_total",
    kind: Kind::Counter,
    unit: "{retry}",
    labels: &[RETRY_OUTCOME],
    description: "Retries of idempotent ComfyUI reads: spent, or refused by the retry budget.",
};
pub const BREAKER_STATE: MetricDef = MetricDef {
    name: "comfyui.breaker.state",
    prometheus: "comfyui_breaker_state",
    kind: Kind::Gauge,
    unit: "1",
    labels: &[COMFY_ENDPOINT],
    description: "The circuit breaker in front of a ComfyUI address: 0 closed, 1 half-open, 2 open.",
};
pub const BREAKER_TRANSITIONS: MetricDef = MetricDef {
    name: "comfyui.breaker.transitions",
    prometheus: "comfyui_breaker_transitions_total",
    kind: Kind::Counter,
    unit: "{transition}",
    labels: &[COMFY_ENDPOINT],
    description: "Changes of breaker state since start.",
};
pub const SESSIONS: MetricDef = MetricDef {
    name: "comfyui_agent.sessions.active",
    prometheus: "comfyui_agent_sessions_active",
    kind: Kind::Gauge,
    unit: "{session}",
    labels: &[SESSION_KIND],
    description: "Sessions in memory: initialized MCP connections, and named sessions.",
};
pub const CACHE_ENTRIES: MetricDef = MetricDef {
    name: "comfyui_agent.cache.entries",
    prometheus: "comfyui_agent_cache_entries",
    kind: Kind::Gauge,
    unit: "{entry}",
    labels: &[CACHE],
    description: "Entries in a cache (object_info: the node classes of the cached node list).",
};
pub const CACHE_SIZE: MetricDef = MetricDef {
    name: "comfyui_agent.cache.size",
    prometheus: "comfyui_agent_cache_size_bytes",
    kind: Kind::Gauge,
    unit: "By",
    labels: &[CACHE],
    description: "Size of a cache (object_info: the bytes of ComfyUI's answer it was parsed from).",
};
pub const MEMORY: MetricDef = MetricDef {
    name: "process.memory.usage",
    prometheus: "process_memory_usage_bytes",
    kind: Kind::Gauge,
    unit: "By",
    labels: &[],
    description: "Resident memory of this process (Linux only; absent elsewhere).",
};
pub const UPTIME: MetricDef = MetricDef {
    name: "process.uptime",
    prometheus: "process_uptime_seconds",
    kind: Kind::Gauge,
    unit: "s",
    labels: &[],
    description: "Time since the server started.",
};

pub const GPU_ID: &str = "hw.id";
pub const GPU_NAME: &str = "hw.name";
pub const GPU_MEMORY_USAGE: MetricDef = MetricDef {
    name: "hw.gpu.memory.usage",
    prometheus: "hw_gpu_memory_usage_bytes",
    kind: Kind::Gauge,
    unit: "By",
    labels: &[GPU_ID, GPU_NAME],
    description: "VRAM in use on an NVIDIA GPU of this machine (with COMFYUI_AGENT_GPU_METRICS=1).",
};
pub const GPU_MEMORY_LIMIT: MetricDef = MetricDef {
    name: "hw.gpu.memory.limit",
    prometheus: "hw_gpu_memory_limit_bytes",
    kind: Kind::Gauge,
    unit: "By",
    labels: &[GPU_ID, GPU_NAME],
    description: "Total VRAM of an NVIDIA GPU of this machine (with COMFYUI_AGENT_GPU_METRICS=1).",
};
pub const GPU_UTILIZATION: MetricDef = MetricDef {
    name: "hw.gpu.utilization",
    prometheus: "hw_gpu_utilization",
    kind: Kind::Gauge,
    unit: "1",
    labels: &[GPU_ID, GPU_NAME],
    description: "How busy a GPU was over the driver's last sample period, 0 to 1 (with COMFYUI_AGENT_GPU_METRICS=1).",
};
pub const GPU_TEMPERATURE: MetricDef = MetricDef {
    name: "hw.gpu.temperature",
    prometheus: "hw_gpu_temperature_celsius",
    kind: Kind::Gauge,
    unit: "Cel",
    labels: &[GPU_ID, GPU_NAME],
    description: "GPU core temperature (with COMFYUI_AGENT_GPU_METRICS=1).",
};
pub const GPU_POWER: MetricDef = MetricDef {
    name: "hw.gpu.power",
    prometheus: "hw_gpu_power_watts",
    kind: Kind::Gauge,
    unit: "W",
    labels: &[GPU_ID, GPU_NAME],
    description: "GPU power draw (with COMFYUI_AGENT_GPU_METRICS=1).",
};

/// Every metric, in the order `/metrics` lists them.
pub const CATALOGUE: [MetricDef; 16] = [
    OPERATION_DURATION,
    TOOL_ERRORS,
    COMFY_REQUEST_DURATION,
    COMFY_RETRIES,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    SESSIONS,
    CACHE_ENTRIES,
    CACHE_SIZE,
    MEMORY,
    UPTIME,
    GPU_MEMORY_USAGE,
    GPU_MEMORY_LIMIT,
    GPU_UTILIZATION,
    GPU_TEMPERATURE,
    GPU_POWER,
];

/// Histogram bucket upper bounds in seconds, 1 ms to 300 s: MCP calls span a cached lookup
/// (well under 1 ms) to a queued workflow waited on (minutes).
pub const BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];
/// The same bounds in nanoseconds (recording compares integers).
const BUCKETS_NS: [u64; 17] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    120_000_000_000,
    300_000_000_000,
];
/// The same bounds as Prometheus `le` values, written once.
const LE: [&str; 18] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "30", "60", "120", "300", "+Inf",
];

/// The error kinds a tool call can end with ([`crate::error::ToolError::kind`]), plus
/// `unknown_tool` (a call naming no tool) and `other` for anything new.
pub const ERROR_TYPES: [&str; 17] = [
    "invalid_arguments",
    "path_not_allowed",
    "not_found",
    "path_error",
    "bad_file",
    "rejected",
    "comfyui_unreachable",
    "comfyui_timeout",
    "comfyui_error",
    "comfyui_bad_answer",
    "comfyui_file_not_found",
    "comfyui_file_refused",
    "comfyui_too_large",
    "cancelled",
    "internal",
    "unknown_tool",
    "other",
];

/// The series a tool name outside the registry is counted under.
pub const OTHER_TOOL: &str = "other";

/// The MCP methods timed besides `tools/call` (which is timed per tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpMethod {
    Initialize,
    ToolsList,
    ResourcesRead,
    ResourceTemplatesList,
}

impl McpMethod {
    pub const ALL: [Self; 4] = [
        Self::Initialize,
        Self::ToolsList,
        Self::ResourcesRead,
        Self::ResourceTemplatesList,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initialize => "initialize",
            Self::ToolsList => "tools/list",
            Self::ResourcesRead => "resources/read",
            Self::ResourceTemplatesList => "resources/templates/list",
        }
    }
}

/// The method name tool calls are recorded under.
pub const TOOLS_CALL: &str = "tools/call";

/// How one attempt at ComfyUI ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A 1xx–3xx answer.
    Ok,
    /// A 4xx answer: ComfyUI is up and refused the request.
    ClientError,
    /// A 5xx answer.
    ServerError,
    Timeout,
    /// No connection: refused, reset, or the name didn't resolve.
    Unreachable,
    /// Not sent: the breaker is open.
    BreakerOpen,
    /// The answer was larger than this server reads.
    TooLarge,
}

impl RequestOutcome {
    pub const ALL: [Self; 7] = [
        Self::Ok,
        Self::ClientError,
        Self::ServerError,
        Self::Timeout,
        Self::Unreachable,
        Self::BreakerOpen,
        Self::TooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::BreakerOpen => "breaker_open",
            Self::TooLarge => "too_large",
        }
    }

    /// The outcome for an answer with this HTTP status.
    pub fn of_status(status: u16) -> Self {
        match status {
            500.. => Self::ServerError,
            400..=499 => Self::ClientError,
            _ => Self::Ok,
        }
    }
}

/// A histogram with the fixed [`BUCKETS`]: one atomic per bucket plus the sum. The count is
/// the sum of the buckets, so `+Inf` always equals `_count`.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bound of [`BUCKETS`], then `+Inf`.
    pub cumulative: [u64; BUCKETS.len() + 1],
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative[BUCKETS.len()]
    }
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let index = BUCKETS_NS.partition_point(|&bound| bound < ns);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0; BUCKETS.len() + 1];
        let mut running = 0;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *slot = running;
        }
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Buckets of the latency sketch: exact below 8 µs, then 8 per doubling up to 2^32 µs
/// (71 minutes; longer calls land in the last bucket).
const SKETCH_BUCKETS: usize = 8 + 8 * 29;

/// Per-tool latency for the p50/p99 that `get_server_health` reports.
///
/// A log-linear histogram (8 buckets per doubling of microseconds) rather than a reservoir of
/// samples: recording is one atomic add with no lock and no sorting, it covers every call
/// since start rather than a sample, and its memory is fixed (240 counters, about 2 KB per
/// tool). The price is resolution: a quantile is reported as the middle of its bucket, within
/// 1/16 (about 6%) of the true value, which is plenty for "is this tool slow".
#[derive(Debug)]
struct Sketch {
    buckets: [AtomicU64; SKETCH_BUCKETS],
}

impl Default for Sketch {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn sketch_index(micros: u64) -> usize {
    if micros < 8 {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros() as usize;
    let sub = ((micros >> (octave - 3)) & 7) as usize;
    ((octave - 2) * 8 + sub).min(SKETCH_BUCKETS - 1)
}

/// The range of microseconds bucket `index` holds: its lower bound and width.
fn sketch_range(index: usize) -> (u64, u64) {
    if index < 8 {
        return (index as u64, 1);
    }
    let octave = index / 8 + 2;
    let sub = (index % 8) as u64;
    let width = 1u64 << (octave - 3);
    ((8 + sub) * width, width)
}

impl Sketch {
    fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets[sketch_index(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile (0..=1) in milliseconds, or `None` before the first sample.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (lower, width) = sketch_range(index);
                return Some((lower as f64 + width as f64 / 2.0) / 1000.0);
            }
        }
        None
    }
}

/// Everything recorded about one tool.
#[derive(Debug)]
struct ToolSeries {
    name: Box<str>,
    /// `mcp_method_name="tools/call",gen_ai_tool_name="…"`, written once.
    labels: Box<str>,
    duration: Histogram,
    sketch: Sketch,
    errors: [AtomicU64; ERROR_TYPES.len()],
    /// The OpenTelemetry attributes of a successful call.
    attributes: [KeyValue; 2],
}

impl ToolSeries {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            labels: format!(r#"mcp_method_name="{TOOLS_CALL}",gen_ai_tool_name="{name}""#).into(),
            duration: Histogram::default(),
            sketch: Sketch::default(),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            attributes: [
                KeyValue::new(METHOD, TOOLS_CALL),
                KeyValue::new(TOOL, name.to_string()),
            ],
        }
    }
}

/// Where the gauges come from: `AppState` implements it over what it owns.
pub trait GaugeSource: Send + Sync {
    fn gauges(&self) -> Gauges;
}

/// The values read at scrape time rather than recorded as they happen.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// One per ComfyUI address this server may use.
    pub endpoints: Vec<EndpointGauges>,
    pub named_sessions: u64,
    /// The cached node list, summed over endpoints.
    pub node_cache_entries: u64,
    pub node_cache_bytes: u64,
    /// `None` where the platform doesn't say (not Linux).
    pub resident_bytes: Option<u64>,
    /// This machine's NVIDIA GPUs, read only when `COMFYUI_AGENT_GPU_METRICS` is on (the
    /// `/metrics` handler fills them in: reading NVML blocks).
    pub gpus: Vec<crate::gpu::GpuGauges>,
}

#[derive(Debug, Clone)]
pub struct EndpointGauges {
    pub url: String,
    pub breaker: BreakerSnapshot,
}

/// A breaker state as the gauge reports it.
pub fn breaker_level(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

/// The resident memory of this process, from `/proc/self/status` (Linux). Elsewhere `None`:
/// a crate for one number isn't worth its compile time.
pub fn resident_bytes() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What ComfyUI requests record: one histogram per operation and outcome, and the retry
/// counts. Shared (`Arc`) by every ComfyUI client.
#[derive(Debug)]
pub struct ComfyMetrics {
    /// `Operation::ALL.len() × RequestOutcome::ALL.len()`, operation-major.
    requests: Vec<Histogram>,
    /// `comfyui_operation="…",comfyui_outcome="…"` per request series.
    labels: Vec<Box<str>>,
    retries_spent: AtomicU64,
    retries_refused: AtomicU64,
    otel: Option<ComfyOtel>,
}

#[derive(Debug)]
struct ComfyOtel {
    duration: opentelemetry::metrics::Histogram<f64>,
    retries: Counter<u64>,
}

impl Default for ComfyMetrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl ComfyMetrics {
    fn new(meter: Option<&Meter>) -> Self {
        let mut requests = Vec::new();
        let mut labels = Vec::new();
        for op in Operation::ALL {
            for outcome in RequestOutcome::ALL {
                requests.push(Histogram::default());
                labels.push(
                    format!(
                        r#"comfyui_operation="{}",comfyui_outcome="{}""#,
                        op.name(),
                        outcome.as_str()
                    )
                    .into(),
                );
            }
        }
        let otel = meter.map(|meter| ComfyOtel {
            duration: histogram(meter, &COMFY_REQUEST_DURATION),
            retries: meter
                .u64_counter(COMFY_RETRIES.name)
                .with_unit(COMFY_RETRIES.unit)
                .with_description(COMFY_RETRIES.description)
                .build(),
        });
        Self {
            requests,
            labels,
            retries_spent: AtomicU64::new(0),
            retries_refused: AtomicU64::new(0),
            otel,
        }
    }

    fn slot(op: Operation, outcome: RequestOutcome) -> usize {
        op as usize * RequestOutcome::ALL.len() + outcome as usize
    }

    pub fn record_request(&self, op: Operation, outcome: RequestOutcome, elapsed: Duration) {
        self.requests[Self::slot(op, outcome)].record(elapsed);
        if let Some(otel) = &self.otel {
            otel.duration.record(
                elapsed.as_secs_f64(),
                &[
                    KeyValue::new(COMFY_OPERATION, op.name()),
                    KeyValue::new(COMFY_OUTCOME, outcome.as_str()),
                ],
            );
        }
    }

    /// A retry the budget granted (`true`) or refused.
    pub fn record_retry(&self, granted: bool) {
        let (counter, label) = if granted {
            (&self.retries_spent, "spent")
        } else {
            (&self.retries_refused, "refused")
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(otel) = &self.otel {
            otel.retries.add(1, &[KeyValue::new(RETRY_OUTCOME, label)]);
        }
    }

    /// Retries spent and refused since start.
    pub fn retries(&self) -> (u64, u64) {
        (
            self.retries_spent.load(Ordering::Relaxed),
            self.retries_refused.load(Ordering::Relaxed),
        )
    }

    /// Every (operation, outcome) with at least one request.
    pub fn requests(&self) -> Vec<RequestSummary> {
        let mut out = Vec::new();
        for op in Operation::ALL {
            for outcome in RequestOutcome::ALL {
                let snapshot = self.requests[Self::slot(op, outcome)].snapshot();
                let count = snapshot.count();
                if count > 0 {
                    out.push(RequestSummary {
                        operation: op.name(),
                        outcome: outcome.as_str(),
                        count,
                        mean_ms: snapshot.sum_seconds * 1000.0 / count as f64,
                    });
                }
            }
        }
        out
    }
}

/// ComfyUI requests of one operation and outcome since start.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSummary {
    pub operation: &'static str,
    pub outcome: &'static str,
    pub count: u64,
    pub mean_ms: f64,
}

/// One tool's calls since start.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSummary {
    pub tool: String,
    pub calls: u64,
    pub errors: u64,
    /// Error counts by kind, only kinds that happened.
    pub errors_by_type: Vec<(&'static str, u64)>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Counts one initialized MCP connection while it lives.
#[derive(Debug)]
pub struct ConnectionGuard {
    open: Arc<AtomicI64>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The recorder. One per process, in `AppState`; cheap to call from any task (`&self`,
/// atomics only).
pub struct Metrics {
    started: Instant,
    /// The registry's tools in its order, then [`OTHER_TOOL`].
    tools: Vec<ToolSeries>,
    by_name: HashMap<Box<str>, usize>,
    methods: [Histogram; McpMethod::ALL.len()],
    comfy: Arc<ComfyMetrics>,
    connections: Arc<AtomicI64>,
    otel: Option<Otel>,
}

struct Otel {
    meter: Meter,
    duration: opentelemetry::metrics::Histogram<f64>,
    tool_errors: Counter<u64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("tools", &self.tools.len())
            .field("otlp", &self.otel.is_some())
            .finish_non_exhaustive()
    }
}

fn histogram(meter: &Meter, def: &MetricDef) -> opentelemetry::metrics::Histogram<f64> {
    meter
        .f64_histogram(def.name)
        .with_unit(def.unit)
        .with_description(def.description)
        .with_boundaries(BUCKETS.to_vec())
        .build()
}

impl Metrics {
    /// A recorder for these tools. With a `meter` (OTLP configured), everything is also
    /// recorded into OpenTelemetry instruments; without, only `/metrics` and
    /// `get_server_health` see it.
    pub fn new<'a>(meter: Option<Meter>, tools: impl IntoIterator<Item = &'a str>) -> Self {
        let mut series: Vec<ToolSeries> = tools
            .into_iter()
            .filter(|name| *name != OTHER_TOOL)
            .map(ToolSeries::new)
            .collect();
        series.push(ToolSeries::new(OTHER_TOOL));
        let by_name = series
            .iter()
            .enumerate()
            .map(|(index, s)| (s.name.clone(), index))
            .collect();
        let otel = meter.map(|meter| Otel {
            duration: histogram(&meter, &OPERATION_DURATION),
            tool_errors: meter
                .u64_counter(TOOL_ERRORS.name)
                .with_unit(TOOL_ERRORS.unit)
                .with_description(TOOL_ERRORS.description)
                .build(),
            meter,
        });
        Self {
            started: Instant::now(),
            tools: series,
            by_name,
            methods: std::array::from_fn(|_| Histogram::default()),
            comfy: Arc::new(ComfyMetrics::new(otel.as_ref().map(|o| &o.meter))),
            connections: Arc::new(AtomicI64::new(0)),
            otel,
        }
    }

    /// What the ComfyUI clients record into.
    pub fn comfy(&self) -> &Arc<ComfyMetrics> {
        &self.comfy
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn series(&self, tool: &str) -> &ToolSeries {
        let index = self
            .by_name
            .get(tool)
            .copied()
            .unwrap_or(self.tools.len() - 1);
        &self.tools[index]
    }

    /// One finished `tools/call`: its duration and, when it failed, the error's kind.
    pub fn record_tool_call(&self, tool: &str, elapsed: Duration, error: Option<&'static str>) {
        let series = self.series(tool);
        series.duration.record(elapsed);
        series.sketch.record(elapsed);
        let error = error.map(|kind| {
            let index = ERROR_TYPES
                .iter()
                .position(|known| *known == kind)
                .unwrap_or(ERROR_TYPES.len() - 1);
            series.errors[index].fetch_add(1, Ordering::Relaxed);
            ERROR_TYPES[index]
        });
        if let Some(otel) = &self.otel {
            match error {
                None => otel
                    .duration
                    .record(elapsed.as_secs_f64(), &series.attributes),
                Some(kind) => {
                    let [method, tool] = series.attributes.clone();
                    let attributes = [method, tool, KeyValue::new(ERROR_TYPE, kind)];
                    otel.duration.record(elapsed.as_secs_f64(), &attributes);
                    otel.tool_errors.add(1, &attributes[1..]);
                }
            }
        }
    }

    /// One finished MCP request other than `tools/call`.
    pub fn record_method(&self, method: McpMethod, elapsed: Duration, error: Option<&'static str>) {
        self.methods[method as usize].record(elapsed);
        if let Some(otel) = &self.otel {
            let name = KeyValue::new(METHOD, method.as_str());
            match error {
                None => otel.duration.record(elapsed.as_secs_f64(), &[name]),
                Some(kind) => otel.duration.record(
                    elapsed.as_secs_f64(),
                    &[name, KeyValue::new(ERROR_TYPE, kind)],
                ),
            }
        }
    }

    /// Counts an initialized connection until the guard drops.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            open: Arc::clone(&self.connections),
        }
    }

    /// Initialized MCP connections now open.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed).max(0) as u64
    }

    /// Per tool since start: calls, errors and latency quantiles. Tools never called are
    /// left out; `only` keeps one tool.
    pub fn tool_summaries(&self, only: Option<&str>) -> Vec<ToolSummary> {
        self.tools
            .iter()
            .filter(|s| only.is_none_or(|name| *s.name == *name))
            .filter_map(|s| {
                let calls = s.duration.count();
                if calls == 0 {
                    return None;
                }
                let errors_by_type: Vec<(&'static str, u64)> = ERROR_TYPES
                    .iter()
                    .zip(&s.errors)
                    .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
                    .filter(|(_, count)| *count > 0)
                    .collect();
                Some(ToolSummary {
                    tool: s.name.to_string(),
                    calls,
                    errors: errors_by_type.iter().map(|(_, n)| n).sum(),
                    errors_by_type,
                    p50_ms: s.sketch.quantile_ms(0.5),
                    p99_ms: s.sketch.quantile_ms(0.99),
                })
            })
            .collect()
    }

    /// Registers the OpenTelemetry observable gauges (breaker, sessions, cache, memory,
    /// uptime), read from `source` at each export. Without a meter this does nothing. Called
    /// once, when the state that owns this recorder exists; a `Weak` so the callbacks don't
    /// keep that state alive.
    pub fn observe(&self, source: Weak<dyn GaugeSource>) {
        let Some(otel) = &self.otel else { return };
        let meter = &otel.meter;
        let read = move || source.upgrade().map(|s| s.gauges());
        let reader = read.clone();
        meter
            .i64_observable_gauge(BREAKER_STATE.name)
            .with_unit(BREAKER_STATE.unit)
            .with_description(BREAKER_STATE.description)
            .with_callback(move |observer| {
                for endpoint in reader().map(|g| g.endpoints).unwrap_or_default() {
                    observer.observe(
                        i64::from(breaker_level(endpoint.breaker.state)),
                        &[KeyValue::new(COMFY_ENDPOINT, endpoint.url)],
                    );
                }
            })
            .build();
        let reader = read.clone();
        meter
            .u64_observable_counter(BREAKER_TRANSITIONS.name)
            .with_unit(BREAKER_TRANSITIONS.unit)
            .with_description(BREAKER_TRANSITIONS.description)
            .with_callback(move |observer| {
                for endpoint in reader().map(|g| g.endpoints).unwrap_or_default() {
                    observer.observe(
                        endpoint.breaker.transitions,
                        &[KeyValue::new(COMFY_ENDPOINT, endpoint.url)],
                    );
                }
            })
            .build();
        let reader = read.clone();
        let connections = Arc::clone(&self.connections);
        meter
            .i64_observable_gauge(SESSIONS.name)
            .with_unit(SESSIONS.unit)
            .with_description(SESSIONS.description)
            .with_callback(move |observer| {
                observer.observe(
                    connections.load(Ordering::Relaxed),
                    &[KeyValue::new(SESSION_KIND, "connection")],
                );
                if let Some(gauges) = reader() {
                    observer.observe(
                        i64::try_from(gauges.named_sessions).unwrap_or(i64::MAX),
                        &[KeyValue::new(SESSION_KIND, "named")],
                    );
                }
            })
            .build();
        let reader = read.clone();
        meter
            .u64_observable_gauge(CACHE_ENTRIES.name)
            .with_unit(CACHE_ENTRIES.unit)
            .with_description(CACHE_ENTRIES.description)
            .with_callback(move |observer| {
                if let Some(gauges) = reader() {
                    observer.observe(
                        gauges.node_cache_entries,
                        &[KeyValue::new(CACHE, "object_info")],
                    );
                }
            })
            .build();
        let reader = read.clone();
        meter
            .u64_observable_gauge(CACHE_SIZE.name)
            .with_unit(CACHE_SIZE.unit)
            .with_description(CACHE_SIZE.description)
            .with_callback(move |observer| {
                if let Some(gauges) = reader() {
                    observer.observe(
                        gauges.node_cache_bytes,
                        &[KeyValue::new(CACHE, "object_info")],
                    );
                }
            })
            .build();
        meter
            .u64_observable_gauge(MEMORY.name)
            .with_unit(MEMORY.unit)
            .with_description(MEMORY.description)
            .with_callback(|observer| {
                if let Some(bytes) = resident_bytes() {
                    observer.observe(bytes, &[]);
                }
            })
            .build();
        let started = self.started;
        meter
            .f64_observable_gauge(UPTIME.name)
            .with_unit(UPTIME.unit)
            .with_description(UPTIME.description)
            .with_callback(move |observer| {
                observer.observe(started.elapsed().as_secs_f64(), &[]);
            })
            .build();
    }

    /// The Prometheus text exposition (format 0.0.4) of everything, with `gauges` read by the
    /// caller. Written into one pre-sized string; no allocation per sample.
    pub fn render_prometheus(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_into(gauges, &mut out);
        out
    }

    /// [`Self::render_prometheus`] into a buffer the caller owns (and may reuse).
    pub fn render_into(&self, gauges: &Gauges, out: &mut String) {
        // Writing to a String cannot fail; the results are ignored on purpose.
        header(out, &OPERATION_DURATION);
        for series in &self.tools {
            let snapshot = series.duration.snapshot();
            if snapshot.count() > 0 {
                histogram_lines(
                    out,
                    OPERATION_DURATION.prometheus,
                    &series.labels,
                    &snapshot,
                );
            }
        }
        for method in McpMethod::ALL {
            let snapshot = self.methods[method as usize].snapshot();
            if snapshot.count() > 0 {
                let mut labels = [0u8; 64];
                let labels = method_labels(&mut labels, method);
                histogram_lines(out, OPERATION_DURATION.prometheus, labels, &snapshot);
            }
        }

        header(out, &TOOL_ERRORS);
        for series in &self.tools {
            for (kind, count) in ERROR_TYPES.iter().zip(&series.errors) {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        r#"{}{{gen_ai_tool_name="{}",error_type="{kind}"}} {count}"#,
                        TOOL_ERRORS.prometheus, series.name
                    );
                }
            }
        }

        header(out, &COMFY_REQUEST_DURATION);
        for (histogram, labels) in self.comfy.requests.iter().zip(&self.comfy.labels) {
            let snapshot = histogram.snapshot();
            if snapshot.count() > 0 {
                histogram_lines(out, COMFY_REQUEST_DURATION.prometheus, labels, &snapshot);
            }
        }

        header(out, &COMFY_RETRIES);
        let (spent, refused) = self.comfy.retries();
        let _ = writeln!(
            out,
            r#"{}{{comfyui_retry_outcome="spent"}} {spent}"#,
            COMFY_RETRIES.prometheus
        );
        let _ = writeln!(
            out,
            r#"{}{{comfyui_retry_outcome="refused"}} {refused}"#,
            COMFY_RETRIES.prometheus
        );

        header(out, &BREAKER_STATE);
        for endpoint in &gauges.endpoints {
            endpoint_sample(
                out,
                BREAKER_STATE.prometheus,
                &endpoint.url,
                u64::from(breaker_level(endpoint.breaker.state)),
            );
        }
        header(out, &BREAKER_TRANSITIONS);
        for endpoint in &gauges.endpoints {
            endpoint_sample(
                out,
                BREAKER_TRANSITIONS.prometheus,
                &endpoint.url,
                endpoint.breaker.transitions,
            );
        }

        header(out, &SESSIONS);
        let _ = writeln!(
            out,
            r#"{}{{comfyui_agent_session_kind="connection"}} {}"#,
            SESSIONS.prometheus,
            self.connections()
        );
        let _ = writeln!(
            out,
            r#"{}{{comfyui_agent_session_kind="named"}} {}"#,
            SESSIONS.prometheus, gauges.named_sessions
        );

        header(out, &CACHE_ENTRIES);
        let _ = writeln!(
            out,
            r#"{}{{comfyui_agent_cache_name="object_info"}} {}"#,
            CACHE_ENTRIES.prometheus, gauges.node_cache_entries
        );
        header(out, &CACHE_SIZE);
        let _ = writeln!(
            out,
            r#"{}{{comfyui_agent_cache_name="object_info"}} {}"#,
            CACHE_SIZE.prometheus, gauges.node_cache_bytes
        );

        if let Some(bytes) = gauges.resident_bytes {
            header(out, &MEMORY);
            let _ = writeln!(out, "{} {bytes}", MEMORY.prometheus);
        }
        header(out, &UPTIME);
        let _ = writeln!(
            out,
            "{} {}",
            UPTIME.prometheus,
            self.started.elapsed().as_secs_f64()
        );
        if !gauges.gpus.is_empty() {
            gpu_lines(out, &gauges.gpus);
        }
    }
}

/// The GPU gauges; a reading the GPU doesn't give is left out.
fn gpu_lines(out: &mut String, gpus: &[crate::gpu::GpuGauges]) {
    type Read = fn(&crate::gpu::GpuGauges) -> Option<f64>;
    let metrics: [(&MetricDef, Read); 5] = [
        (&GPU_MEMORY_USAGE, |g| g.vram_used_bytes.map(|b| b as f64)),
        (&GPU_MEMORY_LIMIT, |g| g.vram_total_bytes.map(|b| b as f64)),
        (&GPU_UTILIZATION, |g| {
            g.gpu_utilization_percent.map(|p| f64::from(p) / 100.0)
        }),
        (&GPU_TEMPERATURE, |g| g.temperature_c.map(f64::from)),
        (&GPU_POWER, |g| g.power_draw_watts),
    ];
    for (def, read) in metrics {
        header(out, def);
        for gpu in gpus {
            if let Some(value) = read(gpu) {
                let _ = write!(
                    out,
                    r#"{}{{hw_id="{}",hw_name=""#,
                    def.prometheus, gpu.index
                );
                push_escaped(out, &gpu.name);
                let _ = writeln!(out, r#""}} {value}"#);
            }
        }
    }
}

/// `mcp_method_name="…"` in a stack buffer (method names are short and fixed).
fn method_labels(buffer: &mut [u8; 64], method: McpMethod) -> &str {
    let prefix = b"mcp_method_name=\"";
    let name = method.as_str().as_bytes();
    let end = prefix.len() + name.len();
    buffer[..prefix.len()].copy_from_slice(prefix);
    buffer[prefix.len()..end].copy_from_slice(name);
    buffer[end] = b'"';
    std::str::from_utf8(&buffer[..=end]).unwrap_or_default()
}

fn header(out: &mut String, def: &MetricDef) {
    let _ = writeln!(out, "# HELP {} {}", def.prometheus, def.description);
    let _ = writeln!(out, "# TYPE {} {}", def.prometheus, def.kind.as_str());
}

fn histogram_lines(out: &mut String, name: &str, labels: &str, snapshot: &HistogramSnapshot) {
    for (le, count) in LE.iter().zip(snapshot.cumulative) {
        let _ = writeln!(out, r#"{name}_bucket{{{labels},le="{le}"}} {count}"#);
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", snapshot.sum_seconds);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", snapshot.count());
}

/// A sample labelled with a ComfyUI address.
fn endpoint_sample(out: &mut String, name: &str, url: &str, value: u64) {
    let _ = write!(out, r#"{name}{{comfyui_endpoint=""#);
    push_escaped(out, url);
    let _ = writeln!(out, r#""}} {value}"#);
}

/// A label value, escaped as the text format asks.
fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str(r#"\""#),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the Prometheus name of a metric must be, from its other fields.
    fn prometheus_name(def: &MetricDef) -> String {
        let mut name = def.name.replace('.', "_");
        match def.unit {
            "s" => name.push_str("_seconds"),
            "By" => name.push_str("_bytes"),
            "Cel" => name.push_str("_celsius"),
            "W" => name.push_str("_watts"),
            _ => {}
        }
        if def.kind == Kind::Counter {
            name.push_str("_total");
        }
        name
    }

    #[test]
    fn the_catalogue_is_consistent() {
        let mut names = std::collections::HashSet::new();
        for def in CATALOGUE {
            assert!(names.insert(def.name), "{} twice", def.name);
            assert_eq!(def.prometheus, prometheus_name(&def), "{}", def.name);
            assert!(
                !def.description.is_empty() && !def.description.contains('\n'),
                "{}: one line",
                def.name
            );
        }
        assert_eq!(OPERATION_DURATION.name, "mcp.server.operation.duration");
    }

    #[test]
    fn bucket_bounds_agree_and_span_1ms_to_300s() {
        assert_eq!(BUCKETS[0], 0.001);
        assert_eq!(BUCKETS[BUCKETS.len() - 1], 300.0);
        for ((seconds, ns), le) in BUCKETS.iter().zip(BUCKETS_NS).zip(LE) {
            assert_eq!((seconds * 1e9).round() as u64, ns);
            assert_eq!(le.parse::<f64>().expect("number"), *seconds);
        }
        assert!(BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LE[LE.len() - 1], "+Inf");
    }

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let h = Histogram::default();
        h.record(Duration::from_millis(1)); // exactly on the first bound
        h.record(Duration::from_micros(1001)); // just above it
        h.record(Duration::from_secs(301)); // past the last bound
        h.record(Duration::ZERO);
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 2);
        assert_eq!(s.cumulative[1], 3);
        assert_eq!(s.cumulative[BUCKETS.len() - 1], 3);
        assert_eq!(s.count(), 4);
        assert!((s.sum_seconds - 301.002_001).abs() < 1e-9);
    }

    #[test]
    fn the_sketch_covers_every_value_and_quantiles_are_close() {
        // Buckets tile the number line without gaps.
        for index in 0..SKETCH_BUCKETS - 1 {
            let (lower, width) = sketch_range(index);
            assert_eq!(sketch_range(index + 1).0, lower + width, "{index}");
            assert_eq!(sketch_index(lower), index);
            assert_eq!(sketch_index(lower + width - 1), index);
        }
        assert_eq!(sketch_index(u64::MAX), SKETCH_BUCKETS - 1);
        let sketch = Sketch::default();
        assert_eq!(sketch.quantile_ms(0.5), None);
        // 1..=1000 ms, uniformly.
        for ms in 1..=1000 {
            sketch.record(Duration::from_millis(ms));
        }
        let p50 = sketch.quantile_ms(0.5).expect("p50");
        let p99 = sketch.quantile_ms(0.99).expect("p99");
        assert!((p50 - 500.0).abs() / 500.0 < 0.07, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.07, "{p99}");
    }

    #[test]
    fn tool_calls_are_counted_per_tool_with_unknown_names_pooled() {
        let metrics = Metrics::new(None, ["a", "b"]);
        metrics.record_tool_call("a", Duration::from_millis(2), None);
        metrics.record_tool_call("a", Duration::from_millis(4), Some("rejected"));
        metrics.record_tool_call("nope", Duration::ZERO, Some("unknown_tool"));
        metrics.record_tool_call("nope2", Duration::ZERO, Some("brand_new_kind"));
        let summaries = metrics.tool_summaries(None);
        assert_eq!(summaries.len(), 2, "b was never called: {summaries:?}");
        let a = &summaries[0];
        assert_eq!((a.tool.as_str(), a.calls, a.errors), ("a", 2, 1));
        assert_eq!(a.errors_by_type, [("rejected", 1)]);
        let p50 = a.p50_ms.expect("p50");
        assert!((1.8..=2.2).contains(&p50), "{p50}");
        let other = &summaries[1];
        assert_eq!((other.tool.as_str(), other.calls), (OTHER_TOOL, 2));
        assert_eq!(other.errors_by_type, [("unknown_tool", 1), ("other", 1)]);
        assert_eq!(metrics.tool_summaries(Some("b")), []);
    }

    #[test]
    fn connections_are_counted_while_their_guard_lives() {
        let metrics = Metrics::new(None, []);
        let first = metrics.connection_opened();
        let second = metrics.connection_opened();
        assert_eq!(metrics.connections(), 2);
        drop(first);
        assert_eq!(metrics.connections(), 1);
        drop(second);
        assert_eq!(metrics.connections(), 0);
    }

    #[test]
    fn endpoint_labels_are_escaped() {
        let mut out = String::new();
        endpoint_sample(&mut out, "x", "a\"b\\c", 1);
        assert_eq!(out, "x{comfyui_endpoint=\"a\\\"b\\\\c\"} 1\n");
    }

    #[test]
    fn resident_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().is_some_and(|b| b > 1024 * 1024));
        } else {
            assert_eq!(resident_bytes(), None);
        }
    }
}
