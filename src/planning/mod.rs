//! Goal plans: an artist's goal matched to a pattern of concrete steps (each naming the
//! tools that do it), advanced step by step, and replanned when the route changes. One plan
//! per session, kept on disk by the tools through `SessionDocs`.
//!
//! The patterns and their order are the original project's; the trigger words and steps are
//! ours, and every step names tools this server really has (a unit test checks it).

pub mod intent;

use serde::{Deserialize, Serialize};

/// The most steps a plan holds (after any number of replans).
pub const MAX_STEPS: usize = 30;
/// The replans remembered per plan; older entries are dropped first.
pub const MAX_REPLANS: usize = 50;
/// Longest goal, step action, result or reason, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Longest step id.
pub const MAX_ID_CHARS: usize = 64;

/// A goal pattern: the words that pick it and the steps it plans.
#[derive(Debug)]
pub struct Pattern {
    pub name: &'static str,
    triggers: &'static [&'static str],
    steps: &'static [(&'static str, &'static str, &'static [&'static str])],
}

/// Checked in this order; the first pattern with a trigger in the goal wins.
pub const PATTERNS: &[Pattern] = &[
    Pattern {
        name: "chain_workflows",
        triggers: &[
            "chain",
            "pipeline",
            "multi-stage",
            "multi stage",
            "then upscale",
            "feed the output",
            "two-stage",
            "two stage",
        ],
        steps: &[
            (
                "define_stages",
                "Decide the stages and which output feeds which input",
                &["list_workflow_templates", "load_workflow"],
            ),
            (
                "check_stages",
                "Validate each stage's workflow against the installed nodes",
                &["validate_workflow", "find_missing_nodes"],
            ),
            (
                "run_first_stage",
                "Run the first stage and check its output",
                &["execute_with_progress", "verify_execution"],
            ),
            (
                "feed_next_stage",
                "Upload the output as the next stage's input and run it",
                &["upload_image", "set_input", "execute_with_progress"],
            ),
            (
                "review_chain",
                "Review the final output",
                &["get_output_image", "verify_execution"],
            ),
        ],
    },
    Pattern {
        name: "generate_3d",
        triggers: &[
            "3d",
            "mesh",
            "point cloud",
            "gaussian splat",
            "hunyuan3d",
            "triposr",
            "photogrammetry",
        ],
        steps: &[
            (
                "find_3d_nodes",
                "Find node packs that generate 3D from images or text",
                &["discover", "list_custom_nodes"],
            ),
            (
                "check_models",
                "Check the 3D model weights are installed",
                &["list_models", "get_install_instructions"],
            ),
            (
                "build_graph",
                "Build the 3D workflow from an image input",
                &["load_workflow", "add_node", "connect_nodes"],
            ),
            (
                "validate_graph",
                "Validate it against the installed nodes",
                &["validate_workflow"],
            ),
            (
                "run_and_check",
                "Run it and check the result",
                &["execute_with_progress", "get_output_path"],
            ),
        ],
    },
    Pattern {
        name: "generate_audio",
        triggers: &[
            "audio",
            "music",
            "sound",
            "voice",
            "speech",
            "song",
            "stable audio",
            "ace-step",
            "ace step",
        ],
        steps: &[
            (
                "find_audio_nodes",
                "Find nodes and models for audio generation",
                &["discover", "get_all_nodes"],
            ),
            (
                "check_models",
                "Check the audio model is installed and which family it is",
                &["list_models", "identify_model_family"],
            ),
            (
                "build_graph",
                "Build the audio workflow",
                &["load_workflow", "add_node", "connect_nodes", "set_input"],
            ),
            ("validate_graph", "Validate it", &["validate_workflow"]),
            (
                "run_and_check",
                "Run it and find the audio file",
                &["execute_with_progress", "get_output_path"],
            ),
        ],
    },
    Pattern {
        name: "build_workflow",
        triggers: &[
            "build",
            "create a workflow",
            "make a workflow",
            "new workflow",
            "from scratch",
            "set up a workflow",
            "txt2img",
            "text to image",
            "img2img",
            "image to image",
        ],
        steps: &[
            (
                "pick_start",
                "Start from a template or an existing workflow",
                &[
                    "list_workflow_templates",
                    "get_workflow_template",
                    "load_workflow",
                ],
            ),
            (
                "pick_models",
                "Choose models that fit together",
                &[
                    "list_models",
                    "identify_model_family",
                    "check_model_compatibility",
                ],
            ),
            (
                "edit_graph",
                "Set the prompt, models and parameters",
                &[
                    "get_editable_fields",
                    "set_input",
                    "add_node",
                    "connect_nodes",
                ],
            ),
            (
                "validate",
                "Validate against the installed nodes and models",
                &["validate_before_execute"],
            ),
            (
                "run",
                "Run it and look at the result",
                &["execute_with_progress", "verify_execution"],
            ),
            (
                "save",
                "Save the workflow and a note of what worked",
                &["save_workflow", "save_session", "add_note"],
            ),
        ],
    },
    Pattern {
        name: "optimize_workflow",
        triggers: &[
            "optimize",
            "optimise",
            "faster",
            "speed up",
            "speedup",
            "vram",
            "out of memory",
            "oom",
            "too slow",
            "performance",
        ],
        steps: &[
            (
                "measure",
                "Check the GPU, its memory and the queue",
                &["get_gpu_status", "get_system_stats", "get_queue_status"],
            ),
            (
                "inspect_graph",
                "Find the expensive parts: resolution, steps, batch, model precision",
                &["get_editable_fields", "get_models_summary"],
            ),
            (
                "apply_changes",
                "Lower the costly settings, one change at a time (undoable)",
                &["set_input", "apply_workflow_patch", "get_workflow_diff"],
            ),
            (
                "compare",
                "Run again and compare speed and quality",
                &["execute_with_progress", "verify_execution"],
            ),
        ],
    },
    Pattern {
        name: "debug_workflow",
        triggers: &[
            "debug",
            "fix",
            "error",
            "broken",
            "fails",
            "failing",
            "doesn't work",
            "does not work",
            "not working",
            "missing node",
            "red node",
            "crash",
        ],
        steps: &[
            (
                "reproduce",
                "Load the workflow and validate it",
                &["load_workflow", "validate_workflow"],
            ),
            (
                "find_missing",
                "Find missing node packs and models",
                &[
                    "find_missing_nodes",
                    "list_models",
                    "get_install_instructions",
                ],
            ),
            (
                "check_last_run",
                "Read the last run's errors",
                &["get_history", "get_execution_status"],
            ),
            (
                "fix",
                "Fix the inputs or connections (undoable)",
                &["set_input", "connect_nodes", "apply_workflow_patch"],
            ),
            (
                "verify",
                "Run again and confirm the fix",
                &["validate_before_execute", "execute_with_progress"],
            ),
        ],
    },
    Pattern {
        name: "swap_model",
        triggers: &[
            "swap",
            "switch model",
            "change model",
            "change the model",
            "different model",
            "replace the model",
            "use flux",
            "use sdxl",
            "checkpoint",
        ],
        steps: &[
            (
                "list_candidates",
                "List the installed models of the right kind",
                &["list_models", "get_models_summary"],
            ),
            (
                "check_family",
                "Check the new model's family fits the rest of the graph",
                &["identify_model_family", "check_model_compatibility"],
            ),
            (
                "swap",
                "Point the loader at the new model and adjust its settings",
                &["set_input", "get_workflow_diff"],
            ),
            (
                "run_and_compare",
                "Run and compare with the previous result",
                &["execute_with_progress", "verify_execution"],
            ),
        ],
    },
    Pattern {
        name: "add_controlnet",
        triggers: &[
            "controlnet",
            "control net",
            "pose",
            "depth map",
            "canny",
            "lineart",
            "openpose",
            "guide the composition",
        ],
        steps: &[
            (
                "check_models",
                "Find a ControlNet model that matches the checkpoint's family",
                &["list_models", "check_model_compatibility"],
            ),
            (
                "check_nodes",
                "Check the preprocessor nodes are installed",
                &["get_node_info", "find_missing_nodes"],
            ),
            (
                "add_nodes",
                "Add the loader, preprocessor and apply nodes",
                &["add_node", "connect_nodes"],
            ),
            (
                "set_image",
                "Upload the control image and set the strength",
                &["upload_image", "set_input"],
            ),
            (
                "run",
                "Validate, run and check the result",
                &[
                    "validate_before_execute",
                    "execute_with_progress",
                    "verify_execution",
                ],
            ),
        ],
    },
    Pattern {
        name: "explore_ecosystem",
        triggers: &[
            "explore",
            "discover",
            "what's new",
            "what is new",
            "trending",
            "find a node",
            "find nodes",
            "find a model",
            "recommend",
            "which model",
            "update",
        ],
        steps: &[
            (
                "search",
                "Search node packs and models",
                &["discover", "get_trending_models"],
            ),
            (
                "inspect",
                "Look closer at the promising ones",
                &["get_civitai_model", "get_repo_releases"],
            ),
            (
                "compare_installed",
                "Compare with what is installed and what has updates",
                &["list_custom_nodes", "check_node_updates"],
            ),
            (
                "install_plan",
                "Get install instructions for the chosen ones",
                &["get_install_instructions"],
            ),
        ],
    },
];

/// Used when no pattern's trigger is in the goal.
pub const GENERIC: Pattern = Pattern {
    name: "generic",
    triggers: &[],
    steps: &[
        (
            "understand",
            "Check ComfyUI is up and what is installed",
            &["is_comfyui_running", "get_models_summary"],
        ),
        (
            "prepare",
            "Load or build the workflow for the goal",
            &["list_workflow_templates", "load_workflow", "set_input"],
        ),
        (
            "execute",
            "Validate and run it",
            &["validate_before_execute", "execute_with_progress"],
        ),
        (
            "review",
            "Look at the result and note what worked",
            &["verify_execution", "add_note"],
        ),
    ],
};

impl Pattern {
    /// The pattern whose trigger appears first in the order, or [`GENERIC`].
    pub fn for_goal(goal: &str) -> &'static Pattern {
        let goal = goal.to_lowercase();
        PATTERNS
            .iter()
            .find(|pattern| {
                pattern
                    .triggers
                    .iter()
                    .any(|word| contains_word(&goal, word))
            })
            .unwrap_or(&GENERIC)
    }

    /// Every tool name the pattern's steps mention.
    pub fn tool_names(&self) -> impl Iterator<Item = &'static str> {
        self.steps
            .iter()
            .flat_map(|(_, _, tools)| tools.iter().copied())
    }
}

/// `word` in `text` at word boundaries, so "fix" does not fire inside "prefix".
fn contains_word(text: &str, word: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    text.match_indices(word).any(|(at, _)| {
        boundary(text[..at].chars().next_back()) && boundary(text[at + word.len()..].chars().next())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Active,
    Done,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    Active,
    Completed,
    Replanned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub action: String,
    #[serde(default)]
    pub tools: Vec<String>,
    pub status: StepStatus,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replan {
    pub at: String,
    pub reason: String,
    /// Steps that were pending or active and were dropped.
    pub replaced: Vec<String>,
    /// Steps added instead.
    pub added: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub goal_id: String,
    pub goal: String,
    pub pattern: String,
    pub status: PlanStatus,
    pub created_at: String,
    pub updated_at: String,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub replan_history: Vec<Replan>,
    /// How many replans were dropped from the bounded history.
    #[serde(default)]
    pub replans_dropped: u64,
}

/// What went wrong with a plan operation; each says what to do instead.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("The goal is empty")]
    EmptyGoal,
    #[error("The {what} is {chars} characters long, more than the {limit} allowed")]
    TooLong {
        what: &'static str,
        chars: usize,
        limit: usize,
    },
    #[error("This plan has no step '{id}'. Its steps are: {}", .valid.join(", "))]
    UnknownStep { id: String, valid: Vec<String> },
    #[error("The step '{id}' was cancelled by a replan and can't be completed")]
    CancelledStep { id: String },
    #[error("A new step has no id or no action")]
    IncompleteStep,
    #[error("The step id '{id}' is used twice (steps already done keep their ids)")]
    DuplicateStep { id: String },
    #[error("The plan would have {count} steps, more than the {limit} a plan may hold")]
    TooManySteps { count: usize, limit: usize },
}

impl PlanError {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::EmptyGoal => {
                "Describe the goal in a sentence, e.g. 'make a portrait with a ControlNet pose'."
            }
            Self::TooLong { .. } => "Shorten it; put long details in a note (add_note) instead.",
            Self::UnknownStep { .. } | Self::CancelledStep { .. } => {
                "Call get_plan to see the current steps and their ids."
            }
            Self::IncompleteStep => "Give every new step an `id` and an `action`.",
            Self::DuplicateStep { .. } => "Give each new step an id not used by another step.",
            Self::TooManySteps { .. } => {
                "Plan fewer, larger steps, or start a new goal with plan_goal."
            }
        }
    }
}

impl From<PlanError> for crate::error::ToolError {
    fn from(error: PlanError) -> Self {
        Self::rejected(error.to_string(), error.hint())
    }
}

fn check_text(what: &'static str, text: &str, limit: usize) -> Result<(), PlanError> {
    let chars = text.chars().count();
    if chars > limit {
        return Err(PlanError::TooLong { what, chars, limit });
    }
    Ok(())
}

impl Plan {
    /// A fresh plan for `goal`, its first step active.
    pub fn new(goal: &str, goal_id: String, now: String) -> Result<Self, PlanError> {
        let goal = goal.trim();
        if goal.is_empty() {
            return Err(PlanError::EmptyGoal);
        }
        check_text("goal", goal, MAX_TEXT_CHARS)?;
        let pattern = Pattern::for_goal(goal);
        let steps = pattern
            .steps
            .iter()
            .enumerate()
            .map(|(index, (id, action, tools))| Step {
                id: (*id).to_string(),
                action: (*action).to_string(),
                tools: tools.iter().map(|tool| (*tool).to_string()).collect(),
                status: if index == 0 {
                    StepStatus::Active
                } else {
                    StepStatus::Pending
                },
                result: None,
                completed_at: None,
            })
            .collect();
        Ok(Self {
            goal_id,
            goal: goal.to_string(),
            pattern: pattern.name.to_string(),
            status: PlanStatus::Active,
            created_at: now.clone(),
            updated_at: now,
            steps,
            replan_history: Vec::new(),
            replans_dropped: 0,
        })
    }

    pub fn current(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|step| step.status == StepStatus::Active)
    }

    pub fn done_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Done)
            .count()
    }

    /// The steps that count towards progress (cancelled ones don't).
    pub fn live_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.status != StepStatus::Cancelled)
            .count()
    }

    /// `done/total`, as the original reported it.
    pub fn progress(&self) -> String {
        format!("{}/{}", self.done_count(), self.live_count())
    }

    /// Marks `id` done with its result and activates the next pending step. Returns whether
    /// the step was already done (its result is then replaced, and nothing else moves).
    pub fn complete(&mut self, id: &str, result: &str, now: String) -> Result<bool, PlanError> {
        check_text("result", result, MAX_TEXT_CHARS)?;
        let valid = || self.steps.iter().map(|s| s.id.clone()).collect();
        let Some(index) = self.steps.iter().position(|s| s.id == id.trim()) else {
            return Err(PlanError::UnknownStep {
                id: id.trim().to_string(),
                valid: valid(),
            });
        };
        let step = &mut self.steps[index];
        let already = match step.status {
            StepStatus::Cancelled => {
                return Err(PlanError::CancelledStep {
                    id: step.id.clone(),
                });
            }
            StepStatus::Done => true,
            StepStatus::Pending | StepStatus::Active => false,
        };
        step.status = StepStatus::Done;
        step.result = Some(result.trim().to_string());
        step.completed_at = Some(now.clone());
        self.updated_at = now;
        if !already {
            self.advance();
        }
        Ok(already)
    }

    /// Keeps one step active (the first pending one when none is) and closes the plan when
    /// nothing is left to do.
    fn advance(&mut self) {
        if self.current().is_none()
            && let Some(next) = self
                .steps
                .iter_mut()
                .find(|s| s.status == StepStatus::Pending)
        {
            next.status = StepStatus::Active;
        }
        let open = self
            .steps
            .iter()
            .any(|s| matches!(s.status, StepStatus::Pending | StepStatus::Active));
        if open {
            self.status = PlanStatus::Active;
        } else if self.status == PlanStatus::Active {
            self.status = PlanStatus::Completed;
        }
    }

    /// Keeps the done steps and replaces the rest with `new_steps` (id, action, tools).
    /// With no new steps the open ones are cancelled and the plan is `replanned`.
    pub fn replan(
        &mut self,
        reason: &str,
        new_steps: Vec<(String, String, Vec<String>)>,
        now: String,
    ) -> Result<(), PlanError> {
        check_text("reason", reason, MAX_TEXT_CHARS)?;
        let kept: Vec<&Step> = self
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Done)
            .collect();
        if kept.len() + new_steps.len() > MAX_STEPS {
            return Err(PlanError::TooManySteps {
                count: kept.len() + new_steps.len(),
                limit: MAX_STEPS,
            });
        }
        let mut ids: std::collections::HashSet<String> =
            kept.iter().map(|s| s.id.clone()).collect();
        for (id, action, tools) in &new_steps {
            if id.trim().is_empty() || action.trim().is_empty() {
                return Err(PlanError::IncompleteStep);
            }
            check_text("step id", id, MAX_ID_CHARS)?;
            check_text("step action", action, MAX_TEXT_CHARS)?;
            if tools.len() > 20 {
                return Err(PlanError::TooLong {
                    what: "tool list of a step",
                    chars: tools.len(),
                    limit: 20,
                });
            }
            if !ids.insert(id.trim().to_string()) {
                return Err(PlanError::DuplicateStep {
                    id: id.trim().to_string(),
                });
            }
        }
        let cancel = new_steps.is_empty();
        let mut replaced = Vec::new();
        let mut steps = Vec::new();
        for mut step in std::mem::take(&mut self.steps) {
            match step.status {
                StepStatus::Done => steps.push(step),
                // Cancelled by an earlier replan: the history says so; drop it.
                StepStatus::Cancelled => {}
                StepStatus::Pending | StepStatus::Active => {
                    replaced.push(step.id.clone());
                    if cancel {
                        step.status = StepStatus::Cancelled;
                        steps.push(step);
                    }
                }
            }
        }
        let added: Vec<String> = new_steps
            .iter()
            .map(|(id, _, _)| id.trim().to_string())
            .collect();
        steps.extend(new_steps.into_iter().map(|(id, action, tools)| Step {
            id: id.trim().to_string(),
            action: action.trim().to_string(),
            tools,
            status: StepStatus::Pending,
            result: None,
            completed_at: None,
        }));
        self.steps = steps;
        self.replan_history.push(Replan {
            at: now.clone(),
            reason: reason.trim().to_string(),
            replaced,
            added: added.clone(),
        });
        if self.replan_history.len() > MAX_REPLANS {
            let excess = self.replan_history.len() - MAX_REPLANS;
            self.replan_history.drain(..excess);
            self.replans_dropped += excess as u64;
        }
        self.updated_at = now;
        if cancel {
            self.status = PlanStatus::Replanned;
        } else {
            self.status = PlanStatus::Active;
            self.advance();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(goal: &str) -> Plan {
        Plan::new(goal, "abc123def456".into(), "t0".into()).expect("plan")
    }

    #[test]
    fn goals_pick_patterns_in_order_with_a_generic_fallback() {
        for (goal, pattern) in [
            ("chain an upscale after the portrait", "chain_workflows"),
            ("turn this photo into a 3D mesh", "generate_3d"),
            ("make some music for the trailer", "generate_audio"),
            ("build a txt2img workflow for posters", "build_workflow"),
            (
                "make my render faster, it runs out of VRAM",
                "optimize_workflow",
            ),
            ("fix the red node error", "debug_workflow"),
            ("swap the checkpoint for juggernaut", "swap_model"),
            ("guide the pose with openpose", "add_controlnet"),
            ("what's new for upscaling?", "explore_ecosystem"),
            ("a quiet harbour at dawn", "generic"),
        ] {
            assert_eq!(Pattern::for_goal(goal).name, pattern, "{goal}");
        }
        // Order: a chained build is a chain first.
        assert_eq!(
            Pattern::for_goal("build a two-stage pipeline").name,
            "chain_workflows"
        );
        // Word boundaries: "prefix" is not "fix", "soundly" is not "sound".
        assert_eq!(Pattern::for_goal("a prefix study").name, "generic");
    }

    #[test]
    fn a_new_plan_starts_at_its_first_step() {
        let plan = plan("fix my workflow");
        assert_eq!(plan.pattern, "debug_workflow");
        assert_eq!(plan.status, PlanStatus::Active);
        assert_eq!(plan.current().map(|s| s.id.as_str()), Some("reproduce"));
        assert_eq!(
            plan.steps
                .iter()
                .filter(|s| s.status == StepStatus::Active)
                .count(),
            1
        );
        assert_eq!(plan.progress(), "0/5");
        assert_eq!(
            Plan::new("   ", "x".into(), "t".into()),
            Err(PlanError::EmptyGoal)
        );
    }

    #[test]
    fn completing_steps_advances_and_finishes_the_plan() {
        let mut plan = plan("a quiet harbour");
        let ids: Vec<String> = plan.steps.iter().map(|s| s.id.clone()).collect();
        assert!(
            !plan
                .complete(&ids[0], "ComfyUI is up", "t1".into())
                .expect("done")
        );
        assert_eq!(plan.current().map(|s| s.id.clone()), Some(ids[1].clone()));
        // Completing out of order keeps one active step.
        assert!(
            !plan
                .complete(&ids[3], "looked fine", "t2".into())
                .expect("done")
        );
        assert_eq!(plan.current().map(|s| s.id.clone()), Some(ids[1].clone()));
        // Again: reported, nothing moves.
        assert!(
            plan.complete(&ids[3], "still fine", "t3".into())
                .expect("done")
        );
        assert_eq!(plan.progress(), "2/4");
        plan.complete(&ids[1], "loaded", "t4".into()).expect("done");
        plan.complete(&ids[2], "ran", "t5".into()).expect("done");
        assert_eq!(plan.status, PlanStatus::Completed);
        assert!(plan.current().is_none());
        let error = plan
            .complete("nope", "x", "t6".into())
            .expect_err("unknown");
        assert!(error.to_string().contains("understand"), "{error}");
    }

    #[test]
    fn replanning_keeps_done_steps_and_replaces_the_rest() {
        let mut plan = plan("fix my workflow");
        plan.complete("reproduce", "fails on node 4", "t1".into())
            .expect("done");
        plan.replan(
            "the model is missing, not a node",
            vec![(
                "download".into(),
                "Get the model".into(),
                vec!["get_install_instructions".into()],
            )],
            "t2".into(),
        )
        .expect("replanned");
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["reproduce", "download"]);
        assert_eq!(plan.current().map(|s| s.id.as_str()), Some("download"));
        assert_eq!(plan.status, PlanStatus::Active);
        assert_eq!(plan.replan_history.len(), 1);
        assert_eq!(plan.replan_history[0].replaced.len(), 4);
        // A new step may not reuse a done step's id.
        let error = plan
            .replan(
                "again",
                vec![("reproduce".into(), "x".into(), vec![])],
                "t3".into(),
            )
            .expect_err("duplicate");
        assert!(matches!(error, PlanError::DuplicateStep { .. }));
        // No new steps: the rest is cancelled and the plan is replanned.
        plan.replan("giving up", Vec::new(), "t4".into())
            .expect("replanned");
        assert_eq!(plan.status, PlanStatus::Replanned);
        assert!(plan.current().is_none());
        let error = plan
            .complete("download", "x", "t5".into())
            .expect_err("cancelled");
        assert!(matches!(error, PlanError::CancelledStep { .. }));
    }

    #[test]
    fn plans_and_replan_history_are_bounded() {
        let mut plan = plan("a harbour");
        let many = (0..=MAX_STEPS)
            .map(|i| (format!("s{i}"), "x".to_string(), vec![]))
            .collect();
        assert!(matches!(
            plan.replan("too many", many, "t".into()),
            Err(PlanError::TooManySteps { .. })
        ));
        for i in 0..(MAX_REPLANS + 5) {
            plan.replan(
                "again",
                vec![(format!("r{i}"), "x".into(), vec![])],
                "t".into(),
            )
            .expect("replanned");
        }
        assert_eq!(plan.replan_history.len(), MAX_REPLANS);
        assert_eq!(plan.replans_dropped, 5);
        assert!(matches!(
            plan.complete("r1", &"x".repeat(MAX_TEXT_CHARS + 1), "t".into()),
            Err(PlanError::TooLong { .. })
        ));
    }

    #[test]
    fn every_step_names_tools_this_server_has() {
        let names: std::collections::HashSet<String> = crate::tools::all()
            .into_iter()
            .map(|t| t.name().to_string())
            .collect();
        for pattern in PATTERNS.iter().chain(std::iter::once(&GENERIC)) {
            for tool in pattern.tool_names() {
                assert!(
                    names.contains(tool),
                    "{}: {tool} is not a tool",
                    pattern.name
                );
            }
        }
    }
}
