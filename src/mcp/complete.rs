//! `completion/complete`: argument completion for the prompts and the resource templates.
//! Node class names, a node's input names, model folders and files, template names,
//! session names, knowledge topics and the prompts' fixed choices, ranked: exact, then
//! prefix, then word start, then substring, then the letters in order; shorter first
//! within a rank. Everything comes from caches (the node list, the install index), so an
//! answer takes microseconds once ComfyUI's node list has been read.

use rmcp::model::{CompleteRequestParams, CompleteResult, CompletionInfo, ErrorData, Reference};

use super::prompts;
use super::resources::{Viewer, knowledge_topics};

/// Where an argument's values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    NodeClasses,
    /// The inputs of a class (from the request's context).
    NodeInputs {
        class: Option<String>,
    },
    ModelFolders,
    ModelFiles {
        folder: &'static str,
    },
    Templates,
    Sessions,
    KnowledgeTopics,
    Fixed(&'static [&'static str]),
    /// Free text: nothing to suggest.
    Free,
}

/// The loader input that lists each model folder's files in ComfyUI's node list, for
/// when the ComfyUI folder itself is not on this machine.
const FOLDER_LOADERS: &[(&str, &str, &str)] = &[
    ("checkpoints", "CheckpointLoaderSimple", "ckpt_name"),
    ("loras", "LoraLoader", "lora_name"),
    ("vae", "VAELoader", "vae_name"),
    ("controlnet", "ControlNetLoader", "control_net_name"),
    ("upscale_models", "UpscaleModelLoader", "model_name"),
    ("clip", "CLIPLoader", "clip_name"),
    ("text_encoders", "CLIPLoader", "clip_name"),
    ("unet", "UNETLoader", "unet_name"),
    ("diffusion_models", "UNETLoader", "unet_name"),
    ("clip_vision", "CLIPVisionLoader", "clip_name"),
    ("style_models", "StyleModelLoader", "style_model_name"),
];

/// Answers one completion request.
pub async fn complete(
    viewer: &Viewer,
    request: &CompleteRequestParams,
) -> Result<CompleteResult, ErrorData> {
    let argument = &request.argument.name;
    let context = |name: &str| {
        request
            .context
            .as_ref()
            .and_then(|context| context.get_argument(name))
            .cloned()
    };
    let source = match &request.r#ref {
        Reference::Prompt(prompt) => prompts::argument_source(&prompt.name, argument)?,
        Reference::Resource(template) => template_source(&template.uri, argument, context),
        _ => Source::Free,
    };
    let candidates = candidates(viewer, source).await;
    Ok(CompleteResult::new(rank(
        candidates.iter().map(String::as_str),
        &request.argument.value,
    )))
}

/// The source of a resource template's variable.
fn template_source(
    template: &str,
    variable: &str,
    context: impl Fn(&str) -> Option<String>,
) -> Source {
    match (template, variable) {
        (t, "session") if t.starts_with("comfyui://session/") => Source::Sessions,
        ("comfyui://nodes/{class}" | "comfyui://nodes/{class}/{input}", "class") => {
            Source::NodeClasses
        }
        ("comfyui://nodes/{class}/{input}", "input") => Source::NodeInputs {
            class: context("class"),
        },
        ("comfyui://models/{folder}", "folder") => Source::ModelFolders,
        ("comfyui://templates/{name}", "name") => Source::Templates,
        ("comfyui://knowledge/{topic}", "topic") => Source::KnowledgeTopics,
        ("comfyui://output/{type}/{+path}", "type") => Source::Fixed(&["output", "temp", "input"]),
        _ => Source::Free,
    }
}

/// Every value a source offers (unranked).
pub async fn candidates(viewer: &Viewer, source: Source) -> Vec<String> {
    match source {
        Source::NodeClasses => match node_index(viewer).await {
            Some(index) => index.nodes().iter().map(|node| node.name.clone()).collect(),
            None => Vec::new(),
        },
        Source::NodeInputs { class } => {
            let (Some(class), Some(index)) = (class, node_index(viewer).await) else {
                return Vec::new();
            };
            index
                .find(&class)
                .map(|node| {
                    node.inputs
                        .iter()
                        .filter(|input| input.section != crate::comfy::nodes::Section::Hidden)
                        .map(|input| input.name.clone())
                        .collect()
                })
                .unwrap_or_default()
        }
        Source::ModelFolders => match local_models(viewer).await {
            Some(view) => view.inventory.kinds.keys().cloned().collect(),
            None => FOLDER_LOADERS
                .iter()
                .map(|(folder, ..)| (*folder).to_string())
                .collect(),
        },
        Source::ModelFiles { folder } => model_files(viewer, folder).await,
        Source::Templates => crate::workflow::templates::names(),
        Source::Sessions => {
            let mut names = viewer.app.named_sessions().names();
            if !viewer.stateless {
                // Ranking removes the duplicate when it is also a named session.
                names.insert(0, viewer.own.scope().as_str().to_string());
            }
            names
        }
        Source::KnowledgeTopics => knowledge_topics().map(String::from).collect(),
        Source::Fixed(values) => values.iter().map(|v| (*v).to_string()).collect(),
        Source::Free => Vec::new(),
    }
}

/// ComfyUI's node list when it can be had (cached after the first read).
async fn node_index(viewer: &Viewer) -> Option<std::sync::Arc<crate::comfy::nodes::NodeIndex>> {
    let client = viewer.app.comfy().client().await;
    client.nodes(false).await.ok()
}

/// The local install's models (cached; scanned on a blocking thread when a folder changed).
async fn local_models(viewer: &Viewer) -> Option<crate::install::ModelsView> {
    let app = viewer.app.clone();
    tokio::task::spawn_blocking(move || app.install_index().models().ok())
        .await
        .ok()
        .flatten()
}

async fn model_files(viewer: &Viewer, folder: &str) -> Vec<String> {
    if let Some(view) = local_models(viewer).await
        && let Some((_, models)) = view.inventory.kind(folder)
    {
        return models.files.iter().map(|file| file.name.clone()).collect();
    }
    // No local folder: ComfyUI's own loaders list the files it can see.
    let Some((_, class, input)) = FOLDER_LOADERS.iter().find(|(f, ..)| *f == folder) else {
        return Vec::new();
    };
    let Some(index) = node_index(viewer).await else {
        return Vec::new();
    };
    let Some(input) = index.get(class).and_then(|node| node.input(input)) else {
        return Vec::new();
    };
    match &input.kind {
        crate::comfy::nodes::InputType::Combo { choices, .. } => choices
            .iter()
            .filter_map(|choice| choice.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// How well `candidate` matches what was typed (lower is better), or `None`.
fn score(candidate: &str, typed: &str) -> Option<u8> {
    if typed.is_empty() {
        return Some(0);
    }
    let lower = candidate.to_lowercase();
    if lower == typed {
        return Some(0);
    }
    if lower.starts_with(typed) {
        return Some(1);
    }
    if let Some(position) = lower.find(typed) {
        let at_word_start = word_starts(candidate).any(|start| start == position);
        return Some(if at_word_start { 2 } else { 3 });
    }
    let mut letters = lower.chars();
    typed
        .chars()
        .all(|wanted| letters.any(|c| c == wanted))
        .then_some(4)
}

/// Byte offsets where a word starts: after a separator, or at a lower-to-upper change
/// (`KSamplerAdvanced` has words at 0, 8; `ckpt_name` at 0, 5).
fn word_starts(name: &str) -> impl Iterator<Item = usize> + '_ {
    let mut previous: Option<char> = None;
    name.char_indices().filter_map(move |(index, c)| {
        let start = match previous {
            None => true,
            Some(p) => {
                (!p.is_alphanumeric() && c.is_alphanumeric())
                    || (p.is_lowercase() && c.is_uppercase())
                    || (p.is_alphabetic() && c.is_numeric())
            }
        };
        previous = Some(c);
        start.then_some(index)
    })
}

/// The best matches first, at most 100, with the total and whether more exist.
pub fn rank<'a>(candidates: impl Iterator<Item = &'a str>, typed: &str) -> CompletionInfo {
    let typed = typed.trim().to_lowercase();
    let mut scored: Vec<(u8, &str)> = candidates
        .filter_map(|candidate| score(candidate, &typed).map(|s| (s, candidate)))
        .collect();
    scored.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.len().cmp(&b.1.len()))
            .then_with(|| a.1.cmp(b.1))
    });
    scored.dedup_by(|a, b| a.1 == b.1);
    let total = scored.len();
    let values: Vec<String> = scored
        .into_iter()
        .take(CompletionInfo::MAX_VALUES)
        .map(|(_, value)| value.to_string())
        .collect();
    let has_more = total > values.len();
    CompletionInfo::with_pagination(values, u32::try_from(total).ok(), has_more).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(info: &CompletionInfo) -> Vec<&str> {
        info.values.iter().map(String::as_str).collect()
    }

    #[test]
    fn prefix_beats_word_start_beats_substring_beats_letters_in_order() {
        let names = [
            "KSamplerAdvanced",
            "KSampler",
            "SamplerCustom",
            "VideoLinearCFGGuidance",
            "ImageScale",
            "SamplerCustomAdvanced",
            "LatentUpscale",
        ];
        let ranked = rank(names.iter().copied(), "sampler");
        assert_eq!(
            values(&ranked),
            [
                "SamplerCustom",
                "SamplerCustomAdvanced",
                "KSampler",
                "KSamplerAdvanced"
            ]
        );
        let ranked = rank(names.iter().copied(), "ksa");
        assert_eq!(values(&ranked), ["KSampler", "KSamplerAdvanced"]);
        // Letters in order: "lup" finds LatentUpscale.
        assert_eq!(
            values(&rank(names.iter().copied(), "ltup")),
            ["LatentUpscale"]
        );
        // Case does not matter; an exact name comes first.
        assert_eq!(
            values(&rank(names.iter().copied(), "KSAMPLER"))[0],
            "KSampler"
        );
    }

    #[test]
    fn word_starts_follow_separators_and_case_changes() {
        assert_eq!(word_starts("KSamplerAdvanced").collect::<Vec<_>>(), [0, 8]);
        assert_eq!(word_starts("ckpt_name").collect::<Vec<_>>(), [0, 5]);
        assert_eq!(
            word_starts("sd_xl_base_1.0").collect::<Vec<_>>(),
            [0, 3, 6, 11, 13]
        );
        let ranked = rank(["ckpt_name", "vae_name", "unnamed"].into_iter(), "name");
        assert_eq!(values(&ranked), ["vae_name", "ckpt_name", "unnamed"]);
    }

    #[test]
    fn answers_are_capped_at_100_with_the_total() {
        let names: Vec<String> = (0..250).map(|n| format!("Node{n:03}")).collect();
        let ranked = rank(names.iter().map(String::as_str), "node");
        assert_eq!(ranked.values.len(), 100);
        assert_eq!(ranked.total, Some(250));
        assert_eq!(ranked.has_more, Some(true));
        assert_eq!(ranked.values[0], "Node000");
        let ranked = rank(names.iter().map(String::as_str), "node249");
        assert_eq!(values(&ranked), ["Node249"]);
        assert_eq!(ranked.has_more, Some(false));
    }

    #[test]
    fn empty_input_lists_everything_shortest_first() {
        let ranked = rank(["bbb", "a", "cc"].into_iter(), "");
        assert_eq!(values(&ranked), ["a", "cc", "bbb"]);
        assert!(rank(["a"].into_iter(), "zzz").values.is_empty());
    }

    #[test]
    fn template_variables_have_their_sources() {
        let none = |_: &str| None;
        assert_eq!(
            template_source("comfyui://session/{session}/diff", "session", none),
            Source::Sessions
        );
        assert_eq!(
            template_source("comfyui://nodes/{class}/{input}", "input", |name: &str| {
                (name == "class").then(|| "KSampler".to_string())
            }),
            Source::NodeInputs {
                class: Some("KSampler".into())
            }
        );
        assert_eq!(
            template_source("comfyui://models/{folder}", "folder", none),
            Source::ModelFolders
        );
        assert_eq!(
            template_source("comfyui://unknown/{x}", "x", none),
            Source::Free
        );
    }
}
