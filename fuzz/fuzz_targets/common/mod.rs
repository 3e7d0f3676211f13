//! Shared by the fuzz targets: the node list of a recorded ComfyUI, parsed once per process.

use std::sync::OnceLock;

use comfyui_agent::comfy::nodes::NodeIndex;

static OBJECT_INFO: &[u8] =
    include_bytes!("../../../tests/fixtures/comfyui-0.3.64/object_info.json");

pub fn index() -> &'static NodeIndex {
    static INDEX: OnceLock<NodeIndex> = OnceLock::new();
    INDEX.get_or_init(|| NodeIndex::parse(OBJECT_INFO).expect("the recorded object_info parses"))
}

/// The input as JSON, or `None` when it isn't. Not every target uses it.
#[allow(dead_code)]
pub fn json(data: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(data).ok()
}
