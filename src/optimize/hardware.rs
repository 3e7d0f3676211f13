//! What the GPU can do, from the hardware profile.

use schemars::JsonSchema;
use serde::Serialize;

use crate::gpu::HardwareProfile;

/// A GPU generation, or the kind of machine when there is no NVIDIA GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Blackwell,
    Hopper,
    Ada,
    Ampere,
    Turing,
    /// NVIDIA before Turing (Volta, Pascal…).
    OlderNvidia,
    /// Apple silicon through Metal (MPS).
    Apple,
    Amd,
    Intel,
    /// No GPU: ComfyUI runs on the CPU.
    CpuOnly,
    Unknown,
}

impl Arch {
    /// From a CUDA compute capability like `8.9`.
    fn from_compute_capability(cc: &str) -> Option<Self> {
        let (major, minor) = cc.split_once('.')?;
        let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
        Some(match (major, minor) {
            (10.., _) => Self::Blackwell,
            (9, _) => Self::Hopper,
            (8, 9) => Self::Ada,
            (8, _) => Self::Ampere,
            (7, 5..) => Self::Turing,
            _ => Self::OlderNvidia,
        })
    }

    /// From a GPU's marketing name, when no compute capability is known (a remote ComfyUI).
    pub fn from_name(name: &str) -> Self {
        let lower = name.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|word| lower.contains(word));
        let rtx_series = |series: &str| {
            lower.contains(&format!("rtx {series}")) || lower.contains(&format!("rtx{series}"))
        };
        if has(&["cpu"]) && !has(&["nvidia", "cuda"]) {
            Self::CpuOnly
        } else if has(&["apple", "mps", " m1", " m2", " m3", " m4"]) {
            Self::Apple
        } else if has(&["radeon", "amd", "instinct", "rocm"]) {
            Self::Amd
        } else if has(&["intel", "arc ", "xpu"]) {
            Self::Intel
        } else if has(&[
            "blackwell",
            "b100",
            "b200",
            "gb200",
            "gb300",
            "b300",
            "rtx pro 6000",
        ]) || ["50"].iter().any(|s| rtx_series(s))
        {
            Self::Blackwell
        } else if has(&["h100", "h200", "gh200", "h800", "h20"]) {
            Self::Hopper
        } else if has(&[" ada", "l40", " l4", "l20"]) || rtx_series("40") {
            Self::Ada
        } else if has(&[
            "a100", "a800", " a10", " a16", " a2", " a30", " a40", "rtx a",
        ]) || rtx_series("30")
        {
            Self::Ampere
        } else if has(&["t4", "quadro rtx", "titan rtx", "gtx 16"]) || rtx_series("20") {
            Self::Turing
        } else if has(&["v100", "p100", "p40", "gtx 10", "titan v", "titan x"]) {
            Self::OlderNvidia
        } else {
            Self::Unknown
        }
    }

    pub fn is_nvidia(self) -> bool {
        matches!(
            self,
            Self::Blackwell
                | Self::Hopper
                | Self::Ada
                | Self::Ampere
                | Self::Turing
                | Self::OlderNvidia
        )
    }

    /// FP8 math in hardware (Ada and later): fp8 weights are faster, not only smaller.
    pub fn fast_fp8(self) -> bool {
        matches!(self, Self::Blackwell | Self::Hopper | Self::Ada)
    }

    /// bf16 in hardware (Ampere and later, Apple M2 and later handled as fp16).
    pub fn bf16(self) -> bool {
        matches!(
            self,
            Self::Blackwell | Self::Hopper | Self::Ada | Self::Ampere
        )
    }

    /// TensorRT builds engines for Turing and later.
    pub fn tensorrt(self) -> bool {
        matches!(
            self,
            Self::Blackwell | Self::Hopper | Self::Ada | Self::Ampere | Self::Turing
        )
    }
}

/// The machine a workflow will run on, as the optimizer sees it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Machine {
    pub gpu_name: String,
    pub arch: Arch,
    /// The largest GPU's memory (GiB); 0 without a GPU.
    pub vram_gib: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
    pub gpu_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_gib: Option<f64>,
    /// Where the facts came from: `nvml`, `comfyui` or `none`.
    pub source: String,
    pub tensorrt_capable: bool,
    pub fast_fp8: bool,
}

impl Machine {
    pub fn from_profile(profile: &HardwareProfile) -> Self {
        let biggest = profile
            .gpus
            .iter()
            .max_by_key(|gpu| gpu.vram_total_bytes.unwrap_or(0));
        let source = serde_json::to_value(profile.gpu_source)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| "unknown".into());
        let Some(gpu) = biggest else {
            // No GPU listed: a CPU-only machine when a source answered, else unknown.
            let answered = profile.gpu_source != crate::gpu::GpuSourceKind::None;
            return Self {
                gpu_name: if answered {
                    "none (CPU only)".into()
                } else {
                    "unknown (neither NVIDIA's driver nor ComfyUI answered)".into()
                },
                arch: if answered {
                    Arch::CpuOnly
                } else {
                    Arch::Unknown
                },
                vram_gib: 0.0,
                compute_capability: None,
                gpu_count: 0,
                ram_gib: profile.ram_total_gib,
                source,
                tensorrt_capable: false,
                fast_fp8: false,
            };
        };
        let arch = gpu
            .compute_capability
            .as_deref()
            .and_then(Arch::from_compute_capability)
            .unwrap_or_else(|| Arch::from_name(&gpu.name));
        Self::described(
            &gpu.name,
            arch,
            gpu.vram_total_gib.unwrap_or(0.0),
            gpu.compute_capability.clone(),
            profile.gpus.len(),
            profile.ram_total_gib,
            source,
        )
    }

    /// A machine described by hand (tests, and `gpu_name` overrides).
    pub fn described(
        name: &str,
        arch: Arch,
        vram_gib: f64,
        compute_capability: Option<String>,
        gpu_count: usize,
        ram_gib: Option<f64>,
        source: String,
    ) -> Self {
        Self {
            gpu_name: name.to_string(),
            arch,
            vram_gib,
            compute_capability,
            gpu_count,
            ram_gib,
            source,
            tensorrt_capable: arch.tensorrt(),
            fast_fp8: arch.fast_fp8(),
        }
    }

    /// Whether anything is known about the GPU's memory.
    pub fn known(&self) -> bool {
        !(self.arch == Arch::Unknown && self.vram_gib <= 0.0)
    }

    /// Memory a workflow may plan on: the card less what the driver and ComfyUI keep;
    /// 0 when unknown.
    pub fn usable_vram_gib(&self) -> f64 {
        if self.arch == Arch::CpuOnly || self.arch == Arch::Apple {
            // Unified or system memory: ComfyUI can use most of it.
            return self.ram_gib.unwrap_or(0.0) * 0.6;
        }
        (self.vram_gib - 0.8).max(0.0) * 0.95
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_from_compute_capability() {
        assert_eq!(Arch::from_compute_capability("12.0"), Some(Arch::Blackwell));
        assert_eq!(Arch::from_compute_capability("10.0"), Some(Arch::Blackwell));
        assert_eq!(Arch::from_compute_capability("9.0"), Some(Arch::Hopper));
        assert_eq!(Arch::from_compute_capability("8.9"), Some(Arch::Ada));
        assert_eq!(Arch::from_compute_capability("8.6"), Some(Arch::Ampere));
        assert_eq!(Arch::from_compute_capability("8.0"), Some(Arch::Ampere));
        assert_eq!(Arch::from_compute_capability("7.5"), Some(Arch::Turing));
        assert_eq!(
            Arch::from_compute_capability("7.0"),
            Some(Arch::OlderNvidia)
        );
        assert_eq!(Arch::from_compute_capability("x"), None);
    }

    #[test]
    fn generations_from_names() {
        for (name, arch) in [
            ("NVIDIA GeForce RTX 5090", Arch::Blackwell),
            (
                "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
                Arch::Blackwell,
            ),
            ("NVIDIA B200", Arch::Blackwell),
            ("NVIDIA H200", Arch::Hopper),
            ("NVIDIA H100 80GB HBM3", Arch::Hopper),
            ("NVIDIA GeForce RTX 4090", Arch::Ada),
            ("NVIDIA L40S", Arch::Ada),
            ("NVIDIA RTX 6000 Ada Generation", Arch::Ada),
            ("NVIDIA GeForce RTX 3060", Arch::Ampere),
            ("NVIDIA A100-SXM4-40GB", Arch::Ampere),
            ("NVIDIA RTX A5000", Arch::Ampere),
            ("Tesla T4", Arch::Turing),
            ("NVIDIA GeForce RTX 2080 Ti", Arch::Turing),
            ("Tesla V100-SXM2-16GB", Arch::OlderNvidia),
            ("AMD Radeon RX 7900 XTX", Arch::Amd),
            ("Apple M2 Max (mps)", Arch::Apple),
            ("cpu", Arch::CpuOnly),
            ("Mystery Accelerator", Arch::Unknown),
        ] {
            assert_eq!(Arch::from_name(name), arch, "{name}");
        }
    }

    #[test]
    fn capabilities_follow_the_generation() {
        assert!(Arch::Ada.fast_fp8() && Arch::Hopper.fast_fp8() && Arch::Blackwell.fast_fp8());
        assert!(!Arch::Ampere.fast_fp8() && Arch::Ampere.bf16());
        assert!(Arch::Turing.tensorrt() && !Arch::OlderNvidia.tensorrt());
        assert!(!Arch::Apple.tensorrt() && !Arch::CpuOnly.is_nvidia());
        let card = Machine::described("RTX 4090", Arch::Ada, 24.0, None, 1, None, "nvml".into());
        assert!((card.usable_vram_gib() - 22.04).abs() < 0.01);
        let cpu = Machine::described(
            "cpu",
            Arch::CpuOnly,
            0.0,
            None,
            0,
            Some(32.0),
            "none".into(),
        );
        assert!((cpu.usable_vram_gib() - 19.2).abs() < 0.01);
    }
}
