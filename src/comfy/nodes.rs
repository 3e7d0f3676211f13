//! The node registry from `/object_info`, parsed once into an index: typed input specs in
//! widget order, case-insensitive lookup and "did you mean" suggestions. Both input styles
//! ComfyUI mixes are read (a bare list of choices, and `"COMBO"` with `options`), hidden
//! inputs as a string or a one-element list, and maxima beyond i64 (KSampler's seed).

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Number, Value};

use super::api::Ordered;

/// Which part of a node's `input` a spec came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Required,
    Optional,
    /// Filled in by the server (prompt, unique id, …); never sent in a prompt.
    Hidden,
}

/// What an input accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum InputType {
    Int,
    Float,
    String,
    Boolean,
    /// A fixed set of choices. `remote` lists are loaded by the frontend from a route, so an
    /// empty list there means "unknown", not "nothing allowed".
    Combo {
        choices: Vec<Value>,
        multiselect: bool,
        remote: bool,
    },
    /// A connection from another node's output: `IMAGE`, `MODEL`, `*`, or a comma-joined
    /// union such as `IMAGE,MASK`.
    Socket(String),
}

impl InputType {
    /// The type's name as ComfyUI writes it.
    pub fn name(&self) -> &str {
        match self {
            Self::Int => "INT",
            Self::Float => "FLOAT",
            Self::String => "STRING",
            Self::Boolean => "BOOLEAN",
            Self::Combo { .. } => "COMBO",
            Self::Socket(name) => name,
        }
    }

    /// Whether values are typed into a widget rather than wired from another node.
    pub fn is_widget(&self) -> bool {
        !matches!(self, Self::Socket(_))
    }
}

/// One input of a node class.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub name: String,
    pub section: Section,
    pub kind: InputType,
    pub default: Option<Value>,
    pub min: Option<Number>,
    pub max: Option<Number>,
    pub step: Option<Number>,
    pub tooltip: Option<String>,
    /// Seed-like INTs: the UI stores an extra "randomize/fixed" value after this widget.
    pub control_after_generate: bool,
    /// A widget type shown as a socket only.
    pub force_input: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOutput {
    pub type_name: String,
    pub name: String,
    pub is_list: bool,
}

/// One node class.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub display_name: String,
    pub category: String,
    pub description: String,
    pub python_module: String,
    pub output_node: bool,
    pub deprecated: bool,
    pub experimental: bool,
    pub api_node: bool,
    /// Required, then optional, then hidden, each in `input_order`.
    pub inputs: Vec<Input>,
    pub outputs: Vec<NodeOutput>,
    /// `input` exactly as ComfyUI sent it.
    pub raw_input: Box<RawValue>,
}

impl Node {
    pub fn input(&self, name: &str) -> Option<&Input> {
        self.inputs.iter().find(|input| input.name == name)
    }
}

/// Every node class of one ComfyUI, sorted by name.
#[derive(Debug, Default)]
pub struct NodeIndex {
    nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
    by_lower: HashMap<String, usize>,
    /// Lower-cased names, for suggestions without re-allocating.
    lower_names: Vec<String>,
}

/// `/object_info` could not be read as a node registry.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IndexError(String);

impl NodeIndex {
    /// Parses a whole `/object_info` body. A node whose entry is malformed is skipped (and
    /// logged) rather than failing the whole registry.
    pub fn parse(body: &[u8]) -> Result<Self, IndexError> {
        // Owned names: ComfyUI escapes every non-ASCII class name (`\u00fc`), and an escaped
        // string can't be borrowed from the body.
        let raw: HashMap<String, &RawValue> = serde_json::from_slice(body)
            .map_err(|error| IndexError(format!("it is not a JSON object of nodes ({error})")))?;
        let mut nodes = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            match Node::parse(&name, value) {
                Ok(node) => nodes.push(node),
                Err(error) => tracing::debug!(node = %name, %error, "skipping a malformed node"),
            }
        }
        Ok(Self::from_nodes(nodes))
    }

    fn from_nodes(mut nodes: Vec<Node>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_name = HashMap::with_capacity(nodes.len());
        let mut by_lower = HashMap::with_capacity(nodes.len());
        let mut lower_names = Vec::with_capacity(nodes.len());
        for (index, node) in nodes.iter().enumerate() {
            by_name.insert(node.name.clone(), index);
            let lower = node.name.to_lowercase();
            // Two classes differing only in case: the exact lookup still tells them apart.
            by_lower.entry(lower.clone()).or_insert(index);
            lower_names.push(lower);
        }
        Self {
            nodes,
            by_name,
            by_lower,
            lower_names,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node, sorted by class name.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The class named exactly `name`.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.by_name.get(name).map(|&index| &self.nodes[index])
    }

    /// Takes the class named exactly `name` out of the index.
    pub fn into_node(mut self, name: &str) -> Option<Node> {
        let index = *self.by_name.get(name)?;
        Some(self.nodes.swap_remove(index))
    }

    /// The class named `name`, ignoring case when there is no exact match.
    pub fn find(&self, name: &str) -> Option<&Node> {
        self.get(name).or_else(|| {
            self.by_lower
                .get(&name.to_lowercase())
                .map(|&index| &self.nodes[index])
        })
    }

    /// Up to `limit` class names close to `query`: names containing it first (shortest
    /// first), then names within a small edit distance, then display-name matches.
    pub fn suggest(&self, query: &str, limit: usize) -> Vec<&str> {
        let query = query.trim().to_lowercase();
        if query.is_empty() {
            return Vec::new();
        }
        let allowed = (query.chars().count() / 3).clamp(2, 4);
        let mut scored: Vec<(usize, usize)> = Vec::new();
        for (index, lower) in self.lower_names.iter().enumerate() {
            let score = if lower.contains(&query) {
                Some(lower.len() - query.len())
            } else if query.contains(lower.as_str()) && lower.len() >= 4 {
                Some(100 + query.len() - lower.len())
            } else if let Some(distance) = bounded_distance(&query, lower, allowed) {
                Some(200 + distance)
            } else if self.nodes[index]
                .display_name
                .to_lowercase()
                .contains(&query)
            {
                Some(300)
            } else {
                None
            };
            if let Some(score) = score {
                scored.push((score, index));
            }
        }
        scored.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(limit)
            .map(|(_, index)| self.nodes[index].name.as_str())
            .collect()
    }
}

/// Levenshtein distance between `a` and `b` if it is at most `limit`.
pub(crate) fn bounded_distance(a: &str, b: &str, limit: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        let mut row_min = current[0];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            current[j + 1] = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
            row_min = row_min.min(current[j + 1]);
        }
        if row_min > limit {
            return None;
        }
        std::mem::swap(&mut previous, &mut current);
    }
    Some(previous[b.len()]).filter(|d| *d <= limit)
}

#[derive(Deserialize)]
struct NodeWire<'a> {
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    input_order: HashMap<String, Vec<String>>,
    #[serde(default)]
    output: Vec<Value>,
    #[serde(default)]
    output_is_list: Vec<Value>,
    #[serde(default)]
    output_name: Vec<Value>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    python_module: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    output_node: Option<bool>,
    #[serde(default)]
    deprecated: Option<bool>,
    #[serde(default)]
    experimental: Option<bool>,
    #[serde(default)]
    api_node: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SectionsWire {
    required: Ordered<SpecWire>,
    optional: Ordered<SpecWire>,
    hidden: Ordered<SpecWire>,
}

impl Node {
    fn parse(name: &str, raw: &RawValue) -> Result<Self, serde_json::Error> {
        let wire: NodeWire<'_> = serde_json::from_str(raw.get())?;
        let raw_input = match wire.input {
            Some(input) => input.to_owned(),
            None => RawValue::from_string("{}".into())?,
        };
        let sections: SectionsWire = serde_json::from_str(raw_input.get()).unwrap_or_default();
        let mut inputs = Vec::new();
        for (section, key, specs) in [
            (Section::Required, "required", sections.required),
            (Section::Optional, "optional", sections.optional),
            (Section::Hidden, "hidden", sections.hidden),
        ] {
            let mut specs = specs.0;
            // Follow `input_order` where ComfyUI gave one; it is the widget order.
            if let Some(order) = wire.input_order.get(key) {
                specs.sort_by_key(|(name, _)| order.iter().position(|o| o == name));
            }
            inputs.extend(
                specs
                    .into_iter()
                    .map(|(name, spec)| spec.into_input(name, section)),
            );
        }
        let outputs = wire
            .output
            .iter()
            .enumerate()
            .map(|(index, type_name)| {
                let type_name = match type_name {
                    Value::String(s) => s.clone(),
                    Value::Array(_) => "COMBO".to_string(),
                    other => other.to_string(),
                };
                NodeOutput {
                    name: wire
                        .output_name
                        .get(index)
                        .and_then(Value::as_str)
                        .unwrap_or(&type_name)
                        .to_string(),
                    is_list: wire
                        .output_is_list
                        .get(index)
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    type_name,
                }
            })
            .collect();
        Ok(Self {
            name: name.to_string(),
            display_name: wire.display_name.unwrap_or_else(|| name.to_string()),
            category: wire.category.unwrap_or_default(),
            description: wire.description.unwrap_or_default(),
            python_module: wire.python_module.unwrap_or_default(),
            output_node: wire.output_node.unwrap_or(false),
            deprecated: wire.deprecated.unwrap_or(false),
            experimental: wire.experimental.unwrap_or(false),
            api_node: wire.api_node.unwrap_or(false),
            inputs,
            outputs,
            raw_input,
        })
    }
}

/// The options object of an input spec; unknown keys are ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct OptionsWire {
    default: Option<Value>,
    min: Option<Number>,
    max: Option<Number>,
    step: Option<Number>,
    tooltip: Option<String>,
    options: Option<Vec<Value>>,
    multiselect: Option<bool>,
    remote: Option<IgnoredAny>,
    control_after_generate: Option<Value>,
    #[serde(rename = "forceInput")]
    force_input: Option<bool>,
}

/// `[type, options?]`, a bare hidden name, or a one-element hidden list.
struct SpecWire {
    kind: InputType,
    options: OptionsWire,
}

impl SpecWire {
    fn anything() -> Self {
        Self {
            kind: InputType::Socket("*".into()),
            options: OptionsWire::default(),
        }
    }

    fn into_input(self, name: String, section: Section) -> Input {
        let o = self.options;
        Input {
            name,
            section,
            kind: self.kind,
            default: o.default,
            min: o.min,
            max: o.max,
            step: o.step,
            tooltip: o.tooltip,
            control_after_generate: o
                .control_after_generate
                .is_some_and(|v| v.as_bool() != Some(false) && !v.is_null()),
            force_input: o.force_input.unwrap_or(false),
        }
    }
}

/// The first element of a spec: a type name or a legacy list of choices.
#[derive(Deserialize)]
#[serde(untagged)]
enum TypeWire {
    Name(String),
    Choices(Vec<Value>),
}

impl<'de> Deserialize<'de> for SpecWire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;
        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = SpecWire;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an input spec: [type, options?] or a hidden input name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<SpecWire, E> {
                Ok(SpecWire {
                    kind: InputType::Socket(name.to_string()),
                    options: OptionsWire::default(),
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SpecWire, A::Error> {
                let first: Option<TypeWire> = seq.next_element()?;
                let options: OptionsWire = seq
                    .next_element::<Option<OptionsWire>>()
                    .ok()
                    .flatten()
                    .flatten()
                    .unwrap_or_default();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                let kind = match first {
                    None => InputType::Socket("*".into()),
                    Some(TypeWire::Choices(choices)) => InputType::Combo {
                        choices,
                        multiselect: options.multiselect.unwrap_or(false),
                        remote: options.remote.is_some(),
                    },
                    Some(TypeWire::Name(name)) => match name.as_str() {
                        "INT" => InputType::Int,
                        "FLOAT" => InputType::Float,
                        "STRING" => InputType::String,
                        "BOOLEAN" => InputType::Boolean,
                        "COMBO" => InputType::Combo {
                            choices: options.options.clone().unwrap_or_default(),
                            multiselect: options.multiselect.unwrap_or(false),
                            remote: options.remote.is_some(),
                        },
                        _ => InputType::Socket(name),
                    },
                };
                Ok(SpecWire { kind, options })
            }
            // Anything else is not a spec ComfyUI documents; keep the input as "accepts
            // anything" rather than lose the node.
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SpecWire, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(SpecWire::anything())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SpecWire, E> {
                Ok(SpecWire::anything())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SpecWire, E> {
                Ok(SpecWire::anything())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SpecWire, E> {
                Ok(SpecWire::anything())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SpecWire, E> {
                Ok(SpecWire::anything())
            }
            fn visit_unit<E: de::Error>(self) -> Result<SpecWire, E> {
                Ok(SpecWire::anything())
            }
        }
        deserializer.deserialize_any(SpecVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> NodeIndex {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/comfyui-0.3.64/object_info.json"
        );
        NodeIndex::parse(&std::fs::read(path).expect("fixture")).expect("parses")
    }

    #[test]
    fn escaped_class_names_are_read() {
        // ComfyUI escapes non-ASCII in JSON, so these names can't be borrowed from the body.
        let body = br#"{"Probe Text/slash \u00fcn\u00ef": {"input": {"required": {}}, "output": ["STRING"],
                        "output_name": ["text"], "name": "Probe Text/slash \u00fcn\u00ef", "display_name": "Probe",
                        "category": "probe", "output_node": false},
                       "Quote\"d": {"input": {}, "output": [], "name": "Quote\"d", "category": "x"}}"#;
        let index = NodeIndex::parse(body).expect("parses");
        assert_eq!(index.len(), 2);
        assert!(index.find("Probe Text/slash ünï").is_some());
        assert!(
            index.find("probe text/slash ÜNÏ").is_some(),
            "case-insensitive"
        );
        assert!(index.find("Quote\"d").is_some());
    }

    #[test]
    fn the_recorded_registry_parses_completely() {
        let index = recorded();
        assert_eq!(index.len(), 496);
        let names: Vec<&str> = index.nodes().iter().map(|n| n.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }

    #[test]
    fn ksampler_inputs_follow_widget_order_with_huge_maxima() {
        let index = recorded();
        let ksampler = index.get("KSampler").expect("KSampler");
        let names: Vec<&str> = ksampler.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "model",
                "seed",
                "steps",
                "cfg",
                "sampler_name",
                "scheduler",
                "positive",
                "negative",
                "latent_image",
                "denoise"
            ]
        );
        let seed = ksampler.input("seed").expect("seed");
        assert_eq!(seed.kind, InputType::Int);
        assert_eq!(seed.max.as_ref().and_then(Number::as_u64), Some(u64::MAX));
        assert!(seed.control_after_generate);
        assert!(matches!(
            &ksampler.input("sampler_name").expect("sampler").kind,
            InputType::Combo { choices, .. } if choices.iter().any(|c| c == "euler")
        ));
        assert_eq!(
            ksampler.input("model").expect("model").kind,
            InputType::Socket("MODEL".into())
        );
        assert_eq!(ksampler.outputs[0].type_name, "LATENT");
    }

    #[test]
    fn both_combo_styles_hidden_forms_and_remote_lists() {
        let index = recorded();
        let save = index.get("SaveImage").expect("SaveImage");
        let hidden: Vec<&str> = save
            .inputs
            .iter()
            .filter(|i| i.section == Section::Hidden)
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(hidden, ["prompt", "extra_pnginfo"]);
        let remote = index.get("LoadImageOutput").expect("LoadImageOutput");
        assert!(matches!(
            remote.input("image").expect("image").kind,
            InputType::Combo { remote: true, .. }
        ));
        let v3 = index
            .nodes()
            .iter()
            .flat_map(|n| &n.inputs)
            .filter(|i| matches!(&i.kind, InputType::Combo { choices, .. } if !choices.is_empty()))
            .count();
        // 283 inputs carry choices; the other 42 are model lists empty on a bare install.
        assert_eq!(v3, 283, "both COMBO styles carry their choices");
        let hidden_list: Value = serde_json::json!({
            "X": {"input": {"hidden": {"p": ["PROMPT"], "q": "UNIQUE_ID"}}, "output": []}
        });
        let index = NodeIndex::parse(hidden_list.to_string().as_bytes()).expect("parses");
        let kinds: Vec<&str> = index
            .get("X")
            .expect("X")
            .inputs
            .iter()
            .map(|i| i.kind.name())
            .collect();
        assert_eq!(kinds, ["PROMPT", "UNIQUE_ID"]);
    }

    #[test]
    fn malformed_nodes_are_skipped_and_odd_specs_tolerated() {
        let body = r#"{"Good": {"input": {"required": {"a": ["INT"], "b": [["x","y"]], "c": [], "d": ["FLOAT", null, "extra"]}},
                        "output": ["IMAGE"], "output_name": [], "category": "test", "new_key": {"nested": 1}},
                       "Bad": [1, 2, 3],
                       "Bare": {}}"#;
        let index = NodeIndex::parse(body.as_bytes()).expect("parses");
        assert_eq!(index.len(), 2);
        let good = index.get("Good").expect("Good");
        assert_eq!(good.inputs.len(), 4);
        assert_eq!(good.outputs[0].name, "IMAGE");
        assert_eq!(index.get("Bare").expect("Bare").display_name, "Bare");
        assert!(NodeIndex::parse(b"[1]").is_err());
        assert!(NodeIndex::parse(b"").is_err());
    }

    #[test]
    fn lookup_ignores_case_and_suggests_close_names() {
        let index = recorded();
        assert_eq!(index.find("ksampler").expect("found").name, "KSampler");
        assert!(index.get("ksampler").is_none());
        let suggestions = index.suggest("KSampeler", 5);
        assert_eq!(suggestions.first(), Some(&"KSampler"), "{suggestions:?}");
        let suggestions = index.suggest("upscale", 10);
        assert!(
            suggestions
                .iter()
                .all(|s| s.to_lowercase().contains("upscale"))
        );
        assert!(!suggestions.is_empty());
        assert!(index.suggest("zzzzqqqq", 5).is_empty());
        assert!(index.suggest("  ", 5).is_empty());
    }
}
