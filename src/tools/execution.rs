//! Running workflows: check, queue and follow (with progress), status, cancel, uploads, and the
//! outputs back to the assistant as images. Names and parameters are the original project's
//! (§1.5 and §1.11 of the catalogue); `cancel_execution`, `upload_image` and
//! `get_output_image` are new.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rmcp::model::{ContentBlock, Resource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::comfy::api::{Output, OutputKind, QueuePosition};
use crate::comfy::{Client, ComfyError};
use crate::error::ToolError;
use crate::exec::{self, Cancelled, RunReport, RunStatus};
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::tools::workflow::{WorkflowInput, resolve_workflow};
use crate::workflow::validate::{self, Problem};

/// The longest a single execute call waits, whatever it is asked.
const MAX_WAIT_S: u64 = 3600;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "validate_before_execute",
            "Check before running",
            "Check that a workflow will run on this ComfyUI before queueing it: installed \
             nodes, required inputs, links, types, values and choices. Without path or \
             workflow, checks this session's workflow.",
            Hints::LIVE_READ,
            validate_before_execute,
        ),
        tool(
            "execute_workflow",
            "Run a workflow",
            "Queue a workflow on ComfyUI and wait for it (up to timeout seconds), then return \
             its outputs, with the images inline. Without path or workflow, runs this \
             session's workflow. A run still going when the wait ends comes back as \
             running or queued with its prompt_id to check later.",
            Hints::LIVE_RUN,
            execute_workflow,
        ),
        tool(
            "execute_with_progress",
            "Run with progress",
            "Like execute_workflow, and reports progress as it goes (node by node, sampler \
             steps) when the client asked for progress, plus node timings and the slowest \
             node. auto_verify checks the outputs exist and can be read.",
            Hints::LIVE_RUN,
            execute_with_progress,
        ),
        tool(
            "get_execution_status",
            "Run status",
            "Where a queued run stands: queued (with its place), running, finished (with its \
             outputs), failed (with the error) or interrupted.",
            Hints::LIVE_READ,
            get_execution_status,
        ),
        tool(
            "cancel_execution",
            "Cancel a run",
            "Cancel one run: removed from the queue if it is waiting, interrupted if it is the \
             one running. Other people's runs are never touched.",
            Hints::LIVE_CHANGE,
            cancel_execution,
        ),
        tool(
            "get_output_path",
            "Find an output file",
            "Where an output file is on disk (in ComfyUI's output folder), whether it exists \
             and its size.",
            Hints::LOCAL_READ,
            get_output_path,
        ),
        tool(
            "get_output_image",
            "Show an output image",
            "Fetch an image ComfyUI made (or one in its input or temp folder) and show it, \
             scaled down to fit the image budget, with a link to the full file.",
            Hints::LIVE_READ,
            get_output_image,
        ),
        tool(
            "upload_image",
            "Upload an image",
            "Copy an image file from this machine into ComfyUI's input folder, for LoadImage \
             in img2img and inpainting; returns the name to put in LoadImage's image input.",
            Hints::LIVE_CHANGE,
            upload_image,
        ),
        tool(
            "verify_execution",
            "Verify a run's outputs",
            "Check that a finished run's outputs exist and can be read, and report the key \
             settings it ran with (checkpoint, steps, cfg, sampler, seed, size) and a hash of \
             the workflow. Image analysis by a vision model is not available yet.",
            Hints::LIVE_READ,
            verify_execution,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// validate_before_execute
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, JsonSchema)]
pub struct PreflightReport {
    pub valid: bool,
    pub node_count: usize,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
    pub message: String,
}

async fn validate_before_execute(
    cx: ToolContext,
    params: WorkflowInput,
) -> Result<PreflightReport, ToolError> {
    let workflow = resolve_workflow(&cx, params).await?.workflow;
    let client = cx.app.comfy().client().await;
    let index = client.nodes(false).await.map_err(needs_node_list)?;
    let report = validate::validate(&workflow, &index);
    Ok(PreflightReport {
        valid: report.valid,
        node_count: workflow.nodes.len(),
        message: if report.valid {
            "The workflow looks ready to run.".into()
        } else {
            format!("{} Fix the errors before running it.", report.summary())
        },
        errors: report.errors,
        warnings: report.warnings,
    })
}

fn needs_node_list(error: ComfyError) -> ToolError {
    ToolError::rejected(
        format!(
            "{} Checking a workflow needs ComfyUI's list of installed nodes.",
            error.user_message()
        ),
        "",
    )
}

// ---------------------------------------------------------------------------------------------
// execute_workflow, execute_with_progress
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteParams {
    /// A workflow file; without path or workflow, this session's workflow runs.
    #[serde(default)]
    pub path: Option<String>,
    /// The workflow JSON itself.
    #[serde(default)]
    pub workflow: Option<Value>,
    /// How long to wait for the result, in seconds (default 120). The run goes on after
    /// that; its prompt_id lets you check on it.
    #[serde(default)]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout: Option<u64>,
    /// A named session whose workflow to run.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteProgressParams {
    /// A workflow file; without path or workflow, this session's workflow runs.
    #[serde(default)]
    pub path: Option<String>,
    /// The workflow JSON itself.
    #[serde(default)]
    pub workflow: Option<Value>,
    /// How long to wait for the result, in seconds (default 300).
    #[serde(default)]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout: Option<u64>,
    /// Check the outputs exist and can be read once it finishes.
    #[serde(default)]
    pub auto_verify: Option<bool>,
    /// A named session whose workflow to run (when it has one).
    #[serde(default)]
    pub session: Option<String>,
    /// A goal this run serves, echoed back so a plan can follow it.
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub goal_id: Option<String>,
}

/// An image shown inline in the result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShownImage {
    pub filename: String,
    /// The resource to read for the full file.
    pub uri: String,
    pub width: u32,
    pub height: u32,
    pub original_width: u32,
    pub original_height: u32,
    pub bytes: usize,
    pub original_bytes: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecuteReport {
    #[serde(flatten)]
    pub run: RunReport,
    /// The images returned inline (scaled to the image budget), in output order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images_shown: Vec<ShownImage>,
    /// Why some images were not shown inline.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images_not_shown: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal_id: Option<String>,
}

async fn execute_workflow(
    cx: ToolContext,
    params: ExecuteParams,
) -> Result<ExecuteReport, ToolError> {
    let input = WorkflowInput {
        path: params.path,
        workflow: params.workflow,
        session: params.session,
    };
    Box::pin(execute(
        &cx,
        input,
        params.timeout.unwrap_or(120),
        false,
        None,
    ))
    .await
}

async fn execute_with_progress(
    cx: ToolContext,
    params: ExecuteProgressParams,
) -> Result<ExecuteReport, ToolError> {
    // The original's `session` named its memory log; here it names a workflow session, used
    // only when that session holds a workflow.
    let session = match params.session {
        Some(name) if has_workflow(&cx, &name).await => Some(name),
        _ => None,
    };
    let input = WorkflowInput {
        path: params.path,
        workflow: params.workflow,
        session,
    };
    Box::pin(execute(
        &cx,
        input,
        params.timeout.unwrap_or(300),
        params.auto_verify.unwrap_or(false),
        params.goal_id,
    ))
    .await
}

async fn has_workflow(cx: &ToolContext, name: &str) -> bool {
    cx.workspace(Some(name)).workflow.lock().await.is_some()
}

async fn execute(
    cx: &ToolContext,
    input: WorkflowInput,
    timeout_s: u64,
    auto_verify: bool,
    goal_id: Option<String>,
) -> Result<ExecuteReport, ToolError> {
    let workflow = resolve_workflow(cx, input).await?.workflow;
    let client = cx.app.comfy().client().await;
    let wait = Duration::from_secs(timeout_s.clamp(1, MAX_WAIT_S));
    let api = workflow.to_api();
    exec::confirm_paid_nodes(cx, &client, std::slice::from_ref(&api)).await?;
    let run = exec::run(cx, &client, &api, wait).await?;
    let (images_shown, images_not_shown) = if run.status == RunStatus::Complete {
        show_images(cx, &client, &run.outputs).await
    } else {
        (Vec::new(), Vec::new())
    };
    let verification = if auto_verify && run.status == RunStatus::Complete {
        Some(check_outputs(cx, &client, &run.outputs).await)
    } else {
        None
    };
    Ok(ExecuteReport {
        run,
        images_shown,
        images_not_shown,
        verification,
        goal_id,
    })
}

/// `comfyui://output/{type}/{subfolder/}{filename}`, each part percent-encoded.
pub fn output_uri(folder_type: &str, subfolder: &str, filename: &str) -> String {
    let mut uri = format!(
        "comfyui://output/{}/",
        crate::comfy::client::encode_segment(folder_type)
    );
    for part in subfolder.split('/').filter(|p| !p.is_empty()) {
        uri.push_str(&crate::comfy::client::encode_segment(part));
        uri.push('/');
    }
    uri.push_str(&crate::comfy::client::encode_segment(filename));
    uri
}

/// Reads `comfyui://output/{type}/{subfolder/}{filename}` back into (type, subfolder, name).
pub fn parse_output_uri(uri: &str) -> Option<(String, String, String)> {
    let rest = uri.strip_prefix("comfyui://output/")?;
    let mut parts: Vec<String> = rest.split('/').map(decode_segment).collect::<Option<_>>()?;
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty() || p == "." || p == "..") {
        return None;
    }
    let folder_type = parts.remove(0);
    if !matches!(folder_type.as_str(), "output" | "input" | "temp") {
        return None;
    }
    let filename = parts.pop()?;
    Some((folder_type, parts.join("/"), filename))
}

/// Percent-decodes one segment of a `comfyui://` URI; `None` for bad escapes, invalid UTF-8,
/// or a decoded separator or NUL.
pub(crate) fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.contains(['/', '\\', '\0'])).then_some(text)
}

/// Shows up to the budget's number of images inline, each with a link to the full file.
async fn show_images(
    cx: &ToolContext,
    client: &Arc<Client>,
    outputs: &[Output],
) -> (Vec<ShownImage>, Vec<String>) {
    let budget = cx.app.config().images;
    let mut shown = Vec::new();
    let mut not_shown = Vec::new();
    let images = outputs.iter().filter(|o| {
        matches!(o.kind, OutputKind::Image | OutputKind::Animation) && o.filename.is_some()
    });
    for output in images {
        let filename = output.filename.clone().unwrap_or_default();
        if shown.len() >= budget.max_inline {
            not_shown.push(format!(
                "{filename}: only {} images are shown inline; get_output_image shows it",
                budget.max_inline
            ));
            continue;
        }
        let subfolder = output.subfolder.clone().unwrap_or_default();
        let folder_type = output
            .folder_type
            .clone()
            .unwrap_or_else(|| "output".into());
        match show_one(cx, client, &filename, &subfolder, &folder_type, &budget).await {
            Ok(image) => shown.push(image),
            Err(error) => not_shown.push(format!("{filename}: {}", error.user_message())),
        }
    }
    (shown, not_shown)
}

async fn show_one(
    cx: &ToolContext,
    client: &Client,
    filename: &str,
    subfolder: &str,
    folder_type: &str,
    budget: &crate::images::ImageBudget,
) -> Result<ShownImage, ToolError> {
    let viewed = client
        .view(filename, Some(subfolder), Some(folder_type))
        .await?;
    let original_bytes = viewed.bytes.len();
    let full_mime = viewed
        .content_type
        .clone()
        .or_else(|| crate::images::sniff_mime(&viewed.bytes).map(String::from))
        .unwrap_or_else(|| "application/octet-stream".into());
    let fitted = crate::images::fit_async(viewed.bytes, *budget)
        .await
        .map_err(|error| ToolError::rejected(error.to_string(), ""))?;
    let uri = output_uri(folder_type, subfolder, filename);
    cx.attach(ContentBlock::image(
        base64::engine::general_purpose::STANDARD.encode(&fitted.bytes),
        fitted.mime,
    ));
    cx.attach(ContentBlock::resource_link(
        Resource::new(uri.clone(), filename.to_string())
            .with_mime_type(full_mime)
            .with_size(original_bytes as u64)
            .with_description("The full-size file"),
    ));
    Ok(ShownImage {
        filename: filename.to_string(),
        uri,
        width: fitted.width,
        height: fitted.height,
        original_width: fitted.original_width,
        original_height: fitted.original_height,
        bytes: fitted.bytes.len(),
        original_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// get_execution_status, cancel_execution
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptIdParams {
    /// The run's prompt_id, as the execute call returned it.
    #[schemars(length(min = 1, max = 256))]
    pub prompt_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StatusReport {
    /// `complete`, `error`, `interrupted`, `running`, `queued`, or `not_found`.
    pub status: String,
    pub completed: bool,
    pub prompt_id: String,
    pub outputs: Vec<Output>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::comfy::api::RunError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

async fn get_execution_status(
    cx: ToolContext,
    params: PromptIdParams,
) -> Result<StatusReport, ToolError> {
    let prompt_id = params.prompt_id.trim().to_string();
    let client = cx.app.comfy().client().await;
    if let Some(entry) = client.history_entry(&prompt_id).await? {
        let error = entry.error();
        let status = if entry.interrupted() {
            "interrupted"
        } else if error.is_some() || entry.status.as_deref() == Some("error") {
            "error"
        } else {
            "complete"
        };
        return Ok(StatusReport {
            status: status.into(),
            completed: entry.completed,
            prompt_id,
            outputs: entry.output_list(),
            queue_position: None,
            error,
            message: None,
        });
    }
    let queue = client.queue().await?;
    let (status, queue_position, message) = match queue.position(&prompt_id) {
        Some(QueuePosition::Running) => ("running", None, None),
        Some(QueuePosition::Pending(place)) => ("queued", Some(place), None),
        None => (
            "not_found",
            None,
            Some(
                "ComfyUI has no run with this id, finished or queued. ComfyUI forgets its \
                 history when it restarts; get_history lists the runs it remembers."
                    .to_string(),
            ),
        ),
    };
    Ok(StatusReport {
        status: status.into(),
        completed: false,
        prompt_id,
        outputs: Vec::new(),
        queue_position,
        error: None,
        message,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CancelReport {
    pub prompt_id: String,
    pub outcome: Cancelled,
    pub message: String,
}

async fn cancel_execution(
    cx: ToolContext,
    params: PromptIdParams,
) -> Result<CancelReport, ToolError> {
    let prompt_id = params.prompt_id.trim().to_string();
    let client = cx.app.comfy().client().await;
    let outcome = exec::cancel_prompt(&client, &prompt_id).await?;
    let message = match outcome {
        Cancelled::RemovedFromQueue => "It was waiting in the queue and has been removed.",
        Cancelled::Interrupted => "It was running and has been interrupted.",
        Cancelled::NotActive => {
            "It is neither queued nor running (it finished, or the id is unknown); nothing was changed."
        }
    };
    Ok(CancelReport {
        prompt_id,
        outcome,
        message: message.into(),
    })
}

// ---------------------------------------------------------------------------------------------
// get_output_path, get_output_image, upload_image
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputPathParams {
    /// The file name, as an output lists it (e.g. `ComfyUI_00001_.png`).
    #[schemars(length(min = 1, max = 255))]
    pub filename: String,
    /// Its folder under the output folder, if any.
    #[serde(default)]
    pub subfolder: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OutputPathReport {
    pub filename: String,
    pub subfolder: String,
    pub absolute_path: Option<String>,
    pub exists: bool,
    pub size_bytes: Option<u64>,
    pub error: Option<String>,
}

/// A file in the install's output folder, refusing anything that would leave it.
fn output_file(cx: &ToolContext, subfolder: &str, filename: &str) -> Result<PathBuf, ToolError> {
    let install = cx.app.install().ok_or_else(|| {
        ToolError::rejected(
            "The ComfyUI folder on this machine isn't known, so its output folder can't be found.",
            "Set COMFYUI_DIR to your ComfyUI folder, or use get_output_image, which asks ComfyUI for the file.",
        )
    })?;
    let plain = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && !part.contains(['/', '\\', ':'])
            && !part.contains('\0')
    };
    let parts: Vec<&str> = subfolder
        .split(['/', '\\'])
        .filter(|p| !p.is_empty())
        .collect();
    if !plain(filename) || !parts.iter().all(|p| plain(p)) {
        return Err(ToolError::rejected(
            format!(
                "{filename:?} in {subfolder:?} is not a plain file name inside the output folder."
            ),
            "Give the file name and subfolder exactly as the run's outputs list them.",
        ));
    }
    let mut path = install.output_dir();
    for part in parts {
        path.push(part);
    }
    path.push(filename);
    Ok(path)
}

async fn get_output_path(
    cx: ToolContext,
    params: OutputPathParams,
) -> Result<OutputPathReport, ToolError> {
    let subfolder = params.subfolder.unwrap_or_default();
    let path = output_file(&cx, &subfolder, params.filename.trim())?;
    let metadata = tokio::fs::metadata(&path)
        .await
        .ok()
        .filter(|m| m.is_file());
    Ok(OutputPathReport {
        filename: params.filename,
        subfolder,
        absolute_path: Some(path.display().to_string()),
        exists: metadata.is_some(),
        size_bytes: metadata.as_ref().map(std::fs::Metadata::len),
        error: metadata
            .is_none()
            .then(|| format!("File not found: {}", path.display())),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputImageParams {
    /// The file name, as the run's outputs list it.
    #[schemars(length(min = 1, max = 255))]
    pub filename: String,
    /// Its subfolder, if any.
    #[serde(default)]
    pub subfolder: Option<String>,
    /// ComfyUI's folder: `output` (default), `temp` or `input`.
    #[serde(default)]
    pub folder_type: Option<FolderType>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FolderType {
    Output,
    Temp,
    Input,
}

impl FolderType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Output => "output",
            Self::Temp => "temp",
            Self::Input => "input",
        }
    }
}

async fn get_output_image(
    cx: ToolContext,
    params: OutputImageParams,
) -> Result<ShownImage, ToolError> {
    let client = cx.app.comfy().client().await;
    let budget = cx.app.config().images;
    let folder = params.folder_type.unwrap_or(FolderType::Output).as_str();
    show_one(
        &cx,
        &client,
        params.filename.trim(),
        params.subfolder.as_deref().unwrap_or_default(),
        folder,
        &budget,
    )
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// The image file on this machine (inside the allowed folders).
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
    /// A subfolder of ComfyUI's input folder to put it in.
    #[serde(default)]
    #[schemars(length(max = 255))]
    pub subfolder: Option<String>,
    /// Replace a file of the same name instead of saving under a new name.
    #[serde(default)]
    pub overwrite: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UploadReport {
    /// The value for LoadImage's `image` input.
    pub image: String,
    pub name: String,
    pub subfolder: String,
    #[serde(rename = "type")]
    pub folder_type: String,
    pub size_bytes: usize,
}

/// ComfyUI's default upload limit.
const MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;

async fn upload_image(cx: ToolContext, params: UploadParams) -> Result<UploadReport, ToolError> {
    let bytes = cx
        .app
        .paths()
        .read_capped(&params.path, MAX_UPLOAD_BYTES)
        .await?;
    if crate::images::sniff_mime(&bytes).is_none() {
        return Err(ToolError::rejected(
            format!("{} is not a PNG, JPEG, WebP or GIF image.", params.path),
            "Upload an image file; ComfyUI's LoadImage reads those formats.",
        ));
    }
    let file = cx.app.paths().existing_file(&params.path)?;
    let filename = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image.png".into());
    let size_bytes = bytes.len();
    if params.overwrite == Some(true) {
        let place = match params.subfolder.as_deref().filter(|s| !s.is_empty()) {
            Some(subfolder) => format!("ComfyUI's input folder ({subfolder})"),
            None => "ComfyUI's input folder".to_string(),
        };
        cx.confirm(crate::mcp::consent::Consent::new(
            format!("Replace {filename} in {place} if it is already there?"),
            "Workflows that load the old image will load this one instead.",
        ))
        .await?;
    }
    let client = cx.app.comfy().client().await;
    let uploaded = client
        .upload_image(
            bytes,
            &filename,
            params.subfolder.as_deref().filter(|s| !s.is_empty()),
            params.overwrite.unwrap_or(false),
        )
        .await?;
    let image = if uploaded.subfolder.is_empty() {
        uploaded.name.clone()
    } else {
        format!("{}/{}", uploaded.subfolder, uploaded.name)
    };
    Ok(UploadReport {
        image,
        name: uploaded.name,
        subfolder: uploaded.subfolder,
        folder_type: uploaded.folder_type,
        size_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// verify_execution
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// The run's prompt_id.
    #[schemars(length(min = 1, max = 256))]
    pub prompt_id: String,
    /// Also ask a vision model to judge the first image output (your client's model, or
    /// the configured provider), as analyze_image does.
    #[serde(default)]
    pub analyze: Option<bool>,
    /// Accepted for compatibility; nothing is recorded (record_outcome does that, when asked).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub session: Option<String>,
    /// How long the render took, echoed back.
    #[serde(default)]
    pub render_time_s: Option<f64>,
    /// A goal this run serves, echoed back.
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub goal_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckedOutput {
    #[serde(flatten)]
    pub output: Output,
    /// The file could be fetched (and, for images, decoded).
    pub readable: bool,
    pub size_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Verification {
    pub output_count: usize,
    pub all_readable: bool,
    pub outputs: Vec<CheckedOutput>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VerifyReport {
    pub prompt_id: String,
    /// `complete`, `error`, `interrupted`, or `not_found`.
    pub status: String,
    #[serde(flatten)]
    pub verification: Verification,
    /// The settings the run used, read from the workflow that ran.
    pub key_params: Map<String, Value>,
    /// The first 16 hex digits of the SHA-256 of the workflow that ran (compact, sorted keys).
    pub workflow_hash: Option<String>,
    pub vision_analysis: Option<VisionAnalysis>,
    pub render_time_s: Option<f64>,
    pub goal_id: Option<String>,
    pub message: String,
}

async fn check_outputs(cx: &ToolContext, client: &Client, outputs: &[Output]) -> Verification {
    let _ = cx;
    let mut checked = Vec::with_capacity(outputs.len());
    for output in outputs {
        let Some(filename) = output.filename.as_deref() else {
            // Text outputs live in the history itself.
            checked.push(CheckedOutput {
                output: output.clone(),
                readable: output.text.is_some(),
                size_bytes: output.text.as_ref().map(String::len),
                problem: None,
            });
            continue;
        };
        let result = client
            .view(
                filename,
                output.subfolder.as_deref(),
                output.folder_type.as_deref(),
            )
            .await;
        let entry = match result {
            Ok(viewed) => {
                let is_image = matches!(output.kind, OutputKind::Image | OutputKind::Animation);
                let problem = (is_image && crate::images::sniff_mime(&viewed.bytes).is_none())
                    .then(|| "the file is not an image ComfyUI could have written".to_string());
                CheckedOutput {
                    output: output.clone(),
                    readable: problem.is_none(),
                    size_bytes: Some(viewed.bytes.len()),
                    problem,
                }
            }
            Err(error) => CheckedOutput {
                output: output.clone(),
                readable: false,
                size_bytes: None,
                problem: Some(error.user_message()),
            },
        };
        checked.push(entry);
    }
    Verification {
        output_count: checked.len(),
        all_readable: checked.iter().all(|c| c.readable),
        outputs: checked,
    }
}

/// The settings people compare runs by, from the workflow that ran.
fn key_params(workflow: &Value) -> Map<String, Value> {
    let mut params = Map::new();
    let Some(nodes) = workflow.as_object() else {
        return params;
    };
    let mut ids: Vec<&String> = nodes.keys().collect();
    ids.sort_by(|a, b| crate::workflow::model::compare_ids(a, b));
    for id in ids {
        let node = &nodes[id];
        let class = node["class_type"].as_str().unwrap_or_default();
        let inputs = &node["inputs"];
        let mut take = |key: &str, name: &str| {
            if let Some(value) = inputs.get(key).filter(|v| !v.is_array()) {
                params
                    .entry(name.to_string())
                    .or_insert_with(|| value.clone());
            }
        };
        match class {
            "CheckpointLoaderSimple" | "CheckpointLoader" => take("ckpt_name", "checkpoint"),
            "UNETLoader" => take("unet_name", "checkpoint"),
            "KSampler" | "KSamplerAdvanced" => {
                for key in ["steps", "cfg", "sampler_name", "scheduler", "denoise"] {
                    take(key, key);
                }
                take("seed", "seed");
                take("noise_seed", "seed");
            }
            "EmptyLatentImage" | "EmptySD3LatentImage" | "EmptyImage" => {
                if let (Some(w), Some(h)) = (inputs["width"].as_u64(), inputs["height"].as_u64()) {
                    params
                        .entry("resolution".to_string())
                        .or_insert_with(|| Value::String(format!("{w}x{h}")));
                }
            }
            _ => {}
        }
    }
    params
}

fn workflow_hash(workflow: &Value) -> String {
    use sha2::Digest;
    // serde_json's maps are sorted, so this is the compact, sorted-keys form.
    let digest = sha2::Sha256::digest(workflow.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The vision model's judgement of a run's first image output, with the run's positive
/// prompt when the workflow shows one. A run without images says so instead.
async fn analyze_first_image(
    cx: &ToolContext,
    outputs: &[Output],
    workflow: &Value,
) -> Result<VisionAnalysis, ToolError> {
    let Some(image) = outputs.iter().find(|output| {
        output.kind == crate::comfy::api::OutputKind::Image && output.filename.is_some()
    }) else {
        return Ok(VisionAnalysis::Unavailable(
            "The run produced no image to analyse.".into(),
        ));
    };
    let uri = output_uri(
        image.folder_type.as_deref().unwrap_or("output"),
        image.subfolder.as_deref().unwrap_or(""),
        image.filename.as_deref().unwrap_or_default(),
    );
    let params = key_params(workflow);
    let prompt = positive_prompt(workflow);
    let context = (!params.is_empty()).then(|| Value::Object(params.clone()).to_string());
    match super::vision::analyze(cx, &uri, prompt.as_deref(), context.as_deref()).await {
        Ok(report) => Ok(VisionAnalysis::Analysis(Box::new(report))),
        // The question goes back to the client (2026-07-28), or the call was cancelled.
        Err(error @ (ToolError::NeedsInput { .. } | ToolError::Cancelled)) => Err(error),
        // No model to ask, or it failed: the verification still stands.
        Err(error) => Ok(VisionAnalysis::Unavailable(error.user_message())),
    }
}

/// The text of the CLIPTextEncode that feeds a sampler's `positive` input, when there is one.
fn positive_prompt(workflow: &Value) -> Option<String> {
    let nodes = workflow.as_object()?;
    nodes.values().find_map(|node| {
        let link = node.pointer("/inputs/positive")?.as_array()?;
        let source = nodes.get(link.first()?.as_str()?)?;
        source.pointer("/inputs/text")?.as_str().map(String::from)
    })
}

/// What `analyze: true` added to verify_execution.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum VisionAnalysis {
    Analysis(Box<super::vision::AnalyzeReport>),
    /// Why there is no analysis (no image, or no model to ask).
    Unavailable(String),
}

async fn verify_execution(
    cx: ToolContext,
    params: VerifyParams,
) -> Result<VerifyReport, ToolError> {
    let prompt_id = params.prompt_id.trim().to_string();
    let client = cx.app.comfy().client().await;
    let Some(entry) = client.history_entry(&prompt_id).await? else {
        return Ok(VerifyReport {
            prompt_id,
            status: "not_found".into(),
            verification: Verification {
                output_count: 0,
                all_readable: false,
                outputs: Vec::new(),
            },
            key_params: Map::new(),
            workflow_hash: None,
            vision_analysis: None,
            render_time_s: params.render_time_s,
            goal_id: params.goal_id,
            message: "ComfyUI has no finished run with this id (it may still be queued or running; get_execution_status says which).".into(),
        });
    };
    let status = if entry.interrupted() {
        "interrupted"
    } else if entry.error().is_some() || entry.status.as_deref() == Some("error") {
        "error"
    } else {
        "complete"
    };
    let outputs = entry.output_list();
    let verification = check_outputs(&cx, &client, &outputs).await;
    let workflow = entry.workflow.clone().unwrap_or(Value::Null);
    let vision_analysis = if params.analyze.unwrap_or(false) {
        Some(analyze_first_image(&cx, &outputs, &workflow).await?)
    } else {
        None
    };
    let message = if verification.all_readable && status == "complete" {
        format!(
            "All {} outputs exist and can be read.",
            verification.output_count
        )
    } else if status != "complete" {
        format!("The run ended with status {status}.")
    } else {
        "Some outputs could not be read; see each output's problem.".into()
    };
    Ok(VerifyReport {
        prompt_id,
        status: status.into(),
        key_params: key_params(&workflow),
        workflow_hash: workflow.is_object().then(|| workflow_hash(&workflow)),
        verification,
        vision_analysis,
        render_time_s: params.render_time_s,
        goal_id: params.goal_id,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_uris_round_trip_and_refuse_escapes() {
        let uri = output_uri("output", "portraits/day 1", "a b#1.png");
        assert_eq!(
            uri,
            "comfyui://output/output/portraits/day%201/a%20b%231.png"
        );
        assert_eq!(
            parse_output_uri(&uri),
            Some((
                "output".into(),
                "portraits/day 1".into(),
                "a b#1.png".into()
            ))
        );
        assert_eq!(
            parse_output_uri("comfyui://output/temp/x.png"),
            Some(("temp".into(), String::new(), "x.png".into()))
        );
        for bad in [
            "comfyui://output/output/../secret.png",
            "comfyui://output/output/%2e%2e/x.png",
            "comfyui://output/output/a%2Fb.png",
            "comfyui://output/models/x.safetensors",
            "comfyui://output/output/",
            "comfyui://output/output/%zz.png",
            "file:///etc/passwd",
        ] {
            assert_eq!(parse_output_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_params_come_from_the_workflow_that_ran() {
        let workflow = serde_json::json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0]}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}}
        });
        let params = key_params(&workflow);
        assert_eq!(params["checkpoint"], "sdxl.safetensors");
        assert_eq!(params["seed"], 5);
        assert_eq!(params["resolution"], "1024x768");
        assert!(!params.contains_key("model"));
        assert_eq!(workflow_hash(&workflow).len(), 16);
        assert_eq!(workflow_hash(&workflow), workflow_hash(&workflow.clone()));
    }
}
