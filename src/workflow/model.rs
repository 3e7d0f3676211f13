//! The API-format workflow as ComfyUI's `/prompt` takes it: node id → class, inputs and an
//! optional title. Inputs are links (`[node_id, output_index]`) or literal values. Reading is
//! as lenient as ComfyUI (numeric ids, `4.0` output indexes, unknown keys kept); writing gives
//! back the same JSON, so a load and save round-trips without loss.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One node's id, as written in the workflow (usually a small number, sometimes `"12:3"` for
/// nodes expanded from a group or subgraph).
pub type NodeId = String;

/// An API-format workflow.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Workflow {
    pub nodes: BTreeMap<NodeId, Node>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub class_type: String,
    /// In the order the document gave them.
    pub inputs: Vec<(String, Input)>,
    /// `_meta.title`, the name shown on the node in the UI.
    pub title: Option<String>,
    /// Any other keys on the node (and in `_meta`), kept as they were.
    pub extra: Map<String, Value>,
}

/// An input's value: a link to another node's output, or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Link(Link),
    Value(Value),
}

/// A connection from another node's output: `[node_id, output_index]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub node: NodeId,
    pub output: usize,
}

/// Why a document can't be read as an API-format workflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the workflow is not a JSON object of nodes")]
    NotAnObject,
    #[error("the workflow has no nodes")]
    Empty,
    #[error("node {id} is not an object")]
    NodeNotAnObject { id: String },
    #[error("node {id} has no class_type")]
    MissingClass { id: String },
    #[error("node {id} has inputs that are not an object")]
    InputsNotAnObject { id: String },
}

impl Link {
    /// Reads `[node_id, output_index]`: the id a string or an integer, the index a
    /// non-negative integer (`0.0` accepted). Anything else is not a link.
    pub fn from_value(value: &Value) -> Option<Self> {
        let [node, output] = value.as_array()?.as_slice() else {
            return None;
        };
        let node = match node {
            Value::String(id) => id.clone(),
            Value::Number(n) if n.as_u64().is_some() => n.to_string(),
            _ => return None,
        };
        let output = as_index(output)?;
        Some(Self { node, output })
    }

    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::String(self.node.clone()),
            Value::from(self.output),
        ])
    }
}

fn as_index(value: &Value) -> Option<usize> {
    if let Some(n) = value.as_u64() {
        return usize::try_from(n).ok();
    }
    let f = value.as_f64()?;
    // Integral, non-negative and small: JSON numbers written by other tools as 1.0.
    (f >= 0.0 && f.fract() == 0.0 && f <= 1e9).then_some(f as usize)
}

impl Input {
    pub fn from_value(value: &Value) -> Self {
        Link::from_value(value).map_or_else(|| Self::Value(value.clone()), Self::Link)
    }

    pub fn to_value(&self) -> Value {
        match self {
            Self::Link(link) => link.to_value(),
            Self::Value(value) => value.clone(),
        }
    }

    pub fn as_link(&self) -> Option<&Link> {
        match self {
            Self::Link(link) => Some(link),
            Self::Value(_) => None,
        }
    }
}

impl Node {
    pub fn new(class_type: impl Into<String>) -> Self {
        Self {
            class_type: class_type.into(),
            inputs: Vec::new(),
            title: None,
            extra: Map::new(),
        }
    }

    pub fn input(&self, name: &str) -> Option<&Input> {
        self.inputs
            .iter()
            .find(|(input, _)| input == name)
            .map(|(_, value)| value)
    }

    /// Sets an input, keeping its place if it exists.
    pub fn set_input(&mut self, name: &str, value: Input) {
        match self.inputs.iter_mut().find(|(input, _)| input == name) {
            Some((_, slot)) => *slot = value,
            None => self.inputs.push((name.to_string(), value)),
        }
    }

    pub fn remove_input(&mut self, name: &str) -> Option<Input> {
        let at = self.inputs.iter().position(|(input, _)| input == name)?;
        Some(self.inputs.remove(at).1)
    }

    /// The title if set, else the class.
    pub fn label(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.class_type)
    }

    fn from_value(id: &str, value: &Value) -> Result<Self, ParseError> {
        let object = value
            .as_object()
            .ok_or_else(|| ParseError::NodeNotAnObject { id: id.to_string() })?;
        let class_type = object
            .get("class_type")
            .and_then(Value::as_str)
            .filter(|class| !class.trim().is_empty())
            .ok_or_else(|| ParseError::MissingClass { id: id.to_string() })?
            .to_string();
        let inputs = match object.get("inputs") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(inputs)) => inputs
                .iter()
                .map(|(name, value)| (name.clone(), Input::from_value(value)))
                .collect(),
            Some(_) => {
                return Err(ParseError::InputsNotAnObject { id: id.to_string() });
            }
        };
        let title = object
            .get("_meta")
            .and_then(|meta| meta.get("title"))
            .and_then(Value::as_str)
            .map(String::from);
        let mut extra = Map::new();
        for (key, value) in object {
            match key.as_str() {
                "class_type" | "inputs" => {}
                "_meta" => {
                    // Keep `_meta` keys other than the title.
                    if let Some(meta) = value.as_object() {
                        let rest: Map<String, Value> = meta
                            .iter()
                            .filter(|(k, _)| k.as_str() != "title")
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        if !rest.is_empty() {
                            extra.insert("_meta".into(), Value::Object(rest));
                        }
                    } else {
                        extra.insert(key.clone(), value.clone());
                    }
                }
                _ => {
                    extra.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(Self {
            class_type,
            inputs,
            title,
            extra,
        })
    }

    /// Like [`Self::to_value`], consuming the node.
    pub fn into_value(self) -> Value {
        let mut object = Map::new();
        let inputs: Map<String, Value> = self
            .inputs
            .into_iter()
            .map(|(name, input)| {
                let value = match input {
                    Input::Link(link) => {
                        Value::Array(vec![Value::String(link.node), Value::from(link.output)])
                    }
                    Input::Value(value) => value,
                };
                (name, value)
            })
            .collect();
        object.insert("inputs".into(), Value::Object(inputs));
        object.insert("class_type".into(), Value::String(self.class_type));
        let mut extra = self.extra;
        let mut meta = match extra.remove("_meta") {
            Some(Value::Object(meta)) => meta,
            _ => Map::new(),
        };
        if let Some(title) = self.title {
            meta.insert("title".into(), Value::String(title));
        }
        object.extend(extra);
        if !meta.is_empty() {
            object.insert("_meta".into(), Value::Object(meta));
        }
        Value::Object(object)
    }

    pub fn to_value(&self) -> Value {
        let mut object = Map::new();
        let inputs: Map<String, Value> = self
            .inputs
            .iter()
            .map(|(name, input)| (name.clone(), input.to_value()))
            .collect();
        object.insert("inputs".into(), Value::Object(inputs));
        object.insert("class_type".into(), Value::String(self.class_type.clone()));
        let mut meta = match self.extra.get("_meta") {
            Some(Value::Object(meta)) => meta.clone(),
            _ => Map::new(),
        };
        if let Some(title) = &self.title {
            meta.insert("title".into(), Value::String(title.clone()));
        }
        for (key, value) in &self.extra {
            if key != "_meta" {
                object.insert(key.clone(), value.clone());
            }
        }
        if !meta.is_empty() {
            object.insert("_meta".into(), Value::Object(meta));
        }
        Value::Object(object)
    }
}

/// Orders node ids as people read them: numbers numerically (`2` before `10`), then the rest
/// (`12:3` after `12`) by text.
pub fn compare_ids(a: &str, b: &str) -> Ordering {
    // Called for every comparison of a sort: no allocation.
    fn key(id: &str) -> (u64, &str) {
        let (head, tail) = id.split_once(':').unwrap_or((id, ""));
        (head.parse::<u64>().unwrap_or(u64::MAX), tail)
    }
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

impl Workflow {
    /// Reads an API-format workflow (not wrapped in `{"prompt": …}`; see
    /// [`super::detect`] for telling formats apart).
    pub fn from_api(value: &Value) -> Result<Self, ParseError> {
        let object = value.as_object().ok_or(ParseError::NotAnObject)?;
        if object.is_empty() {
            return Err(ParseError::Empty);
        }
        let nodes = object
            .iter()
            .map(|(id, node)| Node::from_value(id, node).map(|node| (id.clone(), node)))
            .collect::<Result<_, _>>()?;
        Ok(Self { nodes })
    }

    /// The API-format JSON ComfyUI's `/prompt` takes.
    pub fn to_api(&self) -> Value {
        let mut object = Map::new();
        for (id, node) in self.ordered() {
            object.insert(id.clone(), node.to_value());
        }
        Value::Object(object)
    }

    /// Like [`Self::to_api`], consuming the workflow, so nothing is copied.
    pub fn into_api(self) -> Value {
        // JSON objects keep their keys sorted by text, so reading order needs no sort here.
        Value::Object(
            self.nodes
                .into_iter()
                .map(|(id, node)| (id, node.into_value()))
                .collect(),
        )
    }

    /// Nodes in reading order (see [`compare_ids`]).
    pub fn ordered(&self) -> Vec<(&NodeId, &Node)> {
        let mut nodes: Vec<_> = self.nodes.iter().collect();
        nodes.sort_by(|(a, _), (b, _)| compare_ids(a, b));
        nodes
    }

    /// The smallest unused numeric id above every numeric id in use.
    pub fn next_id(&self) -> NodeId {
        let highest = self
            .nodes
            .keys()
            .filter_map(|id| id.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        (highest + 1).to_string()
    }

    /// Every link as (target node, input name, link).
    pub fn links(&self) -> impl Iterator<Item = (&NodeId, &str, &Link)> {
        self.nodes.iter().flat_map(|(id, node)| {
            node.inputs.iter().filter_map(move |(name, input)| {
                input.as_link().map(|link| (id, name.as_str(), link))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_with_titles_unknown_keys_and_numeric_links() {
        let doc = json!({
            "10": {"class_type": "SaveImage", "inputs": {"images": [8, 0.0], "filename_prefix": "x"},
                    "_meta": {"title": "Save", "color": "red"}, "is_changed": ["a"]},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "2": {"class_type": "EmptyImage", "inputs": {"size": [512, 512, 1]}}
        });
        let workflow = Workflow::from_api(&doc).expect("parses");
        let save = &workflow.nodes["10"];
        assert_eq!(save.title.as_deref(), Some("Save"));
        assert_eq!(
            save.input("images"),
            Some(&Input::Link(Link {
                node: "8".into(),
                output: 0
            }))
        );
        // A three-element list is a value (validation calls it a bad link), not a link.
        assert!(matches!(
            workflow.nodes["2"].input("size"),
            Some(Input::Value(_))
        ));
        let back = workflow.to_api();
        assert_eq!(
            back["10"]["_meta"],
            json!({"title": "Save", "color": "red"})
        );
        assert_eq!(back["10"]["is_changed"], json!(["a"]));
        assert_eq!(back["10"]["inputs"]["images"], json!(["8", 0]));
        let order: Vec<&String> = workflow.ordered().into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, ["2", "8", "10"]);
        assert_eq!(Workflow::from_api(&back).expect("again"), workflow);
    }

    #[test]
    fn into_api_matches_to_api() {
        let doc = json!({
            "10": {"class_type": "SaveImage", "inputs": {"images": [8, 0.0], "filename_prefix": "x"},
                    "_meta": {"title": "Save", "color": "red"}, "is_changed": ["a"]},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0]}}
        });
        let workflow = Workflow::from_api(&doc).expect("parses");
        assert_eq!(workflow.clone().into_api(), workflow.to_api());
    }

    #[test]
    fn bad_documents_say_which_node() {
        assert_eq!(Workflow::from_api(&json!([])), Err(ParseError::NotAnObject));
        assert_eq!(Workflow::from_api(&json!({})), Err(ParseError::Empty));
        assert_eq!(
            Workflow::from_api(&json!({"1": {"inputs": {}}})),
            Err(ParseError::MissingClass { id: "1".into() })
        );
        assert_eq!(
            Workflow::from_api(&json!({"1": {"class_type": "X", "inputs": [1]}})),
            Err(ParseError::InputsNotAnObject { id: "1".into() })
        );
        assert_eq!(
            Workflow::from_api(&json!({"7": 3})),
            Err(ParseError::NodeNotAnObject { id: "7".into() })
        );
    }

    #[test]
    fn ids_sort_numerically_and_next_id_is_above_all() {
        let mut ids = vec!["10", "2", "12:3", "12", "abc", "1"];
        ids.sort_by(|a, b| compare_ids(a, b));
        assert_eq!(ids, ["1", "2", "10", "12", "12:3", "abc"]);
        let doc =
            json!({"3": {"class_type": "A"}, "41": {"class_type": "B"}, "x": {"class_type": "C"}});
        assert_eq!(Workflow::from_api(&doc).expect("ok").next_id(), "42");
    }

    #[test]
    fn set_input_keeps_place_and_links_are_listed() {
        let mut node = Node::new("KSampler");
        node.set_input("seed", Input::Value(json!(1)));
        node.set_input(
            "model",
            Input::Link(Link {
                node: "4".into(),
                output: 0,
            }),
        );
        node.set_input("seed", Input::Value(json!(2)));
        assert_eq!(node.inputs[0], ("seed".to_string(), Input::Value(json!(2))));
        let mut workflow = Workflow::default();
        workflow.nodes.insert("3".into(), node);
        let links: Vec<_> = workflow.links().collect();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].1, "model");
    }
}
