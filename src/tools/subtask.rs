//! spawn_subtask and check_subtasks (§1.18 of the catalogue).

use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::subtask::{CallResult, MAX_RUNNING, Profile, Refusal, Status, View};

/// How long a stopped sub-task's running call gets to clean up.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// The default time limit of a whole sub-task.
const DEFAULT_TIMEOUT_S: u64 = 60;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "spawn_subtask",
            "Run tool calls in the background",
            "Run a short list of tool calls in the background under a profile: researcher \
             (inspection, discovery, memory, read-only checks), builder (workflow edits and \
             validation) or validator (validate, run, verify, judge). Every tool is checked \
             against the profile before anything starts; calls run in order with the same \
             argument checks as direct calls; at most 3 run per session; the whole sub-task \
             stops at timeout_s. Returns a task_id for check_subtasks.",
            Hints::LIVE_RUN,
            spawn_subtask,
        ),
        tool(
            "check_subtasks",
            "Check background sub-tasks",
            "Show this session's sub-tasks (or those in task_ids): status, each call's result or \
             error, elapsed time. cancel stops running ones. Finished sub-tasks are kept for 10 \
             minutes.",
            Hints::MEMORY,
            check_subtasks,
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// A tool the profile allows.
    #[schemars(length(min = 1, max = 64))]
    pub tool: String,
    /// Its arguments.
    #[serde(default)]
    pub input: Map<String, Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnParams {
    /// What the sub-task is for, in a sentence.
    #[schemars(length(min = 1, max = 500))]
    pub task_description: String,
    pub profile: Profile,
    /// The calls, run in order.
    #[schemars(length(min = 1, max = 20))]
    pub tool_calls: Vec<ToolCall>,
    /// Time limit for all the calls together, in seconds (default 60).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1800))]
    pub timeout_s: Option<u64>,
    /// Stop at the first failing call (default true); false runs them all.
    #[serde(default)]
    pub stop_on_error: Option<bool>,
    /// A named session to work in.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SpawnReport {
    pub spawned: bool,
    pub task_id: String,
    pub description: String,
    pub profile: Profile,
    pub tool_count: usize,
    pub timeout_s: u64,
    pub message: String,
}

async fn spawn_subtask(cx: ToolContext, params: SpawnParams) -> Result<SpawnReport, ToolError> {
    let scope = cx.scope(params.session.as_deref())?;
    let allowed = params.profile.allowed();
    let refused: Vec<&str> = params
        .tool_calls
        .iter()
        .map(|call| call.tool.as_str())
        .filter(|tool| !allowed.contains(tool))
        .collect();
    if !refused.is_empty() {
        return Err(ToolError::rejected(
            format!(
                "The {:?} profile may not use {}. It may use: {}.",
                params.profile,
                refused.join(", "),
                allowed.join(", ")
            ),
            "Pick the profile that fits the calls, or spawn one sub-task per profile.",
        ));
    }
    let timeout_s = params.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
    let timeout = Duration::from_secs(timeout_s);
    let tool_count = params.tool_calls.len();
    let (task_id, stop) = cx
        .app
        .subtasks()
        .start(
            scope.as_str(),
            params.task_description.clone(),
            params.profile,
            tool_count,
            timeout,
        )
        .map_err(|Refusal::TooMany { running }| {
            ToolError::rejected(
                format!("{running} sub-tasks are already running in this session (at most {MAX_RUNNING})."),
                "Wait for one to finish (check_subtasks), or cancel one.",
            )
        })?;
    // The sub-task outlives this call: its own context, this session's workflow.
    let mut worker = ToolContext::detached(cx.app.clone());
    worker.session = cx.workspace(params.session.as_deref());
    worker.stateless = false;
    worker.cancelled = stop.clone();
    let app = cx.app.clone();
    let session = scope.as_str().to_string();
    let id = task_id.clone();
    let stop_on_error = params.stop_on_error.unwrap_or(true);
    let calls = params.tool_calls;
    cx.app.in_flight().spawn(async move {
        let work = async {
            let mut failed = false;
            for call in calls {
                let Some(spec) = app.tool(&call.tool) else {
                    app.subtasks().record(
                        &session,
                        &id,
                        CallResult {
                            tool: call.tool.clone(),
                            ok: false,
                            result: None,
                            error: Some(format!(
                                "{} is not offered by this server now.",
                                call.tool
                            )),
                            elapsed_ms: 0.0,
                        },
                    );
                    failed = true;
                    if stop_on_error {
                        break;
                    }
                    continue;
                };
                let mut cx = worker.clone();
                cx.tool = std::sync::Arc::from(call.tool.as_str());
                let started = Instant::now();
                let outcome = spec.call(cx, Some(call.input)).await;
                let elapsed_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
                app.metrics().record_tool_call(
                    &call.tool,
                    started.elapsed(),
                    outcome.as_ref().err().map(ToolError::kind),
                );
                let ok = outcome.is_ok();
                let (result, error) = match outcome {
                    Ok(value) => (Some(value), None),
                    Err(ToolError::Cancelled) => return Status::Cancelled,
                    Err(error) => (None, Some(error.user_message())),
                };
                app.subtasks().record(
                    &session,
                    &id,
                    CallResult {
                        tool: call.tool,
                        ok,
                        result,
                        error,
                        elapsed_ms,
                    },
                );
                if !ok {
                    failed = true;
                    if stop_on_error {
                        break;
                    }
                }
            }
            if failed {
                Status::Error
            } else {
                Status::Completed
            }
        };
        let mut work = std::pin::pin!(work);
        // `Ok`: the calls finished (their status); `Err`: stopped from outside (cancelled, or
        // out of time) while they were still running.
        let ended = tokio::select! {
            status = &mut work => Ok(status),
            () = stop.cancelled() => Err(Status::Cancelled),
            () = tokio::time::sleep(timeout) => Err(Status::TimedOut),
        };
        let status = match ended {
            Ok(status) => status,
            Err(status) => {
                // The running call sees the cancellation and cleans up (a run in ComfyUI
                // is cancelled there) before the sub-task settles.
                stop.cancel();
                let _ = tokio::time::timeout(WIND_DOWN, &mut work).await;
                status
            }
        };
        app.subtasks().finish(&session, &id, status);
    });
    Ok(SpawnReport {
        spawned: true,
        message: format!(
            "Sub-task {task_id} started: {tool_count} call{} as {:?}, at most {timeout_s} s. Check it with check_subtasks.",
            if tool_count == 1 { "" } else { "s" },
            params.profile
        ),
        task_id,
        description: params.task_description,
        profile: params.profile,
        tool_count,
        timeout_s,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckParams {
    /// Only these sub-tasks (all of this session's otherwise).
    #[serde(default)]
    pub task_ids: Option<Vec<String>>,
    /// Running sub-tasks to stop.
    #[serde(default)]
    pub cancel: Option<Vec<String>>,
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Summary {
    pub total: usize,
    pub running: usize,
    pub completed: usize,
    pub errors: usize,
    pub timed_out: usize,
    pub cancelled: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckReport {
    pub tasks: Vec<View>,
    pub summary: Summary,
    /// The ids asked to stop that were running.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cancelled_now: Vec<String>,
    pub message: String,
}

async fn check_subtasks(cx: ToolContext, params: CheckParams) -> Result<CheckReport, ToolError> {
    let scope = cx.scope(params.session.as_deref())?;
    let tasks = cx.app.subtasks();
    let cancelled_now = params
        .cancel
        .as_deref()
        .map(|ids| tasks.cancel(scope.as_str(), ids))
        .unwrap_or_default();
    if !cancelled_now.is_empty() {
        // Let the workers settle, so the answer shows them stopped.
        for _ in 0..50 {
            let still = tasks
                .views(scope.as_str(), Some(&cancelled_now))
                .iter()
                .any(|view| view.status == Status::Running);
            if !still {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let views = tasks.views(scope.as_str(), params.task_ids.as_deref());
    let count = |status: Status| views.iter().filter(|v| v.status == status).count();
    let summary = Summary {
        total: views.len(),
        running: count(Status::Running),
        completed: count(Status::Completed),
        errors: count(Status::Error),
        timed_out: count(Status::TimedOut),
        cancelled: count(Status::Cancelled),
    };
    let message = if views.is_empty() {
        "No sub-tasks in this session.".to_string()
    } else {
        format!(
            "{} sub-task{}: {} running, {} completed, {} with errors.",
            summary.total,
            if summary.total == 1 { "" } else { "s" },
            summary.running,
            summary.completed,
            summary.errors + summary.timed_out + summary.cancelled
        )
    };
    Ok(CheckReport {
        tasks: views,
        summary,
        cancelled_now,
        message,
    })
}
