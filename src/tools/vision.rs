//! Vision tools (§1.15 of the catalogue): judging, comparing and improving outputs with a
//! vision model (the client's own through sampling, else a configured provider), and
//! comparing two images locally without any model. None of them records anything:
//! record_outcome does that when the caller chooses.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ToolError;
use crate::images::Fitted;
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::vision::analysis::{self, Analysis, Improvements, Judged, OutputComparison};
use crate::vision::hash::{self, Comparison};
use crate::vision::model::MODEL_IMAGE_BUDGET;

/// The largest image file read.
const MAX_IMAGE_FILE: u64 = 128 * 1024 * 1024;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "analyze_image",
            "Judge an image with a vision model",
            "Ask a vision model to judge one image: quality_score (0-1), artifacts, composition, \
             prompt_adherence (0-1, when prompt_used is given), strengths and suggestions. Uses \
             your client's own model when it offers one (sampling), else the configured \
             provider. image_path is a file path or a comfyui://output/... link from a run.",
            Hints::ASK_MODEL,
            analyze_image,
        ),
        tool(
            "compare_outputs",
            "Compare two outputs with a vision model",
            "Ask a vision model whether image_b improves on image_a: improved, differences, \
             quality_delta (-1 to 1) and a recommendation. Say what changed between them in \
             change_description for a sharper answer.",
            Hints::ASK_MODEL,
            compare_outputs,
        ),
        tool(
            "suggest_improvements",
            "Suggest parameter changes for an image",
            "Ask a vision model which parameters to change to improve an image: for each, the \
             current and suggested value, why, the expected impact and a confidence, plus the \
             order to try them. Describe the workflow (model, steps, cfg, sampler, size, \
             prompts) in workflow_summary.",
            Hints::ASK_MODEL,
            suggest_improvements,
        ),
        tool(
            "hash_compare_images",
            "Compare two images without a model",
            "Compare two images locally: perceptual hashes (average, difference, DCT) and pixel \
             statistics give a verdict (identical, near_identical, similar, different, \
             very_different). Fast, free, and needs no model: use it to tell whether a change \
             did anything.",
            Hints::LOCAL_READ,
            hash_compare_images,
        ),
    ]
}

/// Reads an image from a path (through the path policy) or a `comfyui://output/...` link.
pub async fn image_bytes(cx: &ToolContext, source: &str) -> Result<Vec<u8>, ToolError> {
    let source = source.trim();
    if source.starts_with("comfyui://") {
        let Some((folder, subfolder, filename)) = super::execution::parse_output_uri(source) else {
            return Err(ToolError::rejected(
                format!("{source} is not a ComfyUI file link."),
                "Pass a path, or a comfyui://output/{output|temp|input}/... link from a run's results.",
            ));
        };
        let client = cx.app.comfy().client().await;
        let viewed = client
            .view(&filename, Some(&subfolder), Some(&folder))
            .await?;
        return Ok(viewed.bytes.to_vec());
    }
    cx.app
        .paths()
        .read_capped(source, MAX_IMAGE_FILE)
        .await
        .map_err(Into::into)
}

/// An image fitted for a model.
async fn for_model(cx: &ToolContext, source: &str) -> Result<Fitted, ToolError> {
    let bytes = image_bytes(cx, source).await?;
    crate::images::fit_async(bytes, MODEL_IMAGE_BUDGET)
        .await
        .map_err(|error| unreadable(source, &error))
}

fn unreadable(source: &str, error: &crate::images::ImageError) -> ToolError {
    ToolError::rejected(format!("{source} can't be used: {error}."), "")
}

/// An image's size as sent to the model.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SentImage {
    pub source: String,
    pub width: u32,
    pub height: u32,
    pub original_width: u32,
    pub original_height: u32,
}

impl SentImage {
    fn of(source: &str, fitted: &Fitted) -> Self {
        Self {
            source: source.to_string(),
            width: fitted.width,
            height: fitted.height,
            original_width: fitted.original_width,
            original_height: fitted.original_height,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeParams {
    /// The image: a path, or a comfyui://output/... link from a run.
    #[schemars(length(min = 1, max = 4096))]
    pub image_path: String,
    /// The positive prompt it was made from, to judge adherence.
    #[serde(default)]
    #[schemars(length(max = 8000))]
    pub prompt_used: Option<String>,
    /// How it was made (model, sampler, steps…), for a better judgement.
    #[serde(default)]
    #[schemars(length(max = 8000))]
    pub workflow_context: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AnalyzeReport {
    pub image_path: String,
    pub sent: Vec<SentImage>,
    #[serde(flatten)]
    pub result: Judged<Analysis>,
}

/// Judges one image (also used by verify_execution with `analyze: true`).
pub async fn analyze(
    cx: &ToolContext,
    source: &str,
    prompt_used: Option<&str>,
    workflow_context: Option<&str>,
) -> Result<AnalyzeReport, ToolError> {
    let image = for_model(cx, source).await?;
    let sent = vec![SentImage::of(source, &image)];
    let question = analysis::analyze_question(prompt_used, workflow_context);
    let result = analysis::ask(cx, "analyze", question, vec![image]).await?;
    Ok(AnalyzeReport {
        image_path: source.to_string(),
        sent,
        result,
    })
}

async fn analyze_image(cx: ToolContext, params: AnalyzeParams) -> Result<AnalyzeReport, ToolError> {
    analyze(
        &cx,
        &params.image_path,
        params.prompt_used.as_deref(),
        params.workflow_context.as_deref(),
    )
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    /// The earlier image (A): a path or a comfyui://output/... link.
    #[schemars(length(min = 1, max = 4096))]
    pub image_a: String,
    /// The later image (B).
    #[schemars(length(min = 1, max = 4096))]
    pub image_b: String,
    /// What changed between them (a parameter, the prompt…).
    #[serde(default)]
    #[schemars(length(max = 4000))]
    pub change_description: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CompareReport {
    pub image_a: String,
    pub image_b: String,
    pub sent: Vec<SentImage>,
    #[serde(flatten)]
    pub result: Judged<OutputComparison>,
}

async fn compare_outputs(
    cx: ToolContext,
    params: CompareParams,
) -> Result<CompareReport, ToolError> {
    let a = for_model(&cx, &params.image_a).await?;
    let b = for_model(&cx, &params.image_b).await?;
    let sent = vec![
        SentImage::of(&params.image_a, &a),
        SentImage::of(&params.image_b, &b),
    ];
    let question = analysis::compare_question(params.change_description.as_deref());
    let result = analysis::ask(&cx, "compare", question, vec![a, b]).await?;
    Ok(CompareReport {
        image_a: params.image_a,
        image_b: params.image_b,
        sent,
        result,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestParams {
    /// The image: a path or a comfyui://output/... link.
    #[schemars(length(min = 1, max = 4096))]
    pub image_path: String,
    /// The workflow in a few words: model, steps, cfg, sampler, size, prompts, LoRAs.
    #[schemars(length(min = 1, max = 8000))]
    pub workflow_summary: String,
    /// What the artist wants more of.
    #[serde(default)]
    #[schemars(length(max = 4000))]
    pub goal: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SuggestReport {
    pub image_path: String,
    pub sent: Vec<SentImage>,
    #[serde(flatten)]
    pub result: Judged<Improvements>,
}

async fn suggest_improvements(
    cx: ToolContext,
    params: SuggestParams,
) -> Result<SuggestReport, ToolError> {
    let image = for_model(&cx, &params.image_path).await?;
    let sent = vec![SentImage::of(&params.image_path, &image)];
    let question = analysis::suggest_question(&params.workflow_summary, params.goal.as_deref());
    let result = analysis::ask(&cx, "suggest", question, vec![image]).await?;
    Ok(SuggestReport {
        image_path: params.image_path,
        sent,
        result,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HashParams {
    /// The first image: a path or a comfyui://output/... link.
    #[schemars(length(min = 1, max = 4096))]
    pub image_a: String,
    /// The second image.
    #[schemars(length(min = 1, max = 4096))]
    pub image_b: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct HashReport {
    pub image_a: String,
    pub image_b: String,
    #[serde(flatten)]
    pub comparison: Comparison,
}

async fn hash_compare_images(cx: ToolContext, params: HashParams) -> Result<HashReport, ToolError> {
    let a = image_bytes(&cx, &params.image_a).await?;
    let b = image_bytes(&cx, &params.image_b).await?;
    let (name_a, name_b) = (params.image_a.clone(), params.image_b.clone());
    let comparison = tokio::task::spawn_blocking(move || {
        let a = crate::images::decode(&a).map_err(|error| unreadable(&name_a, &error))?;
        let b = crate::images::decode(&b).map_err(|error| unreadable(&name_b, &error))?;
        Ok::<_, ToolError>(hash::compare(&a, &b))
    })
    .await
    .map_err(|error| ToolError::Internal(format!("the comparison stopped: {error}")))??;
    Ok(HashReport {
        image_a: params.image_a,
        image_b: params.image_b,
        comparison,
    })
}
