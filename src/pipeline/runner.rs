//! Running a pipeline: each stage through the same path as execute_with_progress
//! ([`crate::exec::run`]), with a real per-stage timeout (the stage's prompt is cancelled in
//! ComfyUI when it runs out), stop-on-error, and outputs handed on by downloading them from
//! ComfyUI and uploading them into its input folder, so LoadImage finds them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::definition::{self, OutputKey, Pipeline, Stage};
use crate::comfy::Client;
use crate::comfy::api::{Output, OutputKind};
use crate::error::ToolError;
use crate::exec::{self, RunStatus};
use crate::mcp::ToolContext;
use crate::workflow::load;
use crate::workflow::model::Workflow;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StageResult {
    pub stage_id: String,
    pub workflow_source: String,
    /// complete, error, timeout, cancelled, or skipped (not run after an earlier failure).
    pub status: String,
    pub outputs: Vec<Output>,
    pub errors: Vec<String>,
    pub duration_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    pub output_count: usize,
    /// What this stage received from earlier stages: "<node>.<input> = <uploaded name>".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub received: Vec<String>,
}

/// A run's state: live while it goes, saved after each stage and at the end.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PipelineRun {
    pub pipeline: String,
    /// running, complete, error or cancelled.
    pub status: String,
    pub stages_total: usize,
    pub stages_completed: usize,
    pub stages_failed: usize,
    /// The stage running now (while status is running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_stage: Option<String>,
    pub total_time_s: f64,
    pub stage_results: Vec<StageResult>,
    /// The last completed stage's outputs.
    pub final_outputs: Vec<Output>,
    pub message: String,
}

/// Loads a stage's workflow: a template by name, or a file through the path policy.
pub async fn load_stage(cx: &ToolContext, stage: &Stage) -> Result<Workflow, String> {
    let source = stage.workflow_source.trim();
    let loaded = if let Some(name) = source.strip_prefix("template:") {
        let Some((_, doc)) = crate::workflow::templates::template(name.trim()) else {
            return Err(format!(
                "Stage '{}': `workflow_source` names template '{name}', which doesn't exist (known: {}).",
                stage.stage_id,
                crate::workflow::templates::names().join(", ")
            ));
        };
        load::load(&doc, None)
    } else {
        let bytes = cx
            .app
            .paths()
            .read_capped(source, crate::tools::workflow::MAX_WORKFLOW_BYTES)
            .await
            .map_err(|error| {
                format!(
                    "Stage '{}': `workflow_source` {source} can't be read: {error}",
                    stage.stage_id
                )
            })?;
        let text = String::from_utf8_lossy(&bytes);
        crate::tools::workflow::load_with_index(cx, |index| load::load_str(&text, index)).await
    };
    loaded.map(|loaded| loaded.workflow).map_err(|error| {
        format!(
            "Stage '{}': `workflow_source` {source} isn't a usable workflow: {error}",
            stage.stage_id
        )
    })
}

/// Checks the whole definition, loading every stage's workflow; the loaded workflows come
/// back in stage order.
pub async fn validate(cx: &ToolContext, pipeline: &Pipeline) -> Result<Vec<Workflow>, ToolError> {
    let reject = |message: String| {
        ToolError::rejected(
            message,
            "Fix that stage and call create_pipeline (or run_pipeline) again.",
        )
    };
    definition::check_shape(pipeline).map_err(reject)?;
    let mut workflows = Vec::with_capacity(pipeline.stages.len());
    for stage in &pipeline.stages {
        let workflow = load_stage(cx, stage).await.map_err(reject)?;
        definition::check_against(stage, &workflow).map_err(reject)?;
        workflows.push(workflow);
    }
    Ok(workflows)
}

/// What the runner needs besides the pipeline.
#[derive(Debug)]
pub struct RunOptions {
    pub timeout_per_stage: Duration,
    pub stop_on_error: bool,
}

/// Runs the stages in order. `publish` is called with the state after every change (the tool
/// keeps it live and saves it). A cancelled call cancels the running stage's prompt (inside
/// [`exec::run`]) and returns [`ToolError::Cancelled`] after publishing a cancelled state.
pub async fn run(
    cx: &ToolContext,
    client: &Arc<Client>,
    pipeline: &Pipeline,
    workflows: Vec<Workflow>,
    options: &RunOptions,
    publish: &(dyn Fn(&PipelineRun) + Send + Sync),
) -> Result<PipelineRun, ToolError> {
    let started = Instant::now();
    let total = pipeline.stages.len();
    let mut state = PipelineRun {
        pipeline: pipeline.name.clone(),
        status: "running".into(),
        stages_total: total,
        stages_completed: 0,
        stages_failed: 0,
        current_stage: None,
        total_time_s: 0.0,
        stage_results: Vec::new(),
        final_outputs: Vec::new(),
        message: format!("Running {total} stages."),
    };
    publish(&state);
    let mut done: HashMap<String, (OutputKey, Vec<Output>)> = HashMap::new();
    let mut stopped = false;
    for (index, (stage, workflow)) in pipeline.stages.iter().zip(workflows).enumerate() {
        let label = format!("stage {}/{total}", index + 1);
        if stopped {
            state.stage_results.push(skipped(stage));
            continue;
        }
        state.current_stage = Some(stage.stage_id.clone());
        state.total_time_s = seconds(started);
        publish(&state);
        cx.progress(
            (index * 1000) as f64,
            Some((total * 1000) as f64),
            format!("{label}: {} starting", stage.stage_id),
        )
        .await;
        let stage_started = Instant::now();
        let staged = Box::pin(run_stage(
            cx, client, stage, workflow, &done, options, &label,
        ))
        .await;
        let result = match staged {
            Ok(result) => result,
            Err(ToolError::Cancelled) => {
                state.stage_results.push(StageResult {
                    status: "cancelled".into(),
                    errors: vec![
                        "The call was cancelled; the stage's prompt was cancelled in ComfyUI."
                            .into(),
                    ],
                    duration_s: seconds(stage_started),
                    ..skipped(stage)
                });
                for rest in &pipeline.stages[index + 1..] {
                    state.stage_results.push(skipped(rest));
                }
                state.status = "cancelled".into();
                state.current_stage = None;
                state.total_time_s = seconds(started);
                state.message = format!("Cancelled during stage '{}'.", stage.stage_id);
                publish(&state);
                return Err(ToolError::Cancelled);
            }
            Err(error) => StageResult {
                status: "error".into(),
                errors: vec![error.user_message()],
                duration_s: seconds(stage_started),
                ..skipped(stage)
            },
        };
        if result.status == "complete" {
            state.stages_completed += 1;
            state.final_outputs.clone_from(&result.outputs);
            done.insert(
                stage.stage_id.clone(),
                (stage.output_key, result.outputs.clone()),
            );
        } else {
            state.stages_failed += 1;
            stopped = options.stop_on_error;
        }
        state.stage_results.push(result);
        state.total_time_s = seconds(started);
        publish(&state);
    }
    state.current_stage = None;
    state.total_time_s = seconds(started);
    state.status = if state.stages_failed == 0 {
        "complete".into()
    } else {
        "error".into()
    };
    state.message = if state.stages_failed == 0 {
        format!(
            "All {total} stages finished in {} s. Record the result with record_outcome if it is worth remembering.",
            state.total_time_s
        )
    } else {
        let failed: Vec<String> = state
            .stage_results
            .iter()
            .filter(|r| r.status == "error" || r.status == "timeout")
            .map(|r| format!("'{}' ({}: {})", r.stage_id, r.status, r.errors.join("; ")))
            .collect();
        format!(
            "{} of {total} stages finished; failed: {}.{}",
            state.stages_completed,
            failed.join(", "),
            if stopped {
                " The stages after it were skipped (stop_on_error)."
            } else {
                ""
            }
        )
    };
    publish(&state);
    Ok(state)
}

fn skipped(stage: &Stage) -> StageResult {
    StageResult {
        stage_id: stage.stage_id.clone(),
        workflow_source: stage.workflow_source.clone(),
        status: "skipped".into(),
        outputs: Vec::new(),
        errors: Vec::new(),
        duration_s: 0.0,
        prompt_id: None,
        output_count: 0,
        received: Vec::new(),
    }
}

fn seconds(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// One stage: overrides, inputs from earlier stages (uploaded first), the run, and the
/// timeout.
async fn run_stage(
    cx: &ToolContext,
    client: &Arc<Client>,
    stage: &Stage,
    workflow: Workflow,
    done: &HashMap<String, (OutputKey, Vec<Output>)>,
    options: &RunOptions,
    label: &str,
) -> Result<StageResult, ToolError> {
    let started = Instant::now();
    let mut api = workflow.into_api();
    definition::apply_overrides(&mut api, &stage.param_overrides);
    let mut received = Vec::new();
    let mut uploaded: HashMap<(String, usize), String> = HashMap::new();
    for mapping in &stage.input_mappings {
        let key = (mapping.from_stage.clone(), mapping.output_index);
        let name = match uploaded.get(&key) {
            Some(name) => name.clone(),
            None => {
                let name = hand_on(cx, client, stage, mapping, done, label).await?;
                uploaded.insert(key, name.clone());
                name
            }
        };
        definition::set_input(
            &mut api,
            &mapping.node_id,
            &mapping.input_name,
            Value::String(name.clone()),
        );
        received.push(format!(
            "{}.{} = {name}",
            mapping.node_id, mapping.input_name
        ));
    }
    cx.progress(0.0, None, format!("{label}: {} queued", stage.stage_id))
        .await;
    let report = exec::run(cx, client, &api, options.timeout_per_stage).await?;
    let mut result = StageResult {
        stage_id: stage.stage_id.clone(),
        workflow_source: stage.workflow_source.clone(),
        status: String::new(),
        output_count: report.outputs.len(),
        outputs: report.outputs.clone(),
        errors: Vec::new(),
        duration_s: 0.0,
        prompt_id: Some(report.prompt_id.clone()),
        received,
    };
    result.status = match report.status {
        RunStatus::Complete => "complete".into(),
        RunStatus::Running | RunStatus::Queued => {
            let cancelled = exec::cancel_prompt(client, &report.prompt_id).await;
            result.errors.push(format!(
                "The stage took longer than {} s and was stopped{}.",
                options.timeout_per_stage.as_secs(),
                match cancelled {
                    Ok(_) => String::new(),
                    Err(error) => format!(
                        " (cancelling it in ComfyUI failed: {}; cancel_execution with prompt_id {} can retry)",
                        error.user_message(),
                        report.prompt_id
                    ),
                }
            ));
            "timeout".into()
        }
        RunStatus::Error | RunStatus::Interrupted => {
            result.errors.push(report.message.clone());
            "error".into()
        }
    };
    cx.progress(
        0.0,
        None,
        format!("{label}: {} {}", stage.stage_id, result.status),
    )
    .await;
    result.duration_s = seconds(started);
    Ok(result)
}

/// Downloads an earlier stage's output from ComfyUI and uploads it into the input folder;
/// returns the value for the mapped input (with the subfolder, if ComfyUI used one).
async fn hand_on(
    cx: &ToolContext,
    client: &Client,
    stage: &Stage,
    mapping: &definition::Mapping,
    done: &HashMap<String, (OutputKey, Vec<Output>)>,
    label: &str,
) -> Result<String, ToolError> {
    let from = &mapping.from_stage;
    let Some((key, outputs)) = done.get(from) else {
        return Err(ToolError::rejected(
            format!(
                "Stage '{}' needs an output of stage '{from}', which did not finish.",
                stage.stage_id
            ),
            "Fix the earlier stage first.",
        ));
    };
    let wanted: &[OutputKind] = match key {
        OutputKey::Image => &[OutputKind::Image, OutputKind::Animation],
        OutputKey::Video => &[OutputKind::Video, OutputKind::Animation],
    };
    let files: Vec<&Output> = outputs
        .iter()
        .filter(|o| wanted.contains(&o.kind) && o.filename.is_some())
        .collect();
    let Some(output) = files.get(mapping.output_index) else {
        return Err(ToolError::rejected(
            format!(
                "Stage '{}' wants output {} of stage '{from}', which made {} {} file{}.",
                stage.stage_id,
                mapping.output_index,
                files.len(),
                match key {
                    OutputKey::Image => "image",
                    OutputKey::Video => "video",
                },
                if files.len() == 1 { "" } else { "s" }
            ),
            "Check output_index and output_key, or that the earlier stage has a save node.",
        ));
    };
    let filename = output.filename.clone().unwrap_or_default();
    cx.progress(
        0.0,
        None,
        format!(
            "{label}: handing {filename} from '{from}' to '{}'",
            stage.stage_id
        ),
    )
    .await;
    let viewed = client
        .view(
            &filename,
            output.subfolder.as_deref(),
            output.folder_type.as_deref(),
        )
        .await?;
    let uploaded = client
        .upload_image(viewed.bytes, &filename, None, false)
        .await?;
    Ok(uploaded.load_image_value())
}
