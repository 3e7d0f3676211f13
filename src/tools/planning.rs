//! Goal planning: one plan per session, kept in the data folder, so a long job (debug this
//! workflow, add a ControlNet, chain an upscale) survives a restart and the assistant can
//! always ask "where were we?". Names and parameters are the original project's (§1.16).

use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::planning::{Plan, PlanStatus, Step, StepStatus};
use crate::registry::{Hints, ToolSpec, tool};
use crate::session::docs::Loaded;
use crate::session::store::rfc3339_utc;
use crate::tools::blocking;

/// The `SessionDocs` kind plans are kept under.
const KIND: &str = "plans";

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "plan_goal",
            "Plan a goal",
            "Turn the artist's goal into a step-by-step plan (each step names the tools that do \
             it) and make it this session's plan, replacing any earlier one. Follow it with \
             get_plan and complete_step.",
            Hints::MEMORY_RESET,
            plan_goal,
        ),
        tool(
            "get_plan",
            "Show the plan",
            "Show this session's plan: the goal, progress, the current step and its tools, \
             every step's status and result, and the replans so far.",
            Hints::LOCAL_READ,
            get_plan,
        ),
        tool(
            "complete_step",
            "Complete a plan step",
            "Mark a step of this session's plan as done with what came of it; the next step \
             becomes current, and the plan is completed when none is left.",
            Hints::MEMORY,
            complete_step,
        ),
        tool(
            "replan",
            "Change the plan",
            "Change the rest of this session's plan: the steps already done stay, the others \
             are replaced by new_remaining_steps (or cancelled when none are given). Each \
             replan is kept in the plan's history with its reason.",
            Hints::MEMORY,
            replan,
        ),
    ]
}

fn now() -> String {
    rfc3339_utc(SystemTime::now())
}

fn no_plan(session: &str) -> ToolError {
    ToolError::rejected(
        format!("No active plan in session '{session}'."),
        "Call plan_goal with the artist's goal to make one.",
    )
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StepView {
    pub id: String,
    pub action: String,
    pub status: StepStatus,
    /// The tools that do this step.
    pub tools: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl From<&Step> for StepView {
    fn from(step: &Step) -> Self {
        Self {
            id: step.id.clone(),
            action: step.action.clone(),
            status: step.status,
            tools: step.tools.clone(),
            result: step.result.clone(),
        }
    }
}

fn views(plan: &Plan) -> Vec<StepView> {
    plan.steps.iter().map(StepView::from).collect()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanGoalParams {
    /// The artist's goal in their words, e.g. "add a depth ControlNet to my portrait workflow".
    #[schemars(length(min = 1, max = 2000))]
    pub goal: String,
    /// The session to plan in (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Planned {
    pub planned: bool,
    /// 12 hex digits; pass it to record_outcome as goal_id to tie results to the goal.
    pub goal_id: String,
    pub goal: String,
    /// Which goal pattern matched (`generic` when none did).
    pub pattern: String,
    pub total_steps: usize,
    pub current_step: Option<String>,
    pub steps: Vec<StepView>,
    pub session: String,
    /// The goal of the plan this one replaced, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_goal: Option<String>,
    /// A damaged plan file found on the way, moved aside under this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
    pub message: String,
}

async fn plan_goal(cx: ToolContext, params: PlanGoalParams) -> Result<Planned, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    let goal_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let plan = Plan::new(&params.goal, goal_id, now())?;
    blocking(&cx.app, move |app| {
        app.docs().update(KIND, &session, |loaded: Loaded<Plan>| {
            let replaced_goal = loaded
                .doc
                .filter(|old| old.status == PlanStatus::Active)
                .map(|old| old.goal);
            let current = plan.current().map(|step| step.id.clone());
            let planned = Planned {
                planned: true,
                goal_id: plan.goal_id.clone(),
                goal: plan.goal.clone(),
                pattern: plan.pattern.clone(),
                total_steps: plan.steps.len(),
                message: format!(
                    "Planned {} steps for '{}' ({}). Start with '{}'.",
                    plan.steps.len(),
                    plan.goal,
                    plan.pattern,
                    current.as_deref().unwrap_or_default()
                ),
                current_step: current,
                steps: views(&plan),
                session: session.to_string(),
                replaced_goal,
                set_aside: loaded.set_aside,
            };
            Ok::<_, ToolError>((Some(plan), planned))
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionOnlyParams {
    /// The session whose plan to use (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReplanView {
    pub at: String,
    pub reason: String,
    pub replaced: Vec<String>,
    pub added: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlanView {
    pub goal_id: String,
    pub goal: String,
    pub pattern: String,
    /// `active`, `completed` or `replanned`.
    pub status: PlanStatus,
    /// Done steps over live (not cancelled) steps, e.g. `2/5`.
    pub progress: String,
    pub current_step: Option<String>,
    pub current_action: Option<String>,
    pub current_tools: Vec<String>,
    pub steps: Vec<StepView>,
    pub replan_history: Vec<ReplanView>,
    pub created_at: String,
    pub updated_at: String,
    pub session: String,
}

async fn get_plan(cx: ToolContext, params: SessionOnlyParams) -> Result<PlanView, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    blocking(&cx.app, move |app| {
        let loaded = app.docs().load::<Plan>(KIND, &session)?;
        let Some(plan) = loaded.doc else {
            let mut error = no_plan(session.as_str());
            if let (Some(moved), ToolError::Rejected { message, .. }) =
                (&loaded.set_aside, &mut error)
            {
                message.push_str(&format!(
                    " The saved plan was damaged and was moved aside as {moved}."
                ));
            }
            return Err(error);
        };
        let current = plan.current();
        Ok(PlanView {
            current_step: current.map(|s| s.id.clone()),
            current_action: current.map(|s| s.action.clone()),
            current_tools: current.map(|s| s.tools.clone()).unwrap_or_default(),
            progress: plan.progress(),
            steps: views(&plan),
            replan_history: plan
                .replan_history
                .iter()
                .map(|r| ReplanView {
                    at: r.at.clone(),
                    reason: r.reason.clone(),
                    replaced: r.replaced.clone(),
                    added: r.added.clone(),
                })
                .collect(),
            goal_id: plan.goal_id,
            goal: plan.goal,
            pattern: plan.pattern,
            status: plan.status,
            created_at: plan.created_at,
            updated_at: plan.updated_at,
            session: session.to_string(),
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteStepParams {
    /// The step's id, as get_plan shows it.
    #[schemars(length(min = 1, max = 64))]
    pub step_id: String,
    /// What came of the step, e.g. "validated: 2 missing nodes (ComfyUI-Impact-Pack)".
    #[schemars(length(max = 2000))]
    pub result: String,
    /// The session whose plan to use (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StepCompleted {
    pub completed: String,
    /// The step was already done; its result was replaced and nothing else moved.
    pub already_done: bool,
    pub progress: String,
    pub plan_status: PlanStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_tools: Option<Vec<String>>,
    pub message: String,
}

async fn complete_step(
    cx: ToolContext,
    params: CompleteStepParams,
) -> Result<StepCompleted, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    blocking(&cx.app, move |app| {
        app.docs().update(KIND, &session, |loaded: Loaded<Plan>| {
            let mut plan = loaded.doc.ok_or_else(|| no_plan(session.as_str()))?;
            let already_done = plan.complete(&params.step_id, &params.result, now())?;
            let next = plan.current();
            let message = match (plan.status, next) {
                (PlanStatus::Completed, _) => format!("All steps of '{}' are done.", plan.goal),
                (_, Some(next)) => format!("Next: {} ({}).", next.id, next.action),
                (_, None) => "No step is left to do.".to_string(),
            };
            let done = StepCompleted {
                completed: params.step_id.trim().to_string(),
                already_done,
                progress: plan.progress(),
                plan_status: plan.status,
                next_step: next.map(|s| s.id.clone()),
                next_action: next.map(|s| s.action.clone()),
                next_tools: next.map(|s| s.tools.clone()),
                message,
            };
            Ok::<_, ToolError>((Some(plan), done))
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStep {
    /// A short id, unique in the plan, e.g. `download_model`.
    #[schemars(length(min = 1, max = 64))]
    pub id: String,
    /// What to do, in a sentence.
    #[schemars(length(min = 1, max = 2000))]
    pub action: String,
    /// The tools that do it.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub tools: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplanParams {
    /// Why the plan changes, e.g. "the model is missing, not a node".
    #[schemars(length(min = 1, max = 2000))]
    pub reason: String,
    /// The steps that replace every step not done yet; none cancels them.
    #[serde(default)]
    #[schemars(length(max = 30))]
    pub new_remaining_steps: Vec<NewStep>,
    /// The session whose plan to change (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Replanned {
    pub replanned: bool,
    pub reason: String,
    /// The done steps kept.
    pub completed_preserved: usize,
    /// The ids of the steps added.
    pub new_steps: Vec<String>,
    /// The ids of the open steps replaced (or cancelled).
    pub replaced_steps: Vec<String>,
    pub plan_status: PlanStatus,
    pub current_step: Option<String>,
    pub current_action: Option<String>,
    pub message: String,
}

async fn replan(cx: ToolContext, params: ReplanParams) -> Result<Replanned, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    if params.reason.trim().is_empty() {
        return Err(ToolError::rejected(
            "The reason for the replan is empty.",
            "Say in a sentence why the plan changes; it is kept in the plan's history.",
        ));
    }
    let steps: Vec<_> = params
        .new_remaining_steps
        .into_iter()
        .map(|step| (step.id, step.action, step.tools))
        .collect();
    blocking(&cx.app, move |app| {
        app.docs().update(KIND, &session, |loaded: Loaded<Plan>| {
            let mut plan = loaded.doc.ok_or_else(|| no_plan(session.as_str()))?;
            plan.replan(&params.reason, steps, now())?;
            let last = plan.replan_history.last();
            let current = plan.current();
            let message = match current {
                Some(step) => format!("Replanned. Next: {} ({}).", step.id, step.action),
                None => "Replanned: the remaining steps were cancelled.".to_string(),
            };
            let done = Replanned {
                replanned: true,
                reason: params.reason.trim().to_string(),
                completed_preserved: plan.done_count(),
                new_steps: last.map(|r| r.added.clone()).unwrap_or_default(),
                replaced_steps: last.map(|r| r.replaced.clone()).unwrap_or_default(),
                plan_status: plan.status,
                current_step: current.map(|s| s.id.clone()),
                current_action: current.map(|s| s.action.clone()),
                message,
            };
            Ok::<_, ToolError>((Some(plan), done))
        })
    })
    .await
}
