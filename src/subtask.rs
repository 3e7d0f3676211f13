//! Sub-tasks (§1.18 of the catalogue): a short list of tool calls run in the background
//! under a profile that limits which tools it may use, so an assistant can research or
//! validate while it talks. Every call goes through the same registry and argument checks
//! as a direct call. At most three run per session at once; each has a real time limit and
//! can be cancelled; finished ones are kept for ten minutes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Sub-tasks running at once in one session.
pub const MAX_RUNNING: usize = 3;
/// How long a finished sub-task's results stay.
pub const KEEP_FINISHED: Duration = Duration::from_secs(600);
/// Finished sub-tasks kept per session at most.
const MAX_KEPT: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Looks things up: inspection, discovery, memory, read-only checks.
    Researcher,
    /// Builds and edits the session's workflow.
    Builder,
    /// Validates, runs and judges.
    Validator,
}

impl Profile {
    pub fn allowed(self) -> &'static [&'static str] {
        match self {
            Self::Researcher => &[
                "is_comfyui_running",
                "get_all_nodes",
                "get_node_info",
                "get_system_stats",
                "get_queue_status",
                "get_history",
                "list_custom_nodes",
                "list_models",
                "get_models_summary",
                "read_node_source",
                "identify_model_family",
                "check_model_compatibility",
                "validate_workflow",
                "get_editable_fields",
                "get_workflow_diff",
                "list_workflow_templates",
                "discover",
                "find_missing_nodes",
                "get_install_instructions",
                "check_registry_freshness",
                "get_civitai_model",
                "get_trending_models",
                "get_learned_patterns",
                "get_recommendations",
                "get_gpu_status",
                "read_image_metadata",
                "reconstruct_context",
                "hash_compare_images",
                "profile_workflow",
                "suggest_optimizations",
                "check_tensorrt_status",
            ],
            Self::Builder => &[
                "load_workflow",
                "list_workflow_templates",
                "get_workflow_template",
                "get_editable_fields",
                "apply_workflow_patch",
                "preview_workflow_patch",
                "undo_workflow_patch",
                "get_workflow_diff",
                "reset_workflow",
                "add_node",
                "connect_nodes",
                "set_input",
                "validate_workflow",
                "validate_before_execute",
                "apply_optimization",
            ],
            Self::Validator => &[
                "validate_workflow",
                "validate_before_execute",
                "execute_workflow",
                "get_execution_status",
                "verify_execution",
                "analyze_image",
                "compare_outputs",
                "hash_compare_images",
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Completed,
    /// A call failed and the rest were skipped (or all ran with stop_on_error false).
    Error,
    TimedOut,
    Cancelled,
}

/// One call's outcome.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CallResult {
    pub tool: String,
    pub ok: bool,
    /// The tool's structured result, when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// What went wrong, as the tool said it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub elapsed_ms: f64,
}

/// A sub-task as check_subtasks shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct View {
    pub task_id: String,
    pub status: Status,
    pub description: String,
    pub profile: Profile,
    pub tool_count: usize,
    pub calls_done: usize,
    pub results: Vec<CallResult>,
    pub elapsed_s: f64,
    pub timeout_s: u64,
}

#[derive(Debug)]
struct Entry {
    view: View,
    started: Instant,
    finished: Option<Instant>,
    stop: CancellationToken,
}

/// Every session's sub-tasks.
#[derive(Debug, Default)]
pub struct SubTasks {
    sessions: Mutex<HashMap<String, Vec<Entry>>>,
}

/// Why a sub-task couldn't start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooMany { running: usize },
}

impl SubTasks {
    fn sweep(entries: &mut Vec<Entry>) {
        entries.retain(|entry| {
            entry
                .finished
                .is_none_or(|finished| finished.elapsed() < KEEP_FINISHED)
        });
        let finished = entries.iter().filter(|e| e.finished.is_some()).count();
        if finished > MAX_KEPT {
            let mut drop = finished - MAX_KEPT;
            entries.retain(|entry| {
                if drop > 0 && entry.finished.is_some() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Registers a new sub-task for `session`, or refuses when three already run.
    pub fn start(
        &self,
        session: &str,
        description: String,
        profile: Profile,
        tool_count: usize,
        timeout: Duration,
    ) -> Result<(String, CancellationToken), Refusal> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let entries = sessions.entry(session.to_string()).or_default();
        Self::sweep(entries);
        let running = entries.iter().filter(|e| e.finished.is_none()).count();
        if running >= MAX_RUNNING {
            return Err(Refusal::TooMany { running });
        }
        let task_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let stop = CancellationToken::new();
        entries.push(Entry {
            view: View {
                task_id: task_id.clone(),
                status: Status::Running,
                description,
                profile,
                tool_count,
                calls_done: 0,
                results: Vec::new(),
                elapsed_s: 0.0,
                timeout_s: timeout.as_secs(),
            },
            started: Instant::now(),
            finished: None,
            stop: stop.clone(),
        });
        Ok((task_id, stop))
    }

    fn with_entry(&self, session: &str, task_id: &str, f: impl FnOnce(&mut Entry)) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = sessions
            .get_mut(session)
            .and_then(|entries| entries.iter_mut().find(|e| e.view.task_id == task_id))
        {
            f(entry);
        }
    }

    /// Records one finished call.
    pub fn record(&self, session: &str, task_id: &str, result: CallResult) {
        self.with_entry(session, task_id, |entry| {
            entry.view.calls_done += 1;
            entry.view.results.push(result);
        });
    }

    /// Marks the sub-task finished with `status`.
    pub fn finish(&self, session: &str, task_id: &str, status: Status) {
        self.with_entry(session, task_id, |entry| {
            entry.view.status = status;
            entry.finished = Some(Instant::now());
            entry.view.elapsed_s = round(entry.started.elapsed());
        });
    }

    /// Asks running sub-tasks to stop; returns the ids that were running.
    pub fn cancel(&self, session: &str, task_ids: &[String]) -> Vec<String> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entries) = sessions.get(session) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|e| e.finished.is_none() && task_ids.contains(&e.view.task_id))
            .map(|e| {
                e.stop.cancel();
                e.view.task_id.clone()
            })
            .collect()
    }

    /// The session's sub-tasks (those named, or all), oldest first.
    pub fn views(&self, session: &str, task_ids: Option<&[String]>) -> Vec<View> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entries) = sessions.get_mut(session) else {
            return Vec::new();
        };
        Self::sweep(entries);
        entries
            .iter()
            .filter(|e| task_ids.is_none_or(|ids| ids.contains(&e.view.task_id)))
            .map(|e| {
                let mut view = e.view.clone();
                if e.finished.is_none() {
                    view.elapsed_s = round(e.started.elapsed());
                }
                view
            })
            .collect()
    }
}

fn round(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_run_at_once_per_session() {
        let tasks = SubTasks::default();
        let limit = Duration::from_secs(60);
        for _ in 0..3 {
            tasks
                .start("a", "x".into(), Profile::Researcher, 1, limit)
                .expect("room");
        }
        assert_eq!(
            tasks.start("a", "x".into(), Profile::Researcher, 1, limit),
            Err(Refusal::TooMany { running: 3 })
        );
        // Another session has its own three.
        let (id, _) = tasks
            .start("b", "y".into(), Profile::Builder, 2, limit)
            .expect("other session");
        tasks.finish("b", &id, Status::Completed);
        let views = tasks.views("b", None);
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].status, Status::Completed);
        assert!(tasks.views("b", Some(&["nope".into()])).is_empty());
    }

    #[test]
    fn cancelling_fires_the_token_only_for_running_ones() {
        let tasks = SubTasks::default();
        let (id, stop) = tasks
            .start(
                "a",
                "x".into(),
                Profile::Validator,
                1,
                Duration::from_secs(5),
            )
            .expect("room");
        assert_eq!(
            tasks.cancel("a", &[id.clone(), "other".into()]),
            std::slice::from_ref(&id)
        );
        assert!(stop.is_cancelled());
        tasks.finish("a", &id, Status::Cancelled);
        assert!(tasks.cancel("a", &[id]).is_empty());
    }

    #[test]
    fn profiles_never_allow_spawning_more_sub_tasks() {
        for profile in [Profile::Researcher, Profile::Builder, Profile::Validator] {
            assert!(!profile.allowed().contains(&"spawn_subtask"));
            assert!(!profile.allowed().contains(&"check_subtasks"));
        }
    }
}
