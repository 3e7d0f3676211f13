//! The tool families. Each domain file exports `tools()`, its list of declarations; this is
//! the only place the lists are summed.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ToolError;
use crate::registry::ToolSpec;

/// For tools that take no arguments (unknown ones are still refused).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Runs a call into a file store (sessions, session documents) off the async threads: they
/// read and fsync files.
pub(crate) async fn blocking<T: Send + 'static>(
    app: &AppState,
    f: impl FnOnce(&AppState) -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&app))
        .await
        .map_err(|error| ToolError::Internal(format!("a storage task failed: {error}")))?
}

pub mod civitai;
pub mod comfy_api;
pub mod demo;
pub mod discover;
pub mod execution;
pub mod github;
pub mod gpu;
pub mod health;
pub mod inspect;
pub mod intent;
pub mod memory;
pub mod model_compat;
pub mod optimize;
pub mod pipeline;
pub mod planning;
pub mod provenance;
pub mod refine;
pub mod sessions;
pub mod subtask;
pub mod vision;
pub mod workflow;

/// Every tool the product offers, in `tools/list` order.
pub fn all() -> Vec<ToolSpec> {
    let mut tools = Vec::new();
    tools.extend(comfy_api::tools());
    tools.extend(inspect::tools());
    tools.extend(model_compat::tools());
    tools.extend(workflow::tools());
    tools.extend(sessions::tools());
    tools.extend(planning::tools());
    tools.extend(intent::tools());
    tools.extend(memory::tools());
    tools.extend(execution::tools());
    tools.extend(pipeline::tools());
    tools.extend(discover::tools());
    tools.extend(civitai::tools());
    tools.extend(gpu::tools());
    tools.extend(optimize::tools());
    tools.extend(github::tools());
    tools.extend(provenance::tools());
    tools.extend(vision::tools());
    tools.extend(subtask::tools());
    tools.extend(health::tools());
    tools.extend(refine::tools());
    tools.extend(demo::tools());
    tools
}
