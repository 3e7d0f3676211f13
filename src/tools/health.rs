//! `get_server_health`: how this server and its ComfyUI connection are doing, from the same
//! numbers `/metrics` exports, put for an assistant to read.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::comfy::breaker::BreakerState;
use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::telemetry::metrics::ToolSummary;

/// The longest the ComfyUI check may take: a health report should come back fast even when
/// ComfyUI hangs.
const PROBE_TIME: Duration = Duration::from_secs(3);

pub fn tools() -> Vec<ToolSpec> {
    vec![tool(
        "get_server_health",
        "Server health",
        "How this server is doing since it started: whether ComfyUI answers (one quick check) \
         and its circuit breaker, tool calls, errors, error rate and p50/p99 latency per tool, \
         ComfyUI requests by operation and outcome, retries, sessions and memory. Pass `tool` \
         to see one tool only. Use it when calls fail or feel slow.",
        Hints::LIVE_READ,
        get_server_health,
    )]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthParams {
    /// Report only this tool's calls (its exact name, e.g. `get_queue_status`).
    #[serde(default)]
    #[schemars(length(min = 1, max = 128))]
    pub tool: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ServerHealth {
    /// The state of things in two or three sentences.
    pub summary: String,
    pub version: String,
    pub uptime_s: f64,
    pub comfyui: ComfyHealth,
    /// All tools together (or the one asked for).
    pub totals: CallTotals,
    /// Tools called at least once since start, in the order tools/list gives.
    pub tools: Vec<ToolHealth>,
    pub sessions: SessionCounts,
    pub memory: MemoryReport,
    /// The cached node list (object_info).
    pub node_cache: CacheReport,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ComfyHealth {
    /// Whether ComfyUI answered the check just made.
    pub reachable: bool,
    pub url: String,
    /// The circuit breaker after the check: `closed` lets calls through; `open` fails them
    /// at once until the next probe.
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
    pub breaker_transitions: u64,
    /// While open: seconds until the breaker lets a probe through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comfyui_version: Option<String>,
    /// Why it isn't reachable, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// HTTP attempts at ComfyUI since start, by operation and outcome.
    pub requests: Vec<RequestHealth>,
    /// Retries of reads that failed for a passing reason.
    pub retries_spent: u64,
    /// Retries the retry budget refused (ComfyUI was failing too often to retry).
    pub retries_refused: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RequestHealth {
    pub operation: String,
    /// `ok`, `4xx`, `5xx`, `timeout`, `unreachable`, `breaker_open` or `too_large`.
    pub outcome: String,
    pub count: u64,
    pub mean_ms: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CallTotals {
    pub calls: u64,
    pub errors: u64,
    /// Errors over calls, 0 to 1.
    pub error_rate: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ToolHealth {
    pub tool: String,
    pub calls: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Median latency in milliseconds (within about 6%).
    pub p50_ms: f64,
    /// 99th-percentile latency in milliseconds (within about 6%).
    pub p99_ms: f64,
    /// Error counts by kind (`comfyui_unreachable`, `invalid_arguments`, …).
    pub errors_by_type: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionCounts {
    /// MCP connections that completed the handshake and are still open.
    pub connections: u64,
    /// Sessions addressed by name, in memory.
    pub named: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MemoryReport {
    /// Resident memory of this process, where the system reports it (Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resident_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CacheReport {
    pub entries: u64,
    pub bytes: u64,
}

fn rate(errors: u64, calls: u64) -> f64 {
    if calls == 0 {
        0.0
    } else {
        errors as f64 / calls as f64
    }
}

impl From<ToolSummary> for ToolHealth {
    fn from(summary: ToolSummary) -> Self {
        Self {
            error_rate: rate(summary.errors, summary.calls),
            p50_ms: summary.p50_ms.unwrap_or_default(),
            p99_ms: summary.p99_ms.unwrap_or_default(),
            errors_by_type: summary
                .errors_by_type
                .into_iter()
                .map(|(kind, count)| (kind.to_string(), count))
                .collect(),
            tool: summary.tool,
            calls: summary.calls,
            errors: summary.errors,
        }
    }
}

async fn get_server_health(
    cx: ToolContext,
    params: HealthParams,
) -> Result<ServerHealth, ToolError> {
    let only = params.tool.as_deref().map(str::trim);
    if let Some(name) = only
        && cx.app.registry().get(name).is_none()
    {
        return Err(ToolError::rejected(
            format!("This server has no tool called {name:?}."),
            "Leave `tool` out to see every tool, or call tools/list for the exact names.",
        ));
    }
    let comfyui = comfy_health(&cx).await;
    let metrics = cx.app.metrics();
    let tools: Vec<ToolHealth> = metrics
        .tool_summaries(only)
        .into_iter()
        .map(ToolHealth::from)
        .collect();
    let calls = tools.iter().map(|t| t.calls).sum();
    let errors = tools.iter().map(|t| t.errors).sum();
    let gauges = cx.app.gauges();
    let memory = MemoryReport {
        resident_bytes: gauges.resident_bytes,
        note: gauges
            .resident_bytes
            .is_none()
            .then(|| "Memory use is unavailable on this operating system.".to_string()),
    };
    let uptime = metrics.uptime();
    let mut health = ServerHealth {
        summary: String::new(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: uptime.as_secs_f64(),
        comfyui,
        totals: CallTotals {
            calls,
            errors,
            error_rate: rate(errors, calls),
        },
        tools,
        sessions: SessionCounts {
            connections: metrics.connections(),
            named: gauges.named_sessions,
        },
        memory,
        node_cache: CacheReport {
            entries: gauges.node_cache_entries,
            bytes: gauges.node_cache_bytes,
        },
    };
    health.summary = summarise(&health, only);
    Ok(health)
}

/// One quick check of ComfyUI (within [`PROBE_TIME`]), and the breaker after it.
async fn comfy_health(cx: &ToolContext) -> ComfyHealth {
    let comfy = cx.app.comfy();
    let checked = tokio::time::timeout(PROBE_TIME, comfy.check()).await;
    let (reachable, comfyui_version, error) = match &checked {
        Ok((_, Ok(stats))) => (true, stats.system.comfyui_version.clone(), None),
        Ok((_, Err(error))) => (false, None, Some(error.user_message())),
        Err(_) => (
            false,
            None,
            Some(format!(
                "ComfyUI didn't answer within {} s. It may be busy loading a model or stuck; \
                 check its console window, or restart it.",
                PROBE_TIME.as_secs()
            )),
        ),
    };
    let (url, breaker) = match &checked {
        Ok((client, _)) => (client.base_url().to_string(), client.breaker()),
        Err(_) => {
            let status = comfy.status();
            (status.url.to_string(), status.breaker)
        }
    };
    let recorder = cx.app.metrics().comfy();
    let (retries_spent, retries_refused) = recorder.retries();
    ComfyHealth {
        reachable,
        url,
        breaker: breaker.state,
        consecutive_failures: breaker.consecutive_failures,
        breaker_transitions: breaker.transitions,
        retry_in_s: (breaker.state == BreakerState::Open).then_some(breaker.retry_in.as_secs_f64()),
        comfyui_version,
        error,
        requests: recorder
            .requests()
            .into_iter()
            .map(|r| RequestHealth {
                operation: r.operation.to_string(),
                outcome: r.outcome.to_string(),
                count: r.count,
                mean_ms: r.mean_ms,
            })
            .collect(),
        retries_spent,
        retries_refused,
    }
}

fn summarise(health: &ServerHealth, only: Option<&str>) -> String {
    let comfy = &health.comfyui;
    let mut text = if comfy.reachable {
        format!(
            "ComfyUI answers at {} (breaker {}).",
            comfy.url,
            comfy.breaker.as_str()
        )
    } else {
        format!(
            "ComfyUI isn't reachable at {} (breaker {}); tools that work on files and \
             workflows still work.",
            comfy.url,
            comfy.breaker.as_str()
        )
    };
    let totals = &health.totals;
    let subject = match only {
        Some(tool) => format!("{tool} calls"),
        None => "tool calls".to_string(),
    };
    text.push_str(&format!(
        " {} {subject} in {}, {} failed ({:.1}%).",
        totals.calls,
        uptime_words(health.uptime_s),
        totals.errors,
        totals.error_rate * 100.0
    ));
    if let Some(slowest) = health
        .tools
        .iter()
        .max_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms))
    {
        text.push_str(&format!(
            " Slowest p99: {} at {:.1} ms.",
            slowest.tool, slowest.p99_ms
        ));
    }
    text.push_str(&format!(
        " {} connection(s), {} named session(s)",
        health.sessions.connections, health.sessions.named
    ));
    match health.memory.resident_bytes {
        Some(bytes) => text.push_str(&format!(
            ", {:.1} MB of memory.",
            bytes as f64 / (1024.0 * 1024.0)
        )),
        None => text.push('.'),
    }
    text
}

fn uptime_words(seconds: f64) -> String {
    let seconds = seconds as u64;
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds / 60),
        _ => format!("{:.1} h", seconds as f64 / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_naturally() {
        assert_eq!(uptime_words(5.2), "5 s");
        assert_eq!(uptime_words(600.0), "10 min");
        assert_eq!(uptime_words(9000.0), "2.5 h");
    }

    #[test]
    fn rates_are_safe_at_zero() {
        assert_eq!(rate(0, 0), 0.0);
        assert_eq!(rate(1, 4), 0.25);
    }
}
