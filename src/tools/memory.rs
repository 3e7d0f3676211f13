//! The memory of outcomes: record what a render gave (only when asked: no other tool writes
//! here), and learn from it: best model combinations, good parameter values, trends, speed,
//! recommendations, and the feedback an artist gives without saying it. Names and parameters
//! are the original project's (§1.17); `import_outcomes` brings in its JSON-lines files.

use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::outcomes::stats::{
    Current, ImplicitFeedback, Patterns, Query, Recommendations, Scope, implicit_feedback,
    learned_patterns, recommendations,
};
use crate::outcomes::{
    Feedback, MAX_LIST, MAX_PARAMS_BYTES, MAX_TEXT_CHARS, Outcome, import, workflow_hash,
};
use crate::registry::{Hints, ToolSpec, tool};
use crate::tools::blocking;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "record_outcome",
            "Record an outcome",
            "Remember how a render went: its models, key parameters, render time, quality \
             score, what you saw and the artist's feedback. Nothing is recorded unless you \
             call this; later get_learned_patterns and get_recommendations learn from it.",
            Hints::MEMORY,
            record_outcome,
        ),
        tool(
            "get_learned_patterns",
            "What has worked",
            "What the recorded outcomes say, recent ones weighing more (7-day half-life): \
             the best model combinations, parameter values that scored well, quality trends \
             and render speed, for this session or every session (scope=global).",
            Hints::LOCAL_READ,
            get_learned_patterns,
        ),
        tool(
            "get_recommendations",
            "Recommendations for the next render",
            "Up to 8 suggestions for the next render (models, parameter values, speed, \
             warnings about what went badly), from the recorded outcomes and the current \
             model, parameters and goal.",
            Hints::LOCAL_READ,
            get_recommendations,
        ),
        tool(
            "detect_implicit_feedback",
            "Read unspoken feedback",
            "Read the session's recent outcomes for feedback the artist gave by what they \
             did: returning to a setup, dropping a model after one try, bursts of quick \
             refinements, changes undone; with an overall reading of their satisfaction.",
            Hints::LOCAL_READ,
            detect_implicit_feedback,
        ),
        tool(
            "import_outcomes",
            "Import outcome files",
            "Import the original Python comfyui-agent's memory: a `<session>_outcomes.jsonl` \
             file (or a folder of them, rotated copies included). Each line is imported once, \
             however often you import; bad lines are counted and skipped.",
            Hints::MEMORY,
            import_outcomes,
        ),
    ]
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn too_long(what: &str, limit: usize) -> ToolError {
    ToolError::rejected(
        format!("The {what} is longer than {limit} characters."),
        "Shorten it; the memory keeps short summaries and notes.",
    )
}

fn short_text(what: &str, text: Option<String>) -> Result<Option<String>, ToolError> {
    let Some(text) = text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(too_long(what, MAX_TEXT_CHARS));
    }
    Ok(Some(text))
}

fn short_list(what: &str, items: Vec<String>) -> Result<Vec<String>, ToolError> {
    if items.len() > MAX_LIST {
        return Err(ToolError::rejected(
            format!(
                "The {what} has {} entries, more than the {MAX_LIST} kept.",
                items.len()
            ),
            "Keep the ones that matter.",
        ));
    }
    items
        .into_iter()
        .map(|item| short_text(what, Some(item)))
        .filter_map(Result::transpose)
        .collect()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordOutcomeParams {
    /// The session to record in (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
    /// The render in a line, e.g. "SDXL portrait, rim light, 1024x1024".
    #[serde(default)]
    pub workflow_summary: Option<String>,
    /// The settings that mattered: cfg, steps, sampler_name, scheduler, denoise, width, …
    #[serde(default)]
    pub key_params: Map<String, Value>,
    /// The model files used together (checkpoint, LoRAs, VAE, ControlNet).
    #[serde(default)]
    pub model_combo: Vec<String>,
    /// Seconds the render took.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub render_time_s: Option<f64>,
    /// 0 (failed) to 1 (exactly what was wanted).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub quality_score: Option<f64>,
    /// What you saw in the output.
    #[serde(default)]
    pub vision_notes: Vec<String>,
    /// What the artist said about it.
    #[serde(default)]
    pub user_feedback: Option<Feedback>,
    /// The plan goal this render served (plan_goal's goal_id).
    #[serde(default)]
    pub goal_id: Option<String>,
    /// Ignored: the hash is always computed from key_params (kept for old prompts).
    #[serde(default)]
    pub workflow_hash: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OutcomeRecorded {
    pub recorded: bool,
    /// Outcomes stored for this session.
    pub total_outcomes: usize,
    /// First 16 hex digits of the SHA-256 of key_params (sorted keys).
    pub workflow_hash: String,
    pub session: String,
    pub message: String,
    /// A damaged memory file found on the way, moved aside under this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

async fn record_outcome(
    cx: ToolContext,
    params: RecordOutcomeParams,
) -> Result<OutcomeRecorded, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    if let Some(q) = params.quality_score
        && !(0.0..=1.0).contains(&q)
    {
        return Err(ToolError::rejected(
            format!("quality_score {q} is outside 0 to 1."),
            "Score the render from 0 (failed) to 1 (exactly what was wanted).",
        ));
    }
    if let Some(t) = params.render_time_s
        && !(t.is_finite() && t >= 0.0)
    {
        return Err(ToolError::rejected(
            format!("render_time_s {t} is not a duration."),
            "Pass the render's length in seconds (0 or more).",
        ));
    }
    if Value::Object(params.key_params.clone()).to_string().len() > MAX_PARAMS_BYTES {
        return Err(ToolError::rejected(
            format!("key_params is larger than {} KiB.", MAX_PARAMS_BYTES / 1024),
            "Record the settings that matter (cfg, steps, sampler, size), not the whole workflow.",
        ));
    }
    let outcome = Outcome {
        session: session.to_string(),
        ts: now(),
        workflow_summary: short_text("workflow_summary", params.workflow_summary)?,
        workflow_hash: workflow_hash(&params.key_params),
        key_params: params.key_params,
        model_combo: short_list("model_combo", params.model_combo)?,
        render_time_s: params.render_time_s,
        quality_score: params.quality_score,
        vision_notes: short_list("vision_notes", params.vision_notes)?,
        user_feedback: params.user_feedback.unwrap_or(Feedback::Neutral),
        goal_id: short_text("goal_id", params.goal_id)?,
    };
    blocking(&cx.app, move |app| {
        let recorded = app.outcomes().record(&outcome)?;
        Ok(OutcomeRecorded {
            recorded: true,
            total_outcomes: recorded.session_total,
            workflow_hash: outcome.workflow_hash,
            message: format!(
                "Recorded outcome #{} for session '{}' ({} in this session, {} in all).",
                recorded.id, outcome.session, recorded.session_total, recorded.total
            ),
            session: outcome.session,
            set_aside: recorded.set_aside,
        })
    })
    .await
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MemoryScope {
    #[default]
    Session,
    Global,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LearnedPatternsParams {
    /// The session to read (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
    /// Which part to compute (all by default).
    #[serde(default)]
    pub query: Query,
    /// Only outcomes whose models (or key_params.model) contain this text.
    #[serde(default)]
    pub model_filter: Option<String>,
    /// `session` (default) or `global` (every session).
    #[serde(default)]
    pub scope: MemoryScope,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LearnedPatterns {
    #[serde(flatten)]
    pub patterns: Patterns,
    /// The session read, or `global`.
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

async fn get_learned_patterns(
    cx: ToolContext,
    params: LearnedPatternsParams,
) -> Result<LearnedPatterns, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    let global = params.scope == MemoryScope::Global;
    blocking(&cx.app, move |app| {
        let filter = params.model_filter.as_deref().map(str::trim).filter(|f| !f.is_empty());
        let scope = Scope {
            session: (!global).then_some(session.as_str()),
            model_filter: filter,
            now: now(),
        };
        let patterns = app.outcomes().read(|rows| learned_patterns(rows, scope, params.query))?;
        let message = (patterns.outcomes_count == 0).then(|| {
            "No outcomes recorded here yet. Record results with record_outcome (or bring old ones in with import_outcomes)."
                .to_string()
        });
        Ok(LearnedPatterns {
            patterns,
            scope: if global { "global".into() } else { session.to_string() },
            message,
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsParams {
    /// The session to learn from (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
    /// The checkpoint or model in use now.
    #[serde(default)]
    pub current_model: Option<String>,
    /// The settings in use now (cfg, steps, sampler_name, …).
    #[serde(default)]
    pub current_params: Option<Map<String, Value>>,
    /// What the artist is after, in words.
    #[serde(default)]
    pub goal: Option<String>,
    /// `session` (default) or `global` (learn from every session).
    #[serde(default)]
    pub scope: MemoryScope,
}

async fn get_recommendations(
    cx: ToolContext,
    params: RecommendationsParams,
) -> Result<Recommendations, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    let global = params.scope == MemoryScope::Global;
    blocking(&cx.app, move |app| {
        let scope = Scope {
            session: (!global).then_some(session.as_str()),
            model_filter: None,
            now: now(),
        };
        let current = Current {
            model: params
                .current_model
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty()),
            params: params.current_params.as_ref(),
            goal: params.goal.as_deref(),
        };
        Ok(app
            .outcomes()
            .read(|rows| recommendations(rows, scope, current))?)
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImplicitFeedbackParams {
    /// The session to read (a name); this conversation's own when omitted.
    #[serde(default)]
    pub session: Option<String>,
    /// How many of the latest outcomes to read (default 20).
    #[serde(default = "default_window")]
    #[schemars(range(min = 1, max = 1000))]
    pub window: usize,
}

fn default_window() -> usize {
    20
}

async fn detect_implicit_feedback(
    cx: ToolContext,
    params: ImplicitFeedbackParams,
) -> Result<ImplicitFeedback, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    let window = params.window.clamp(1, 1000);
    blocking(&cx.app, move |app| {
        Ok(app
            .outcomes()
            .read(|rows| implicit_feedback(rows, session.as_str(), window))?)
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportOutcomesParams {
    /// A `<session>_outcomes.jsonl` file, or a folder holding them (the original's `sessions`
    /// folder).
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileImported {
    pub file: String,
    pub session: String,
    pub imported: usize,
    pub already_present: usize,
    pub malformed: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OutcomesImported {
    pub files: Vec<FileImported>,
    pub imported: usize,
    pub already_present: usize,
    pub malformed: usize,
    pub message: String,
}

async fn import_outcomes(
    cx: ToolContext,
    params: ImportOutcomesParams,
) -> Result<OutcomesImported, ToolError> {
    let root = cx.app.paths().existing_path(&params.path)?;
    blocking(&cx.app, move |app| {
        let files = import::outcome_files(&root).map_err(|error| {
            ToolError::rejected(
                format!("{} could not be listed: {error}", root.display()),
                "Check the folder's permissions.",
            )
        })?;
        if files.is_empty() {
            return Err(ToolError::rejected(
                format!("{} holds no <session>_outcomes.jsonl files.", root.display()),
                "Point at the original project's sessions folder, or at one outcomes file.",
            ));
        }
        let mut report = Vec::new();
        for file in files {
            // Files in a folder are checked one by one: a symlink can't lead outside.
            let display = file.display().to_string();
            let fallback = import::session_of_file(&file).unwrap_or_else(|| "default".into());
            let mut entry = FileImported {
                file: display.clone(),
                session: fallback.clone(),
                imported: 0,
                already_present: 0,
                malformed: 0,
                problems: Vec::new(),
                error: None,
            };
            let parsed = app
                .paths()
                .existing_file(&display)
                .map_err(|error| ToolError::from(error).user_message())
                .and_then(|path| import::parse_file(&path, &fallback).map_err(|e| e.to_string()));
            match parsed {
                Ok(parsed) => {
                    let added = app.outcomes().import(&parsed.outcomes, &format!("import:{display}"))?;
                    entry.imported = added;
                    entry.already_present = parsed.outcomes.len() - added;
                    entry.malformed = parsed.malformed;
                    entry.problems = parsed.problems;
                }
                Err(error) => entry.error = Some(error),
            }
            report.push(entry);
        }
        let imported = report.iter().map(|f| f.imported).sum();
        let already_present = report.iter().map(|f| f.already_present).sum();
        let malformed = report.iter().map(|f| f.malformed).sum();
        Ok(OutcomesImported {
            message: format!(
                "Imported {imported} outcomes from {} files ({already_present} were already there, {malformed} lines could not be read).",
                report.len()
            ),
            files: report,
            imported,
            already_present,
            malformed,
        })
    })
    .await
}
