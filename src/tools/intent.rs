//! The artist's intent and the journey towards it: what they asked for and how the assistant
//! read it (capture_intent), and each attempt on the way (the iteration log). Kept per
//! session in the data folder, so the story of an image can be told later. Names and
//! parameters are the original project's (§1.22, §1.23), with an optional `session` added.

use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::planning::intent::{
    Intent, IntentError, IntentLog, IterationLog, IterationStep, IterationType, MAX_PATCHES,
    MAX_REFERENCES, bounded, optional, required,
};
use crate::registry::{Hints, ToolSpec, tool};
use crate::session::docs::Loaded;
use crate::session::store::rfc3339_utc;
use crate::tools::blocking;

const INTENTS: &str = "intents";
const ITERATIONS: &str = "iterations";

/// The session's current intent and iteration log, for records written elsewhere (image
/// provenance). Blocking: it reads the session's documents.
pub(crate) fn session_memory(
    app: &crate::app::AppState,
    session: &crate::session::store::SessionName,
) -> Result<(Option<Intent>, Option<IterationLog>), ToolError> {
    let intent = app.docs().load::<IntentLog>(INTENTS, session)?.doc;
    let iterations = app.docs().load::<IterationLog>(ITERATIONS, session)?.doc;
    Ok((intent.and_then(|log| log.current), iterations))
}

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "capture_intent",
            "Capture the artist's intent",
            "Record what the artist asked for and how you read it (style references, context), \
             so later steps and the image's metadata can refer to it. The previous intent \
             moves into the session's history.",
            Hints::MEMORY,
            capture_intent,
        ),
        tool(
            "get_current_intent",
            "Show the current intent",
            "Show the intent last captured in this session, and how many came before it.",
            Hints::LOCAL_READ,
            get_current_intent,
        ),
        tool(
            "start_iteration_tracking",
            "Start tracking iterations",
            "Start a log of the attempts towards an intent (initial render, refinements, \
             variations, rollbacks), replacing this session's previous log.",
            Hints::MEMORY_RESET,
            start_iteration_tracking,
        ),
        tool(
            "record_iteration_step",
            "Record an iteration",
            "Add an attempt to this session's iteration log: its number, type, what \
             triggered it, the patches and parameters used, the feedback and what was seen.",
            Hints::MEMORY,
            record_iteration_step,
        ),
        tool(
            "finalize_iterations",
            "Finish the iteration log",
            "Close this session's iteration log with the iteration the artist accepted, and \
             return the whole journey (ready for write_image_metadata).",
            Hints::MEMORY,
            finalize_iterations,
        ),
    ]
}

fn now() -> String {
    rfc3339_utc(SystemTime::now())
}

fn not_tracking(session: &str, set_aside: Option<&str>) -> ToolError {
    let mut message = format!("No iteration tracking has been started in session '{session}'.");
    if let Some(moved) = set_aside {
        message.push_str(&format!(
            " The saved log was damaged and was moved aside as {moved}."
        ));
    }
    ToolError::rejected(message, IntentError::NotTracking.hint())
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureIntentParams {
    /// What the artist asked for, in their words.
    #[schemars(length(min = 1, max = 4000))]
    pub user_request: String,
    /// How you read it: the concrete choices it implies.
    #[schemars(length(min = 1, max = 4000))]
    pub interpretation: String,
    /// Artists, films, images or styles they pointed to.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub style_references: Vec<String>,
    /// What was going on in the session (the project, the earlier attempts).
    #[serde(default)]
    pub session_context: Option<String>,
    /// The session to record in (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct IntentCaptured {
    /// `captured`.
    pub status: String,
    pub intent: Intent,
    /// Earlier intents kept in this session's history.
    pub history_count: usize,
    pub session: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

async fn capture_intent(
    cx: ToolContext,
    params: CaptureIntentParams,
) -> Result<IntentCaptured, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    bounded(
        "list of style references",
        &params.style_references,
        MAX_REFERENCES,
    )?;
    let style_references = params
        .style_references
        .iter()
        .filter_map(|r| optional("style reference", Some(r)).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let intent = Intent {
        user_request: required("user_request", &params.user_request)?,
        interpretation: required("interpretation", &params.interpretation)?,
        style_references,
        session_context: optional("session_context", params.session_context.as_deref())?,
        captured_at: now(),
    };
    blocking(&cx.app, move |app| {
        app.docs()
            .update(INTENTS, &session, |loaded: Loaded<IntentLog>| {
                let mut log = loaded.doc.unwrap_or_default();
                log.capture(intent.clone());
                let done = IntentCaptured {
                    status: "captured".into(),
                    intent,
                    history_count: log.history.len(),
                    session: session.to_string(),
                    set_aside: loaded.set_aside,
                };
                Ok::<_, ToolError>((Some(log), done))
            })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentSessionParams {
    /// The session to read (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CurrentIntent {
    /// `ok`, or `empty` when none was captured.
    pub status: String,
    pub intent: Option<Intent>,
    pub history_count: usize,
    pub session: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

async fn get_current_intent(
    cx: ToolContext,
    params: IntentSessionParams,
) -> Result<CurrentIntent, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    blocking(&cx.app, move |app| {
        let loaded = app.docs().load::<IntentLog>(INTENTS, &session)?;
        let log = loaded.doc.unwrap_or_default();
        let history_count = log.history.len();
        Ok(match log.current {
            Some(intent) => CurrentIntent {
                status: "ok".into(),
                intent: Some(intent),
                history_count,
                session: session.to_string(),
                message: None,
                set_aside: loaded.set_aside,
            },
            None => CurrentIntent {
                status: "empty".into(),
                intent: None,
                history_count,
                session: session.to_string(),
                message: Some(
                    "No intent captured yet in this session. Use capture_intent to record what the artist wants."
                        .into(),
                ),
                set_aside: loaded.set_aside,
            },
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartTrackingParams {
    /// The intent in a line, e.g. "moody harbour at dawn, teal and orange".
    #[schemars(length(min = 1, max = 4000))]
    pub intent_summary: String,
    /// The session to track in (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TrackingStarted {
    /// `tracking`.
    pub status: String,
    pub intent_summary: String,
    pub started_at: String,
    /// Steps of the previous log that this one replaced.
    pub replaced_steps: usize,
    pub session: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

async fn start_iteration_tracking(
    cx: ToolContext,
    params: StartTrackingParams,
) -> Result<TrackingStarted, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    let summary = required("intent_summary", &params.intent_summary)?;
    blocking(&cx.app, move |app| {
        app.docs()
            .update(ITERATIONS, &session, |loaded: Loaded<IterationLog>| {
                let replaced_steps = loaded.doc.map_or(0, |old| old.steps.len());
                let log = IterationLog::start(summary, now());
                let done = TrackingStarted {
                    status: "tracking".into(),
                    intent_summary: log.intent_summary.clone(),
                    started_at: log.started_at.clone(),
                    replaced_steps,
                    session: session.to_string(),
                    set_aside: loaded.set_aside,
                };
                Ok::<_, ToolError>((Some(log), done))
            })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordStepParams {
    /// The attempt's number (1 for the first render); refinements of one attempt may share it.
    #[schemars(range(min = 0, max = 100000))]
    pub iteration: u32,
    /// `initial`, `refinement`, `variation` or `rollback`.
    #[serde(rename = "type")]
    pub kind: IterationType,
    /// What prompted it, e.g. "artist: too dark".
    #[schemars(length(min = 1, max = 4000))]
    pub trigger: String,
    /// The workflow patches applied (RFC 6902 operations, as apply_workflow_patch took them).
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub patches: Vec<Value>,
    /// The key parameters of this attempt (seed, cfg, steps, …).
    #[serde(default)]
    pub params: Map<String, Value>,
    /// The artist's feedback on it.
    #[serde(default)]
    pub feedback: Option<String>,
    /// What you saw in the output.
    #[serde(default)]
    pub observation: Option<String>,
    /// The session whose log to add to (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StepRecorded {
    /// `recorded`.
    pub status: String,
    pub iteration: u32,
    pub total_steps: usize,
    pub session: String,
}

async fn record_iteration_step(
    cx: ToolContext,
    params: RecordStepParams,
) -> Result<StepRecorded, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    bounded("list of patches", &params.patches, MAX_PATCHES)?;
    let step = IterationStep {
        iteration: params.iteration,
        kind: params.kind,
        trigger: required("trigger", &params.trigger)?,
        patches: params.patches,
        params: params.params,
        feedback: optional("feedback", params.feedback.as_deref())?,
        observation: optional("observation", params.observation.as_deref())?,
        recorded_at: now(),
    };
    blocking(&cx.app, move |app| {
        app.docs()
            .update(ITERATIONS, &session, |loaded: Loaded<IterationLog>| {
                let mut log = loaded
                    .doc
                    .ok_or_else(|| not_tracking(session.as_str(), loaded.set_aside.as_deref()))?;
                let iteration = step.iteration;
                log.record(step)?;
                let done = StepRecorded {
                    status: "recorded".into(),
                    iteration,
                    total_steps: log.steps.len(),
                    session: session.to_string(),
                };
                Ok::<_, ToolError>((Some(log), done))
            })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinalizeParams {
    /// The iteration the artist accepted (one that was recorded).
    #[schemars(range(min = 0, max = 100000))]
    pub accepted_iteration: u32,
    /// The session whose log to close (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Finalized {
    pub intent_summary: String,
    pub iterations: Vec<IterationStep>,
    pub accepted_iteration: u32,
    pub started_at: String,
    pub finalized_at: String,
    pub total_steps: usize,
    pub session: String,
}

async fn finalize_iterations(
    cx: ToolContext,
    params: FinalizeParams,
) -> Result<Finalized, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    blocking(&cx.app, move |app| {
        app.docs()
            .update(ITERATIONS, &session, |loaded: Loaded<IterationLog>| {
                let mut log = loaded
                    .doc
                    .ok_or_else(|| not_tracking(session.as_str(), loaded.set_aside.as_deref()))?;
                let finalized_at = now();
                log.finalize(params.accepted_iteration, finalized_at.clone())?;
                let done = Finalized {
                    intent_summary: log.intent_summary.clone(),
                    iterations: log.steps.clone(),
                    accepted_iteration: params.accepted_iteration,
                    started_at: log.started_at.clone(),
                    finalized_at,
                    total_steps: log.steps.len(),
                    session: session.to_string(),
                };
                Ok::<_, ToolError>((Some(log), done))
            })
    })
    .await
}
