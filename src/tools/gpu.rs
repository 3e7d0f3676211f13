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

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use url::Url;

    use crate::comfy::api::SystemStats;
    use crate::gpu::{
        GpuReading, LocalFacts, NvmlOutcome, NvmlSample, NvmlUnavailable, assemble, profile,
    };

    /// Every shape of the answer fits the output schema clients check it against.
    #[test]
    fn every_answer_fits_the_declared_output_schema() {
        let spec = super::tools().remove(0);
        let schema = Value::Object((*spec.tool().output_schema.clone().expect("schema")).clone());
        let validator = jsonschema::validator_for(&schema).expect("compiles");
        let local = Url::parse("http://127.0.0.1:8188/").expect("url");
        let stats: SystemStats = serde_json::from_str(
            r#"{"system":{"ram_total":1000},"devices":[{"name":"cuda:0 X : y","type":"cuda",
                "vram_total":100,"vram_free":50}]}"#,
        )
        .expect("stats");
        let bare = NvmlSample {
            gpus: vec![GpuReading::default()],
            ..NvmlSample::default()
        };
        let absent = || NvmlOutcome::Failed(NvmlUnavailable::NotInstalled.into());
        let down = crate::comfy::ComfyError::BadAnswer {
            url: local.to_string(),
            what: "the system check",
            reason: "test".into(),
        };
        let facts = LocalFacts::default();
        let answers = [
            assemble(
                &local,
                true,
                NvmlOutcome::Sampled(crate::gpu::tests::sample()),
                None,
                profile(true, facts, Some(&crate::gpu::tests::sample()), None),
            ),
            assemble(
                &local,
                true,
                NvmlOutcome::Sampled(bare.clone()),
                None,
                profile(true, facts, Some(&bare), None),
            ),
            assemble(
                &local,
                true,
                absent(),
                Some(Ok(stats.clone())),
                profile(true, facts, None, Some(&stats)),
            ),
            assemble(
                &local,
                true,
                absent(),
                Some(Err(down)),
                profile(true, facts, None, None),
            ),
        ];
        for answer in answers {
            let value = serde_json::to_value(&answer).expect("json");
            let problems: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(problems.is_empty(), "{problems:?} in {value}");
        }
    }
}
