//! GPU-aware optimization tools (§1.19 of the catalogue): profile a workflow's memory needs
//! on the real hardware, suggest what to change, check TensorRT readiness, and apply the
//! changes that live in the workflow as undoable edits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::optimize::{self, Arch, Estimate, Machine, Optimization, WorkflowFacts};
use crate::registry::{Hints, ToolSpec, tool};
use crate::tools::workflow::{WorkflowInput, resolve_workflow};

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "profile_workflow",
            "Profile a workflow's memory needs",
            "Estimate how much GPU memory a workflow needs on this machine, stage by stage (text \
             encoders, sampling, VAE decode), from its loaders (real file sizes when the models \
             folder is here), resolution, batch and frames, against the real GPU (NVML, or \
             ComfyUI's system_stats when ComfyUI runs elsewhere). Says whether it fits and the \
             largest batch that does. Uses this session's workflow unless path or workflow is given.",
            Hints::LIVE_READ,
            profile_workflow,
        ),
        tool(
            "suggest_optimizations",
            "Suggest optimizations for this machine",
            "Suggest what to change so a workflow runs well on this machine: tiled VAE decode, \
             fp8 weights (faster on Ada, Hopper and Blackwell), a batch that fits, the model's \
             native size, fewer steps, an efficient sampler, launch flags (low-VRAM mode, faster \
             attention) and TensorRT, each with the reason it applies here. The ones marked \
             auto_apply can be made with apply_optimization. gpu_name and vram_gb plan for \
             another GPU.",
            Hints::LIVE_READ,
            suggest_optimizations,
        ),
        tool(
            "check_tensorrt_status",
            "Check TensorRT readiness",
            "Whether TensorRT can speed this ComfyUI up: does the GPU support it, is a TensorRT \
             node pack installed (and are its nodes loaded), which engine files exist in \
             models/tensorrt, and the next steps.",
            Hints::LIVE_READ,
            check_tensorrt_status,
        ),
        tool(
            "apply_optimization",
            "Apply an optimization",
            "Apply one optimization to this session's workflow as an undoable edit: vae_tiling, \
             fp8_weights, batch_size (params.batch_size), step_optimization (params.steps), \
             sampler_efficiency (params.sampler, params.scheduler) or native_resolution. \
             undo_workflow_patch takes it back.",
            Hints::EDIT,
            apply_optimization,
        ),
    ]
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProfileReport {
    pub machine: Machine,
    pub workflow: WorkflowFacts,
    pub estimate: Estimate,
    pub message: String,
}

/// The machine, from the hardware profile (cached after the first look).
async fn machine(cx: &ToolContext) -> Machine {
    Machine::from_profile(cx.app.hardware().await.as_ref())
}

/// Facts about `workflow`, with model sizes measured where the files are here.
async fn facts_of(cx: &ToolContext, workflow: Value) -> Result<WorkflowFacts, ToolError> {
    let app = cx.app.clone();
    tokio::task::spawn_blocking(move || {
        let view = app.install_index().models().ok();
        let size = |folder: &str, file: &str| {
            let view = view.as_ref()?;
            let (_, models) = view.inventory.kind(folder)?;
            models.find(file).map(|found| found.size)
        };
        optimize::estimate::facts(&workflow, &size)
    })
    .await
    .map_err(|error| ToolError::Internal(format!("reading the workflow stopped: {error}")))
}

async fn workflow_value(cx: &ToolContext, input: WorkflowInput) -> Result<Value, ToolError> {
    Ok(resolve_workflow(cx, input).await?.workflow.to_api())
}

fn summary(machine: &Machine, estimate: &Estimate) -> String {
    if estimate.verdict == "unknown" {
        return format!(
            "The GPU couldn't be read (is ComfyUI running?), so whether it fits is unknown: the run needs about {:.1} GiB at its peak. Pass gpu_name and vram_gb to plan for a GPU.",
            estimate.peak_gib
        );
    }
    let what = match estimate.verdict.as_str() {
        "fits" => "fits",
        "tight" => "fits, but tightly,",
        _ => "does not fit",
    };
    if machine.arch == Arch::CpuOnly {
        return format!(
            "No GPU: ComfyUI runs on the CPU with about {:.0} GiB of memory to use; the run needs about {:.1} GiB at its peak and will be slow.",
            estimate.usable_gib, estimate.peak_gib
        );
    }
    format!(
        "The workflow {what} in {} ({:.0} GiB): about {:.1} GiB at its peak, {:.1} GiB usable.",
        machine.gpu_name, machine.vram_gib, estimate.peak_gib, estimate.usable_gib
    )
}

async fn profile_workflow(
    cx: ToolContext,
    params: WorkflowInput,
) -> Result<ProfileReport, ToolError> {
    let workflow = workflow_value(&cx, params).await?;
    let machine = machine(&cx).await;
    let facts = facts_of(&cx, workflow).await?;
    let estimate = optimize::estimate::estimate(&facts, machine.usable_vram_gib());
    Ok(ProfileReport {
        message: summary(&machine, &estimate),
        machine,
        workflow: facts,
        estimate,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestParams {
    /// A workflow file; without path or workflow, this session's workflow is used.
    #[serde(default)]
    pub path: Option<String>,
    /// The workflow JSON itself.
    #[serde(default)]
    pub workflow: Option<Value>,
    #[serde(default)]
    pub session: Option<String>,
    /// Plan for this GPU instead of the one found (e.g. "RTX 4090", "H100").
    #[serde(default)]
    #[schemars(length(min = 1, max = 128))]
    pub gpu_name: Option<String>,
    /// Its memory in GB (with gpu_name; without, the found GPU's).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 2048.0))]
    pub vram_gb: Option<f64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SuggestReport {
    pub machine: Machine,
    pub estimate: Estimate,
    pub optimization_count: usize,
    pub optimizations: Vec<Optimization>,
    /// The ids, most useful first.
    pub priority_order: Vec<String>,
    pub message: String,
}

async fn suggest_optimizations(
    cx: ToolContext,
    params: SuggestParams,
) -> Result<SuggestReport, ToolError> {
    let input = WorkflowInput {
        path: params.path,
        workflow: params.workflow,
        session: params.session,
    };
    let workflow = workflow_value(&cx, input).await?;
    let found = machine(&cx).await;
    let machine = match (params.gpu_name.as_deref().map(str::trim), params.vram_gb) {
        (Some(name), vram) if !name.is_empty() => {
            let arch = Arch::from_name(name);
            let vram = vram.unwrap_or(if arch == Arch::CpuOnly {
                0.0
            } else {
                found.vram_gib
            });
            Machine::described(name, arch, vram, None, 1, found.ram_gib, "given".into())
        }
        (_, Some(vram)) => Machine::described(
            &found.gpu_name,
            found.arch,
            vram,
            found.compute_capability.clone(),
            found.gpu_count,
            found.ram_gib,
            "given".into(),
        ),
        _ => found,
    };
    let facts = facts_of(&cx, workflow).await?;
    let estimate = optimize::estimate::estimate(&facts, machine.usable_vram_gib());
    let optimizations = optimize::catalogue(&machine, &facts, &estimate);
    let rank = |o: &Optimization| {
        let impact = match o.impact.as_str() {
            "high" => 0,
            "medium" => 1,
            _ => 2,
        };
        (impact, !o.auto_apply)
    };
    let mut ordered: Vec<&Optimization> = optimizations.iter().collect();
    ordered.sort_by_key(|o| rank(o));
    let priority_order = ordered.iter().map(|o| o.id.clone()).collect();
    Ok(SuggestReport {
        message: format!(
            "{} {} suggestion{}; apply_optimization makes the ones marked auto_apply.",
            summary(&machine, &estimate),
            optimizations.len(),
            if optimizations.len() == 1 { "" } else { "s" }
        ),
        machine,
        estimate,
        optimization_count: optimizations.len(),
        optimizations,
        priority_order,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EngineFile {
    pub name: String,
    pub size_mb: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TensorRtReport {
    pub machine: Machine,
    /// The GPU can run TensorRT engines (NVIDIA, Turing or later).
    pub trt_supported: bool,
    /// Installed custom node packs that look like TensorRT ones; `null` when the ComfyUI
    /// folder isn't on this machine.
    pub node_packs: Option<Vec<String>>,
    /// TensorRT node classes ComfyUI has loaded.
    pub loaded_nodes: Vec<String>,
    pub cached_engines: Vec<EngineFile>,
    pub engine_count: usize,
    pub ready: bool,
    pub next_steps: Vec<String>,
}

async fn check_tensorrt_status(
    cx: ToolContext,
    _: super::NoParams,
) -> Result<TensorRtReport, ToolError> {
    let machine = machine(&cx).await;
    let app = cx.app.clone();
    let (node_packs, cached_engines) = tokio::task::spawn_blocking(move || {
        let packs = app.install_index().custom_nodes().ok().map(|list| {
            list.packs
                .iter()
                .filter(|pack| {
                    let lower = pack.name.to_lowercase();
                    lower.contains("tensorrt") || lower.split(['-', '_']).any(|part| part == "trt")
                })
                .map(|pack| pack.name.clone())
                .collect::<Vec<_>>()
        });
        let engines = app
            .install_index()
            .models()
            .ok()
            .and_then(|view| {
                view.inventory.kind("tensorrt").map(|(_, models)| {
                    models
                        .files
                        .iter()
                        .filter(|file| file.name.to_lowercase().ends_with(".engine"))
                        .map(|file| EngineFile {
                            name: file.name.clone(),
                            size_mb: (file.size as f64 / 1_048_576.0 * 10.0).round() / 10.0,
                        })
                        .collect::<Vec<_>>()
                })
            })
            .unwrap_or_default();
        (packs, engines)
    })
    .await
    .map_err(|error| ToolError::Internal(format!("reading the install stopped: {error}")))?;
    let client = cx.app.comfy().client().await;
    let loaded_nodes: Vec<String> = match client.nodes(false).await {
        Ok(index) => index
            .nodes()
            .iter()
            .filter(|node| {
                let upper = node.name.to_uppercase();
                upper.contains("TENSORRT") || upper.contains("_TRT_") || upper.starts_with("TRT")
            })
            .map(|node| node.name.clone())
            .collect(),
        Err(_) => Vec::new(),
    };
    let trt_supported = machine.tensorrt_capable;
    let pack_present =
        node_packs.as_ref().is_some_and(|packs| !packs.is_empty()) || !loaded_nodes.is_empty();
    let mut next_steps = Vec::new();
    if !trt_supported {
        next_steps.push(format!(
            "{} can't run TensorRT engines (it needs an NVIDIA GPU from the Turing generation on); the other suggestions of suggest_optimizations still apply.",
            machine.gpu_name
        ));
    } else {
        if !pack_present {
            next_steps.push("Install the ComfyUI_TensorRT node pack (get_install_instructions tells how), then restart ComfyUI.".into());
        } else if loaded_nodes.is_empty() {
            next_steps.push("A TensorRT pack is installed but ComfyUI hasn't loaded its nodes: restart ComfyUI and check its log for import errors (the tensorrt Python package is needed).".into());
        }
        if cached_engines.is_empty() {
            next_steps.push("Build an engine for your model and size with the pack's conversion node (static for one size, dynamic for a range); it lands in models/tensorrt.".into());
        }
        if pack_present && !cached_engines.is_empty() {
            next_steps.push("Load an engine with the pack's TensorRT loader in place of the model loader; it only serves the sizes it was built for.".into());
        }
    }
    let engine_count = cached_engines.len();
    Ok(TensorRtReport {
        ready: trt_supported && !loaded_nodes.is_empty() && engine_count > 0,
        machine,
        trt_supported,
        node_packs,
        loaded_nodes,
        engine_count,
        cached_engines,
        next_steps,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyParams {
    /// vae_tiling, fp8_weights, batch_size, step_optimization, sampler_efficiency or
    /// native_resolution.
    #[schemars(length(min = 1, max = 64))]
    pub optimization_id: String,
    /// Overrides: batch_size, steps, sampler, scheduler, tile_size, weight_dtype.
    #[serde(default)]
    pub params: Option<Map<String, Value>>,
    /// A named session whose workflow to change.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ApplyReport {
    pub optimization_id: String,
    pub applied: bool,
    pub changes: Vec<crate::workflow::patch::Change>,
    pub undo_steps: usize,
    pub total_changes_from_base: usize,
    pub message: String,
}

async fn apply_optimization(
    cx: ToolContext,
    params: ApplyParams,
) -> Result<ApplyReport, ToolError> {
    let id = params.optimization_id.trim().to_string();
    let overrides = params.params.unwrap_or_default();
    let machine = machine(&cx).await;
    let session = cx.workspace(params.session.as_deref());
    let current = {
        let guard = session.workflow.lock().await;
        guard
            .as_ref()
            .map(|state| state.current().clone())
            .ok_or_else(|| {
                ToolError::rejected(
                    "There is no workflow in this session to optimize.",
                    "Load one with load_workflow or get_workflow_template first.",
                )
            })?
    };
    let facts = facts_of(&cx, current.clone()).await?;
    let estimate = optimize::estimate::estimate(&facts, machine.usable_vram_gib());
    let ops = optimize::patch_for(&id, &overrides, &machine, &facts, &estimate, &current).map_err(
        |why| {
            ToolError::rejected(
                format!("Can't apply {id}: {why}."),
                "suggest_optimizations lists what applies to this workflow, marked auto_apply.",
            )
        },
    )?;
    let mut guard = session.workflow.lock().await;
    let state = guard.as_mut().ok_or_else(|| {
        ToolError::rejected(
            "The session's workflow was removed meanwhile.",
            "Load it again.",
        )
    })?;
    if state.current() != &current {
        return Err(ToolError::rejected(
            "The session's workflow changed while the optimization was being planned.",
            "Call apply_optimization again.",
        ));
    }
    let applied = state
        .apply(&ops)
        .map_err(|error| ToolError::rejected(format!("Can't apply {id}: {error}."), ""))?;
    Ok(ApplyReport {
        message: format!(
            "Applied {id}: {} change{}. undo_workflow_patch takes it back.",
            applied.changes.len(),
            if applied.changes.len() == 1 { "" } else { "s" }
        ),
        optimization_id: id,
        applied: true,
        changes: applied.changes,
        undo_steps: applied.undo_steps,
        total_changes_from_base: applied.total_changes_from_base,
    })
}
