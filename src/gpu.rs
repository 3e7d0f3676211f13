//! GPU probes. NVIDIA's NVML library is loaded at run time, once, off the async runtime; when
//! it is missing (no driver, macOS, an AMD card) or when ComfyUI runs on another machine (our
//! NVML would describe the wrong one), ComfyUI's own `/system_stats` is asked instead. Nothing
//! here fails the server: "no GPU" is an answer, not an error.
//!
//! The NVML layer sits behind [`GpuSource`], so formatting, ordering and every fallback are
//! tested with recorded samples on machines without a GPU.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::OnceCell;
use url::Url;

use crate::comfy::api::{Device, SystemStats};
use crate::comfy::{Comfy, ComfyError};

/// How many processes a GPU's report lists, biggest VRAM users first.
pub const TOP_PROCESSES: usize = 5;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Where GPU numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GpuSourceKind {
    /// NVIDIA's driver library on this machine: every reading.
    Nvml,
    /// ComfyUI's `/system_stats`: device names and VRAM only.
    ComfyuiSystemStats,
    /// Neither answered.
    None,
}

// ---------------------------------------------------------------------------------------------
// Raw readings: what a source returns.

/// One read of every NVIDIA GPU on this machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NvmlSample {
    pub driver_version: Option<String>,
    /// Like `12.8`.
    pub cuda_driver_version: Option<String>,
    pub gpus: Vec<GpuReading>,
}

/// One GPU's readings. Every field is optional: what a GPU doesn't support is left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    pub index: u32,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub memory_used: Option<u64>,
    pub memory_free: Option<u64>,
    pub memory_total: Option<u64>,
    pub utilization_gpu: Option<u32>,
    pub utilization_memory: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_draw_mw: Option<u32>,
    pub power_limit_mw: Option<u32>,
    pub clocks: Clocks,
    /// (major, minor), like (9, 0) for Hopper.
    pub compute_capability: Option<(i32, i32)>,
    pub pcie: Option<Pcie>,
    /// Every process using the GPU, in no particular order.
    pub processes: Vec<ProcessReading>,
    /// Readings that failed for a reason other than "not supported" (`"power: no permission"`).
    pub unreadable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessReading {
    pub pid: u32,
    pub name: Option<String>,
    /// Unknown under Windows' WDDM driver model.
    pub used_bytes: Option<u64>,
}

/// Clock speeds in MHz, now and at most.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Clocks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm_max_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_max_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graphics_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graphics_max_mhz: Option<u32>,
}

impl Clocks {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Where the GPU sits on the PCIe bus and how fast its link runs now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Pcie {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_generation: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_width: Option<u32>,
}

/// Where GPU readings come from: the real NVML, or a recorded sample in tests.
pub trait GpuSource: Send + Sync + std::fmt::Debug {
    /// Reads every GPU now. Blocks (NVML calls do): run it off the async runtime.
    fn read(&self, processes: bool) -> Result<NvmlSample, NvmlFault>;
}

/// A sample replayed as it was recorded (tests, and machines without a GPU).
#[derive(Debug, Clone)]
pub struct RecordedSource(pub NvmlSample);

impl GpuSource for RecordedSource {
    fn read(&self, processes: bool) -> Result<NvmlSample, NvmlFault> {
        let mut sample = self.0.clone();
        if !processes {
            for gpu in &mut sample.gpus {
                gpu.processes.clear();
            }
        }
        Ok(sample)
    }
}

/// Why NVML can't be used on this machine. Found once, on first use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvmlUnavailable {
    #[error("macOS has no NVIDIA driver")]
    MacOs,
    #[error("the NVIDIA driver's NVML library isn't installed")]
    NotInstalled,
    #[error("the NVIDIA driver isn't loaded")]
    DriverNotLoaded,
    #[error("this user isn't allowed to ask the NVIDIA driver")]
    NoPermission,
    #[error("the NVIDIA driver is too old for this probe ({0})")]
    DriverTooOld(String),
    #[error("the NVIDIA driver reports no GPU")]
    NoDevices,
    #[error("NVML could not start ({0})")]
    Failed(String),
}

/// A read of a working NVML that failed as a whole (per-field failures only omit the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NVML could not list the GPUs ({0})")]
pub struct NvmlFault(pub String);

/// Why no NVML sample came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvmlProblem {
    #[error(transparent)]
    Unavailable(#[from] NvmlUnavailable),
    #[error(transparent)]
    Fault(#[from] NvmlFault),
}

// ---------------------------------------------------------------------------------------------
// The real NVML.

/// NVML itself, loaded with `dlopen`/`LoadLibrary` when first needed.
struct NvmlSource {
    nvml: nvml_wrapper::Nvml,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NvmlSource")
    }
}

/// Loads NVML and checks it sees a GPU. Blocking.
fn open_nvml() -> Result<Arc<dyn GpuSource>, NvmlUnavailable> {
    if cfg!(target_os = "macos") {
        return Err(NvmlUnavailable::MacOs);
    }
    let nvml = nvml_wrapper::Nvml::init().map_err(unavailable)?;
    match nvml.device_count() {
        Ok(0) => Err(NvmlUnavailable::NoDevices),
        Ok(_) => Ok(Arc::new(NvmlSource { nvml })),
        Err(error) => Err(NvmlUnavailable::Failed(error.to_string())),
    }
}

fn unavailable(error: nvml_wrapper::error::NvmlError) -> NvmlUnavailable {
    use nvml_wrapper::error::NvmlError as E;
    match error {
        E::LibloadingError(_) | E::LibraryNotFound => NvmlUnavailable::NotInstalled,
        E::DriverNotLoaded => NvmlUnavailable::DriverNotLoaded,
        E::NoPermission => NvmlUnavailable::NoPermission,
        E::FailedToLoadSymbol(symbol) => NvmlUnavailable::DriverTooOld(symbol),
        E::FunctionNotFound => NvmlUnavailable::DriverTooOld("a function is missing".into()),
        other => NvmlUnavailable::Failed(other.to_string()),
    }
}

/// The value, or `None`: silently when the GPU doesn't support the reading, noted otherwise.
fn got<T>(
    result: Result<T, nvml_wrapper::error::NvmlError>,
    what: &str,
    unreadable: &mut Vec<String>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(nvml_wrapper::error::NvmlError::NotSupported) => None,
        Err(error) => {
            unreadable.push(format!("{what}: {error}"));
            None
        }
    }
}

impl GpuSource for NvmlSource {
    fn read(&self, processes: bool) -> Result<NvmlSample, NvmlFault> {
        let count = self
            .nvml
            .device_count()
            .map_err(|error| NvmlFault(error.to_string()))?;
        let mut ignored = Vec::new();
        let driver_version = got(self.nvml.sys_driver_version(), "driver", &mut ignored);
        let cuda_driver_version = got(self.nvml.sys_cuda_driver_version(), "cuda", &mut ignored)
            .map(|v| {
                format!(
                    "{}.{}",
                    nvml_wrapper::cuda_driver_version_major(v),
                    nvml_wrapper::cuda_driver_version_minor(v)
                )
            });
        let gpus = (0..count)
            .map(|index| self.read_device(index, processes))
            .collect();
        Ok(NvmlSample {
            driver_version,
            cuda_driver_version,
            gpus,
        })
    }
}

impl NvmlSource {
    fn read_device(&self, index: u32, processes: bool) -> GpuReading {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let mut reading = GpuReading {
            index,
            ..GpuReading::default()
        };
        let device = match self.nvml.device_by_index(index) {
            Ok(device) => device,
            Err(error) => {
                reading.unreadable.push(format!("device: {error}"));
                return reading;
            }
        };
        let u = &mut reading.unreadable;
        reading.name = got(device.name(), "name", u);
        reading.uuid = got(device.uuid(), "uuid", u);
        if let Some(memory) = got(device.memory_info(), "memory", u) {
            reading.memory_used = Some(memory.used);
            reading.memory_free = Some(memory.free);
            reading.memory_total = Some(memory.total);
        }
        if let Some(rates) = got(device.utilization_rates(), "utilization", u) {
            reading.utilization_gpu = Some(rates.gpu);
            reading.utilization_memory = Some(rates.memory);
        }
        reading.temperature_c = got(device.temperature(TemperatureSensor::Gpu), "temperature", u);
        reading.power_draw_mw = got(device.power_usage(), "power draw", u);
        reading.power_limit_mw = got(device.enforced_power_limit(), "power limit", u);
        reading.clocks = Clocks {
            sm_mhz: got(device.clock_info(Clock::SM), "sm clock", u),
            sm_max_mhz: got(device.max_clock_info(Clock::SM), "sm max clock", u),
            memory_mhz: got(device.clock_info(Clock::Memory), "memory clock", u),
            memory_max_mhz: got(device.max_clock_info(Clock::Memory), "memory max clock", u),
            graphics_mhz: got(device.clock_info(Clock::Graphics), "graphics clock", u),
            graphics_max_mhz: got(
                device.max_clock_info(Clock::Graphics),
                "graphics max clock",
                u,
            ),
        };
        reading.compute_capability = got(device.cuda_compute_capability(), "compute capability", u)
            .map(|cc| (cc.major, cc.minor));
        let pcie = Pcie {
            bus_id: got(device.pci_info(), "pci", u).map(|pci| pci.bus_id),
            link_generation: got(device.current_pcie_link_gen(), "pcie generation", u),
            link_width: got(device.current_pcie_link_width(), "pcie width", u),
        };
        reading.pcie = (pcie != Pcie::default()).then_some(pcie);
        if processes {
            let mut all = Vec::new();
            for list in [
                got(device.running_compute_processes(), "compute processes", u),
                got(device.running_graphics_processes(), "graphics processes", u),
            ]
            .into_iter()
            .flatten()
            {
                all.extend(list.into_iter().map(|process| {
                    let used_bytes = match process.used_gpu_memory {
                        nvml_wrapper::enums::device::UsedGpuMemory::Used(bytes) => Some(bytes),
                        nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => None,
                    };
                    ProcessReading {
                        pid: process.pid,
                        name: self.process_name(process.pid),
                        used_bytes,
                    }
                }));
            }
            reading.processes = merge_processes(all);
        }
        reading
    }

    /// `/proc/<pid>/comm` on Linux (NVML reads the same file); NVML's own lookup elsewhere.
    fn process_name(&self, pid: u32) -> Option<String> {
        let name = if cfg!(target_os = "linux") {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?
        } else {
            self.nvml.sys_process_name(pid, 256).ok()?
        };
        let name = name.trim();
        (!name.is_empty()).then(|| name.to_string())
    }
}

/// A process listed as both compute and graphics appears once, with the larger figure.
fn merge_processes(all: Vec<ProcessReading>) -> Vec<ProcessReading> {
    let mut merged: Vec<ProcessReading> = Vec::with_capacity(all.len());
    for process in all {
        match merged.iter_mut().find(|p| p.pid == process.pid) {
            Some(existing) => {
                existing.used_bytes = existing.used_bytes.max(process.used_bytes);
                if existing.name.is_none() {
                    existing.name = process.name;
                }
            }
            None => merged.push(process),
        }
    }
    merged
}

// ---------------------------------------------------------------------------------------------
// Reports: what tools and the CLI show.

/// One GPU as reported. Fields the source doesn't know are left out.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GpuReport {
    /// The GPU's index (as `nvidia-smi` and `cuda:N` number them).
    pub index: u32,
    pub name: String,
    /// One line for people: name, VRAM, load, temperature, power.
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The device type ComfyUI reports (`cuda`, `mps`, `xpu`, `directml`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_free_bytes: Option<u64>,
    /// Rounded to 0.1 GiB, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_total_gib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_used_gib: Option<f64>,
    /// What PyTorch's allocator in ComfyUI holds, and how much of that is unused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch_vram_total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch_vram_free_bytes: Option<u64>,
    /// How busy the GPU's cores were over the last sample period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_utilization_percent: Option<u32>,
    /// How busy its memory bus was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_utilization_percent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_draw_w: Option<f64>,
    /// The power limit the driver enforces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_limit_w: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clocks: Option<Clocks>,
    /// CUDA compute capability, like `8.9` (Ada) or `9.0` (Hopper).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcie: Option<Pcie>,
    /// The processes using the most VRAM, biggest first (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<GpuProcess>,
    /// Readings the driver refused (other than unsupported ones), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GpuProcess {
    pub pid: u32,
    /// The program's name, when this server may read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_gib: Option<f64>,
}

/// Bytes in GiB, rounded to 0.1.
pub fn gib(bytes: u64) -> f64 {
    (bytes as f64 / GIB * 10.0).round() / 10.0
}

/// Milliwatts in watts, rounded to 0.1.
fn watts(milliwatts: u32) -> f64 {
    (f64::from(milliwatts) / 100.0).round() / 10.0
}

/// "GPU 0 · NVIDIA H200 · 12.3 / 139.8 GiB VRAM used · 45 % busy · 38 °C · 120 / 700 W".
fn summary_line(report: &GpuReport) -> String {
    let mut parts = vec![format!("GPU {}", report.index), report.name.clone()];
    match (report.vram_used_gib, report.vram_total_gib) {
        (Some(used), Some(total)) => parts.push(format!("{used:.1} / {total:.1} GiB VRAM used")),
        (None, Some(total)) => parts.push(format!("{total:.1} GiB VRAM")),
        _ => {}
    }
    if let Some(busy) = report.gpu_utilization_percent {
        parts.push(format!("{busy} % busy"));
    }
    if let Some(temperature) = report.temperature_c {
        parts.push(format!("{temperature} °C"));
    }
    match (report.power_draw_w, report.power_limit_w) {
        (Some(draw), Some(limit)) => parts.push(format!("{draw:.0} / {limit:.0} W")),
        (Some(draw), None) => parts.push(format!("{draw:.0} W")),
        _ => {}
    }
    parts.join(" · ")
}

/// The biggest VRAM users first (unknown sizes last), then by pid; at most `limit`.
fn top_processes(processes: &[ProcessReading], limit: usize) -> Vec<GpuProcess> {
    let mut sorted: Vec<&ProcessReading> = processes.iter().collect();
    sorted.sort_by(|a, b| b.used_bytes.cmp(&a.used_bytes).then(a.pid.cmp(&b.pid)));
    sorted
        .into_iter()
        .take(limit)
        .map(|process| GpuProcess {
            pid: process.pid,
            name: process.name.clone(),
            used_bytes: process.used_bytes,
            used_gib: process.used_bytes.map(gib),
        })
        .collect()
}

/// The reports for an NVML sample, in index order.
pub fn nvml_reports(sample: &NvmlSample) -> Vec<GpuReport> {
    let mut gpus: Vec<&GpuReading> = sample.gpus.iter().collect();
    gpus.sort_by_key(|gpu| gpu.index);
    gpus.into_iter()
        .map(|gpu| {
            let mut report = GpuReport {
                index: gpu.index,
                name: gpu
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("NVIDIA GPU {}", gpu.index)),
                summary: String::new(),
                uuid: gpu.uuid.clone(),
                device_type: None,
                vram_total_bytes: gpu.memory_total,
                vram_used_bytes: gpu.memory_used,
                vram_free_bytes: gpu.memory_free,
                vram_total_gib: gpu.memory_total.map(gib),
                vram_used_gib: gpu.memory_used.map(gib),
                torch_vram_total_bytes: None,
                torch_vram_free_bytes: None,
                gpu_utilization_percent: gpu.utilization_gpu,
                memory_utilization_percent: gpu.utilization_memory,
                temperature_c: gpu.temperature_c,
                power_draw_w: gpu.power_draw_mw.map(watts),
                power_limit_w: gpu.power_limit_mw.map(watts),
                clocks: (!gpu.clocks.is_empty()).then(|| gpu.clocks.clone()),
                compute_capability: gpu
                    .compute_capability
                    .map(|(major, minor)| format!("{major}.{minor}")),
                pcie: gpu.pcie.clone(),
                processes: top_processes(&gpu.processes, TOP_PROCESSES),
                unreadable: gpu.unreadable.clone(),
            };
            report.summary = summary_line(&report);
            report
        })
        .collect()
}

/// ComfyUI names devices like `cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync`; this keeps
/// the model name and the index.
fn tidy_device_name(raw: &str) -> (Option<u32>, String) {
    let raw = raw.trim();
    let (head, rest) = raw.split_once(' ').unwrap_or((raw, ""));
    let index = head
        .split_once(':')
        .and_then(|(_, n)| n.parse::<u32>().ok());
    let name = if index.is_some() { rest } else { raw };
    let name = name
        .rsplit_once(" : ")
        .map_or(name, |(name, _)| name)
        .trim();
    (index, name.to_string())
}

/// The GPUs in ComfyUI's report (CPU devices are not GPUs and are left out).
pub fn comfy_reports(stats: &SystemStats) -> Vec<GpuReport> {
    stats
        .devices
        .iter()
        .filter(|device| device.kind.as_deref() != Some("cpu"))
        .enumerate()
        .map(|(position, device)| comfy_report(position, device))
        .collect()
}

fn comfy_report(position: usize, device: &Device) -> GpuReport {
    let (named_index, name) = tidy_device_name(device.name.as_deref().unwrap_or_default());
    let index = device
        .index
        .and_then(|i| u32::try_from(i).ok())
        .or(named_index)
        .unwrap_or(u32::try_from(position).unwrap_or(u32::MAX));
    let used = device
        .vram_total
        .zip(device.vram_free)
        .map(|(total, free)| total.saturating_sub(free));
    let mut report = GpuReport {
        index,
        name: if name.is_empty() {
            format!("GPU {index}")
        } else {
            name
        },
        summary: String::new(),
        uuid: None,
        device_type: device.kind.clone(),
        vram_total_bytes: device.vram_total,
        vram_used_bytes: used,
        vram_free_bytes: device.vram_free,
        vram_total_gib: device.vram_total.map(gib),
        vram_used_gib: used.map(gib),
        torch_vram_total_bytes: device.torch_vram_total,
        torch_vram_free_bytes: device.torch_vram_free,
        gpu_utilization_percent: None,
        memory_utilization_percent: None,
        temperature_c: None,
        power_draw_w: None,
        power_limit_w: None,
        clocks: None,
        compute_capability: None,
        pcie: None,
        processes: Vec::new(),
        unreadable: Vec::new(),
    };
    report.summary = summary_line(&report);
    report
}

// ---------------------------------------------------------------------------------------------
// The hardware profile.

/// Which machine a [`HardwareProfile`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfiledMachine {
    /// ComfyUI runs here: everything is this machine's.
    ThisMachine,
    /// ComfyUI runs elsewhere: GPUs and RAM are ComfyUI's report; CPU cores are unknown.
    ComfyuiHost,
}

/// The machine ComfyUI generates on, detected once: what the optimizer tools size work by.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct HardwareProfile {
    pub machine: ProfiledMachine,
    /// Where the GPU list came from.
    pub gpu_source: GpuSourceKind,
    pub gpus: Vec<GpuModel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_logical_cores: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_total_gib: Option<f64>,
    /// `linux`, `macos`, `windows` (or ComfyUI's `posix` / `nt` for another machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GpuModel {
    pub index: u32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_total_gib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
}

impl HardwareProfile {
    /// The largest GPU's VRAM, the figure most sizing decisions need.
    pub fn max_vram_bytes(&self) -> Option<u64> {
        self.gpus
            .iter()
            .filter_map(|gpu| gpu.vram_total_bytes)
            .max()
    }

    /// Whether GPU facts were found; an incomplete profile is detected again next time.
    fn is_complete(&self) -> bool {
        self.gpu_source != GpuSourceKind::None
    }
}

/// What this machine says about itself without NVML or ComfyUI. Blocking (it may read files
/// or run `sysctl`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalFacts {
    pub cpu_logical_cores: Option<usize>,
    pub ram_total_bytes: Option<u64>,
}

impl LocalFacts {
    pub fn detect() -> Self {
        Self {
            cpu_logical_cores: std::thread::available_parallelism()
                .ok()
                .map(std::num::NonZeroUsize::get),
            ram_total_bytes: total_ram(),
        }
    }
}

#[cfg(target_os = "linux")]
fn total_ram() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_total(&meminfo)
}

#[cfg(target_os = "macos")]
fn total_ram() -> Option<u64> {
    let output = std::process::Command::new("sysctl")
        .args(["-n", "hw.memsize"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// Elsewhere ComfyUI's own report fills this in when it answers.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn total_ram() -> Option<u64> {
    None
}

/// `MemTotal:       16318412 kB` from `/proc/meminfo`, in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Builds the profile from what was read: NVML's sample when ComfyUI is here and NVML works,
/// otherwise ComfyUI's report.
pub fn profile(
    local: bool,
    facts: LocalFacts,
    sample: Option<&NvmlSample>,
    stats: Option<&SystemStats>,
) -> HardwareProfile {
    let (gpu_source, gpus) = match (sample, stats) {
        (Some(sample), _) => (
            GpuSourceKind::Nvml,
            nvml_reports(sample).iter().map(model).collect(),
        ),
        (None, Some(stats)) => (
            GpuSourceKind::ComfyuiSystemStats,
            comfy_reports(stats).iter().map(model).collect(),
        ),
        (None, None) => (GpuSourceKind::None, Vec::new()),
    };
    let comfy_ram = stats.and_then(|stats| stats.system.ram_total);
    let (machine, cpu_logical_cores, ram_total_bytes, os, arch) = if local {
        (
            ProfiledMachine::ThisMachine,
            facts.cpu_logical_cores,
            facts.ram_total_bytes.or(comfy_ram),
            Some(std::env::consts::OS.to_string()),
            Some(std::env::consts::ARCH.to_string()),
        )
    } else {
        (
            ProfiledMachine::ComfyuiHost,
            None,
            comfy_ram,
            stats.and_then(|stats| stats.system.os.clone()),
            None,
        )
    };
    HardwareProfile {
        machine,
        gpu_source,
        gpus,
        cpu_logical_cores,
        ram_total_bytes,
        ram_total_gib: ram_total_bytes.map(gib),
        os,
        arch,
    }
}

fn model(report: &GpuReport) -> GpuModel {
    GpuModel {
        index: report.index,
        name: report.name.clone(),
        vram_total_bytes: report.vram_total_bytes,
        vram_total_gib: report.vram_total_gib,
        compute_capability: report.compute_capability.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// The status answer.

/// `get_gpu_status`'s answer (and `comfyui-agent gpu`'s output).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GpuStatus {
    /// Where the numbers came from: `nvml` (this machine's NVIDIA driver, every reading),
    /// `comfyui_system_stats` (ComfyUI's report: names and VRAM), or `none`.
    pub source: GpuSourceKind,
    /// One line per GPU, or what was found instead.
    pub summary: String,
    pub gpus: Vec<GpuReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_driver_version: Option<String>,
    /// The ComfyUI address whose machine this describes.
    pub comfyui_url: String,
    /// Whether that address is this machine (only then is NVML asked).
    pub comfyui_on_this_machine: bool,
    /// `available`, `not asked` (ComfyUI is elsewhere), or why NVML can't be used here.
    pub nvml: String,
    /// Why this source was used, when it is not NVML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What to do next, when something is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// ComfyUI's error, when it was asked and didn't answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comfyui_error: Option<String>,
    /// The machine ComfyUI generates on: GPUs, VRAM, compute capability, CPU cores, RAM.
    pub hardware: HardwareProfile,
}

/// What NVML said, as the status answer needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum NvmlOutcome {
    /// ComfyUI runs elsewhere, so this machine's GPUs were not asked about.
    NotAsked,
    Sampled(NvmlSample),
    Failed(NvmlProblem),
}

/// Puts the answer together from what each source said. Pure, so every path is unit-tested.
pub fn assemble(
    url: &Url,
    local: bool,
    nvml: NvmlOutcome,
    stats: Option<Result<SystemStats, ComfyError>>,
    hardware: HardwareProfile,
) -> GpuStatus {
    let host = url.host_str().unwrap_or("its host").to_string();
    let nvml_state = match &nvml {
        NvmlOutcome::NotAsked => "not asked (ComfyUI runs on another machine)".to_string(),
        NvmlOutcome::Sampled(_) => "available".to_string(),
        NvmlOutcome::Failed(problem) => problem.to_string(),
    };
    let mut status = GpuStatus {
        source: GpuSourceKind::None,
        summary: String::new(),
        gpus: Vec::new(),
        driver_version: None,
        cuda_driver_version: None,
        comfyui_url: url.to_string(),
        comfyui_on_this_machine: local,
        nvml: nvml_state,
        note: None,
        hint: None,
        comfyui_error: None,
        hardware,
    };
    // Why this machine's NVML wasn't the source, for the fallback's note.
    let why_not_nvml = match &nvml {
        NvmlOutcome::Sampled(sample) => {
            status.source = GpuSourceKind::Nvml;
            status.gpus = nvml_reports(sample);
            status.driver_version = sample.driver_version.clone();
            status.cuda_driver_version = sample.cuda_driver_version.clone();
            status.summary = lines(&status.gpus);
            return status;
        }
        NvmlOutcome::NotAsked => format!(
            "ComfyUI runs on another machine ({host}), so this machine's GPUs aren't the ones it uses"
        ),
        NvmlOutcome::Failed(NvmlProblem::Unavailable(reason)) => {
            format!("No NVIDIA GPU found on this machine ({reason})")
        }
        NvmlOutcome::Failed(NvmlProblem::Fault(fault)) => {
            format!("This machine's NVIDIA GPUs couldn't be read ({fault})")
        }
    };
    match stats {
        Some(Ok(stats)) => {
            status.source = GpuSourceKind::ComfyuiSystemStats;
            status.gpus = comfy_reports(&stats);
            if status.gpus.is_empty() {
                status.summary = format!("ComfyUI at {url} reports no GPU: it runs on the CPU.");
                status.note = Some(format!("{why_not_nvml}."));
                status.hint = Some(
                    "Generation on the CPU is very slow. If this machine has a GPU, check that \
                     ComfyUI wasn't started with --cpu and that its PyTorch build supports the \
                     GPU (CUDA for NVIDIA, ROCm for AMD, MPS on Apple silicon)."
                        .into(),
                );
            } else {
                status.summary = lines(&status.gpus);
                status.note = Some(format!(
                    "{why_not_nvml}; these numbers are ComfyUI's own report (names and VRAM only)."
                ));
            }
        }
        Some(Err(error)) => {
            status.summary = format!(
                "{why_not_nvml}, and ComfyUI isn't answering at {url} to report its own devices."
            );
            status.comfyui_error = Some(error.user_message());
            status.hint = Some(if local {
                "Start ComfyUI (or point COMFYUI_URL at the machine it runs on) and ask again. \
                 On a machine with an NVIDIA GPU, install the NVIDIA driver so this server can \
                 read the GPU directly."
                    .into()
            } else {
                "Start ComfyUI on that machine (or check COMFYUI_URL) and ask again.".into()
            });
        }
        None => {
            status.summary = format!("{why_not_nvml}.");
        }
    }
    status
}

fn lines(gpus: &[GpuReport]) -> String {
    gpus.iter()
        .map(|gpu| gpu.summary.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether ComfyUI at `url` runs on this machine: loopback, `localhost`, or the unspecified
/// address. A LAN name or address of this same machine counts as another machine, which only
/// costs detail (ComfyUI's report instead of NVML's), never correctness.
pub fn is_on_this_machine(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Gauges for the metrics exporter.

/// The cheap per-GPU numbers for metrics gauges (`COMFYUI_AGENT_GPU_METRICS=1`). Always this
/// machine's NVIDIA GPUs, whatever ComfyUI's address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuGauges {
    pub index: u32,
    pub name: String,
    pub uuid: Option<String>,
    pub vram_used_bytes: Option<u64>,
    pub vram_total_bytes: Option<u64>,
    pub gpu_utilization_percent: Option<u32>,
    pub memory_utilization_percent: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_draw_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    pub sm_clock_mhz: Option<u32>,
}

/// The gauges for a sample, in index order.
pub fn gauges_of(sample: &NvmlSample) -> Vec<GpuGauges> {
    nvml_reports(sample)
        .into_iter()
        .map(|report| GpuGauges {
            index: report.index,
            name: report.name,
            uuid: report.uuid,
            vram_used_bytes: report.vram_used_bytes,
            vram_total_bytes: report.vram_total_bytes,
            gpu_utilization_percent: report.gpu_utilization_percent,
            memory_utilization_percent: report.memory_utilization_percent,
            temperature_c: report.temperature_c,
            power_draw_watts: report.power_draw_w,
            power_limit_watts: report.power_limit_w,
            sm_clock_mhz: report.clocks.and_then(|clocks| clocks.sm_mhz),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The probe.

type Opened = Result<Arc<dyn GpuSource>, NvmlUnavailable>;

/// What the sources said for one request.
#[derive(Debug)]
struct Readings {
    /// The ComfyUI address asked (or that would be asked).
    url: Url,
    local: bool,
    nvml: NvmlOutcome,
    /// ComfyUI's report, when NVML gave nothing.
    stats: Option<Result<SystemStats, ComfyError>>,
}

/// This process's GPU probe, owned by `AppState`. NVML is loaded once, on first use, on a
/// blocking thread; the outcome (NVML, or why not) is kept for the process's life.
#[derive(Debug)]
pub struct GpuProbe {
    nvml: OnceCell<Opened>,
    facts: OnceCell<LocalFacts>,
    /// Kept once complete (GPU facts found); an incomplete one is detected again when asked.
    hardware: OnceCell<Arc<HardwareProfile>>,
    metrics: bool,
}

impl GpuProbe {
    /// A probe that loads the real NVML when first asked. `metrics` turns on [`Self::gauges`].
    pub fn new(metrics: bool) -> Self {
        Self {
            nvml: OnceCell::new(),
            facts: OnceCell::new(),
            hardware: OnceCell::new(),
            metrics,
        }
    }

    /// A probe with a given source, or a given reason it has none (tests, benches).
    pub fn with_source(source: Opened, metrics: bool) -> Self {
        Self {
            nvml: OnceCell::new_with(Some(source)),
            ..Self::new(metrics)
        }
    }

    /// Whether GPU metrics gauges are enabled (`COMFYUI_AGENT_GPU_METRICS`).
    pub fn metrics_enabled(&self) -> bool {
        self.metrics
    }

    /// NVML, loaded on first use; or why it can't be.
    async fn opened(&self) -> &Opened {
        self.nvml
            .get_or_init(|| async {
                let opened = tokio::task::spawn_blocking(open_nvml)
                    .await
                    .unwrap_or_else(|error| Err(NvmlUnavailable::Failed(error.to_string())));
                match &opened {
                    Ok(_) => tracing::info!("NVIDIA GPU probe ready (NVML)"),
                    Err(reason) => tracing::debug!(%reason, "no NVML on this machine"),
                }
                opened
            })
            .await
    }

    async fn facts(&self) -> LocalFacts {
        *self
            .facts
            .get_or_init(|| async {
                tokio::task::spawn_blocking(LocalFacts::detect)
                    .await
                    .unwrap_or_default()
            })
            .await
    }

    /// Loads NVML and reads this machine's facts now, so the first request finds them ready.
    pub async fn warm_up(&self) {
        self.opened().await;
        self.facts().await;
    }

    /// Reads this machine's NVIDIA GPUs now.
    pub async fn sample(&self, processes: bool) -> Result<NvmlSample, NvmlProblem> {
        let source = match self.opened().await {
            Ok(source) => Arc::clone(source),
            Err(reason) => return Err(reason.clone().into()),
        };
        tokio::task::spawn_blocking(move || source.read(processes))
            .await
            .unwrap_or_else(|error| Err(NvmlFault(error.to_string())))
            .map_err(NvmlProblem::from)
    }

    /// The current per-GPU numbers for metrics gauges: empty when the setting is off, when
    /// this machine has no NVIDIA GPU, or when a read fails. Never asks ComfyUI.
    pub async fn gauges(&self) -> Vec<GpuGauges> {
        if !self.metrics {
            return Vec::new();
        }
        match self.sample(false).await {
            Ok(sample) => gauges_of(&sample),
            Err(error) => {
                tracing::debug!(%error, "no GPU gauges");
                Vec::new()
            }
        }
    }

    /// The GPU status of the machine ComfyUI runs on: NVML when that is this machine and
    /// NVML works, otherwise ComfyUI's `/system_stats`. Never fails.
    pub async fn status(&self, comfy: &Comfy, processes: bool) -> GpuStatus {
        let readings = self.read(comfy, processes).await;
        let hardware = self
            .remember(readings.local, &readings.nvml, readings.stats.as_ref())
            .await;
        assemble(
            &readings.url,
            readings.local,
            readings.nvml,
            readings.stats,
            (*hardware).clone(),
        )
    }

    /// The hardware profile of the machine ComfyUI runs on, detected once (again later only
    /// while no GPU facts could be found, e.g. ComfyUI on another machine was down).
    pub async fn hardware(&self, comfy: &Comfy) -> Arc<HardwareProfile> {
        if let Some(known) = self.hardware.get() {
            return Arc::clone(known);
        }
        let readings = self.read(comfy, false).await;
        self.remember(readings.local, &readings.nvml, readings.stats.as_ref())
            .await
    }

    /// NVML when ComfyUI runs on this machine; ComfyUI's report when NVML gave nothing.
    async fn read(&self, comfy: &Comfy, processes: bool) -> Readings {
        let mut url = comfy.status().url;
        let local = is_on_this_machine(&url);
        let nvml = if local {
            match self.sample(processes).await {
                Ok(sample) => NvmlOutcome::Sampled(sample),
                Err(problem) => NvmlOutcome::Failed(problem),
            }
        } else {
            NvmlOutcome::NotAsked
        };
        let stats = match nvml {
            NvmlOutcome::Sampled(_) => None,
            _ => {
                // Without a configured address this may find ComfyUI on another usual port.
                let client = comfy.client().await;
                url = client.base_url().clone();
                Some(client.system_stats().await)
            }
        };
        Readings {
            url,
            local,
            nvml,
            stats,
        }
    }

    /// The kept profile, or one built from these readings (kept when complete).
    async fn remember(
        &self,
        local: bool,
        nvml: &NvmlOutcome,
        stats: Option<&Result<SystemStats, ComfyError>>,
    ) -> Arc<HardwareProfile> {
        if let Some(known) = self.hardware.get() {
            return Arc::clone(known);
        }
        let sample = match nvml {
            NvmlOutcome::Sampled(sample) => Some(sample),
            _ => None,
        };
        let stats = stats.and_then(|stats| stats.as_ref().ok());
        let built = Arc::new(profile(local, self.facts().await, sample, stats));
        if built.is_complete() {
            // Another caller may have stored one first; theirs is as good.
            let _ = self.hardware.set(Arc::clone(&built));
            tracing::debug!(profile = ?built, "hardware profile detected");
        }
        built
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn h200(index: u32) -> GpuReading {
        GpuReading {
            index,
            name: Some("NVIDIA H200".into()),
            uuid: Some(format!("GPU-{index}")),
            memory_used: Some(13_207_024_435),
            memory_free: Some(137_000_000_000),
            memory_total: Some(150_118_760_448),
            utilization_gpu: Some(45),
            utilization_memory: Some(12),
            temperature_c: Some(38),
            power_draw_mw: Some(120_400),
            power_limit_mw: Some(700_000),
            clocks: Clocks {
                sm_mhz: Some(1980),
                sm_max_mhz: Some(1980),
                memory_mhz: Some(3201),
                memory_max_mhz: Some(3201),
                graphics_mhz: None,
                graphics_max_mhz: None,
            },
            compute_capability: Some((9, 0)),
            pcie: Some(Pcie {
                bus_id: Some("00000000:19:00.0".into()),
                link_generation: Some(5),
                link_width: Some(16),
            }),
            processes: vec![
                ProcessReading {
                    pid: 30,
                    name: Some("python".into()),
                    used_bytes: Some(2 << 30),
                },
                ProcessReading {
                    pid: 10,
                    name: None,
                    used_bytes: None,
                },
                ProcessReading {
                    pid: 20,
                    name: Some("ComfyUI".into()),
                    used_bytes: Some(10 << 30),
                },
            ],
            unreadable: Vec::new(),
        }
    }

    /// Two H200s, listed out of order, with processes; shared with the tool's tests.
    pub(crate) fn sample() -> NvmlSample {
        NvmlSample {
            driver_version: Some("570.86.15".into()),
            cuda_driver_version: Some("12.8".into()),
            gpus: vec![h200(1), h200(0)],
        }
    }

    fn url(raw: &str) -> Url {
        Url::parse(raw).expect("url")
    }

    fn stats(json: &str) -> SystemStats {
        serde_json::from_str(json).expect("stats")
    }

    const GPU_STATS: &str = r#"{"system":{"os":"posix","ram_total":68719476736},
        "devices":[{"name":"cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync","type":"cuda",
                    "index":0,"vram_total":25757220864,"vram_free":20000000000,
                    "torch_vram_total":1000,"torch_vram_free":500}]}"#;
    const CPU_STATS: &str = r#"{"system":{"ram_total":1000},"devices":[{"name":"cpu","type":"cpu",
        "index":null,"vram_total":1000,"vram_free":900}]}"#;

    fn facts() -> LocalFacts {
        LocalFacts {
            cpu_logical_cores: Some(16),
            ram_total_bytes: Some(128 << 30),
        }
    }

    #[test]
    fn a_gpu_summary_reads_like_nvidia_smi_for_people() {
        let reports = nvml_reports(&sample());
        assert_eq!(
            reports[0].summary,
            "GPU 0 · NVIDIA H200 · 12.3 / 139.8 GiB VRAM used · 45 % busy · 38 °C · 120 / 700 W"
        );
        assert_eq!(reports[0].compute_capability.as_deref(), Some("9.0"));
        assert_eq!(reports[0].power_draw_w, Some(120.4));
        assert_eq!(reports[0].vram_used_gib, Some(12.3));
    }

    #[test]
    fn gpus_come_in_index_order_and_processes_biggest_first() {
        let reports = nvml_reports(&sample());
        let indices: Vec<u32> = reports.iter().map(|r| r.index).collect();
        assert_eq!(indices, [0, 1]);
        let pids: Vec<u32> = reports[0].processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [20, 30, 10], "unknown sizes last");
        assert_eq!(reports[0].processes[0].used_gib, Some(10.0));
    }

    #[test]
    fn at_most_five_processes_are_listed() {
        let mut gpu = h200(0);
        gpu.processes = (0..9)
            .map(|pid| ProcessReading {
                pid,
                name: None,
                used_bytes: Some(u64::from(pid) << 20),
            })
            .collect();
        let reports = nvml_reports(&NvmlSample {
            gpus: vec![gpu],
            ..NvmlSample::default()
        });
        assert_eq!(reports[0].processes.len(), TOP_PROCESSES);
        assert_eq!(reports[0].processes[0].pid, 8);
    }

    #[test]
    fn missing_readings_are_left_out_not_failed() {
        let bare = GpuReading {
            index: 3,
            ..GpuReading::default()
        };
        let reports = nvml_reports(&NvmlSample {
            gpus: vec![bare],
            ..NvmlSample::default()
        });
        assert_eq!(reports[0].summary, "GPU 3 · NVIDIA GPU 3");
        let json = serde_json::to_value(&reports[0]).expect("json");
        let keys: Vec<&String> = json.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["index", "name", "summary"]);
    }

    #[test]
    fn a_process_in_both_lists_appears_once() {
        let merged = merge_processes(vec![
            ProcessReading {
                pid: 1,
                name: None,
                used_bytes: Some(5),
            },
            ProcessReading {
                pid: 1,
                name: Some("x".into()),
                used_bytes: Some(9),
            },
        ]);
        assert_eq!(
            merged,
            [ProcessReading {
                pid: 1,
                name: Some("x".into()),
                used_bytes: Some(9)
            }]
        );
    }

    #[test]
    fn comfyui_device_names_are_tidied() {
        assert_eq!(
            tidy_device_name("cuda:1 NVIDIA GeForce RTX 4090 : cudaMallocAsync"),
            (Some(1), "NVIDIA GeForce RTX 4090".to_string())
        );
        assert_eq!(tidy_device_name("mps"), (None, "mps".to_string()));
        assert_eq!(
            tidy_device_name("xpu:0 Intel Arc A770"),
            (Some(0), "Intel Arc A770".to_string())
        );
    }

    #[test]
    fn only_loopback_addresses_are_this_machine() {
        for local in [
            "http://127.0.0.1:8188/",
            "http://localhost:8188/",
            "http://LocalHost./",
            "http://[::1]:8188/",
            "http://0.0.0.0:8188/",
            "http://127.8.0.1/",
        ] {
            assert!(is_on_this_machine(&url(local)), "{local}");
        }
        for remote in [
            "http://192.168.1.20:8188/",
            "https://gpu-box.example/comfy/",
            "http://[2001:db8::1]/",
        ] {
            assert!(!is_on_this_machine(&url(remote)), "{remote}");
        }
    }

    #[test]
    fn nvml_is_the_source_when_it_answers() {
        let hardware = profile(true, facts(), Some(&sample()), None);
        let status = assemble(
            &url("http://127.0.0.1:8188/"),
            true,
            NvmlOutcome::Sampled(sample()),
            None,
            hardware,
        );
        assert_eq!(status.source, GpuSourceKind::Nvml);
        assert_eq!(status.nvml, "available");
        assert_eq!(status.gpus.len(), 2);
        assert_eq!(status.summary.lines().count(), 2);
        assert_eq!(status.cuda_driver_version.as_deref(), Some("12.8"));
        assert!(status.note.is_none() && status.hint.is_none());
        assert_eq!(
            status.hardware.gpus[0].compute_capability.as_deref(),
            Some("9.0")
        );
        assert_eq!(status.hardware.cpu_logical_cores, Some(16));
    }

    #[test]
    fn without_nvml_comfyui_reports_its_devices() {
        let stats = stats(GPU_STATS);
        let hardware = profile(true, facts(), None, Some(&stats));
        let status = assemble(
            &url("http://127.0.0.1:8188/"),
            true,
            NvmlOutcome::Failed(NvmlUnavailable::NotInstalled.into()),
            Some(Ok(stats)),
            hardware,
        );
        assert_eq!(status.source, GpuSourceKind::ComfyuiSystemStats);
        assert_eq!(status.gpus[0].name, "NVIDIA GeForce RTX 4090");
        assert_eq!(status.gpus[0].vram_used_bytes, Some(5_757_220_864));
        assert_eq!(status.gpus[0].torch_vram_free_bytes, Some(500));
        assert_eq!(
            status.summary,
            "GPU 0 · NVIDIA GeForce RTX 4090 · 5.4 / 24.0 GiB VRAM used"
        );
        let note = status.note.expect("note");
        assert!(note.contains("isn't installed"), "{note}");
        assert_eq!(
            status.hardware.gpu_source,
            GpuSourceKind::ComfyuiSystemStats
        );
        assert_eq!(
            status.hardware.ram_total_bytes,
            Some(128 << 30),
            "local RAM"
        );
    }

    #[test]
    fn a_remote_comfyui_is_described_by_its_own_report() {
        let stats = stats(GPU_STATS);
        let hardware = profile(false, facts(), None, Some(&stats));
        assert_eq!(hardware.machine, ProfiledMachine::ComfyuiHost);
        assert_eq!(hardware.cpu_logical_cores, None);
        assert_eq!(hardware.ram_total_bytes, Some(68_719_476_736));
        assert_eq!(hardware.os.as_deref(), Some("posix"));
        let status = assemble(
            &url("http://gpu-box:8188/"),
            false,
            NvmlOutcome::NotAsked,
            Some(Ok(stats)),
            hardware,
        );
        assert_eq!(status.source, GpuSourceKind::ComfyuiSystemStats);
        assert!(status.nvml.starts_with("not asked"));
        assert!(
            status
                .note
                .as_deref()
                .is_some_and(|n| n.contains("gpu-box")),
            "{status:?}"
        );
    }

    #[test]
    fn a_cpu_only_comfyui_reports_no_gpu() {
        let stats = stats(CPU_STATS);
        let hardware = profile(true, LocalFacts::default(), None, Some(&stats));
        assert!(hardware.gpus.is_empty());
        assert_eq!(
            hardware.ram_total_bytes,
            Some(1000),
            "ComfyUI's RAM fills in"
        );
        let status = assemble(
            &url("http://127.0.0.1:8188/"),
            true,
            NvmlOutcome::Failed(NvmlUnavailable::NotInstalled.into()),
            Some(Ok(stats)),
            hardware,
        );
        assert_eq!(status.source, GpuSourceKind::ComfyuiSystemStats);
        assert!(status.gpus.is_empty());
        assert!(
            status.summary.contains("runs on the CPU"),
            "{}",
            status.summary
        );
        assert!(status.hint.is_some());
    }

    #[test]
    fn with_neither_source_the_answer_says_so_plainly() {
        let down = ComfyError::Unreachable {
            url: "http://127.0.0.1:8188/".into(),
            detail: "Connection refused".into(),
            hint: crate::comfy::PortHint::Configured { port: Some(8188) },
        };
        let hardware = profile(true, facts(), None, None);
        assert_eq!(hardware.gpu_source, GpuSourceKind::None);
        let status = assemble(
            &url("http://127.0.0.1:8188/"),
            true,
            NvmlOutcome::Failed(NvmlUnavailable::NotInstalled.into()),
            Some(Err(down)),
            hardware,
        );
        assert_eq!(status.source, GpuSourceKind::None);
        assert_eq!(
            status.summary,
            "No NVIDIA GPU found on this machine (the NVIDIA driver's NVML library isn't \
             installed), and ComfyUI isn't answering at http://127.0.0.1:8188/ to report its \
             own devices."
        );
        assert!(
            status
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("Start ComfyUI"))
        );
        assert!(status.comfyui_error.is_some());
    }

    #[test]
    fn gauges_carry_the_cheap_numbers() {
        let gauges = gauges_of(&sample());
        assert_eq!(gauges.len(), 2);
        assert_eq!(gauges[0].index, 0);
        assert_eq!(gauges[0].vram_total_bytes, Some(150_118_760_448));
        assert_eq!(gauges[0].power_draw_watts, Some(120.4));
        assert_eq!(gauges[0].sm_clock_mhz, Some(1980));
    }

    #[tokio::test]
    async fn the_probe_keeps_its_source_and_gauges_follow_the_setting() {
        let source: Arc<dyn GpuSource> = Arc::new(RecordedSource(sample()));
        let on = GpuProbe::with_source(Ok(Arc::clone(&source)), true);
        assert_eq!(on.gauges().await.len(), 2);
        let without = on.sample(false).await.expect("sample");
        assert!(without.gpus.iter().all(|gpu| gpu.processes.is_empty()));
        let off = GpuProbe::with_source(Ok(source), false);
        assert!(off.gauges().await.is_empty());
        let absent = GpuProbe::with_source(Err(NvmlUnavailable::NotInstalled), true);
        assert!(absent.gauges().await.is_empty());
        assert_eq!(
            absent.sample(true).await,
            Err(NvmlProblem::Unavailable(NvmlUnavailable::NotInstalled))
        );
    }

    /// A ComfyUI on this machine that isn't running (a loopback port nobody listens on).
    fn comfy_down() -> Comfy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let config = crate::config::Config::for_data_dir(std::env::temp_dir())
            .with_comfyui_url(url(&format!("http://127.0.0.1:{port}/")));
        Comfy::new(&config, None, &std::sync::Arc::default()).expect("client")
    }

    #[tokio::test]
    async fn with_nvml_here_comfyui_is_not_needed_and_the_profile_is_kept() {
        let probe = GpuProbe::with_source(Ok(Arc::new(RecordedSource(sample()))), false);
        let comfy = comfy_down();
        let status = probe.status(&comfy, true).await;
        assert_eq!(status.source, GpuSourceKind::Nvml);
        assert!(status.comfyui_error.is_none(), "ComfyUI was not asked");
        assert_eq!(status.gpus[0].processes.len(), 3);
        assert_eq!(status.hardware.gpus.len(), 2);
        let first = probe.hardware(&comfy).await;
        let second = probe.hardware(&comfy).await;
        assert!(Arc::ptr_eq(&first, &second), "detected once");
        assert_eq!(first.machine, ProfiledMachine::ThisMachine);
    }

    #[tokio::test]
    async fn an_incomplete_profile_is_detected_again() {
        let probe = GpuProbe::with_source(Err(NvmlUnavailable::NotInstalled), false);
        let comfy = comfy_down();
        let status = probe.status(&comfy, true).await;
        assert_eq!(status.source, GpuSourceKind::None);
        assert!(status.comfyui_error.is_some());
        let first = probe.hardware(&comfy).await;
        assert_eq!(first.gpu_source, GpuSourceKind::None);
        let second = probe.hardware(&comfy).await;
        assert!(
            !Arc::ptr_eq(&first, &second),
            "not kept while ComfyUI is down"
        );
    }

    #[tokio::test]
    async fn a_real_probe_on_any_machine_answers_without_panicking() {
        // On a machine without an NVIDIA driver (CI) this is the absent path; with one, a sample.
        let probe = GpuProbe::new(false);
        match probe.sample(true).await {
            Ok(sample) => assert!(!sample.gpus.is_empty()),
            Err(problem) => assert!(!problem.to_string().is_empty()),
        }
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let meminfo = "MemTotal:       16318412 kB\nMemFree:         1000 kB\n";
        assert_eq!(meminfo_total(meminfo), Some(16_318_412 * 1024));
        assert_eq!(meminfo_total("nothing"), None);
    }

    #[test]
    fn local_facts_find_cores_here() {
        let facts = LocalFacts::detect();
        assert!(facts.cpu_logical_cores.is_some_and(|n| n >= 1));
        if cfg!(target_os = "linux") {
            assert!(facts.ram_total_bytes.is_some_and(|b| b > 0));
        }
    }
}
