//! The tool families. Each domain file exports `tools()`, its list of declarations; this is
//! the only place the lists are summed.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::registry::ToolSpec;

/// For tools that take no arguments (unknown ones are still refused).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

pub mod civitai;
pub mod comfy_api;
pub mod demo;
pub mod discover;
pub mod execution;
pub mod github;
pub mod gpu;
pub mod health;
pub mod inspect;
pub mod model_compat;
pub mod refine;
pub mod sessions;
pub mod workflow;

/// Every tool the product offers, in `tools/list` order.
pub fn all() -> Vec<ToolSpec> {
    let mut tools = Vec::new();
    tools.extend(comfy_api::tools());
    tools.extend(inspect::tools());
    tools.extend(model_compat::tools());
    tools.extend(workflow::tools());
    tools.extend(sessions::tools());
    tools.extend(execution::tools());
    tools.extend(discover::tools());
    tools.extend(civitai::tools());
    tools.extend(gpu::tools());
    tools.extend(github::tools());
    tools.extend(health::tools());
    tools.extend(refine::tools());
    tools.extend(demo::tools());
    tools
}
