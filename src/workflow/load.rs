//! One way in for every workflow document: API format, API wrapped in `{"prompt": …}`, UI with
//! an embedded API prompt, or UI only (converted with the live node list). Callers get an API
//! workflow, the format it came in, and notes on anything a conversion couldn't carry over.

use serde::Serialize;
use serde_json::{Map, Value};

use super::convert::{self, ConversionNote, ConvertError};
use super::model::{ParseError, Workflow};
use crate::comfy::nodes::NodeIndex;

/// The format a document came in, with the original project's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoadedFormat {
    Api,
    UiWithApi,
    UiOnly,
}

impl LoadedFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::UiWithApi => "ui_with_api",
            Self::UiOnly => "ui_only",
        }
    }

    /// Reads a saved name back; the original project's `ui` counts as UI with API data.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "api" => Some(Self::Api),
            "ui_with_api" | "ui" => Some(Self::UiWithApi),
            "ui_only" => Some(Self::UiOnly),
            _ => None,
        }
    }
}

/// A workflow ready for validation and queuing.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub workflow: Workflow,
    pub format: LoadedFormat,
    /// Set only for UI-only documents: what the conversion couldn't carry over.
    pub notes: Vec<ConversionNote>,
}

/// Why a document can't be loaded; each message ends with what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error(
        "This file isn't valid JSON (line {line}, column {column}: {message}). Check that it was saved completely, or export the workflow from ComfyUI again."
    )]
    InvalidJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "This JSON isn't a ComfyUI workflow: {reason}. In ComfyUI use Workflow → Export (API), or Save, and load that file."
    )]
    NotAWorkflow { reason: String },
    #[error(
        "This API-format workflow is damaged: {0}. Export it from ComfyUI again with 'Export (API)'."
    )]
    BadApi(#[from] ParseError),
    #[error(
        "This is a UI-only workflow and ComfyUI isn't answering, so its widgets can't be matched to inputs. Start ComfyUI, or export with 'Export (API)'."
    )]
    NeedsNodeList,
    #[error(
        "This UI workflow has nothing that would run: {reason}. Unmute or un-bypass the nodes you want in ComfyUI and save again."
    )]
    NothingToRun {
        reason: String,
        notes: Vec<ConversionNote>,
    },
}

/// Parses text and loads it; invalid JSON is told apart from JSON that isn't a workflow.
pub fn load_str(text: &str, index: Option<&NodeIndex>) -> Result<Loaded, LoadError> {
    let doc: Value = serde_json::from_str(text).map_err(|error| LoadError::InvalidJson {
        line: error.line(),
        column: error.column(),
        message: plain_json_error(&error),
    })?;
    load(&doc, index)
}

/// serde's message without its trailing " at line L column C", which the error already gives.
fn plain_json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Loads any workflow document. `index` (ComfyUI's node list) is needed only for UI-only
/// documents, whose widget values carry no input names.
pub fn load(doc: &Value, index: Option<&NodeIndex>) -> Result<Loaded, LoadError> {
    let Some(object) = doc.as_object() else {
        return Err(not_a_workflow("it is not a JSON object"));
    };
    if object.get("nodes").is_some_and(Value::is_array) {
        return load_ui(doc, object, index);
    }
    // A `{"workflow": ui, "prompt": api}` pair, as PNG metadata and some tools write it.
    if let Some(ui) = object
        .get("workflow")
        .filter(|ui| ui.get("nodes").is_some_and(Value::is_array))
    {
        if let Some(prompt) = non_empty_object(object.get("prompt")) {
            return api(prompt, LoadedFormat::UiWithApi);
        }
        let Some(ui_object) = ui.as_object() else {
            return Err(not_a_workflow("its `workflow` is not an object"));
        };
        return load_ui(ui, ui_object, index);
    }
    if let Some(prompt) = object.get("prompt").filter(|p| p.is_object()) {
        return api(prompt, LoadedFormat::Api);
    }
    let looks_api =
        !object.is_empty() && object.values().all(|node| node.get("class_type").is_some());
    if looks_api {
        return api(doc, LoadedFormat::Api);
    }
    Err(not_a_workflow(
        "it has neither API-format nodes (with class_type) nor a UI `nodes` list",
    ))
}

fn not_a_workflow(reason: &str) -> LoadError {
    LoadError::NotAWorkflow {
        reason: reason.to_string(),
    }
}

fn non_empty_object(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
}

fn api(doc: &Value, format: LoadedFormat) -> Result<Loaded, LoadError> {
    Ok(Loaded {
        workflow: Workflow::from_api(doc)?,
        format,
        notes: Vec::new(),
    })
}

fn load_ui(
    doc: &Value,
    object: &Map<String, Value>,
    index: Option<&NodeIndex>,
) -> Result<Loaded, LoadError> {
    if let Some(prompt) = non_empty_object(object.get("extra").and_then(|e| e.get("prompt"))) {
        return api(prompt, LoadedFormat::UiWithApi);
    }
    let index = index.ok_or(LoadError::NeedsNodeList)?;
    match convert::ui_to_api(doc, index) {
        Ok(converted) => Ok(Loaded {
            workflow: converted.workflow,
            format: LoadedFormat::UiOnly,
            notes: converted.notes,
        }),
        Err(ConvertError::NotUi) => Err(not_a_workflow("it has no `nodes` list")),
        Err(ConvertError::NothingToRun { notes }) => Err(LoadError::NothingToRun {
            reason: "its nodes are all notes, muted or bypassed".into(),
            notes,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    fn index() -> NodeIndex {
        NodeIndex::parse(&fixture("comfyui-0.3.64/object_info.json")).expect("parses")
    }

    fn api_doc() -> Value {
        json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 64}}})
    }

    #[test]
    fn api_and_wrapped_api() {
        for doc in [api_doc(), json!({"prompt": api_doc(), "client_id": "x"})] {
            let loaded = load(&doc, None).expect("loads");
            assert_eq!(loaded.format, LoadedFormat::Api);
            assert_eq!(loaded.workflow.to_api(), api_doc());
        }
    }

    #[test]
    fn ui_with_an_embedded_prompt_needs_no_node_list() {
        let ui = json!({"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "extra": {"prompt": api_doc()}});
        let pair = json!({"workflow": {"nodes": [], "links": []}, "prompt": api_doc()});
        for doc in [ui, pair] {
            let loaded = load(&doc, None).expect("loads");
            assert_eq!(loaded.format, LoadedFormat::UiWithApi);
            assert_eq!(loaded.format.as_str(), "ui_with_api");
            assert_eq!(loaded.workflow.to_api(), api_doc());
        }
    }

    #[test]
    fn ui_only_is_converted_with_the_node_list_and_refused_without_it() {
        let text = String::from_utf8(fixture("workflows/ui/txt2img_sd15_ui.json")).expect("utf-8");
        let error = load_str(&text, None).expect_err("needs ComfyUI");
        assert_eq!(error, LoadError::NeedsNodeList);
        assert!(
            error
                .to_string()
                .contains("Start ComfyUI, or export with 'Export (API)'")
        );
        let loaded = load_str(&text, Some(&index())).expect("converts");
        assert_eq!(loaded.format, LoadedFormat::UiOnly);
        assert_eq!(loaded.workflow.nodes.len(), 7);
        // The same UI graph as a `{"workflow": …}` pair without a prompt is converted too.
        let ui: Value = serde_json::from_str(&text).expect("json");
        let pair = load(&json!({"workflow": ui}), Some(&index())).expect("converts");
        assert_eq!(pair.workflow, loaded.workflow);
    }

    #[test]
    fn seed_templates_and_fixtures_load_as_api() {
        for name in [
            "seed-templates/img2img.json",
            "seed-templates/txt2img_lora.json",
            "seed-templates/txt2img_sd15.json",
            "seed-templates/txt2img_sdxl.json",
            "workflows/txt2img_sd15.json",
            "workflows/txt2img_lora.json",
            "workflows/mixed_families.json",
        ] {
            let text = String::from_utf8(fixture(name)).expect("utf-8");
            let loaded = load_str(&text, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(loaded.format, LoadedFormat::Api, "{name}");
            assert!(!loaded.workflow.nodes.is_empty(), "{name}");
        }
    }

    #[test]
    fn malformed_documents_say_what_is_wrong() {
        match load_str("{\n  \"1\": {\"class_type\": \"X\",,}\n}", None) {
            Err(LoadError::InvalidJson { line, column, .. }) => assert_eq!((line, column), (2, 27)),
            other => panic!("{other:?}"),
        }
        let message = load_str("{\"a\": 1", None)
            .expect_err("truncated")
            .to_string();
        assert!(
            message.contains("line 1") && message.contains("export the workflow"),
            "{message}"
        );
        for doc in [
            "[1, 2]",
            "{}",
            "{\"a\": {\"b\": 1}}",
            "\"text\"",
            "{\"workflow\": 3}",
        ] {
            assert!(
                matches!(load_str(doc, None), Err(LoadError::NotAWorkflow { .. })),
                "{doc}"
            );
        }
        assert_eq!(
            load(&json!({"1": {"class_type": "X", "inputs": [1]}}), None),
            Err(LoadError::BadApi(ParseError::InputsNotAnObject {
                id: "1".into()
            }))
        );
        let notes_only = json!({"nodes": [{"id": 1, "type": "Note"}], "links": []});
        assert!(matches!(
            load(&notes_only, Some(&index())),
            Err(LoadError::NothingToRun { .. })
        ));
    }

    /// JSON built from the words workflows use, so random documents reach the converter.
    fn workflowish() -> impl Strategy<Value = Value> {
        let word = prop::sample::select(vec![
            "nodes",
            "links",
            "id",
            "type",
            "inputs",
            "outputs",
            "widgets_values",
            "mode",
            "link",
            "name",
            "widget",
            "definitions",
            "subgraphs",
            "origin_id",
            "origin_slot",
            "target_id",
            "target_slot",
            "prompt",
            "extra",
            "workflow",
            "class_type",
            "title",
            "KSampler",
            "Reroute",
            "PrimitiveNode",
            "LoadImage",
            "Note",
            "-10",
            "-20",
            "1",
            "2",
            "INT",
            "*",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-30i64..30).prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            word.clone().prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((word.clone(), inner), 0..6).prop_map(|pairs| Value::Object(
                    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    #[test]
    fn no_document_panics_the_loader() {
        let index = index();
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&workflowish(), |doc| {
                let _ = load(&doc, Some(&index));
                let _ = load(&json!({"nodes": [doc.clone()], "links": doc}), Some(&index));
                let _ = load(&doc, None);
                let _ = load_str(&doc.to_string(), Some(&index));
                Ok(())
            })
            .expect("never panics");
    }
}
