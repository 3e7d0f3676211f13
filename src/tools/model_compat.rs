//! Model family tools: `identify_model_family` and `check_model_compatibility`. Local rules:
//! a model file found in the install's model folders is judged by its header (tensor names,
//! shapes, metadata; never its weights), any other name by its file name. ComfyUI need not
//! run.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::models::detect::{self, Component, DecidedBy, Verdict};
use crate::models::family::{self, Family, Modality};
use crate::models::locate::{Inspected, inspect_models};
use crate::registry::{Hints, ToolSpec, tool};

/// Workflow files larger than this are refused rather than read.
const MAX_WORKFLOW_BYTES: u64 = 32 * 1024 * 1024;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "identify_model_family",
            "Identify model family",
            "Tell which model family (SD1.5, SD2, SDXL/Pony/Illustrious, SD3, Flux, Wan, \
             HunyuanVideo, LTX-Video, Qwen-Image, HiDream, Hunyuan3D, audio) a model file belongs \
             to, with its native resolution, whether LoRAs apply, and which families it can't be \
             mixed with. When the file is in the ComfyUI model folders, its header (tensor names \
             and metadata, never the weights) decides and the kind of file (checkpoint, LoRA, \
             VAE, …) is reported; otherwise its name does. decided_by says which. Works offline.",
            Hints::LOCAL_READ,
            identify_model_family,
        ),
        tool(
            "check_model_compatibility",
            "Check model compatibility",
            "Check that models can be used together in one generation: give model file names, a \
             workflow file (workflow_path) or inline workflow JSON. Reports each model's family and \
             every conflicting pair (e.g. an SD1.5 LoRA on an SDXL checkpoint) with the reason and \
             a fix. Files found in the ComfyUI model folders are judged by their headers, others \
             by name. Names whose family is unknown are listed but not judged.",
            Hints::LOCAL_READ,
            check_model_compatibility,
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifyModelFamilyParams {
    /// A model file name, optionally with its folder, e.g. `sdxl_base.safetensors` or
    /// `loras/flux/style.safetensors`, or an absolute path inside the allowed folders. Found
    /// in the install's model folders, the file's header decides.
    #[schemars(length(min = 1, max = 1024))]
    pub model_name: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ModelFamilyReport {
    /// The name as given.
    pub model: String,
    /// Family key (`sd15`, `sdxl`, `flux`, …) or `unknown`.
    pub family: String,
    /// Human-readable family name.
    pub label: String,
    /// Native generation size (`WIDTHxHEIGHT`), null where it doesn't apply or is unknown.
    pub resolution: Option<String>,
    /// `image`, `video`, `3d` or `audio`; null when unknown.
    pub modality: Option<Modality>,
    /// Whether LoRAs load into this family.
    pub lora_compatible: bool,
    /// Labels of the families this model can't be combined with.
    pub incompatible_with: Vec<String>,
    /// The part of the name that points to a family; null when the name says nothing.
    pub matched: Option<String>,
    /// A word on what to do next.
    pub note: String,
    /// How the family was decided: `header` (the file's tensors or metadata),
    /// `gguf_metadata`, `file_name`, or `header_and_name_disagree` (the header's answer is
    /// reported).
    pub decided_by: DecidedBy,
    /// What the file is (`checkpoint`, `diffusion_model`, `lora`, `vae`, `text_encoder`,
    /// `controlnet`, `unknown`); null when the file wasn't read.
    pub component: Option<Component>,
    /// Size, task or sub-type the header shows (`14B, image-to-video`, `CLIP-L`, `refiner`).
    pub variant: Option<String>,
    /// What decided, in words: tensor names, metadata keys, or the name pattern.
    pub evidence: Vec<String>,
    /// The file whose header was read; null when judged by name.
    pub file: Option<String>,
}

async fn identify_model_family(
    cx: ToolContext,
    params: IdentifyModelFamilyParams,
) -> Result<ModelFamilyReport, ToolError> {
    let inspected = inspect(&cx, vec![params.model_name]).await?;
    let Some(one) = inspected.into_iter().next() else {
        return Err(ToolError::Internal("no model was judged".into()));
    };
    Ok(report_for(one))
}

/// Reads the named models' headers on a blocking thread (file system walks and reads).
async fn inspect(cx: &ToolContext, names: Vec<String>) -> Result<Vec<Inspected>, ToolError> {
    let app = cx.app.clone();
    tokio::task::spawn_blocking(move || inspect_models(app.install(), app.paths(), &names))
        .await
        .map_err(|error| ToolError::Internal(format!("reading model headers failed: {error}")))
}

/// The report `identify_model_family` returns for a name alone (no file read).
pub fn family_report(model_name: String) -> ModelFamilyReport {
    let verdict = detect::decide(&family::identify(&model_name), None);
    report_for(Inspected {
        name: model_name,
        file: None,
        verdict,
    })
}

/// The report for one judged model.
fn report_for(inspected: Inspected) -> ModelFamilyReport {
    let Inspected {
        name: model_name,
        file,
        verdict,
    } = inspected;
    let found = family::identify(&model_name);
    let Verdict {
        family,
        decided_by,
        component,
        variant,
        evidence,
        note: how,
    } = verdict;
    let file = file.map(|path| path.display().to_string());
    let with_how = |note: String| match &how {
        Some(how) => format!("{how} {note}"),
        None => note,
    };
    match family {
        Some(family) => ModelFamilyReport {
            model: model_name,
            family: family.key.into(),
            label: family.label.into(),
            resolution: family.resolution.map(Into::into),
            modality: Some(family.modality),
            lora_compatible: family.lora_compatible,
            incompatible_with: family::incompatible_with(family)
                .iter()
                .map(|f| f.label.to_string())
                .collect(),
            matched: found.matched.map(|m| format!("the name contains {m:?}")),
            note: with_how(match family.resolution {
                Some(size) => format!("Generate at about {size} for best results."),
                None => "Resolution doesn't apply to this family.".into(),
            }),
            decided_by,
            component,
            variant,
            evidence,
            file,
        },
        None => ModelFamilyReport {
            model: model_name,
            family: "unknown".into(),
            label: "Unknown".into(),
            resolution: None,
            modality: None,
            lora_compatible: false,
            incompatible_with: Vec::new(),
            matched: found.matched.map(|m| format!("the name contains {m:?}")),
            note: match how {
                Some(how) => how,
                None => "The name doesn't say which family this model belongs to, and the file \
                         wasn't found in the ComfyUI model folders to read its header. Shared \
                         text encoders (clip_l, t5xxl) and upscalers work across families; for \
                         other files check the model's download page."
                    .into(),
            },
            decided_by,
            component,
            variant,
            evidence,
            file,
        },
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckModelCompatibilityParams {
    /// Model file names to check together.
    #[schemars(length(max = 500))]
    pub models: Option<Vec<String>>,
    /// A workflow file (API or UI format); its loader inputs (ckpt_name, lora_name,
    /// vae_name, unet_name, clip_name, control_net_name, …) are checked.
    pub workflow_path: Option<String>,
    /// The same as `workflow_path`, but the workflow JSON itself (for clients that don't
    /// share the server's files).
    pub workflow: Option<Value>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Conflict {
    pub family_a: String,
    pub family_b: String,
    pub models_a: Vec<String>,
    pub models_b: Vec<String>,
    pub reason: String,
}

/// How one model was judged.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ModelDetail {
    /// `header`, `gguf_metadata`, `file_name` or `header_and_name_disagree`.
    pub decided_by: DecidedBy,
    /// What the file is; null when the file wasn't read.
    pub component: Option<Component>,
    pub variant: Option<String>,
    pub evidence: Vec<String>,
    /// The file whose header was read; null when judged by name.
    pub file: Option<String>,
    /// How it was decided, when that needs a word (an unreadable header, a name that
    /// disagrees with the file).
    pub note: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CompatibilityReport {
    /// True when no two recognised models conflict.
    pub compatible: bool,
    /// The main family when compatible (null if none was recognised or on conflict).
    pub family: Option<String>,
    pub family_label: Option<String>,
    /// Native generation size of the main family.
    pub resolution: Option<String>,
    /// Every recognised family, in the order first seen.
    pub families_detected: Vec<String>,
    /// Each model name and its family key (`unknown` when neither header nor name says).
    pub models: BTreeMap<String, String>,
    /// How each model's family was decided, and what its file is.
    pub details: BTreeMap<String, ModelDetail>,
    /// Every pair of families that can't be combined.
    pub conflicts: Vec<Conflict>,
    pub message: String,
    /// What to do about conflicts or unknown names; null when all is well.
    pub suggestion: Option<String>,
}

async fn check_model_compatibility(
    cx: ToolContext,
    params: CheckModelCompatibilityParams,
) -> Result<CompatibilityReport, ToolError> {
    let mut names: Vec<String> = params.models.unwrap_or_default();
    if let Some(raw) = params.workflow_path.as_deref() {
        let bytes = cx.app.paths().read_capped(raw, MAX_WORKFLOW_BYTES).await?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| ToolError::BadFile {
            path: raw.into(),
            reason: format!("it is not valid JSON ({e})"),
        })?;
        let found =
            crate::workflow::model_references(&doc).map_err(|reason| ToolError::BadFile {
                path: raw.into(),
                reason,
            })?;
        names.extend(found);
    }
    if let Some(doc) = params.workflow.as_ref() {
        let found = crate::workflow::model_references(doc).map_err(|reason| {
            ToolError::rejected(
                format!("The inline workflow can't be read: {reason}."),
                "Pass the workflow JSON as ComfyUI saves it (API or UI format).",
            )
        })?;
        names.extend(found);
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.trim().is_empty() && seen.insert(n.clone()));
    if names.is_empty() {
        return Err(ToolError::rejected(
            "No models to check.",
            "Pass model file names in `models`, a workflow file in `workflow_path`, or the \
             workflow JSON in `workflow`.",
        ));
    }
    let inspected = inspect(&cx, names).await?;
    Ok(judge(inspected))
}

fn judge(inspected: Vec<Inspected>) -> CompatibilityReport {
    let mut by_family: Vec<(&'static Family, Vec<String>)> = Vec::new();
    let mut unknown = Vec::new();
    let mut models = BTreeMap::new();
    let mut details = BTreeMap::new();
    for Inspected {
        name,
        file,
        verdict,
    } in inspected
    {
        let found = verdict.family;
        models.insert(name.clone(), found.map_or("unknown", |f| f.key).to_string());
        details.insert(
            name.clone(),
            ModelDetail {
                decided_by: verdict.decided_by,
                component: verdict.component,
                variant: verdict.variant,
                evidence: verdict.evidence,
                file: file.map(|path| path.display().to_string()),
                note: verdict.note,
            },
        );
        let name = &name;
        match found {
            Some(f) => match by_family.iter_mut().find(|(g, _)| g.key == f.key) {
                Some((_, members)) => members.push(name.clone()),
                None => by_family.push((f, vec![name.clone()])),
            },
            None => unknown.push(name.clone()),
        }
    }
    let families_detected = by_family.iter().map(|(f, _)| f.key.to_string()).collect();

    let mut conflicts = Vec::new();
    for (i, (a, models_a)) in by_family.iter().enumerate() {
        for (b, models_b) in &by_family[i + 1..] {
            if !family::compatible(a, b) {
                conflicts.push(Conflict {
                    family_a: a.key.into(),
                    family_b: b.key.into(),
                    models_a: models_a.clone(),
                    models_b: models_b.clone(),
                    reason: family::conflict_reason(a, b),
                });
            }
        }
    }
    let unknown_note = (!unknown.is_empty()).then(|| {
        format!(
            "{} model(s) have no family that could be told and were not judged: {}. Shared \
             text encoders (clip_l, t5xxl) and upscalers are fine with any family.",
            unknown.len(),
            unknown.join(", ")
        )
    });

    if !conflicts.is_empty() {
        let labels: Vec<&str> = by_family.iter().map(|(f, _)| f.label).collect();
        return CompatibilityReport {
            compatible: false,
            family: None,
            family_label: None,
            resolution: None,
            families_detected,
            models,
            details,
            message: format!(
                "These models don't work together: they come from {} families ({}).",
                labels.len(),
                labels.join(", ")
            ),
            suggestion: Some(format!(
                "Pick one family and swap the other models for versions made for it: for \
                 example, to keep {} ({}), replace {} with {} versions. identify_model_family \
                 tells you any model's family.{}",
                label_of(&conflicts[0].family_a),
                conflicts[0].models_a.join(", "),
                conflicts[0].models_b.join(", "),
                label_of(&conflicts[0].family_a),
                unknown_note.map(|n| format!(" {n}")).unwrap_or_default()
            )),
            conflicts,
        };
    }

    let main = by_family
        .iter()
        .map(|(f, _)| *f)
        .find(|f| matches!(f.modality, Modality::Image | Modality::Video))
        .or_else(|| by_family.first().map(|(f, _)| *f));
    let message = match main {
        None => "No family could be told for any of these models, so nothing could be judged."
            .to_string(),
        Some(f) if by_family.len() == 1 => format!(
            "All recognised models are {}{}.",
            f.label,
            f.resolution
                .map(|r| format!(" (native {r})"))
                .unwrap_or_default()
        ),
        Some(_) => format!(
            "These models can be used together: {}.",
            by_family
                .iter()
                .map(|(f, _)| f.label)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    CompatibilityReport {
        compatible: true,
        family: main.map(|f| f.key.to_string()),
        family_label: main.map(|f| f.label.to_string()),
        resolution: main.and_then(|f| f.resolution).map(Into::into),
        families_detected,
        models,
        details,
        conflicts,
        message,
        suggestion: unknown_note,
    }
}

fn label_of(key: &str) -> &'static str {
    family::by_key(key).map_or("unknown", |f| f.label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Inspected> {
        let policy = crate::paths::PathPolicy::new(Vec::new());
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        inspect_models(None, &policy, &list)
    }

    #[test]
    fn one_family_is_compatible_with_its_resolution() {
        let report = judge(names(&[
            "sdxl_base.safetensors",
            "pony_style_lora.safetensors",
        ]));
        assert!(report.compatible);
        assert_eq!(report.family.as_deref(), Some("sdxl"));
        assert_eq!(report.resolution.as_deref(), Some("1024x1024"));
        assert!(report.conflicts.is_empty());
        assert!(report.suggestion.is_none());
    }

    #[test]
    fn mixed_families_conflict_with_both_sides_named() {
        let report = judge(names(&[
            "v1-5-pruned.safetensors",
            "sdxl_lora.safetensors",
            "flux1-dev.safetensors",
        ]));
        assert!(!report.compatible);
        assert_eq!(report.conflicts.len(), 3);
        let first = &report.conflicts[0];
        assert_eq!(
            (first.family_a.as_str(), first.family_b.as_str()),
            ("sd15", "sdxl")
        );
        assert_eq!(first.models_a, ["v1-5-pruned.safetensors"]);
        assert!(
            report
                .suggestion
                .as_deref()
                .is_some_and(|s| s.contains("identify_model_family"))
        );
    }

    #[test]
    fn unknown_names_are_ignored_when_deciding_but_reported() {
        let report = judge(names(&["flux1-dev.safetensors", "t5xxl_fp16.safetensors"]));
        assert!(report.compatible);
        assert_eq!(report.models["t5xxl_fp16.safetensors"], "unknown");
        assert!(
            report
                .suggestion
                .as_deref()
                .is_some_and(|s| s.contains("t5xxl"))
        );
        let report = judge(names(&["mystery.safetensors"]));
        assert!(report.compatible);
        assert!(report.family.is_none());
    }

    #[test]
    fn audio_alongside_an_image_family_is_fine() {
        let report = judge(names(&["bark_large.pt", "sdxl_base.safetensors"]));
        assert!(report.compatible);
        assert_eq!(report.family.as_deref(), Some("sdxl"));
        assert_eq!(report.families_detected, ["audio", "sdxl"]);
    }
}
