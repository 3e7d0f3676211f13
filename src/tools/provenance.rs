//! Image provenance tools (§1.14 of the catalogue): write our creative-context record into a
//! PNG, read it back with what ComfyUI embedded, and turn both into a readable context.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{PathError, ToolError};
use crate::mcp::ToolContext;
use crate::provenance::{self, CHUNK_KEY, Format, Generation, MAX_IMAGE_BYTES, ProvenanceError};
use crate::registry::{Hints, ToolSpec, tool};

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "write_image_metadata",
            "Write creative context into a PNG",
            "Embed the creative context of an image (what the artist asked for, how it was \
             interpreted, the iterations, the session and models) in a PNG as one text chunk \
             under the key comfyui_agent. The pixels and ComfyUI's own prompt and workflow \
             chunks are kept exactly; a previous comfyui_agent chunk is replaced. metadata needs \
             schema_version 1 and a timestamp.",
            Hints::WRITE,
            write_image_metadata,
        ),
        tool(
            "read_image_metadata",
            "Read an image's metadata",
            "Read the creative context this server embedded in a PNG, and list the text ComfyUI \
             embedded (its prompt and workflow) in a PNG, WebP or JPEG output.",
            Hints::LOCAL_READ,
            read_image_metadata,
        ),
        tool(
            "reconstruct_context",
            "Reconstruct how an image was made",
            "Explain how an image was made: the artist's intent, the iterations and the session \
             from our embedded record, plus what ComfyUI's embedded prompt says (checkpoint, \
             LoRAs, seed, steps, cfg, sampler, size, positive and negative prompt). Works on \
             ComfyUI outputs that have no record of ours too.",
            Hints::LOCAL_READ,
            reconstruct_context,
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// The PNG to annotate (absolute, or relative to the ComfyUI folder).
    pub image_path: String,
    /// The session whose captured intent and iteration log fill the record's `intent`,
    /// `iterations` and `accepted_iteration` when `metadata` leaves them out.
    #[serde(default)]
    pub session: Option<String>,
    /// The record: schema_version (1), timestamp, and optionally intent, iterations,
    /// accepted_iteration and session.
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WriteReport {
    pub status: String,
    pub image_path: String,
    pub chunk_key: String,
    pub metadata_keys: Vec<String>,
    /// Whether an earlier record of ours was replaced.
    pub replaced_previous: bool,
    pub size_bytes: usize,
    /// The keys taken from the session's memory (capture_intent, the iteration log)
    /// because metadata left them out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filled_from_session: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageParams {
    /// The image (PNG, WebP or JPEG; absolute, or relative to the ComfyUI folder).
    pub image_path: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReadReport {
    pub image_path: String,
    /// png, webp or jpeg.
    pub format: String,
    pub has_creative_metadata: bool,
    pub metadata: Option<Map<String, Value>>,
    /// A ComfyUI `prompt` or `workflow` text is embedded.
    pub has_comfyui_native: bool,
    pub native_chunk_keys: Vec<String>,
    /// Why our record could not be used, if one is present but unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_problem: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ContextReport {
    pub image_path: String,
    pub has_context: bool,
    pub summary: String,
    pub context: Option<Map<String, Value>>,
    /// What ComfyUI's embedded prompt says, when it has one.
    pub comfyui: Option<Generation>,
    pub has_comfyui_workflow: bool,
}

fn path_error(raw: &str, source: std::io::Error) -> ToolError {
    ToolError::Path(PathError::Io {
        path: raw.into(),
        source,
    })
}

fn refuse(error: ProvenanceError, path: &str) -> ToolError {
    let hint = match &error {
        ProvenanceError::NotPng | ProvenanceError::UnknownFormat(_) => {
            "Pass a PNG saved by ComfyUI (Save Image); only PNG can carry our metadata."
        }
        ProvenanceError::Damaged(_) => {
            "The file was left untouched. Save the image again from ComfyUI and try that copy."
        }
        ProvenanceError::InvalidMetadata(_) => {
            "Fix that field in metadata (schema_version 1 and a timestamp are required) and call again."
        }
        ProvenanceError::MetadataTooLarge { .. } => {
            "Keep the record short: summarise iterations instead of embedding whole workflows."
        }
    };
    ToolError::rejected(format!("{path}: {error}."), hint)
}

async fn write_image_metadata(
    cx: ToolContext,
    params: WriteParams,
) -> Result<WriteReport, ToolError> {
    let raw = params.image_path;
    let lower = raw.to_ascii_lowercase();
    if !lower.ends_with(".png") {
        let hint = if lower.ends_with(".webp")
            || lower.ends_with(".jpg")
            || lower.ends_with(".jpeg")
        {
            "Only PNG can carry our metadata. WebP and JPEG can still be read with read_image_metadata; save a PNG copy from ComfyUI to annotate it."
        } else {
            "Pass the path of a .png image."
        };
        return Err(ToolError::rejected(
            "Only PNG files are supported for metadata embedding.",
            hint,
        ));
    }
    let scope = cx.scope(params.session.as_deref())?;
    let memory = super::blocking(&cx.app, move |app| {
        super::intent::session_memory(app, &scope)
    })
    .await?;
    let mut metadata = params.metadata;
    let filled_from_session = fill_from_session(&mut metadata, memory);
    let json = provenance::validate_metadata(&metadata).map_err(|e| refuse(e, &raw))?;
    // The file must exist, and be both readable and writable under the policy.
    let target = cx.app.paths().writable_file(&raw)?;
    let bytes = cx.app.paths().read_capped(&raw, MAX_IMAGE_BYTES).await?;
    cx.confirm_overwrite(&target).await?;
    let replaced_previous = matches!(
        provenance::read_texts(&bytes),
        Ok((Format::Png, texts)) if texts.contains_key(CHUNK_KEY)
    );
    let rebuilt = provenance::embed_in_png(&bytes, &json).map_err(|e| refuse(e, &raw))?;
    let size_bytes = rebuilt.len();
    let write_to = target.clone();
    tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&write_to, &rebuilt))
        .await
        .map_err(|e| ToolError::Internal(format!("the write task failed: {e}")))?
        .map_err(|e| path_error(&raw, e))?;
    Ok(WriteReport {
        status: "ok".into(),
        image_path: target.display().to_string(),
        chunk_key: CHUNK_KEY.into(),
        metadata_keys: metadata.keys().cloned().collect(),
        replaced_previous,
        size_bytes,
        filled_from_session,
    })
}

/// Puts the session's current intent and iteration log into the record where the caller
/// left them out; returns the keys it filled.
fn fill_from_session(
    metadata: &mut Map<String, Value>,
    (intent, iterations): (
        Option<crate::planning::intent::Intent>,
        Option<crate::planning::intent::IterationLog>,
    ),
) -> Vec<String> {
    let mut filled = Vec::new();
    if let Some(intent) = intent
        && !metadata.contains_key("intent")
    {
        metadata.insert(
            "intent".into(),
            serde_json::json!({
                "user_request": intent.user_request,
                "interpretation": intent.interpretation,
                "style_references": intent.style_references,
                "session_context": intent.session_context,
            }),
        );
        filled.push("intent".to_string());
    }
    if let Some(log) = iterations {
        if !metadata.contains_key("iterations") && !log.steps.is_empty() {
            let steps: Vec<Value> = log
                .steps
                .iter()
                .map(|step| {
                    let mut item = serde_json::to_value(step).unwrap_or(Value::Null);
                    if let Some(item) = item.as_object_mut() {
                        item.remove("recorded_at");
                    }
                    item
                })
                .collect();
            metadata.insert("iterations".into(), Value::Array(steps));
            filled.push("iterations".to_string());
        }
        if let Some(finalized) = log.finalized
            && !metadata.contains_key("accepted_iteration")
        {
            metadata.insert(
                "accepted_iteration".into(),
                Value::from(finalized.accepted_iteration),
            );
            filled.push("accepted_iteration".to_string());
        }
    }
    filled
}

/// The image's texts, with our record parsed (or why it could not be).
struct Inspected {
    path: String,
    format: Format,
    texts: BTreeMap<String, String>,
    ours: Result<Option<Map<String, Value>>, String>,
}

async fn inspect(cx: &ToolContext, raw: &str) -> Result<Inspected, ToolError> {
    let path = cx.app.paths().existing_file(raw)?;
    let bytes = cx.app.paths().read_capped(raw, MAX_IMAGE_BYTES).await?;
    let (format, texts) = provenance::read_texts(&bytes).map_err(|e| refuse(e, raw))?;
    let ours = match texts.get(CHUNK_KEY) {
        None => Ok(None),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            Ok(_) => Err("the comfyui_agent text is not a JSON object".to_string()),
            Err(e) => Err(format!("the comfyui_agent text is not valid JSON ({e})")),
        },
    };
    Ok(Inspected {
        path: path.display().to_string(),
        format,
        texts,
        ours,
    })
}

async fn read_image_metadata(
    cx: ToolContext,
    params: ImageParams,
) -> Result<ReadReport, ToolError> {
    let found = inspect(&cx, &params.image_path).await?;
    let native_chunk_keys: Vec<String> = found
        .texts
        .keys()
        .filter(|k| k.as_str() != CHUNK_KEY)
        .cloned()
        .collect();
    let (metadata, metadata_problem) = match found.ours {
        Ok(m) => (m, None),
        Err(problem) => (None, Some(problem)),
    };
    Ok(ReadReport {
        image_path: found.path,
        format: found.format.name().into(),
        has_creative_metadata: metadata.is_some(),
        metadata,
        has_comfyui_native: found.texts.contains_key("prompt")
            || found.texts.contains_key("workflow"),
        native_chunk_keys,
        metadata_problem,
    })
}

async fn reconstruct_context(
    cx: ToolContext,
    params: ImageParams,
) -> Result<ContextReport, ToolError> {
    let found = inspect(&cx, &params.image_path).await?;
    let ours = found.ours.ok().flatten();
    let comfyui = found
        .texts
        .get("prompt")
        .and_then(|p| provenance::generation_from_prompt(p));
    let mut lines = Vec::new();
    if let Some(record) = &ours {
        lines.extend(provenance::summary_of(record));
    }
    if let Some(g) = &comfyui {
        lines.extend(provenance::generation_summary(g));
    }
    if lines.is_empty() {
        lines.push(if ours.is_some() {
            "The image carries a creative-context record with no details beyond its date.".into()
        } else {
            "No creative context or ComfyUI prompt is embedded in this image.".into()
        });
    }
    Ok(ContextReport {
        image_path: found.path,
        has_context: ours.is_some(),
        summary: lines.join("\n"),
        context: ours.as_ref().map(provenance::context_of),
        comfyui,
        has_comfyui_workflow: found.texts.contains_key("workflow"),
    })
}
