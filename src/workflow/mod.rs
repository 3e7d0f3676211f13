//! Workflows as ComfyUI stores them: API format (`{id: {class_type, inputs}}`), API format
//! wrapped in `{"prompt": …}`, and the UI (litegraph) format with `nodes`.

pub mod convert;
pub mod edit;
pub mod load;
pub mod model;
pub mod patch;
pub mod templates;
pub mod validate;

use serde_json::Value;

/// Input names whose values are model file names (the original project's list, plus the
/// numbered CLIP loaders' `clip_name1`…).
const MODEL_INPUTS: &[&str] = &[
    "ckpt_name",
    "vae_name",
    "lora_name",
    "control_net_name",
    "model_name",
    "clip_name",
    "unet_name",
    "model_path",
    "mesh_model",
    "point_cloud",
    "audio_model",
    "tts_model",
    "video_model",
];

const MODEL_EXTENSIONS: &[&str] = &[
    ".safetensors",
    ".ckpt",
    ".pt",
    ".pth",
    ".bin",
    ".gguf",
    ".sft",
    ".onnx",
];

/// How a workflow document is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Api,
    Ui,
}

/// Tells the format apart, or says why the document isn't a workflow.
pub fn detect(doc: &Value) -> Result<(Format, &Value), String> {
    let Some(object) = doc.as_object() else {
        return Err("it is not a JSON object".into());
    };
    if object.get("nodes").is_some_and(Value::is_array) {
        return Ok((Format::Ui, doc));
    }
    if let Some(prompt) = object.get("prompt").filter(|p| p.is_object()) {
        return detect(prompt);
    }
    let is_api = !object.is_empty()
        && object
            .values()
            .all(|node| node.get("class_type").is_some_and(Value::is_string));
    if is_api {
        Ok((Format::Api, doc))
    } else {
        Err("it has neither API-format nodes (with class_type) nor a UI `nodes` list".into())
    }
}

/// Every model file name the workflow refers to, in node order, without duplicates.
pub fn model_references(doc: &Value) -> Result<Vec<String>, String> {
    let (format, doc) = detect(doc)?;
    let mut found: Vec<String> = Vec::new();
    let mut push = |name: &str| {
        if !name.is_empty() && !found.iter().any(|f| f == name) {
            found.push(name.to_string());
        }
    };
    match format {
        Format::Api => {
            let mut nodes: Vec<(&String, &Value)> = doc.as_object().into_iter().flatten().collect();
            nodes.sort_by_key(|(id, _)| id.parse::<u64>().unwrap_or(u64::MAX));
            for (_, node) in nodes {
                let Some(inputs) = node.get("inputs").and_then(Value::as_object) else {
                    continue;
                };
                for (key, value) in inputs {
                    let is_model_input = MODEL_INPUTS.contains(&key.as_str())
                        || key.starts_with("clip_name")
                        || key.starts_with("lora_name");
                    if let (true, Some(name)) = (is_model_input, value.as_str()) {
                        push(name);
                    }
                }
            }
        }
        Format::Ui => {
            let nodes = doc
                .get("nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for node in nodes {
                let widgets = node.get("widgets_values").and_then(Value::as_array);
                for value in widgets.into_iter().flatten().filter_map(Value::as_str) {
                    let lower = value.to_lowercase();
                    if MODEL_EXTENSIONS.iter().any(|ext| lower.ends_with(ext)) {
                        push(value);
                    }
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_format_model_inputs_in_node_order() {
        let doc = json!({
            "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail.safetensors", "model": ["4", 0]}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_base.safetensors"}},
            "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl.safetensors", "clip_name2": "clip_l.safetensors"}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["10", 0]}}
        });
        assert_eq!(
            model_references(&doc).expect("api"),
            [
                "sdxl_base.safetensors",
                "detail.safetensors",
                "t5xxl.safetensors",
                "clip_l.safetensors"
            ]
        );
    }

    #[test]
    fn wrapped_and_ui_formats() {
        let wrapped = json!({"prompt": {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}}}});
        assert_eq!(
            model_references(&wrapped).expect("wrapped"),
            ["flux1-dev.safetensors"]
        );
        let ui = json!({"nodes": [
            {"type": "CheckpointLoaderSimple", "widgets_values": ["v1-5-pruned.ckpt"]},
            {"type": "KSampler", "widgets_values": [42, "randomize", 20, 7.5, "euler", "normal", 1.0]}
        ], "links": []});
        assert_eq!(model_references(&ui).expect("ui"), ["v1-5-pruned.ckpt"]);
    }

    #[test]
    fn non_workflows_are_explained() {
        assert!(model_references(&json!([1, 2])).is_err());
        assert!(model_references(&json!({})).is_err());
        assert!(model_references(&json!({"a": {"no_class": 1}})).is_err());
    }
}
