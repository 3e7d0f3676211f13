//! The optimizations worth making on this machine for this workflow, and the patches for the
//! ones that can be applied to the workflow itself. Launch flags, TensorRT engines and model
//! downloads can't be applied from here: those say what to do instead.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::estimate::{Estimate, WorkflowFacts};
use super::hardware::{Arch, Machine};
use crate::workflow::patch::{PatchOp, to_pointer};

/// One suggestion.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Optimization {
    pub id: String,
    pub name: String,
    /// `memory`, `speed` or `quality`.
    pub category: String,
    /// `high`, `medium` or `low`.
    pub impact: String,
    /// Why it applies here, on this machine.
    pub reason: String,
    /// What applying it changes (for the ones apply_optimization can make).
    pub change: String,
    /// Whether apply_optimization can make it (as an undoable edit).
    pub auto_apply: bool,
}

fn optimization(
    id: &str,
    name: &str,
    category: &str,
    impact: &str,
    reason: String,
    change: &str,
    auto_apply: bool,
) -> Optimization {
    Optimization {
        id: id.into(),
        name: name.into(),
        category: category.into(),
        impact: impact.into(),
        reason,
        change: change.into(),
        auto_apply,
    }
}

/// The ids apply_optimization knows.
pub const APPLICABLE: &[&str] = &[
    "vae_tiling",
    "fp8_weights",
    "batch_size",
    "step_optimization",
    "sampler_efficiency",
    "native_resolution",
];

/// The family's profile (steps, sampler, native size), or the general one.
fn profile(facts: &WorkflowFacts) -> crate::refine::profile::Profile {
    crate::refine::profile::resolve(facts.family.as_deref().unwrap_or("default")).0
}

fn native_area_ratio(facts: &WorkflowFacts, native: u32) -> f64 {
    let area = f64::from(facts.width.max(1)) * f64::from(facts.height.max(1));
    area / (f64::from(native) * f64::from(native))
}

/// The suggestions for this workflow on this machine, most useful first.
pub fn catalogue(
    machine: &Machine,
    facts: &WorkflowFacts,
    estimate: &Estimate,
) -> Vec<Optimization> {
    let mut list = Vec::new();
    let profile = profile(facts);
    let tight = matches!(estimate.verdict.as_str(), "tight" | "does_not_fit");
    let memory_known = estimate.verdict != "unknown";
    let has_latent = !facts.latent_nodes.is_empty();
    if !memory_known {
        list.push(optimization(
            "hardware_unknown",
            "The GPU couldn't be read",
            "memory",
            "high",
            "Neither NVIDIA's driver nor ComfyUI's /system_stats answered, so memory-based suggestions are left out. Start ComfyUI, or pass gpu_name and vram_gb to plan for a GPU.".into(),
            "",
            false,
        ));
    }
    if machine.arch == Arch::CpuOnly {
        list.push(optimization(
            "cpu_only",
            "Running on the CPU",
            "speed",
            "high",
            "ComfyUI has no GPU here: each step takes seconds to minutes. An SD 1.5 model at 512 px with few steps (or an LCM/Turbo model at 4-8 steps) is the practical choice.".into(),
            "",
            false,
        ));
    }
    if !facts.tiled_decode
        && !facts.vae_decoders.is_empty()
        && (tight
            || facts.width.max(facts.height) > 1536
            || estimate.stages["vae_decode"] > estimate.usable_gib * 0.6)
    {
        list.push(optimization(
            "vae_tiling",
            "Tiled VAE decode",
            "memory",
            "high",
            format!(
                "Decoding {}x{} x{} needs about {:.1} GiB at once; tiles need about 1.2 GiB.",
                facts.width, facts.height, facts.batch, estimate.stages["vae_decode"]
            ),
            "VAEDecode becomes VAEDecodeTiled (tile_size 512, overlap 64).",
            true,
        ));
    }
    let fp8_candidates = facts
        .loaders
        .iter()
        .any(|load| load.class_type == "UNETLoader" && !load.file.to_lowercase().contains("fp8"));
    if fp8_candidates && (machine.fast_fp8 || tight) && machine.arch.is_nvidia() {
        let reason = if machine.fast_fp8 {
            format!(
                "{} ({:?}) computes in fp8 natively: fp8 weights halve the model's memory and speed sampling up.",
                machine.gpu_name, machine.arch
            )
        } else {
            format!(
                "The model doesn't fit comfortably in {:.0} GiB; fp8 storage halves its weights (no speed-up on {:?}).",
                machine.vram_gib, machine.arch
            )
        };
        list.push(optimization(
            "fp8_weights",
            "fp8 model weights",
            if machine.fast_fp8 { "speed" } else { "memory" },
            "high",
            reason,
            "UNETLoader's weight_dtype becomes fp8_e4m3fn.",
            true,
        ));
    }
    if has_latent {
        if !memory_known {
            // A batch size can't be judged without the GPU's memory.
        } else if estimate.max_batch == 0 || (facts.batch > estimate.max_batch) {
            list.push(optimization(
                "batch_size",
                "A batch that fits",
                "memory",
                "high",
                format!(
                    "A batch of {} doesn't fit in {:.1} GiB at this size; {} does.",
                    facts.batch,
                    estimate.usable_gib,
                    estimate.max_batch.max(1)
                ),
                "batch_size on the empty latent is lowered to what fits.",
                true,
            ));
        } else if facts.batch == 1 && estimate.max_batch >= 4 && machine.arch != Arch::CpuOnly {
            list.push(optimization(
                "batch_size",
                "Use the spare memory for variations",
                "speed",
                "medium",
                format!(
                    "About {} images of this size fit at once; a batch costs far less than separate runs.",
                    estimate.max_batch.min(8)
                ),
                "batch_size on the empty latent is raised (params.batch_size, default 4).",
                true,
            ));
        }
        let ratio = native_area_ratio(facts, profile.native_resolution);
        if facts.width > 0 && !(0.5..=1.6).contains(&ratio) {
            list.push(optimization(
                "native_resolution",
                "Generate at the model's native size",
                "quality",
                if ratio > 1.6 { "high" } else { "medium" },
                format!(
                    "{}x{} is {:.1}x the area {} was trained at ({} px); far from it subjects repeat or detail turns mushy.",
                    facts.width, facts.height, ratio, profile.title, profile.native_resolution
                ),
                "The empty latent's size is set to the native area with the same aspect ratio (multiples of 64); upscale afterwards.",
                true,
            ));
        }
    }
    if let (Some(steps), Some(range)) = (facts.steps, profile.parameters.get("steps"))
        && steps as f64 > range.sweet_spot[1]
    {
        list.push(optimization(
            "step_optimization",
            "Fewer steps",
            "speed",
            "medium",
            format!(
                "{steps} steps; {} rarely gains past {} (its sweet spot is {}-{}).",
                profile.title, range.sweet_spot[1], range.sweet_spot[0], range.sweet_spot[1]
            ),
            "Every sampler's steps is set to the sweet spot's upper end (or params.steps).",
            true,
        ));
    }
    if !facts.samplers.is_empty() {
        list.push(optimization(
            "sampler_efficiency",
            "The family's efficient sampler",
            "speed",
            "low",
            format!(
                "{} converges well with {} in fewer steps.",
                profile.title,
                profile.samplers.get("default").map(String::as_str).unwrap_or("euler")
            ),
            "Every KSampler's sampler_name and scheduler are set to the family's defaults (or params.sampler / params.scheduler).",
            true,
        ));
    }
    if estimate.all_resident_gib > estimate.usable_gib
        && matches!(estimate.verdict.as_str(), "fits" | "tight")
    {
        list.push(optimization(
            "model_offloading",
            "Let ComfyUI swap models",
            "memory",
            "medium",
            format!(
                "All models together need about {:.1} GiB, more than the {:.1} GiB usable: ComfyUI will move them in and out between stages, which costs time each run.",
                estimate.all_resident_gib, estimate.usable_gib
            ),
            "",
            false,
        ));
    }
    if estimate.verdict == "does_not_fit" {
        list.push(optimization(
            "low_vram_mode",
            "Start ComfyUI in low-VRAM mode",
            "memory",
            "high",
            format!(
                "The largest stage needs about {:.1} GiB and {:.1} GiB is usable. Start ComfyUI with --lowvram (or --novram) so it streams weights, or use a smaller (fp8 or GGUF) model.",
                estimate.peak_gib, estimate.usable_gib
            ),
            "",
            false,
        ));
    }
    if machine.tensorrt_capable {
        list.push(optimization(
            "tensorrt",
            "TensorRT engines",
            "speed",
            "high",
            format!(
                "{} ({:?}) can run TensorRT engines, often 1.5-2x faster sampling for a fixed size; check_tensorrt_status says what is installed.",
                machine.gpu_name, machine.arch
            ),
            "",
            false,
        ));
    }
    if matches!(
        machine.arch,
        Arch::Ampere | Arch::Ada | Arch::Hopper | Arch::Blackwell
    ) {
        list.push(optimization(
            "attention",
            "Faster attention",
            "speed",
            "low",
            "Start ComfyUI with --use-sage-attention (with the sageattention package) or --use-flash-attention for faster attention on this GPU.".into(),
            "",
            false,
        ));
    }
    list
}

/// The patch that makes optimization `id` on `workflow`, or why it can't.
pub fn patch_for(
    id: &str,
    params: &Map<String, Value>,
    machine: &Machine,
    facts: &WorkflowFacts,
    estimate: &Estimate,
    workflow: &Value,
) -> Result<Vec<PatchOp>, String> {
    let profile = profile(facts);
    let nodes = workflow
        .as_object()
        .ok_or_else(|| "the workflow is not an API-format workflow".to_string())?;
    let class_of = |node_id: &str| {
        nodes
            .get(node_id)
            .and_then(|node| node.get("class_type"))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let set = |node_id: &str, input: &str, value: Value| {
        PatchOp::add(to_pointer(&[node_id, "inputs", input]), value)
    };
    let mut ops = Vec::new();
    match id {
        "vae_tiling" => {
            let tile = params
                .get("tile_size")
                .and_then(Value::as_u64)
                .unwrap_or(512);
            for node_id in facts
                .vae_decoders
                .iter()
                .filter(|id| class_of(id) == "VAEDecode")
            {
                ops.push(PatchOp::replace(
                    to_pointer(&[node_id, "class_type"]),
                    json!("VAEDecodeTiled"),
                ));
                ops.push(set(node_id, "tile_size", json!(tile)));
                ops.push(set(node_id, "overlap", json!(64)));
                ops.push(set(node_id, "temporal_size", json!(64)));
                ops.push(set(node_id, "temporal_overlap", json!(8)));
            }
        }
        "fp8_weights" => {
            let dtype = if machine.arch == Arch::Blackwell || machine.fast_fp8 {
                "fp8_e4m3fn_fast"
            } else {
                "fp8_e4m3fn"
            };
            let dtype = params
                .get("weight_dtype")
                .and_then(Value::as_str)
                .unwrap_or(dtype);
            for load in facts
                .loaders
                .iter()
                .filter(|load| load.class_type == "UNETLoader")
            {
                ops.push(set(&load.node_id, "weight_dtype", json!(dtype)));
            }
        }
        "batch_size" => {
            let wanted = params
                .get("batch_size")
                .and_then(Value::as_u64)
                .map(|b| b as u32);
            let batch = match wanted {
                Some(batch) => batch,
                None if estimate.verdict == "unknown" => {
                    return Err("the GPU's memory is unknown; pass params.batch_size".to_string());
                }
                None if facts.batch > estimate.max_batch => estimate.max_batch.max(1),
                None => 4.min(estimate.max_batch.max(1)),
            };
            if !(1..=64).contains(&batch) {
                return Err(format!("batch_size must be 1-64, not {batch}"));
            }
            for node_id in &facts.latent_nodes {
                if nodes[node_id].pointer("/inputs/batch_size").is_some() {
                    ops.push(set(node_id, "batch_size", json!(batch)));
                }
            }
        }
        "step_optimization" => {
            let default = profile
                .parameters
                .get("steps")
                .map_or(20.0, |range| range.sweet_spot[1]);
            let steps = params
                .get("steps")
                .and_then(Value::as_u64)
                .unwrap_or(default as u64);
            if !(1..=200).contains(&steps) {
                return Err(format!("steps must be 1-200, not {steps}"));
            }
            for node_id in &facts.samplers {
                if nodes[node_id].pointer("/inputs/steps").is_some() {
                    ops.push(set(node_id, "steps", json!(steps)));
                }
            }
        }
        "sampler_efficiency" => {
            let sampler = params
                .get("sampler")
                .and_then(Value::as_str)
                .map(String::from)
                .or_else(|| profile.samplers.get("default").cloned())
                .unwrap_or_else(|| "euler".into());
            let scheduler = params
                .get("scheduler")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| {
                    match facts.family.as_deref() {
                        Some(
                            "flux" | "sd3" | "wan" | "hunyuan_video" | "hidream" | "qwen_image",
                        ) => "simple",
                        _ => "karras",
                    }
                    .into()
                });
            for node_id in &facts.samplers {
                let inputs = nodes[node_id].get("inputs");
                if inputs.and_then(|i| i.get("sampler_name")).is_some() {
                    ops.push(set(node_id, "sampler_name", json!(sampler)));
                }
                if inputs.and_then(|i| i.get("scheduler")).is_some() {
                    ops.push(set(node_id, "scheduler", json!(scheduler)));
                }
            }
        }
        "native_resolution" => {
            let native = f64::from(profile.native_resolution);
            let aspect = f64::from(facts.width.max(1)) / f64::from(facts.height.max(1));
            let round64 = |value: f64| ((value / 64.0).round() as u32).max(1) * 64;
            let width = round64(native * aspect.sqrt());
            let height = round64(native / aspect.sqrt());
            for node_id in &facts.latent_nodes {
                let inputs = nodes[node_id].get("inputs");
                if inputs.and_then(|i| i.get("width")).is_some() {
                    ops.push(set(node_id, "width", json!(width)));
                    ops.push(set(node_id, "height", json!(height)));
                }
            }
        }
        other => {
            return Err(format!(
                "{other} can't be applied to the workflow{}",
                if APPLICABLE.contains(&other) {
                    String::new()
                } else {
                    format!(" (the ones that can: {})", APPLICABLE.join(", "))
                }
            ));
        }
    }
    if ops.is_empty() {
        return Err(format!("the workflow has no node {id} applies to"));
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::estimate::{estimate, facts};

    fn none(_: &str, _: &str) -> Option<u64> {
        None
    }

    fn sdxl(width: u32, height: u32, batch: u32, steps: u32) -> Value {
        json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": steps, "cfg": 7, "sampler_name": "euler", "scheduler": "normal", "denoise": 1, "model": ["4", 0], "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}}
        })
    }

    fn machine(name: &str, arch: Arch, vram: f64) -> Machine {
        Machine::described(name, arch, vram, None, 1, Some(32.0), "test".into())
    }

    fn ids(list: &[Optimization]) -> Vec<&str> {
        list.iter().map(|o| o.id.as_str()).collect()
    }

    #[test]
    fn suggestions_follow_the_hardware() {
        let workflow = sdxl(2048, 2048, 4, 60);
        let facts = facts(&workflow, &none);
        let small = machine("NVIDIA GeForce RTX 3060", Arch::Ampere, 8.0);
        let estimate_small = estimate(&facts, small.usable_vram_gib());
        let list = catalogue(&small, &facts, &estimate_small);
        for id in [
            "vae_tiling",
            "batch_size",
            "native_resolution",
            "step_optimization",
            "tensorrt",
        ] {
            assert!(ids(&list).contains(&id), "{id} in {:?}", ids(&list));
        }
        let big = machine("NVIDIA H200", Arch::Hopper, 141.0);
        let relaxed = sdxl(1024, 1024, 1, 30);
        let facts_relaxed = super::super::estimate::facts(&relaxed, &none);
        let estimate_big = estimate(&facts_relaxed, big.usable_vram_gib());
        let list = catalogue(&big, &facts_relaxed, &estimate_big);
        assert!(!ids(&list).contains(&"vae_tiling"), "{:?}", ids(&list));
        assert!(!ids(&list).contains(&"native_resolution"));
        let batch = list
            .iter()
            .find(|o| o.id == "batch_size")
            .expect("room for a batch");
        assert_eq!(batch.category, "speed");
        let cpu = machine("cpu", Arch::CpuOnly, 0.0);
        let estimate_cpu = estimate(&facts_relaxed, cpu.usable_vram_gib());
        let list = catalogue(&cpu, &facts_relaxed, &estimate_cpu);
        assert_eq!(list[0].id, "cpu_only");
        assert!(!ids(&list).contains(&"tensorrt") && !ids(&list).contains(&"attention"));
    }

    #[test]
    fn fp8_is_offered_for_speed_on_ada_and_for_memory_on_ampere_only_when_tight() {
        let workflow = json!({
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
            "2": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}}
        });
        let facts = facts(&workflow, &none);
        let ada = machine("NVIDIA GeForce RTX 4090", Arch::Ada, 24.0);
        let list = catalogue(&ada, &facts, &estimate(&facts, ada.usable_vram_gib()));
        let fp8 = list.iter().find(|o| o.id == "fp8_weights").expect("fp8");
        assert_eq!(fp8.category, "speed");
        let ampere_big = machine("NVIDIA A100-SXM4-80GB", Arch::Ampere, 80.0);
        let list = catalogue(
            &ampere_big,
            &facts,
            &estimate(&facts, ampere_big.usable_vram_gib()),
        );
        assert!(!ids(&list).contains(&"fp8_weights"));
        let ampere_small = machine("NVIDIA GeForce RTX 3090", Arch::Ampere, 24.0);
        let list = catalogue(
            &ampere_small,
            &facts,
            &estimate(&facts, ampere_small.usable_vram_gib()),
        );
        let fp8 = list
            .iter()
            .find(|o| o.id == "fp8_weights")
            .expect("fp8 when tight");
        assert_eq!(fp8.category, "memory");
        let ops = patch_for(
            "fp8_weights",
            &Map::new(),
            &ada,
            &facts,
            &estimate(&facts, 22.0),
            &workflow,
        )
        .expect("patch");
        assert_eq!(ops.len(), 1);
    }

    #[test]
    fn patches_edit_the_right_inputs_and_refuse_what_they_cannot() {
        let workflow = sdxl(2048, 1024, 8, 60);
        let facts = facts(&workflow, &none);
        let card = machine("NVIDIA GeForce RTX 4070", Arch::Ada, 12.0);
        let estimate = estimate(&facts, card.usable_vram_gib());
        let mut patched = workflow.clone();
        for id in APPLICABLE {
            if *id == "fp8_weights" {
                continue;
            }
            let ops = patch_for(id, &Map::new(), &card, &facts, &estimate, &patched)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            crate::workflow::patch::apply_in_place(&mut patched, &ops).expect("applies");
        }
        assert_eq!(patched["8"]["class_type"], "VAEDecodeTiled");
        assert_eq!(patched["8"]["inputs"]["tile_size"], 512);
        assert_eq!(patched["3"]["inputs"]["steps"], 40);
        assert_eq!(patched["3"]["inputs"]["sampler_name"], "dpmpp_2m");
        assert_eq!(patched["3"]["inputs"]["scheduler"], "karras");
        let (w, h) = (
            patched["5"]["inputs"]["width"].as_u64().expect("w"),
            patched["5"]["inputs"]["height"].as_u64().expect("h"),
        );
        assert!(w % 64 == 0 && h % 64 == 0 && w > h, "{w}x{h}");
        assert!(
            patched["5"]["inputs"]["batch_size"]
                .as_u64()
                .expect("batch")
                < 8
        );

        let error = patch_for("tensorrt", &Map::new(), &card, &facts, &estimate, &workflow)
            .expect_err("not applicable");
        assert!(error.contains("the ones that can"), "{error}");
        let error = patch_for(
            "fp8_weights",
            &Map::new(),
            &card,
            &facts,
            &estimate,
            &workflow,
        )
        .expect_err("no UNETLoader");
        assert!(error.contains("no node"), "{error}");
        let mut params = Map::new();
        params.insert("steps".into(), json!(0));
        assert!(
            patch_for(
                "step_optimization",
                &params,
                &card,
                &facts,
                &estimate,
                &workflow
            )
            .is_err()
        );
    }
}
