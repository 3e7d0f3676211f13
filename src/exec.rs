//! Running a workflow on ComfyUI and following it to the end: the WebSocket is opened (with a
//! fresh client id) before the prompt is posted with a pre-generated prompt id, so no event is
//! missed; events become progress notifications; completion is `executing` with no node. If the
//! socket drops, history is polled instead. A wait that outlives its limit returns a handle to
//! poll, never a false "complete"; a cancelled call cancels the prompt it queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::comfy::api::{HistoryEntry, Output, QueuePosition};
use crate::comfy::events::{Event, EventStream, Item, StreamConfig};
use crate::comfy::{Client, ComfyError};
use crate::error::ToolError;
use crate::mcp::ToolContext;

/// How often history is polled when the WebSocket is not available.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long a finished run's history entry may take to appear.
const HISTORY_GRACE: Duration = Duration::from_secs(2);

/// Where a run stands when the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Finished and every output node ran.
    Complete,
    /// Finished with an error in a node.
    Error,
    /// Stopped by an interrupt.
    Interrupted,
    /// Still running when the wait ran out: poll with get_execution_status.
    Running,
    /// Still waiting in ComfyUI's queue when the wait ran out.
    Queued,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NodeTiming {
    pub node_id: String,
    pub class_type: String,
    pub duration_s: f64,
}

/// What went wrong in a node.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NodeFailure {
    pub node_id: String,
    pub class_type: String,
    pub exception_type: String,
    pub message: String,
    /// The last lines of the Python traceback.
    pub traceback: Vec<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunReport {
    pub status: RunStatus,
    pub prompt_id: String,
    /// Seconds from queueing to the end (or to when the wait ran out).
    pub total_time_s: f64,
    pub outputs: Vec<Output>,
    /// The slowest nodes first (at most 10).
    pub node_timing: Vec<NodeTiming>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowest_node: Option<NodeTiming>,
    /// Nodes ComfyUI reused from its cache instead of running.
    pub cached_nodes: usize,
    pub progress_events: usize,
    /// `websocket`, or `polling` when the socket was unavailable or dropped.
    pub monitoring: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeFailure>,
    /// Output nodes ComfyUI dropped at queue time because their inputs were invalid (it ran
    /// the others).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_outputs: Vec<String>,
    /// For a run still going: its place in the queue (1 = next).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    pub message: String,
}

/// Follows one queued prompt.
struct Follow<'a> {
    cx: &'a ToolContext,
    classes: HashMap<String, String>,
    started: Instant,
    current: Option<(String, Instant)>,
    timings: Vec<NodeTiming>,
    cached: usize,
    events: usize,
    reported: f64,
    failure: Option<NodeFailure>,
    interrupted: bool,
    finished: bool,
}

impl Follow<'_> {
    fn class(&self, node: &str) -> String {
        self.classes
            .get(node)
            .cloned()
            .unwrap_or_else(|| "node".to_string())
    }

    fn close_node(&mut self) {
        if let Some((node, since)) = self.current.take() {
            let class_type = self.class(&node);
            self.timings.push(NodeTiming {
                node_id: node,
                class_type,
                duration_s: round_ms(since.elapsed()),
            });
        }
    }

    async fn say(&mut self, message: String) {
        self.reported += 1.0;
        self.cx.progress(self.reported, None, message).await;
    }

    /// Takes one event; whether the run has ended.
    async fn on_event(&mut self, event: Event) {
        match event {
            Event::ExecutionStart(_) => self.say("started".into()).await,
            Event::ExecutionCached(cached) => {
                self.cached += cached.nodes.len();
                if !cached.nodes.is_empty() {
                    self.say(format!("cached: {} nodes", cached.nodes.len()))
                        .await;
                }
            }
            Event::Executing(executing) => {
                self.close_node();
                match executing.node {
                    Some(node) => {
                        let class = self.class(&node);
                        self.current = Some((node.clone(), Instant::now()));
                        self.say(format!("{class} (node {node})")).await;
                    }
                    None => self.finished = true,
                }
            }
            Event::Progress(progress) => {
                self.events += 1;
                let node = progress
                    .node
                    .clone()
                    .or_else(|| self.current.as_ref().map(|(n, _)| n.clone()))
                    .unwrap_or_default();
                let class = self.class(&node);
                // Only whole steps are worth a notification.
                self.say(format!(
                    "{class}: step {}/{}",
                    progress.value.round(),
                    progress.max.round()
                ))
                .await;
            }
            Event::ExecutionError(error) => {
                self.close_node();
                let node_id = error.node_id.clone().unwrap_or_default();
                let class_type = error
                    .node_type
                    .clone()
                    .unwrap_or_else(|| self.class(&node_id));
                let keep = error.traceback.len().saturating_sub(6);
                self.failure = Some(NodeFailure {
                    node_id,
                    class_type,
                    exception_type: error.exception_type.clone().unwrap_or_default(),
                    message: error
                        .exception_message
                        .clone()
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    traceback: error.traceback[keep..]
                        .iter()
                        .map(|line| line.trim_end().to_string())
                        .collect(),
                });
                self.finished = true;
            }
            Event::ExecutionInterrupted(_) => {
                self.close_node();
                self.interrupted = true;
                self.finished = true;
            }
            _ => {}
        }
    }
}

fn round_ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The socket settings for following a run: reconnect quickly, and give up soon enough that a
/// ComfyUI that died is reported within a couple of seconds.
fn stream_config() -> StreamConfig {
    StreamConfig {
        connect_timeout: Duration::from_secs(3),
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        max_attempts: 4,
        give_up_after: Duration::from_millis(1500),
        ..StreamConfig::default()
    }
}

/// Queues `workflow` (API format) and follows it for at most `wait`.
/// Asks the user before running workflows with ComfyUI's paid API nodes (their
/// `api_node` flag in the node list), naming them. Without the node list there is nothing
/// to check against; ComfyUI would refuse the workflow then anyway.
pub async fn confirm_paid_nodes(
    cx: &ToolContext,
    client: &Arc<Client>,
    workflows: &[Value],
) -> Result<(), ToolError> {
    let Ok(index) = client.nodes(false).await else {
        return Ok(());
    };
    let mut paid: Vec<&str> = workflows
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|nodes| nodes.values())
        .filter_map(|node| node.get("class_type")?.as_str())
        .filter(|class| index.get(class).is_some_and(|node| node.api_node))
        .collect();
    paid.sort_unstable();
    paid.dedup();
    if paid.is_empty() {
        return Ok(());
    }
    cx.confirm(crate::mcp::consent::Consent::new(
        format!(
            "Run paid API node{} {}?",
            if paid.len() == 1 { "" } else { "s" },
            paid.join(", ")
        ),
        "They call an online service that bills your Comfy account for each run.",
    ))
    .await
}

pub async fn run(
    cx: &ToolContext,
    client: &Arc<Client>,
    workflow: &Value,
    wait: Duration,
) -> Result<RunReport, ToolError> {
    let prompt_id = uuid::Uuid::new_v4().to_string();
    let client_id = format!("comfyui-agent-{}", uuid::Uuid::new_v4());
    let classes: HashMap<String, String> = workflow
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(id, node)| Some((id.clone(), node.get("class_type")?.as_str()?.to_string())))
        .collect();
    // The socket first, so not one event of this prompt is missed.
    let mut stream = match EventStream::connect(client, client_id.clone(), stream_config()).await {
        Ok(stream) => Some(stream.for_prompt(prompt_id.clone())),
        Err(error) if error.is_unreachable() => return Err(error.into()),
        Err(error) => {
            tracing::info!(%error, "no WebSocket; following the run by polling history");
            None
        }
    };
    let submitted = client.submit(workflow, &client_id, &prompt_id).await?;
    let mut follow = Follow {
        cx,
        classes,
        started: Instant::now(),
        current: None,
        timings: Vec::new(),
        cached: 0,
        events: 0,
        reported: 0.0,
        failure: None,
        interrupted: false,
        finished: false,
    };
    follow.say("queued".into()).await;
    let deadline = follow.started + wait;
    let mut monitoring = if stream.is_some() {
        "websocket"
    } else {
        "polling"
    };
    let mut entry: Option<HistoryEntry> = None;
    while !follow.finished {
        let polling = stream.is_none();
        let next = async {
            match stream.as_mut() {
                Some(stream) => stream.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = cx.cancelled.cancelled() => {
                // The call's future is dropped right after this; the cancel runs on its own.
                let client = Arc::clone(client);
                let prompt_id = prompt_id.clone();
                cx.app.in_flight().spawn(async move { cancel(&client, &prompt_id).await });
                return Err(ToolError::Cancelled);
            }
            () = tokio::time::sleep_until(deadline) => break,
            item = next => match item {
                Some(Ok(Item::Event(event))) => follow.on_event(event).await,
                Some(Ok(Item::Reconnected { .. })) => {
                    // Events sent while the socket was down are lost: ask history.
                    if let Some(found) = client.history_entry(&prompt_id).await? {
                        entry = Some(found);
                        follow.finished = true;
                    }
                }
                ended => {
                    // The socket is gone for good: is ComfyUI gone, or only its socket?
                    let lost = match ended {
                        Some(Err(error)) => Some(error),
                        _ => None,
                    };
                    match client.history_entry(&prompt_id).await {
                        Ok(Some(found)) => {
                            entry = Some(found);
                            follow.finished = true;
                        }
                        Ok(None) => {
                            stream = None;
                            monitoring = "polling";
                        }
                        Err(error) => return Err(died(&prompt_id, lost.unwrap_or(error))),
                    }
                }
            },
            () = tokio::time::sleep(POLL_EVERY), if polling => {
                match client.history_entry(&prompt_id).await {
                    Ok(Some(found)) => {
                        entry = Some(found);
                        follow.finished = true;
                    }
                    Ok(None) => {}
                    Err(error) if error.is_unreachable() => return Err(died(&prompt_id, error)),
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    follow.close_node();
    let total_time_s = round_ms(follow.started.elapsed());
    let skipped_outputs: Vec<String> = submitted
        .node_errors
        .iter()
        .map(crate::comfy::NodeProblem::describe)
        .collect();
    if !follow.finished {
        let queue = client.queue().await?;
        let (status, queue_position) = match queue.position(&prompt_id) {
            Some(QueuePosition::Pending(place)) => (RunStatus::Queued, Some(place)),
            _ => (RunStatus::Running, None),
        };
        return Ok(RunReport {
            status,
            prompt_id: prompt_id.clone(),
            total_time_s,
            outputs: Vec::new(),
            node_timing: slowest(&follow.timings),
            slowest_node: None,
            cached_nodes: follow.cached,
            progress_events: follow.events,
            monitoring: monitoring.into(),
            error: None,
            skipped_outputs,
            queue_position,
            message: format!(
                "Still {} after {} s. Call get_execution_status with prompt_id {prompt_id} to follow it, or cancel_execution to stop it.",
                if status == RunStatus::Queued {
                    "queued"
                } else {
                    "running"
                },
                wait.as_secs()
            ),
        });
    }
    let entry = match entry {
        Some(entry) => Some(entry),
        None => history_soon(client, &prompt_id).await?,
    };
    let outputs = entry
        .as_ref()
        .map(HistoryEntry::output_list)
        .unwrap_or_default();
    if follow.failure.is_none()
        && let Some(error) = entry.as_ref().and_then(HistoryEntry::error)
    {
        follow.failure = Some(NodeFailure {
            class_type: error.node_type,
            node_id: error.node_id,
            exception_type: String::new(),
            message: error.message,
            traceback: Vec::new(),
        });
    }
    if entry.as_ref().is_some_and(HistoryEntry::interrupted) {
        follow.interrupted = true;
    }
    let status = if follow.interrupted {
        RunStatus::Interrupted
    } else if follow.failure.is_some() {
        RunStatus::Error
    } else {
        RunStatus::Complete
    };
    let files: Vec<(String, String, String)> = outputs
        .iter()
        .filter_map(|output| {
            let filename = output.filename.as_deref()?;
            let folder = output.folder_type.as_deref().unwrap_or("output");
            let subfolder = output.subfolder.as_deref().unwrap_or("");
            Some((
                crate::tools::execution::output_uri(folder, subfolder, filename),
                folder.to_string(),
                filename.to_string(),
            ))
        })
        .collect();
    cx.app.changes().outputs_produced(&prompt_id, files);
    let node_timing = slowest(&follow.timings);
    let message = match status {
        RunStatus::Complete => format!(
            "Finished in {total_time_s} s with {} output{}.",
            outputs.len(),
            if outputs.len() == 1 { "" } else { "s" }
        ),
        RunStatus::Interrupted => "The run was interrupted before it finished.".into(),
        _ => match &follow.failure {
            Some(failure) => format!(
                "{} (node {}) failed: {}",
                failure.class_type, failure.node_id, failure.message
            ),
            None => "The run failed.".into(),
        },
    };
    Ok(RunReport {
        status,
        prompt_id,
        total_time_s,
        outputs,
        slowest_node: node_timing.first().cloned(),
        node_timing,
        cached_nodes: follow.cached,
        progress_events: follow.events,
        monitoring: monitoring.into(),
        error: follow.failure,
        skipped_outputs,
        queue_position: None,
        message,
    })
}

fn slowest(timings: &[NodeTiming]) -> Vec<NodeTiming> {
    let mut sorted = timings.to_vec();
    sorted.sort_by(|a, b| {
        b.duration_s
            .total_cmp(&a.duration_s)
            .then_with(|| crate::workflow::model::compare_ids(&a.node_id, &b.node_id))
    });
    sorted.truncate(10);
    sorted
}

/// The history entry of a run that just finished; ComfyUI writes it as the run ends, so it may
/// take a moment.
async fn history_soon(client: &Client, prompt_id: &str) -> Result<Option<HistoryEntry>, ToolError> {
    let until = Instant::now() + HISTORY_GRACE;
    loop {
        if let Some(entry) = client.history_entry(prompt_id).await? {
            return Ok(Some(entry));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn died(prompt_id: &str, error: ComfyError) -> ToolError {
    ToolError::rejected(
        format!(
            "ComfyUI stopped answering during the run (prompt {prompt_id}): {}",
            error.user_message()
        ),
        "Once ComfyUI is back, get_execution_status with this prompt_id says whether it \
         finished (ComfyUI forgets queued work when it restarts).",
    )
}

/// What cancelling a prompt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cancelled {
    /// It was waiting in the queue and was removed.
    RemovedFromQueue,
    /// It was running and was interrupted.
    Interrupted,
    /// It was neither queued nor running (finished, or unknown).
    NotActive,
}

/// Cancels one prompt without touching anyone else's: a queued prompt is deleted from the
/// queue; `/interrupt` (global in ComfyUI) is sent, naming the prompt, only when it is the one
/// running.
pub async fn cancel_prompt(client: &Client, prompt_id: &str) -> Result<Cancelled, ComfyError> {
    let queue = client.queue().await?;
    match queue.position(prompt_id) {
        Some(QueuePosition::Pending(_)) => {
            client.delete_queued(&[prompt_id.to_string()]).await?;
            Ok(Cancelled::RemovedFromQueue)
        }
        Some(QueuePosition::Running) => {
            client.interrupt(Some(prompt_id)).await?;
            Ok(Cancelled::Interrupted)
        }
        None => Ok(Cancelled::NotActive),
    }
}

/// Cancels after the client gave up on the call; failures are only logged (the call is over).
async fn cancel(client: &Client, prompt_id: &str) {
    match cancel_prompt(client, prompt_id).await {
        Ok(done) => tracing::info!(prompt_id, ?done, "cancelled the prompt of a cancelled call"),
        Err(error) => {
            tracing::warn!(prompt_id, %error, "could not cancel the prompt of a cancelled call")
        }
    }
}
