//! The tool families. Each domain file exports `tools()`, its list of declarations; this is
//! the only place the lists are summed.

use crate::registry::ToolSpec;

pub mod comfy_api;
pub mod model_compat;

/// Every tool the product offers, in `tools/list` order.
pub fn all() -> Vec<ToolSpec> {
    let mut tools = Vec::new();
    tools.extend(comfy_api::tools());
    tools.extend(model_compat::tools());
    tools
}
