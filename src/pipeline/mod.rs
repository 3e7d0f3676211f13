//! Pipelines: workflows run one after another, where a stage's input image is an earlier
//! stage's output. The definition is checked before it is stored ([`definition`]); the runner
//! ([`runner`]) moves each output into ComfyUI's input folder (download, then upload) so the
//! next stage's LoadImage can really read it.

pub mod definition;
pub mod runner;

use serde::{Deserialize, Serialize};

pub use definition::{Mapping, OutputKey, Pipeline, Stage};
pub use runner::{PipelineRun, StageResult};

/// The SessionDocs kind the definition and the last run are kept under.
pub const DOC_KIND: &str = "pipelines";

/// What a session keeps on disk: its pipeline and how its last run went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PipelineDoc {
    #[serde(default)]
    pub pipeline: Option<Pipeline>,
    #[serde(default)]
    pub last_run: Option<PipelineRun>,
}

/// The run in progress in a session, readable by a concurrent `get_pipeline_status`.
#[derive(Debug, Default)]
pub struct Live {
    run: std::sync::Mutex<Option<PipelineRun>>,
}

impl Live {
    pub fn get(&self) -> Option<PipelineRun> {
        self.run
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, run: Option<PipelineRun>) {
        *self
            .run
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = run;
    }
}
