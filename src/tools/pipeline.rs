//! Pipeline tools: thin adapters over [`crate::pipeline`]. The definition and the last run
//! are kept per session (SessionDocs kind "pipelines"); a run in progress is also kept live on
//! the session so get_pipeline_status sees it while run_pipeline works.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::comfy::api::Output;
use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::pipeline::{DOC_KIND, PipelineDoc, PipelineRun, Stage, StageResult, runner};
use crate::registry::{Hints, ToolSpec, tool};
use crate::session::docs::Loaded;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "create_pipeline",
            "Define a pipeline",
            "Check and store a pipeline: workflows run one after another, where a stage's \
             inputs (a LoadImage's image, say) take an earlier stage's output. Each stage's \
             workflow is loaded and the nodes its mappings and overrides name are checked.",
            Hints::WRITE,
            create_pipeline,
        ),
        tool(
            "run_pipeline",
            "Run a pipeline",
            "Run the stored pipeline (or the one given) stage by stage, with progress as \
             \"stage i/n\". Each output handed on is downloaded from ComfyUI and uploaded into \
             its input folder before the next stage is queued. A stage that runs past \
             timeout_per_stage is cancelled in ComfyUI. Nothing is recorded as an outcome.",
            Hints::LIVE_RUN,
            run_pipeline,
        ),
        tool(
            "get_pipeline_status",
            "Pipeline status",
            "How this session's pipeline run stands: running (with the stage), or how the last \
             run ended, stage by stage with outputs.",
            Hints::LOCAL_READ,
            get_pipeline_status,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// create_pipeline
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// The stages, run in this order (at most 20).
    pub stages: Vec<Stage>,
    /// A name for the pipeline (default unnamed_pipeline).
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub name: Option<String>,
    /// A named session to keep the pipeline in.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StageSummary {
    pub stage_id: String,
    pub workflow_source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub receives_from: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_count: Option<usize>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Created {
    pub created: bool,
    pub name: String,
    pub stage_count: usize,
    pub stages: Vec<StageSummary>,
    pub message: String,
}

async fn create_pipeline(cx: ToolContext, params: CreateParams) -> Result<Created, ToolError> {
    let scope = cx.scope(params.session.as_deref())?;
    let pipeline = crate::pipeline::Pipeline {
        name: params
            .name
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "unnamed_pipeline".into()),
        stages: params.stages,
    };
    runner::validate(&cx, &pipeline).await?;
    let stages = pipeline
        .stages
        .iter()
        .map(|stage| {
            let mut from: Vec<String> = stage
                .input_mappings
                .iter()
                .map(|m| m.from_stage.clone())
                .collect();
            from.dedup();
            StageSummary {
                stage_id: stage.stage_id.clone(),
                workflow_source: stage.workflow_source.clone(),
                receives_from: from,
                override_count: (!stage.param_overrides.is_empty())
                    .then_some(stage.param_overrides.len()),
            }
        })
        .collect::<Vec<_>>();
    let name = pipeline.name.clone();
    let stage_count = pipeline.stages.len();
    cx.app
        .docs()
        .update(DOC_KIND, &scope, |loaded: Loaded<PipelineDoc>| {
            let mut doc = loaded.doc.unwrap_or_default();
            doc.pipeline = Some(pipeline);
            Ok::<_, ToolError>((Some(doc), ()))
        })?;
    Ok(Created {
        created: true,
        message: format!(
            "Pipeline '{name}' with {stage_count} stage{} is stored; run it with run_pipeline.",
            if stage_count == 1 { "" } else { "s" }
        ),
        name,
        stage_count,
        stages,
    })
}

// ---------------------------------------------------------------------------------------------
// run_pipeline
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// A pipeline definition ({name, stages}); without it, the stored one runs.
    #[serde(default)]
    pub pipeline: Option<crate::pipeline::Pipeline>,
    /// Seconds each stage may take before it is cancelled (default 300).
    #[serde(default)]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_per_stage: Option<u64>,
    /// Stop at the first failed stage (default true); otherwise later stages that don't
    /// depend on it still run.
    #[serde(default)]
    pub stop_on_error: Option<bool>,
    /// A named session whose pipeline to run.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RunResult {
    #[serde(flatten)]
    pub run: PipelineRun,
    /// Always false: recording an outcome is the caller's choice (record_outcome).
    pub outcome_recorded: bool,
}

async fn run_pipeline(cx: ToolContext, params: RunParams) -> Result<RunResult, ToolError> {
    let scope = cx.scope(params.session.as_deref())?;
    let session = cx.workspace(params.session.as_deref());
    let pipeline = match params.pipeline {
        Some(pipeline) => pipeline,
        None => cx
            .app
            .docs()
            .load::<PipelineDoc>(DOC_KIND, &scope)?
            .doc
            .and_then(|doc| doc.pipeline)
            .ok_or_else(|| {
                ToolError::rejected(
                    "This session has no pipeline yet.",
                    "Define one with create_pipeline, or pass `pipeline` to run_pipeline.",
                )
            })?,
    };
    if let Some(running) = session.pipeline.get() {
        return Err(ToolError::rejected(
            format!(
                "Pipeline '{}' is already running in this session.",
                running.pipeline
            ),
            "Wait for it (get_pipeline_status), or cancel that call first.",
        ));
    }
    let workflows = runner::validate(&cx, &pipeline).await?;
    let client = cx.app.comfy().client().await;
    // One question for every stage's paid nodes, before anything runs.
    let apis: Vec<serde_json::Value> = workflows.iter().map(|w| w.to_api()).collect();
    crate::exec::confirm_paid_nodes(&cx, &client, &apis).await?;
    let options = runner::RunOptions {
        timeout_per_stage: Duration::from_secs(
            params.timeout_per_stage.unwrap_or(300).clamp(1, 3600),
        ),
        stop_on_error: params.stop_on_error.unwrap_or(true),
    };
    let docs = cx.app.docs();
    let publish = |state: &PipelineRun| {
        let running = state.status == "running";
        session.pipeline.set(running.then(|| state.clone()));
        // Saved after each stage and at the end; a failed save is logged, the run goes on.
        let saved = docs.update(DOC_KIND, &scope, |loaded: Loaded<PipelineDoc>| {
            let mut doc = loaded.doc.unwrap_or_default();
            doc.last_run = Some(state.clone());
            Ok::<_, crate::session::docs::DocError>((Some(doc), ()))
        });
        if let Err(error) = saved {
            tracing::warn!(%error, "could not save the pipeline run");
        }
    };
    // Clears the live state however the call ends, even if its future is dropped.
    let _clear = ClearLive(&session.pipeline);
    let outcome = Box::pin(runner::run(
        &cx, &client, &pipeline, workflows, &options, &publish,
    ))
    .await;
    Ok(RunResult {
        run: outcome?,
        outcome_recorded: false,
    })
}

struct ClearLive<'a>(&'a crate::pipeline::Live);

impl Drop for ClearLive<'_> {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

// ---------------------------------------------------------------------------------------------
// get_pipeline_status
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    /// A named session whose pipeline to report.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StageOutput {
    pub stage_id: String,
    pub filename: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subfolder: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PipelineStatus {
    /// no_pipeline, idle (defined, never run), running, complete, error, cancelled, or
    /// stopped (a run that ended without finishing, such as when the server stopped).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_name: Option<String>,
    pub stages_total: usize,
    pub stages_completed: usize,
    pub stages_failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_stage: Option<String>,
    pub stage_results: Vec<StageResult>,
    pub all_outputs: Vec<StageOutput>,
    pub message: String,
}

async fn get_pipeline_status(
    cx: ToolContext,
    params: StatusParams,
) -> Result<PipelineStatus, ToolError> {
    let scope = cx.scope(params.session.as_deref())?;
    let live = cx.workspace(params.session.as_deref()).pipeline.get();
    let doc = cx
        .app
        .docs()
        .load::<PipelineDoc>(DOC_KIND, &scope)?
        .doc
        .unwrap_or_default();
    if let Some(run) = live {
        return Ok(from_run(run));
    }
    if let Some(mut run) = doc.last_run {
        if run.status == "running" {
            // Saved mid-run, and no run is live here: it ended without a final word (the
            // server stopped, or the call was dropped).
            run.status = "stopped".into();
            run.current_stage = None;
            run.message = "The last run ended before it finished (the call was cancelled or \
                           the server stopped); run_pipeline starts it again."
                .into();
        }
        return Ok(from_run(run));
    }
    Ok(match doc.pipeline {
        Some(pipeline) => PipelineStatus {
            status: "idle".into(),
            stages_total: pipeline.stages.len(),
            message: format!(
                "Pipeline '{}' is defined and hasn't run yet; run it with run_pipeline.",
                pipeline.name
            ),
            pipeline_name: Some(pipeline.name),
            ..empty()
        },
        None => PipelineStatus {
            status: "no_pipeline".into(),
            message: "This session has no pipeline; define one with create_pipeline.".into(),
            ..empty()
        },
    })
}

fn empty() -> PipelineStatus {
    PipelineStatus {
        status: String::new(),
        pipeline_name: None,
        stages_total: 0,
        stages_completed: 0,
        stages_failed: 0,
        current_stage: None,
        stage_results: Vec::new(),
        all_outputs: Vec::new(),
        message: String::new(),
    }
}

fn from_run(run: PipelineRun) -> PipelineStatus {
    let all_outputs = run
        .stage_results
        .iter()
        .flat_map(|result| {
            result.outputs.iter().filter_map(|output: &Output| {
                Some(StageOutput {
                    stage_id: result.stage_id.clone(),
                    filename: output.filename.clone()?,
                    subfolder: output.subfolder.clone().unwrap_or_default(),
                })
            })
        })
        .collect();
    PipelineStatus {
        status: run.status,
        pipeline_name: Some(run.pipeline),
        stages_total: run.stages_total,
        stages_completed: run.stages_completed,
        stages_failed: run.stages_failed,
        current_stage: run.current_stage,
        stage_results: run.stage_results,
        all_outputs,
        message: run.message,
    }
}
