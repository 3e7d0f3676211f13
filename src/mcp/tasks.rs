//! Long tool calls as tasks (the MCP tasks extension, SEP-2663): a client that declares
//! the extension gets a task handle back at once for the tools that can take minutes
//! (the execute tools and run_pipeline), then polls `tasks/get` for progress and the
//! result, or cancels with `tasks/cancel`. Clients without it keep the plain call, with
//! progress notifications.

use rmcp::task_manager::TaskManager;

/// The tools a client may run as tasks.
pub const TASK_TOOLS: &[&str] = &["execute_workflow", "execute_with_progress", "run_pipeline"];

/// How long a task and its result stay available after it is created (rmcp keeps a
/// finished one for another window so pollers see the end).
pub const TASK_TTL_MS: u64 = 60 * 60 * 1000;

/// How often clients are told to poll.
pub const POLL_INTERVAL_MS: u64 = 1_000;

/// Every task of this process, shared by all connections: a stateless (2026-07-28)
/// client polls on requests that belong to no connection. Task ids are random UUIDs.
#[derive(Clone, Default)]
pub struct ToolTasks {
    manager: TaskManager,
}

impl std::fmt::Debug for ToolTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolTasks")
            .field("running", &self.manager.running_task_count())
            .finish()
    }
}

impl ToolTasks {
    pub fn manager(&self) -> &TaskManager {
        &self.manager
    }
}

/// How long a cancelled task's tool gets to wind down (cancel its ComfyUI prompt) before
/// the task is settled as cancelled anyway.
const WIND_DOWN: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts `spec` as a task and returns the handle for the client. The call runs with no
/// client request behind it: progress becomes the task's status message, questions become
/// task input requests, and `tasks/cancel` cancels it as a cancelled call would.
pub(super) fn start(
    spec: &crate::registry::ToolSpec,
    mut cx: super::ToolContext,
    arguments: Option<rmcp::model::JsonObject>,
) -> rmcp::model::CallToolResponse {
    use rmcp::task_manager::{TaskExit, TaskOptions};

    let name = spec.tool().name.to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    cx.cancelled = stop.clone();
    cx.progress_token = None;
    let app = cx.app.clone();
    let call = spec.call(cx.clone(), arguments);
    let options = TaskOptions::new()
        .with_ttl_ms(TASK_TTL_MS)
        .with_poll_interval_ms(POLL_INTERVAL_MS)
        .with_status_message(format!("{name} is starting"));
    let task = app.tasks().manager().spawn(options, move |task| {
        cx.task = Some(super::TaskHandle(task.clone()));
        Box::pin(async move {
            let started = std::time::Instant::now();
            let mut call = std::pin::pin!(cx.app.in_flight().track_future(call));
            let outcome = tokio::select! {
                outcome = &mut call => outcome,
                () = task.cancelled() => {
                    stop.cancel();
                    tokio::time::timeout(WIND_DOWN, &mut call)
                        .await
                        .unwrap_or(Err(crate::error::ToolError::Cancelled))
                }
            };
            let kind = outcome.as_ref().err().map(crate::error::ToolError::kind);
            cx.app
                .metrics()
                .record_tool_call(&name, started.elapsed(), kind);
            match outcome {
                Err(crate::error::ToolError::Cancelled) => Err(TaskExit::Cancelled),
                outcome => {
                    let succeeded = outcome.is_ok();
                    let mut result = crate::registry::into_call_result(outcome);
                    if succeeded {
                        result.content.extend(cx.take_attachments());
                    }
                    Ok(result)
                }
            }
        })
    });
    tracing::info!(task = %task.task_id, "tool call running as a task");
    rmcp::model::CreateTaskResult::new(task).into()
}
