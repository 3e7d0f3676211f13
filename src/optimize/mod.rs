//! Making a workflow fit and run well on the machine at hand. The hardware comes from the
//! real profile (NVML when ComfyUI is local, ComfyUI's `/system_stats` otherwise); the GPU
//! generation is read from its compute capability or, failing that, its name (Blackwell,
//! Hopper, Ada, Ampere, Turing, older, Apple, AMD, Intel, or no GPU at all). Memory needs are
//! estimated from the workflow's loaders (real file sizes when the models folder is here,
//! typical sizes per family otherwise), its resolution, batch and frames. Every change that
//! can be made automatically is a JSON Patch applied through the session's patch engine, so
//! it can be undone like any other edit.

pub mod estimate;
pub mod hardware;
pub mod plan;

pub use estimate::{Estimate, ModelLoad, WorkflowFacts};
pub use hardware::{Arch, Machine};
pub use plan::{Optimization, catalogue, patch_for};
