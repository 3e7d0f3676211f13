//! How much GPU memory a workflow needs, stage by stage. ComfyUI loads the text encoders,
//! then the diffusion model, then the VAE, and unloads what no longer fits, so the peak is
//! the largest stage, and everything fits at once only when the sum does.
//!
//! The figures are estimates: weights from the real files when the models folder is on this
//! machine (else typical sizes for the family and precision), activations from the latent
//! size, batch and frames with per-family factors measured on typical runs. They are meant
//! for decisions (fits, tight, does not fit), not for accounting.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A model a loader brings in.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ModelLoad {
    pub node_id: String,
    pub class_type: String,
    pub file: String,
    /// `diffusion`, `text_encoder`, `vae`, `lora`, `checkpoint` (all three), `other`.
    pub role: String,
    /// The family its name points to (`sdxl`, `flux`…), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Weights in GiB.
    pub size_gib: f64,
    /// `file` (measured on disk) or `typical` (for the family and precision).
    pub size_source: String,
}

/// What the estimate is built from.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkflowFacts {
    pub total_nodes: usize,
    pub loaders: Vec<ModelLoad>,
    /// The family the workflow is built around (the diffusion model's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    pub width: u32,
    pub height: u32,
    pub batch: u32,
    /// Video frames (1 for images).
    pub frames: u32,
    pub steps: Option<u64>,
    /// Nodes that decode latents to pixels.
    pub vae_decoders: Vec<String>,
    /// Whether a tiled decoder is already used.
    pub tiled_decode: bool,
    /// Sampler nodes.
    pub samplers: Vec<String>,
    /// Empty-latent nodes (where the size and batch are set).
    pub latent_nodes: Vec<String>,
}

/// The memory the workflow needs.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Estimate {
    /// GiB per stage: text_encoders, sampling (model + activations), vae_decode.
    pub stages: BTreeMap<String, f64>,
    /// The largest stage.
    pub peak_gib: f64,
    /// Everything loaded at once (what runs without reloading between stages).
    pub all_resident_gib: f64,
    /// `fits`, `tight` (peak above 85% of usable memory), `does_not_fit`, or `unknown` when
    /// the machine's memory is unknown.
    pub verdict: String,
    pub usable_gib: f64,
    /// The batch that fits with the current size, per the estimate.
    pub max_batch: u32,
}

/// Typical sizes (GiB, 16-bit weights) when the file isn't here to measure.
fn typical_gib(family: Option<&str>, role: &str) -> f64 {
    match (family.unwrap_or(""), role) {
        ("sd15", "checkpoint") => 2.0,
        ("sd2", "checkpoint") => 2.5,
        ("sdxl", "checkpoint") => 6.5,
        ("sd3", "checkpoint") => 10.0,
        ("sd3", "diffusion") => 8.0,
        ("flux", "checkpoint") => 33.0,
        ("flux", "diffusion") => 22.2,
        ("wan", "diffusion") => 26.0,
        ("hunyuan_video", "diffusion") => 24.0,
        ("ltxv", "diffusion") => 3.8,
        ("qwen_image", "diffusion") => 38.0,
        ("hidream", "diffusion") => 32.0,
        (_, "text_encoder") => 4.5,
        (_, "vae") => 0.3,
        (_, "lora") => 0.2,
        (_, "diffusion") => 6.0,
        (_, "checkpoint") => 6.5,
        _ => 1.0,
    }
}

/// Typical 16-bit sizes of the common text encoders, told by their file names.
fn typical_text_encoder_gib(file: &str) -> Option<f64> {
    let lower = file.to_lowercase();
    let sizes = [
        ("umt5", 10.6),
        ("t5xxl", 9.1),
        ("t5-xxl", 9.1),
        ("qwen", 15.5),
        ("llama", 15.0),
        ("gemma", 5.0),
        ("clip_g", 1.3),
        ("clip_l", 0.23),
    ];
    sizes
        .iter()
        .find(|(name, _)| lower.contains(name))
        .map(|(_, gib)| *gib)
}

/// GiB of activations per megapixel per image (per latent frame for video) while sampling.
fn activations_per_mp(family: Option<&str>) -> f64 {
    match family.unwrap_or("") {
        "sd15" | "sd2" => 1.2,
        "sdxl" => 1.5,
        "sd3" => 1.8,
        "flux" | "hidream" | "qwen_image" => 2.2,
        "wan" | "hunyuan_video" | "ltxv" => 0.9,
        _ => 1.6,
    }
}

/// GiB a full (untiled) VAE decode needs per megapixel per image or frame.
const DECODE_PER_MP: f64 = 2.6;
/// What a tiled decode needs, whatever the size.
const TILED_DECODE_GIB: f64 = 1.2;
/// CUDA context, ComfyUI's own buffers.
const OVERHEAD_GIB: f64 = 0.8;

/// The loader classes and the input naming their file, with the role of what they load.
fn loader(class: &str) -> Option<(&'static str, &'static str)> {
    Some(match class {
        "CheckpointLoaderSimple" | "CheckpointLoader" | "ImageOnlyCheckpointLoader" => {
            ("ckpt_name", "checkpoint")
        }
        "UNETLoader" | "UnetLoaderGGUF" => ("unet_name", "diffusion"),
        "CLIPLoader" | "CLIPLoaderGGUF" => ("clip_name", "text_encoder"),
        "DualCLIPLoader" => ("clip_name1", "text_encoder"),
        "TripleCLIPLoader" => ("clip_name1", "text_encoder"),
        "VAELoader" => ("vae_name", "vae"),
        "LoraLoader" | "LoraLoaderModelOnly" => ("lora_name", "lora"),
        "ControlNetLoader" => ("control_net_name", "other"),
        "UpscaleModelLoader" => ("model_name", "other"),
        "CLIPVisionLoader" => ("clip_name", "other"),
        _ => return None,
    })
}

/// Reads the facts from an API-format workflow. `file_size` gives a model file's size in
/// bytes when it can be measured (folder kind, file name).
pub fn facts(workflow: &Value, file_size: &dyn Fn(&str, &str) -> Option<u64>) -> WorkflowFacts {
    let empty = serde_json::Map::new();
    let nodes = workflow.as_object().unwrap_or(&empty);
    let mut ids: Vec<&String> = nodes.keys().collect();
    ids.sort_by(|a, b| crate::workflow::model::compare_ids(a, b));
    let mut facts = WorkflowFacts {
        total_nodes: nodes.len(),
        loaders: Vec::new(),
        family: None,
        width: 0,
        height: 0,
        batch: 1,
        frames: 1,
        steps: None,
        vae_decoders: Vec::new(),
        tiled_decode: false,
        samplers: Vec::new(),
        latent_nodes: Vec::new(),
    };
    for id in ids {
        let node = &nodes[id];
        let class = node.get("class_type").and_then(Value::as_str).unwrap_or("");
        let inputs = node.get("inputs").cloned().unwrap_or(Value::Null);
        let int = |key: &str| inputs.get(key).and_then(Value::as_u64);
        if let Some((input, role)) = loader(class) {
            let files: Vec<&str> = ["", "2", "3"]
                .iter()
                .filter_map(|suffix| {
                    let key = if suffix.is_empty() {
                        input.to_string()
                    } else {
                        input.replace('1', suffix)
                    };
                    inputs.get(&key).and_then(Value::as_str)
                })
                .collect();
            for file in files.into_iter().collect::<std::collections::BTreeSet<_>>() {
                let family = crate::models::family::identify(file)
                    .family
                    .map(|family| family.key.to_string());
                let folder = match role {
                    "checkpoint" => "checkpoints",
                    "diffusion" => "diffusion_models",
                    "text_encoder" => "text_encoders",
                    "vae" => "vae",
                    "lora" => "loras",
                    _ => "",
                };
                let measured = file_size(folder, file);
                let typical = || match role {
                    "text_encoder" => typical_text_encoder_gib(file)
                        .unwrap_or_else(|| typical_gib(family.as_deref(), role)),
                    _ => typical_gib(family.as_deref(), role),
                };
                let mut size_gib = measured
                    .map(|bytes| bytes as f64 / GIB)
                    .unwrap_or_else(typical);
                let fp8 = inputs
                    .get("weight_dtype")
                    .and_then(Value::as_str)
                    .is_some_and(|dtype| dtype.starts_with("fp8"));
                let file_lower = file.to_lowercase();
                if measured.is_none() && (fp8 || file_lower.contains("fp8")) {
                    size_gib /= 2.0;
                } else if measured.is_some() && fp8 && !file_lower.contains("fp8") {
                    // A 16-bit file loaded as fp8 takes half its size on the GPU.
                    size_gib /= 2.0;
                }
                if matches!(role, "checkpoint" | "diffusion") && facts.family.is_none() {
                    facts.family.clone_from(&family);
                }
                facts.loaders.push(ModelLoad {
                    node_id: id.clone(),
                    class_type: class.to_string(),
                    file: file.to_string(),
                    role: role.to_string(),
                    family,
                    size_gib: round2(size_gib),
                    size_source: if measured.is_some() {
                        "file"
                    } else {
                        "typical"
                    }
                    .into(),
                });
            }
        }
        match class {
            "EmptyLatentImage"
            | "EmptySD3LatentImage"
            | "EmptyHunyuanLatentVideo"
            | "EmptyLTXVLatentVideo"
            | "EmptyMochiLatentVideo"
            | "WanImageToVideo" => {
                facts.latent_nodes.push(id.clone());
                facts.width = facts.width.max(int("width").unwrap_or(0) as u32);
                facts.height = facts.height.max(int("height").unwrap_or(0) as u32);
                facts.batch = facts.batch.max(int("batch_size").unwrap_or(1) as u32);
                if let Some(length) = int("length") {
                    // Video latents hold one frame per four, plus the first.
                    facts.frames = facts.frames.max((length as u32).div_ceil(4) + 1);
                }
            }
            "KSampler" | "KSamplerAdvanced" | "SamplerCustom" | "SamplerCustomAdvanced" => {
                facts.samplers.push(id.clone());
                if let Some(steps) = int("steps") {
                    facts.steps = Some(facts.steps.map_or(steps, |s: u64| s.max(steps)));
                }
            }
            "VAEDecode" => facts.vae_decoders.push(id.clone()),
            "VAEDecodeTiled" => {
                facts.vae_decoders.push(id.clone());
                facts.tiled_decode = true;
            }
            _ => {}
        }
    }
    facts
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The memory `facts` needs against `usable_gib`.
pub fn estimate(facts: &WorkflowFacts, usable_gib: f64) -> Estimate {
    let weights = |roles: &[&str]| -> f64 {
        facts
            .loaders
            .iter()
            .filter(|load| roles.contains(&load.role.as_str()))
            .map(|load| load.size_gib)
            .sum()
    };
    let checkpoint = weights(&["checkpoint"]);
    let family = facts.family.as_deref();
    let megapixels = f64::from(facts.width.max(64)) * f64::from(facts.height.max(64)) / 1_048_576.0;
    let images = f64::from(facts.batch.max(1)) * f64::from(facts.frames.max(1));
    let per_image = activations_per_mp(family) * megapixels;
    // A checkpoint carries all three parts; most of it is the diffusion model.
    let diffusion = weights(&["diffusion", "lora"]) + checkpoint * 0.8;
    let text = weights(&["text_encoder"]) + checkpoint * 0.15;
    let vae = weights(&["vae"]) + checkpoint * 0.05;
    let decode = if facts.tiled_decode {
        TILED_DECODE_GIB
    } else {
        DECODE_PER_MP * megapixels * images
    };
    let mut stages = BTreeMap::new();
    stages.insert("text_encoders".to_string(), round2(text + OVERHEAD_GIB));
    let sampling = diffusion + per_image * images + OVERHEAD_GIB;
    stages.insert("sampling".to_string(), round2(sampling));
    stages.insert(
        "vae_decode".to_string(),
        round2(vae + decode + OVERHEAD_GIB),
    );
    let peak = stages.values().copied().fold(0.0, f64::max);
    let all_resident = round2(text + diffusion + vae + per_image * images + OVERHEAD_GIB);
    let verdict = if usable_gib <= 0.0 {
        "unknown"
    } else if peak > usable_gib {
        "does_not_fit"
    } else if peak > usable_gib * 0.85 {
        "tight"
    } else {
        "fits"
    };
    let per_batch = (per_image * f64::from(facts.frames.max(1))).max(0.01);
    let room = usable_gib - diffusion - OVERHEAD_GIB;
    let max_batch = if room <= 0.0 {
        0
    } else {
        ((room / per_batch).floor() as u32).clamp(0, 64)
    };
    Estimate {
        stages,
        peak_gib: round2(peak),
        all_resident_gib: all_resident,
        verdict: verdict.into(),
        usable_gib: round2(usable_gib),
        max_batch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none(_: &str, _: &str) -> Option<u64> {
        None
    }

    pub(crate) fn sdxl(width: u32, height: u32, batch: u32) -> Value {
        json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
            "3": {"class_type": "KSampler", "inputs": {"steps": 30, "model": ["4", 0], "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}}
        })
    }

    #[test]
    fn an_sdxl_run_fits_a_big_card_and_not_a_small_one() {
        let facts = facts(&sdxl(1024, 1024, 1), &none);
        assert_eq!(facts.family.as_deref(), Some("sdxl"));
        assert_eq!((facts.width, facts.height, facts.batch), (1024, 1024, 1));
        assert_eq!(facts.vae_decoders, ["8"]);
        assert_eq!(facts.steps, Some(30));
        let big = estimate(&facts, 22.0);
        assert_eq!(big.verdict, "fits");
        assert!(big.peak_gib > 5.0 && big.peak_gib < 10.0, "{big:?}");
        assert!(big.max_batch >= 8, "{big:?}");
        let small = estimate(&facts, 4.0);
        assert_eq!(small.verdict, "does_not_fit");
        let unknown = estimate(&facts, 0.0);
        assert_eq!(unknown.verdict, "unknown");
        assert_eq!(unknown.max_batch, 0);
    }

    #[test]
    fn size_batch_and_tiling_move_the_decode_stage() {
        let big = facts(&sdxl(2048, 2048, 4), &none);
        let estimate_big = estimate(&big, 22.0);
        let mut tiled = big.clone();
        tiled.tiled_decode = true;
        let estimate_tiled = estimate(&tiled, 22.0);
        assert!(estimate_big.stages["vae_decode"] > estimate_tiled.stages["vae_decode"] * 10.0);
    }

    #[test]
    fn measured_files_win_and_fp8_halves_a_16_bit_file() {
        let workflow = json!({
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "fp8_e4m3fn"}},
            "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"}},
            "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}}
        });
        let sizes = |folder: &str, file: &str| match (folder, file) {
            ("diffusion_models", "flux1-dev.safetensors") => Some(23_802_932_552),
            _ => None,
        };
        let facts = facts(&workflow, &sizes);
        assert_eq!(facts.family.as_deref(), Some("flux"));
        let unet = &facts.loaders[0];
        assert_eq!(unet.size_source, "file");
        assert!((unet.size_gib - 11.08).abs() < 0.05, "{unet:?}");
        assert_eq!(
            facts
                .loaders
                .iter()
                .filter(|l| l.role == "text_encoder")
                .count(),
            2
        );
    }

    #[test]
    fn video_frames_count_as_images() {
        let workflow = json!({
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_14B_fp8_e4m3fn.safetensors", "weight_dtype": "default"}},
            "2": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 832, "height": 480, "length": 81, "batch_size": 1}}
        });
        let facts = facts(&workflow, &none);
        assert_eq!(facts.frames, 22);
        assert_eq!(facts.family.as_deref(), Some("wan"));
        assert_eq!(facts.loaders[0].size_gib, 13.0);
    }
}
