//! The node types a workflow needs, read from either file format.

use std::collections::HashSet;

use serde_json::Value;

/// Node types the UI draws but ComfyUI never runs.
pub const FRONTEND_ONLY: [&str; 4] = ["Note", "MarkdownNote", "Reroute", "PrimitiveNode"];

/// Node types of an API- or UI-format workflow. UI nodes that stand for a subgraph are
/// replaced by the subgraph's own nodes; frontend-only nodes are skipped.
pub fn node_classes(doc: &Value) -> Result<Vec<String>, String> {
    let (format, doc) = crate::workflow::detect(doc)?;
    let mut found: Vec<String> = Vec::new();
    match format {
        crate::workflow::Format::Api => {
            for node in doc.as_object().into_iter().flat_map(|o| o.values()) {
                if let Some(class) = node.get("class_type").and_then(Value::as_str) {
                    found.push(class.to_string());
                }
            }
        }
        crate::workflow::Format::Ui => {
            let subgraphs: Vec<&Value> = doc
                .get("definitions")
                .and_then(|d| d.get("subgraphs"))
                .and_then(Value::as_array)
                .map(|list| list.iter().collect())
                .unwrap_or_default();
            let subgraph_ids: HashSet<&str> = subgraphs
                .iter()
                .filter_map(|s| s.get("id").and_then(Value::as_str))
                .collect();
            let lists = std::iter::once(doc.get("nodes"))
                .chain(subgraphs.iter().map(|s| s.get("nodes")))
                .flatten()
                .filter_map(Value::as_array);
            for node in lists.flatten() {
                let Some(class) = node.get("type").and_then(Value::as_str) else {
                    continue;
                };
                if FRONTEND_ONLY.contains(&class) || subgraph_ids.contains(class) {
                    continue;
                }
                found.push(class.to_string());
            }
        }
    }
    found.retain(|c| !c.trim().is_empty());
    found.sort();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_workflows_give_their_class_types() {
        let doc = json!({
            "1": {"class_type": "KSampler", "inputs": {}},
            "2": {"class_type": "FaceDetailer", "inputs": {}},
            "3": {"class_type": "KSampler", "inputs": {}}
        });
        assert_eq!(
            node_classes(&doc).expect("api"),
            ["FaceDetailer", "KSampler"]
        );
    }

    #[test]
    fn ui_workflows_skip_frontend_nodes_and_open_subgraphs() {
        let doc = json!({
            "nodes": [
                {"id": 1, "type": "KSampler"},
                {"id": 2, "type": "Note"},
                {"id": 3, "type": "Reroute"},
                {"id": 4, "type": "PrimitiveNode"},
                {"id": 5, "type": "a1b2c3d4-0000-4000-8000-000000000000"},
                {"id": 6, "type": "MarkdownNote"}
            ],
            "definitions": {"subgraphs": [{
                "id": "a1b2c3d4-0000-4000-8000-000000000000",
                "nodes": [{"id": 1, "type": "UltimateSDUpscale"}]
            }]}
        });
        assert_eq!(
            node_classes(&doc).expect("ui"),
            ["KSampler", "UltimateSDUpscale"]
        );
        assert!(node_classes(&json!([1, 2])).is_err());
    }
}
