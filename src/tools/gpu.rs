//! The GPU tool: what the machine ComfyUI generates on has, and how busy it is.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::ToolError;
use crate::gpu::GpuStatus;
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};

pub fn tools() -> Vec<ToolSpec> {
    vec![tool(
        "get_gpu_status",
        "GPU status",
        "Each GPU of the machine ComfyUI runs on: name, VRAM used and total, how busy it is, \
         temperature, power, clocks, compute capability and the processes using the most VRAM, \
         with a one-line summary per GPU and the machine's hardware profile (GPUs, CPU cores, \
         RAM). Reads NVIDIA's driver (NVML) when ComfyUI runs on this machine; otherwise, or \
         without an NVIDIA driver, ComfyUI's own report (names and VRAM). `source` says which. \
         Never fails for lack of a GPU: the answer says what was found and what to do.",
        Hints::LIVE_READ,
        get_gpu_status,
    )]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetGpuStatusParams {
    /// List the processes using the most VRAM on each GPU (default true).
    #[serde(default)]
    pub include_processes: Option<bool>,
    /// Only this GPU, by index (0 is the first, as in nvidia-smi and `cuda:0`).
    #[serde(default)]
    #[schemars(range(max = 1023))]
    pub gpu: Option<u32>,
}

async fn get_gpu_status(
    cx: ToolContext,
    params: GetGpuStatusParams,
) -> Result<GpuStatus, ToolError> {
    let processes = params.include_processes.unwrap_or(true);
    let mut status = cx.app.gpu().status(cx.app.comfy(), processes).await;
    if let Some(wanted) = params.gpu
        && !status.gpus.is_empty()
    {
        if !status.gpus.iter().any(|gpu| gpu.index == wanted) {
            let known: Vec<String> = status.gpus.iter().map(|g| g.index.to_string()).collect();
            return Err(ToolError::rejected(
                format!(
                    "There is no GPU {wanted}: this machine's GPUs are numbered {}.",
                    known.join(", ")
                ),
                "Pass one of those numbers as gpu, or leave gpu out to see every GPU.",
            ));
        }
        status.gpus.retain(|gpu| gpu.index == wanted);
        status.summary = status
            .gpus
            .iter()
            .map(|gpu| gpu.summary.as_str())
            .collect::<Vec<_>>()
            .join("\n");
    }
    Ok(status)
}
