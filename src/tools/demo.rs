//! Guided demos (catalogue §1.20): `start_demo` begins a scenario (or lists them) and
//! `demo_checkpoint` marks the current step done. Progress is kept per session.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::demo::{CheckpointError, DemoState, SCENARIOS, Scenario, Step, scenario};
use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::tools::blocking;

const KIND: &str = "demos";

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "start_demo",
            "Start a guided demo",
            "Start a guided walk through this server's tools (model_free, model_swap, \
             speed_run, controlnet_add, full_pipeline), or pass \"list\" to see them. Each step \
             names the tools to call and what a ComfyUI without models will do.",
            Hints::MEMORY_RESET,
            start_demo,
        ),
        tool(
            "demo_checkpoint",
            "Finish a demo step",
            "Mark the current step of this session's demo done (with optional notes) and get \
             the next one.",
            Hints::MEMORY,
            demo_checkpoint,
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartDemoParams {
    /// A scenario name, or "list" to list them.
    #[schemars(length(min = 1, max = 64))]
    pub scenario: String,
    /// A named session to keep the demo in, instead of this connection's.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ScenarioSummary {
    pub name: &'static str,
    pub title: &'static str,
    pub steps: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DemoStarted {
    /// "listed" or "started".
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scenarios: Vec<ScenarioSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step: Option<Step>,
    /// A damaged demo file that was moved aside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

fn summaries() -> Vec<ScenarioSummary> {
    SCENARIOS
        .iter()
        .map(|s| ScenarioSummary {
            name: s.name,
            title: s.title,
            steps: s.steps.len(),
        })
        .collect()
}

async fn start_demo(cx: ToolContext, params: StartDemoParams) -> Result<DemoStarted, ToolError> {
    let wanted = params.scenario.trim().to_lowercase();
    if wanted == "list" {
        return Ok(DemoStarted {
            status: "listed",
            scenarios: summaries(),
            scenario: None,
            title: None,
            total_steps: None,
            current_step: None,
            set_aside: None,
        });
    }
    let found: &'static Scenario = scenario(&wanted).ok_or_else(|| {
        let names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
        ToolError::rejected(
            format!("There is no demo called '{}'.", params.scenario.trim()),
            format!("Pick one of: {}.", names.join(", ")),
        )
    })?;
    let session = cx.scope(params.session.as_deref())?;
    let set_aside = blocking(&cx.app, move |app| {
        app.docs().update(
            KIND,
            &session,
            |loaded: crate::session::docs::Loaded<DemoState>| {
                let state = DemoState {
                    scenario: found.name.to_string(),
                    current: 0,
                    notes: Vec::new(),
                };
                Ok::<_, ToolError>((Some(state), loaded.set_aside))
            },
        )
    })
    .await?;
    Ok(DemoStarted {
        status: "started",
        scenarios: Vec::new(),
        scenario: Some(found.name),
        title: Some(found.title),
        total_steps: Some(found.steps.len()),
        current_step: found.steps.first().copied(),
        set_aside,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoCheckpointParams {
    /// The id of the step just finished (the current step's id).
    #[schemars(length(min = 1, max = 64))]
    pub step_completed: String,
    /// What happened at this step, kept with the demo.
    #[serde(default)]
    #[schemars(length(max = 4000))]
    pub notes: Option<String>,
    /// A named session whose demo this is, instead of this connection's.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DemoProgress {
    /// "in_progress" or "completed".
    pub status: &'static str,
    pub scenario: String,
    pub completed_step: String,
    pub steps_done: usize,
    pub total_steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<Step>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

async fn demo_checkpoint(
    cx: ToolContext,
    params: DemoCheckpointParams,
) -> Result<DemoProgress, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    blocking(&cx.app, move |app| {
        app.docs().update(
            KIND,
            &session,
            |loaded: crate::session::docs::Loaded<DemoState>| {
                let set_aside = loaded.set_aside;
                let mut state = loaded.doc.ok_or_else(|| {
                    let damaged = set_aside
                        .as_ref()
                        .map(|f| format!(" (its saved demo was damaged and moved aside as {f})"))
                        .unwrap_or_default();
                    ToolError::rejected(
                        format!("No demo is running in this session{damaged}."),
                        "Call start_demo with a scenario first (start_demo \"list\" shows them).",
                    )
                })?;
                state
                    .complete(&params.step_completed, params.notes)
                    .map_err(|error| match error {
                        CheckpointError::WrongStep { expected, got } => ToolError::rejected(
                            format!("'{got}' is not the current step of this demo."),
                            format!(
                                "The current step is '{expected}'; finish it and pass that id."
                            ),
                        ),
                        CheckpointError::Finished => ToolError::rejected(
                            "This demo is already finished.",
                            "Call start_demo to run it again or try another scenario.",
                        ),
                        CheckpointError::UnknownScenario(name) => ToolError::rejected(
                            format!(
                                "The saved demo names a scenario this server lacks ('{name}')."
                            ),
                            "Call start_demo to begin a new one.",
                        ),
                    })?;
                let found = scenario(&state.scenario).map_or(&[][..], |s| s.steps);
                let next_step = found.get(state.current).copied();
                let progress = DemoProgress {
                    status: if next_step.is_some() {
                        "in_progress"
                    } else {
                        "completed"
                    },
                    scenario: state.scenario.clone(),
                    completed_step: params.step_completed.trim().to_string(),
                    steps_done: state.current,
                    total_steps: found.len(),
                    next_step,
                    notes: state.notes.clone(),
                    set_aside,
                };
                Ok::<_, ToolError>((Some(state), progress))
            },
        )
    })
    .await
}
