//! UI (litegraph) workflows turned into API format the way ComfyUI's frontend does when it
//! queues a prompt. The server never does this, so a UI-only file needs the live node list
//! (`/object_info`) to name its widget values. Whatever can't be carried over is reported node
//! by node as a [`ConversionNote`]; nothing disappears without a word.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::model::{Input, Link, Node, Workflow};
use crate::comfy::nodes::{self, InputType, NodeIndex, Section};

/// Subgraphs inside subgraphs deeper than this are reported instead of expanded: a loop in
/// the definitions must not hang the conversion.
const MAX_SUBGRAPH_DEPTH: usize = 8;

/// The values the frontend stores for the "control after generate" widget.
const CONTROL_VALUES: &[&str] = &["fixed", "randomize", "increment", "decrement"];

/// Input options that make the frontend add an upload button (which stores a value too).
const UPLOAD_OPTIONS: &[&str] = &["image_upload", "video_upload", "audio_upload"];

/// Classes that exist only in the browser and are skipped without a note.
const FRONTEND_ONLY: &[&str] = &[
    "Note",
    "MarkdownNote",
    "Label (rgthree)",
    "Bookmark (rgthree)",
    "Fast Groups Muter (rgthree)",
    "Fast Groups Bypasser (rgthree)",
];

/// One node that could not be converted completely, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ConversionNote {
    pub node_id: String,
    pub class_type: String,
    pub problem: String,
    pub fix: String,
}

/// A converted workflow and what could not be carried over.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub workflow: Workflow,
    pub notes: Vec<ConversionNote>,
}

/// Why a document could not be converted at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("it has no `nodes` list, so it is not a UI workflow")]
    NotUi,
    #[error("none of its nodes would run in ComfyUI (they are all notes, muted or bypassed)")]
    NothingToRun { notes: Vec<ConversionNote> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Real,
    /// Passes output slot `k` through from input slot `k`: reroutes and subgraph boundaries.
    Through,
    Primitive,
    FrontendOnly,
}

#[derive(Debug)]
struct Slot {
    name: String,
    type_name: String,
    /// The slot is a widget turned into a socket.
    widget: bool,
}

#[derive(Debug)]
struct FlatNode<'a> {
    id: String,
    class: String,
    kind: Kind,
    mode: i64,
    title: Option<String>,
    inputs: Vec<Slot>,
    widgets: Option<&'a Value>,
}

/// Where an input's link comes from, after flattening.
#[derive(Debug, Clone)]
struct Source {
    node: String,
    slot: usize,
}

#[derive(Default)]
struct Flat<'a> {
    nodes: Vec<FlatNode<'a>>,
    by_id: HashMap<String, usize>,
    incoming: HashMap<(String, usize), Source>,
    notes: Vec<ConversionNote>,
}

/// Converts a UI workflow to API format using the node list of the ComfyUI it will run on.
pub fn ui_to_api(doc: &Value, index: &NodeIndex) -> Result<Converted, ConvertError> {
    let nodes = doc
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or(ConvertError::NotUi)?;
    let subgraphs: HashMap<&str, &Value> = doc
        .pointer("/definitions/subgraphs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|def| Some((def.get("id")?.as_str()?, def)))
        .collect();
    let mut flat = Flat::default();
    let links = doc.get("links").and_then(Value::as_array);
    flat.add_graph("", nodes, links, &subgraphs, index, 0);
    let mut converter = Converter {
        flat: &flat,
        index,
        notes: Vec::new(),
    };
    let mut workflow = Workflow::default();
    for node in &flat.nodes {
        if let Some(api) = converter.convert(node) {
            workflow.nodes.insert(node.id.clone(), api);
        }
    }
    let mut notes = flat.notes.clone();
    notes.append(&mut converter.notes);
    if workflow.nodes.is_empty() {
        return Err(ConvertError::NothingToRun { notes });
    }
    Ok(Converted { workflow, notes })
}

fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => n.as_i64().map(|n| n.to_string()).or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| format!("{f:.0}"))
        }),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn index_of(value: &Value) -> Option<usize> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .or_else(|| {
            let f = value.as_f64()?;
            (f >= 0.0 && f.fract() == 0.0 && f <= 1e9).then_some(f as usize)
        })
}

fn join(prefix: &str, id: &str) -> String {
    if prefix.is_empty() {
        id.to_string()
    } else {
        format!("{prefix}:{id}")
    }
}

/// A link as `[id, from, from_slot, to, to_slot, type]` or the object form subgraphs use.
fn read_link(link: &Value) -> Option<(String, usize, String, usize)> {
    if let Some(parts) = link.as_array() {
        return Some((
            id_string(parts.get(1)?)?,
            index_of(parts.get(2)?)?,
            id_string(parts.get(3)?)?,
            index_of(parts.get(4)?)?,
        ));
    }
    Some((
        id_string(link.get("origin_id")?)?,
        index_of(link.get("origin_slot")?)?,
        id_string(link.get("target_id")?)?,
        index_of(link.get("target_slot")?)?,
    ))
}

/// Subgraph boundary ids inside a definition's links.
const SUBGRAPH_INPUT: &str = "-10";
const SUBGRAPH_OUTPUT: &str = "-20";

impl<'a> Flat<'a> {
    fn push(&mut self, node: FlatNode<'a>) {
        self.by_id.insert(node.id.clone(), self.nodes.len());
        self.nodes.push(node);
    }

    /// Adds one graph's nodes (expanding subgraph instances as `parent:child`) and links.
    fn add_graph(
        &mut self,
        prefix: &str,
        nodes: &'a [Value],
        links: Option<&'a Vec<Value>>,
        subgraphs: &HashMap<&str, &'a Value>,
        index: &NodeIndex,
        depth: usize,
    ) {
        // Instances expanded in this graph; their links go through the boundary nodes.
        let mut expanded: HashSet<String> = HashSet::new();
        for node in nodes {
            let Some(local) = node.get("id").and_then(id_string) else {
                continue;
            };
            let id = join(prefix, &local);
            let class = node
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // No class means nothing ComfyUI could run, and an API node without a
            // class_type is unreadable; links to it are then reported as dangling.
            if class.trim().is_empty() {
                self.notes.push(ConversionNote {
                    node_id: id,
                    class_type: class,
                    problem: "it has no node type, so it was left out".into(),
                    fix: "Delete it or re-add the node in ComfyUI and save again.".into(),
                });
                continue;
            }
            let mode = node.get("mode").and_then(Value::as_i64).unwrap_or(0);
            let inputs: Vec<Slot> = node
                .get("inputs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|slot| Slot {
                    name: slot
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    type_name: slot
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("*")
                        .to_string(),
                    widget: slot.get("widget").is_some_and(|w| !w.is_null()),
                })
                .collect();
            let definition = subgraphs.get(class.as_str()).copied();
            if let (Some(definition), 0 | 1 | 3) = (definition, mode) {
                if depth >= MAX_SUBGRAPH_DEPTH {
                    self.notes.push(ConversionNote {
                        node_id: id.clone(),
                        class_type: subgraph_name(definition, &class),
                        problem: "its subgraphs are nested too deeply (or refer to each other), so it was left out".into(),
                        fix: "Unpack the inner subgraphs in ComfyUI (right-click → Unpack Subgraph) and export again.".into(),
                    });
                    continue;
                }
                // Promoted widgets store their values on the instance; which inner input
                // each belongs to isn't recorded in a stable way, so the inner values stand.
                let own_values = node.get("widgets_values").is_some_and(|v| {
                    v.as_array().is_some_and(|a| !a.is_empty())
                        || v.as_object().is_some_and(|o| !o.is_empty())
                });
                if own_values {
                    self.notes.push(ConversionNote {
                        node_id: id.clone(),
                        class_type: subgraph_name(definition, &class),
                        problem: "settings shown on the subgraph itself weren't applied; the values inside it were used".into(),
                        fix: "Check those settings inside the subgraph in ComfyUI, or export with 'Export (API)'.".into(),
                    });
                }
                self.push(FlatNode {
                    id: join(&id, SUBGRAPH_INPUT),
                    class: "subgraph input".into(),
                    kind: Kind::Through,
                    mode: 0,
                    title: None,
                    inputs: Vec::new(),
                    widgets: None,
                });
                self.push(FlatNode {
                    id: join(&id, SUBGRAPH_OUTPUT),
                    class: "subgraph output".into(),
                    kind: Kind::Through,
                    mode: 0,
                    title: None,
                    inputs: Vec::new(),
                    widgets: None,
                });
                let inner_nodes = definition
                    .get("nodes")
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice);
                let inner_links = definition.get("links").and_then(Value::as_array);
                self.add_graph(&id, inner_nodes, inner_links, subgraphs, index, depth + 1);
                expanded.insert(id);
                continue;
            }
            let kind = if class == "Reroute" {
                Kind::Through
            } else if class == "PrimitiveNode"
                || (class.starts_with("Primitive") && index.get(&class).is_none())
            {
                Kind::Primitive
            } else if FRONTEND_ONLY.contains(&class.as_str()) && index.get(&class).is_none() {
                Kind::FrontendOnly
            } else {
                Kind::Real
            };
            let title = node.get("title").and_then(Value::as_str).map(String::from);
            self.push(FlatNode {
                id,
                class,
                kind,
                mode,
                title,
                inputs,
                widgets: node.get("widgets_values"),
            });
        }
        for link in links.into_iter().flatten() {
            let Some((from, from_slot, to, to_slot)) = read_link(link) else {
                continue;
            };
            let mut from = join(prefix, &from);
            let mut to = join(prefix, &to);
            if expanded.contains(&from) {
                from = join(&from, SUBGRAPH_OUTPUT);
            }
            if expanded.contains(&to) {
                to = join(&to, SUBGRAPH_INPUT);
            }
            self.incoming.insert(
                (to, to_slot),
                Source {
                    node: from,
                    slot: from_slot,
                },
            );
        }
    }
}

fn subgraph_name(definition: &Value, fallback: &str) -> String {
    definition
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(fallback)
        .to_string()
}

/// What feeds an input once reroutes, bypassed nodes and primitives are looked through.
enum Resolved {
    Link(Link),
    Value(Value),
    Muted(String),
    Unresolved(String),
}

struct Converter<'f, 'a> {
    flat: &'f Flat<'a>,
    index: &'f NodeIndex,
    notes: Vec<ConversionNote>,
}

/// One stored widget value's meaning.
#[derive(Clone, Copy)]
enum WidgetSlot<'n> {
    Input(&'n nodes::Input),
    Control,
    Upload,
}

impl Converter<'_, '_> {
    fn note(&mut self, node: &FlatNode<'_>, problem: String, fix: &str) {
        self.notes.push(ConversionNote {
            node_id: node.id.clone(),
            class_type: node.class.clone(),
            problem,
            fix: fix.to_string(),
        });
    }

    fn convert(&mut self, node: &FlatNode<'_>) -> Option<Node> {
        match (node.kind, node.mode) {
            (Kind::Through | Kind::Primitive | Kind::FrontendOnly, _) => return None,
            (_, 2) => {
                self.note(
                    node,
                    "it is muted, so it was left out".into(),
                    "Unmute it in ComfyUI (select it, Ctrl+M) if it should run.",
                );
                return None;
            }
            (_, 4) => {
                self.note(
                    node,
                    "it is bypassed, so it was left out and its inputs passed straight through"
                        .into(),
                    "Un-bypass it in ComfyUI (select it, Ctrl+B) if it should run.",
                );
                return None;
            }
            _ => {}
        }
        let mut api = Node::new(node.class.clone());
        let spec = self.index.get(&node.class);
        match spec {
            Some(spec) => {
                self.map_widgets(node, spec, &mut api);
                if node
                    .title
                    .as_deref()
                    .is_some_and(|t| t != spec.display_name && t != spec.name)
                {
                    api.title.clone_from(&node.title);
                }
            }
            None => {
                let group =
                    node.class.starts_with("workflow>") || node.class.starts_with("workflow/");
                let (problem, fix) = if group {
                    (
                        "it is a group node, which can't be expanded here, so only its links were kept",
                        "Convert the group node back to nodes in ComfyUI (right-click → Convert to nodes), or export with 'Export (API)'.",
                    )
                } else {
                    (
                        "its class isn't installed in this ComfyUI, so only its links were kept, not its settings",
                        "Install the node pack that provides it (ComfyUI Manager → Install Missing Custom Nodes) and load the workflow again.",
                    )
                };
                self.note(node, problem.into(), fix);
                if node.title.as_deref().is_some_and(|t| t != node.class) {
                    api.title.clone_from(&node.title);
                }
            }
        }
        for (slot_index, slot) in node.inputs.iter().enumerate() {
            if !self
                .flat
                .incoming
                .contains_key(&(node.id.clone(), slot_index))
            {
                continue;
            }
            match self.resolve(&node.id, slot_index, &slot.type_name) {
                Resolved::Link(link) => api.set_input(&slot.name, Input::Link(link)),
                Resolved::Value(value) => api.set_input(&slot.name, Input::Value(value)),
                Resolved::Muted(muted) => {
                    api.remove_input(&slot.name);
                    self.note(
                        node,
                        format!(
                            "input '{}' came from muted node {muted}, so it is left unset",
                            slot.name
                        ),
                        "Unmute that node, or connect this input to another node.",
                    );
                }
                Resolved::Unresolved(why) => {
                    if !slot.widget {
                        api.remove_input(&slot.name);
                    }
                    self.note(
                        node,
                        format!("input '{}' {why}, so it is left unset", slot.name),
                        "Connect this input to a working node in ComfyUI and export again.",
                    );
                }
            }
        }
        Some(api)
    }

    /// Follows an input back through reroutes, subgraph boundaries and bypassed nodes to the
    /// node that produces it, as the frontend does when it queues.
    fn resolve(&self, target: &str, slot: usize, wanted: &str) -> Resolved {
        let mut at = (target.to_string(), slot);
        // Every step visits a node; more steps than nodes means a cycle.
        for _ in 0..=self.flat.nodes.len() {
            let Some(source) = self.flat.incoming.get(&at) else {
                return Resolved::Unresolved(
                    "is connected to nothing past a reroute or bypassed node".into(),
                );
            };
            let Some(&position) = self.flat.by_id.get(&source.node) else {
                return Resolved::Unresolved(format!(
                    "is linked to node {}, which isn't in the workflow",
                    source.node
                ));
            };
            let from = &self.flat.nodes[position];
            if from.mode == 2 {
                return Resolved::Muted(from.id.clone());
            }
            match from.kind {
                Kind::Through => at = (from.id.clone(), source.slot),
                Kind::Primitive => {
                    let value = match from.widgets {
                        Some(Value::Array(values)) => values.first().cloned(),
                        _ => None,
                    };
                    return value.map_or_else(
                        || {
                            Resolved::Unresolved(format!(
                                "comes from primitive node {}, which holds no value",
                                from.id
                            ))
                        },
                        Resolved::Value,
                    );
                }
                Kind::FrontendOnly => {
                    return Resolved::Unresolved(format!(
                        "is linked to {} node {}, which can't produce a value",
                        from.class, from.id
                    ));
                }
                Kind::Real if from.mode == 4 => {
                    // Same slot first, then any input of the consumer's type.
                    let matches = |i: &usize| {
                        from.inputs.get(*i).is_some_and(|s| {
                            s.type_name == wanted || s.type_name == "*" || wanted == "*"
                        }) && self.flat.incoming.contains_key(&(from.id.clone(), *i))
                    };
                    let through = std::iter::once(source.slot)
                        .chain(0..from.inputs.len())
                        .find(matches);
                    match through {
                        Some(i) => at = (from.id.clone(), i),
                        None => {
                            return Resolved::Unresolved(format!(
                                "came from bypassed node {}, which has no connected {wanted} input to pass through",
                                from.id
                            ));
                        }
                    }
                }
                Kind::Real => {
                    return Resolved::Link(Link {
                        node: from.id.clone(),
                        output: source.slot,
                    });
                }
            }
        }
        Resolved::Unresolved("is part of a loop of reroutes".into())
    }

    /// Names the node's stored widget values from its class's widget inputs.
    fn map_widgets(&mut self, node: &FlatNode<'_>, spec: &nodes::Node, api: &mut Node) {
        let widgets: Vec<&nodes::Input> = spec
            .inputs
            .iter()
            .filter(|input| {
                input.section != Section::Hidden && input.kind.is_widget() && !input.force_input
            })
            .collect();
        let linked = |name: &str| {
            node.inputs.iter().enumerate().any(|(i, slot)| {
                slot.name == name && self.flat.incoming.contains_key(&(node.id.clone(), i))
            })
        };
        let mut missing: Vec<&str> = Vec::new();
        match node.widgets {
            Some(Value::Object(values)) => {
                for input in &widgets {
                    match values.get(&input.name) {
                        Some(value) => api.set_input(&input.name, Input::Value(value.clone())),
                        None if linked(&input.name) => {}
                        None => missing.push(&input.name),
                    }
                }
            }
            values => {
                let values: &[Value] = match values {
                    Some(Value::Array(values)) => values,
                    _ => &[],
                };
                let uploads = upload_inputs(spec);
                let layout = best_layout(&widgets, &uploads, &linked, values);
                let mut values = values.iter();
                for slot in &layout {
                    let value = values.next();
                    let WidgetSlot::Input(input) = slot else {
                        continue;
                    };
                    match value {
                        // A widget turned into a socket keeps a stale value; its link wins.
                        Some(_) if linked(&input.name) => {}
                        Some(value) => api.set_input(&input.name, Input::Value(value.clone())),
                        None if linked(&input.name) => {}
                        None => missing.push(&input.name),
                    }
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        let mut defaulted = Vec::new();
        for name in &missing {
            if let Some(default) = spec.input(name).and_then(|i| i.default.clone()) {
                api.set_input(name, Input::Value(default));
                defaulted.push(*name);
            }
        }
        let unset: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|m| !defaulted.contains(m))
            .collect();
        let mut problem = String::from("its saved settings don't cover every input");
        if !defaulted.is_empty() {
            problem.push_str(&format!("; used the defaults for {}", defaulted.join(", ")));
        }
        if !unset.is_empty() {
            problem.push_str(&format!("; {} left unset", unset.join(", ")));
        }
        self.note(node, problem, "Check these settings on the node in ComfyUI; the workflow may come from another version of the node.");
    }
}

/// Widget inputs whose spec asks for an upload button.
fn upload_inputs(spec: &nodes::Node) -> Vec<String> {
    let Ok(raw) = serde_json::from_str::<Value>(spec.raw_input.get()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for section in ["required", "optional"] {
        let Some(inputs) = raw.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, input) in inputs {
            let options = input.get(1);
            if UPLOAD_OPTIONS
                .iter()
                .any(|key| options.and_then(|o| o.get(key)).and_then(Value::as_bool) == Some(true))
            {
                found.push(name.clone());
            }
        }
    }
    found
}

/// Which widget layout the stored values were written with. Frontends differ: converted
/// widgets may or may not keep a value, and the upload button's value sits right after its
/// input or after the required widgets. The layout whose length and value types fit best wins.
fn best_layout<'n>(
    widgets: &[&'n nodes::Input],
    uploads: &[String],
    linked: &dyn Fn(&str) -> bool,
    values: &[Value],
) -> Vec<WidgetSlot<'n>> {
    let mut best: Option<(usize, Vec<WidgetSlot<'n>>)> = None;
    for keep_linked in [true, false] {
        for upload_at_end in [false, true] {
            for with_upload in [true, false] {
                for with_control in [true, false] {
                    if !with_upload && upload_at_end {
                        continue;
                    }
                    let choice = Layout {
                        keep_linked,
                        with_control,
                        with_upload,
                        upload_at_end,
                    };
                    let layout = layout(widgets, uploads, linked, choice);
                    let score = misfit(&layout, values);
                    if best.as_ref().is_none_or(|(b, _)| score < *b) {
                        best = Some((score, layout));
                    }
                }
            }
        }
    }
    best.map(|(_, layout)| layout).unwrap_or_default()
}

/// One way frontends have laid out stored widget values.
#[derive(Clone, Copy)]
struct Layout {
    /// Widgets turned into sockets still have a value.
    keep_linked: bool,
    /// Seed-like inputs are followed by their "control after generate" value.
    with_control: bool,
    /// Upload buttons store a value.
    with_upload: bool,
    /// That value comes after the required widgets rather than right after its input.
    upload_at_end: bool,
}

fn layout<'n>(
    widgets: &[&'n nodes::Input],
    uploads: &[String],
    linked: &dyn Fn(&str) -> bool,
    choice: Layout,
) -> Vec<WidgetSlot<'n>> {
    let Layout {
        keep_linked,
        with_control,
        with_upload,
        upload_at_end,
    } = choice;
    let mut slots = Vec::new();
    let mut pending_upload = false;
    for (position, input) in widgets.iter().enumerate() {
        if !keep_linked && linked(&input.name) {
            continue;
        }
        slots.push(WidgetSlot::Input(input));
        let seed_like = matches!(input.kind, InputType::Int)
            && matches!(input.name.as_str(), "seed" | "noise_seed");
        if with_control && (input.control_after_generate || seed_like) {
            slots.push(WidgetSlot::Control);
        }
        if with_upload && uploads.contains(&input.name) {
            if upload_at_end {
                pending_upload = true;
            } else {
                slots.push(WidgetSlot::Upload);
            }
        }
        let last_required = widgets
            .get(position + 1)
            .is_none_or(|next| next.section != Section::Required);
        if pending_upload && last_required {
            slots.push(WidgetSlot::Upload);
            pending_upload = false;
        }
    }
    slots
}

/// How badly stored values fit a layout: a wrong count costs more than a wrong type.
fn misfit(layout: &[WidgetSlot<'_>], values: &[Value]) -> usize {
    let wrong_types = layout
        .iter()
        .zip(values)
        .filter(|(slot, value)| !fits(**slot, value))
        .count();
    wrong_types + 2 * layout.len().abs_diff(values.len())
}

fn fits(slot: WidgetSlot<'_>, value: &Value) -> bool {
    match slot {
        WidgetSlot::Control => {
            value.as_str().is_some_and(|v| CONTROL_VALUES.contains(&v)) || value.is_boolean()
        }
        WidgetSlot::Upload => value.is_string() || value.is_null(),
        WidgetSlot::Input(input) => match &input.kind {
            InputType::Int => {
                value.as_i64().is_some()
                    || value.as_u64().is_some()
                    || value.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            InputType::Float => value.is_number(),
            InputType::String => value.is_string(),
            InputType::Boolean => value.is_boolean(),
            // A value missing from a known list (a model not installed here) still misfits
            // every layout alike, so it doesn't sway the choice.
            InputType::Combo {
                choices, remote, ..
            } if !choices.is_empty() && !remote => choices.contains(value),
            InputType::Combo { .. } => value.is_string() || value.is_number(),
            InputType::Socket(_) => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index() -> NodeIndex {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/comfyui-0.3.64/object_info.json"
        );
        NodeIndex::parse(&std::fs::read(path).expect("recorded object_info")).expect("parses")
    }

    /// A UI node: `inputs` as (name, type, link id, is a widget socket).
    fn node(
        id: i64,
        class: &str,
        inputs: &[(&str, &str, Option<i64>, bool)],
        widgets: Value,
    ) -> Value {
        let inputs: Vec<Value> = inputs
            .iter()
            .map(|(name, kind, link, widget)| {
                let mut slot = json!({"name": name, "type": kind, "link": link});
                if *widget {
                    slot["widget"] = json!({"name": name});
                }
                slot
            })
            .collect();
        json!({"id": id, "type": class, "mode": 0, "inputs": inputs, "outputs": [], "widgets_values": widgets})
    }

    fn convert(nodes: Vec<Value>, links: Value) -> Converted {
        ui_to_api(&json!({"nodes": nodes, "links": links}), &index()).expect("converts")
    }

    fn api(converted: &Converted) -> Value {
        converted.workflow.to_api()
    }

    const KSAMPLER_SOCKETS: [(&str, &str, Option<i64>, bool); 4] = [
        ("model", "MODEL", None, false),
        ("positive", "CONDITIONING", None, false),
        ("negative", "CONDITIONING", None, false),
        ("latent_image", "LATENT", None, false),
    ];

    #[test]
    fn seed_control_value_is_skipped_with_or_without_it() {
        let with = convert(
            vec![node(
                3,
                "KSampler",
                &KSAMPLER_SOCKETS,
                json!([7, "fixed", 25, 6.5, "euler", "karras", 0.8]),
            )],
            json!([]),
        );
        let expected = json!({"seed": 7, "steps": 25, "cfg": 6.5, "sampler_name": "euler", "scheduler": "karras", "denoise": 0.8});
        assert_eq!(api(&with)["3"]["inputs"], expected);
        assert!(with.notes.is_empty(), "{:?}", with.notes);
        // Some exports leave the control value out.
        let without = convert(
            vec![node(
                3,
                "KSampler",
                &KSAMPLER_SOCKETS,
                json!([7, 25, 6.5, "euler", "karras", 0.8]),
            )],
            json!([]),
        );
        assert_eq!(api(&without)["3"]["inputs"], expected);
        // KSamplerAdvanced: the control value follows noise_seed, in the middle of the list.
        let advanced = convert(
            vec![node(
                1,
                "KSamplerAdvanced",
                &[],
                json!([
                    "enable",
                    5,
                    "increment",
                    30,
                    8.0,
                    "euler",
                    "normal",
                    0,
                    10000,
                    "disable"
                ]),
            )],
            json!([]),
        );
        let inputs = &api(&advanced)["1"]["inputs"];
        assert_eq!(inputs["noise_seed"], json!(5));
        assert_eq!(inputs["steps"], json!(30));
        assert_eq!(inputs["return_with_leftover_noise"], json!("disable"));
    }

    #[test]
    fn widget_turned_into_a_socket_takes_its_link() {
        let mut sockets = KSAMPLER_SOCKETS.to_vec();
        sockets.push(("seed", "INT", Some(1), true));
        let source = node(9, "PrimitiveInt", &[], json!([99, "fixed"]));
        let links = json!([[1, 9, 0, 3, 4, "INT"]]);
        // The stale seed value stays in the list (current frontends)…
        let kept = convert(
            vec![
                source.clone(),
                node(
                    3,
                    "KSampler",
                    &sockets,
                    json!([0, "randomize", 20, 7.0, "euler", "normal", 1.0]),
                ),
            ],
            links.clone(),
        );
        // …or is left out (older ones); both line up.
        let skipped = convert(
            vec![
                source,
                node(
                    3,
                    "KSampler",
                    &sockets,
                    json!([20, 7.0, "euler", "normal", 1.0]),
                ),
            ],
            links,
        );
        for converted in [kept, skipped] {
            let inputs = &api(&converted)["3"]["inputs"];
            assert_eq!(inputs["seed"], json!(["9", 0]));
            assert_eq!(inputs["steps"], json!(20));
            assert_eq!(inputs["denoise"], json!(1.0));
            // PrimitiveInt is a real backend node and stays.
            assert_eq!(api(&converted)["9"]["inputs"]["value"], json!(99));
        }
    }

    #[test]
    fn loaders_and_encoders_and_titles() {
        let mut checkpoint = node(
            4,
            "CheckpointLoaderSimple",
            &[],
            json!(["sd15.safetensors"]),
        );
        checkpoint["title"] = json!("Load Checkpoint");
        let mut encode = node(
            6,
            "CLIPTextEncode",
            &[("clip", "CLIP", Some(1), false)],
            json!(["a cat"]),
        );
        encode["title"] = json!("Positive");
        let latent = node(5, "EmptyLatentImage", &[], json!([768, 512, 2]));
        let converted = convert(
            vec![checkpoint, encode, latent],
            json!([[1, 4, 1, 6, 0, "CLIP"]]),
        );
        let api = api(&converted);
        assert_eq!(
            api,
            json!({
                "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
                "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 768, "height": 512, "batch_size": 2}},
                "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}, "_meta": {"title": "Positive"}}
            })
        );
        assert!(converted.notes.is_empty());
    }

    #[test]
    fn upload_button_value_is_not_an_input() {
        let converted = convert(
            vec![
                node(1, "LoadImage", &[], json!(["photo.png", "image"])),
                node(2, "LoadImageMask", &[], json!(["m.png", "alpha", "image"])),
                node(3, "LoadImageMask", &[], json!(["m.png", "image", "red"])),
            ],
            json!([]),
        );
        let api = api(&converted);
        assert_eq!(api["1"]["inputs"], json!({"image": "photo.png"}));
        assert_eq!(
            api["2"]["inputs"],
            json!({"image": "m.png", "channel": "alpha"})
        );
        assert_eq!(
            api["3"]["inputs"],
            json!({"image": "m.png", "channel": "red"})
        );
    }

    #[test]
    fn widgets_in_object_form_are_read_by_name() {
        let converted = convert(
            vec![node(
                5,
                "EmptyLatentImage",
                &[],
                json!({"width": 640, "height": 480, "batch_size": 1, "preview": {}}),
            )],
            json!([]),
        );
        assert_eq!(
            api(&converted)["5"]["inputs"],
            json!({"width": 640, "height": 480, "batch_size": 1})
        );
    }

    #[test]
    fn reroutes_are_followed_to_the_real_source() {
        let converted = convert(
            vec![
                node(1, "CheckpointLoaderSimple", &[], json!(["a.safetensors"])),
                node(2, "Reroute", &[("", "*", Some(1), false)], json!([])),
                node(3, "Reroute", &[("", "*", Some(2), false)], json!([])),
                node(
                    4,
                    "CLIPTextEncode",
                    &[("clip", "CLIP", Some(3), false)],
                    json!(["x"]),
                ),
            ],
            json!([
                [1, 1, 1, 2, 0, "CLIP"],
                [2, 2, 0, 3, 0, "CLIP"],
                [3, 3, 0, 4, 0, "CLIP"]
            ]),
        );
        let api = api(&converted);
        assert_eq!(api["4"]["inputs"]["clip"], json!(["1", 1]));
        assert!(api.get("2").is_none() && api.get("3").is_none());
        assert!(converted.notes.is_empty());
    }

    #[test]
    fn primitive_nodes_are_folded_into_their_targets() {
        let mut sockets = KSAMPLER_SOCKETS.to_vec();
        sockets.push(("seed", "INT", Some(1), true));
        let converted = convert(
            vec![
                node(20, "PrimitiveNode", &[], json!([1234, "fixed"])),
                node(
                    3,
                    "KSampler",
                    &sockets,
                    json!([0, "randomize", 20, 7.0, "euler", "normal", 1.0]),
                ),
            ],
            json!([[1, 20, 0, 3, 4, "INT"]]),
        );
        let api = api(&converted);
        assert_eq!(api["3"]["inputs"]["seed"], json!(1234));
        assert!(api.get("20").is_none());
    }

    #[test]
    fn muted_nodes_are_dropped_and_their_consumers_reported() {
        let mut encode = node(
            6,
            "CLIPTextEncode",
            &[("clip", "CLIP", None, false)],
            json!(["x"]),
        );
        encode["mode"] = json!(2);
        let mut sockets = KSAMPLER_SOCKETS.to_vec();
        sockets[1].2 = Some(1);
        let converted = convert(
            vec![
                encode,
                node(
                    3,
                    "KSampler",
                    &sockets,
                    json!([1, "fixed", 20, 7.0, "euler", "normal", 1.0]),
                ),
            ],
            json!([[1, 6, 0, 3, 1, "CONDITIONING"]]),
        );
        let api = api(&converted);
        assert!(api.get("6").is_none());
        assert!(api["3"]["inputs"].get("positive").is_none());
        assert!(
            converted
                .notes
                .iter()
                .any(|n| n.node_id == "3" && n.problem.contains("muted node 6"))
        );
        assert!(
            converted
                .notes
                .iter()
                .any(|n| n.node_id == "6" && n.fix.contains("Unmute"))
        );
    }

    #[test]
    fn bypassed_nodes_pass_matching_types_through() {
        let mut lora = node(
            2,
            "LoraLoader",
            &[
                ("model", "MODEL", Some(1), false),
                ("clip", "CLIP", Some(2), false),
            ],
            json!(["detail.safetensors", 1.0, 1.0]),
        );
        lora["mode"] = json!(4);
        let mut sockets = KSAMPLER_SOCKETS.to_vec();
        sockets[0].2 = Some(3);
        let converted = convert(
            vec![
                node(1, "CheckpointLoaderSimple", &[], json!(["a.safetensors"])),
                lora,
                node(
                    3,
                    "KSampler",
                    &sockets,
                    json!([1, "fixed", 20, 7.0, "euler", "normal", 1.0]),
                ),
                node(
                    4,
                    "CLIPTextEncode",
                    &[("clip", "CLIP", Some(4), false)],
                    json!(["x"]),
                ),
                node(
                    5,
                    "VAEDecode",
                    &[
                        ("samples", "LATENT", None, false),
                        ("vae", "VAE", Some(5), false),
                    ],
                    json!([]),
                ),
            ],
            json!([
                [1, 1, 0, 2, 0, "MODEL"],
                [2, 1, 1, 2, 1, "CLIP"],
                [3, 2, 0, 3, 0, "MODEL"],
                [4, 2, 1, 4, 0, "CLIP"],
                // Nothing of type VAE goes into the LoRA loader: the input is left unset.
                [5, 2, 0, 5, 1, "VAE"]
            ]),
        );
        let api = api(&converted);
        assert!(api.get("2").is_none());
        assert_eq!(api["3"]["inputs"]["model"], json!(["1", 0]));
        assert_eq!(api["4"]["inputs"]["clip"], json!(["1", 1]));
        assert!(api["5"]["inputs"].get("vae").is_none());
        assert!(
            converted
                .notes
                .iter()
                .any(|n| n.node_id == "5" && n.problem.contains("bypassed node 2"))
        );
    }

    #[test]
    fn subgraphs_are_flattened_with_parent_ids() {
        let doc = json!({
            "nodes": [
                node(4, "CheckpointLoaderSimple", &[], json!(["a.safetensors"])),
                node(10, "0f1e2d3c-aaaa-bbbb-cccc-000000000001", &[("clip", "CLIP", Some(1), false)], json!([])),
                node(3, "KSampler", &[("model", "MODEL", Some(3), false), ("positive", "CONDITIONING", Some(2), false)],
                     json!([1, "fixed", 20, 7.0, "euler", "normal", 1.0])),
            ],
            "links": [[1, 4, 1, 10, 0, "CLIP"], [2, 10, 0, 3, 1, "CONDITIONING"], [3, 4, 0, 3, 0, "MODEL"]],
            "definitions": {"subgraphs": [{
                "id": "0f1e2d3c-aaaa-bbbb-cccc-000000000001",
                "name": "Encode",
                "inputs": [{"name": "clip", "type": "CLIP"}],
                "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING"}],
                "nodes": [
                    node(1, "CLIPTextEncode", &[("clip", "CLIP", Some(1), false)], json!(["hello"])),
                    {"id": 2, "type": "MarkdownNote", "widgets_values": ["about"]}
                ],
                "links": [
                    {"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "CLIP"},
                    {"id": 2, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "CONDITIONING"}
                ]
            }]}
        });
        let converted = ui_to_api(&doc, &index()).expect("converts");
        let api = api(&converted);
        assert_eq!(
            api["10:1"]["inputs"],
            json!({"text": "hello", "clip": ["4", 1]})
        );
        assert_eq!(api["3"]["inputs"]["positive"], json!(["10:1", 0]));
        assert_eq!(api.as_object().map(serde_json::Map::len), Some(3));
        assert!(converted.notes.is_empty(), "{:?}", converted.notes);
        let mut promoted = doc.clone();
        promoted["nodes"][1]["widgets_values"] = json!(["a dog"]);
        let converted = ui_to_api(&promoted, &index()).expect("converts");
        assert_eq!(converted.notes.len(), 1);
        assert_eq!(converted.notes[0].node_id, "10");
        assert_eq!(converted.notes[0].class_type, "Encode");
    }

    #[test]
    fn unknown_classes_and_group_nodes_keep_links_and_are_reported() {
        let converted = convert(
            vec![
                node(1, "CheckpointLoaderSimple", &[], json!(["a.safetensors"])),
                node(
                    2,
                    "FancyUpscale",
                    &[("model", "MODEL", Some(1), false)],
                    json!([2.0]),
                ),
                node(3, "workflow>MyGroup", &[], json!([])),
                node(4, "Note", &[], json!(["just a note"])),
            ],
            json!([[1, 1, 0, 2, 0, "MODEL"]]),
        );
        let api = api(&converted);
        assert_eq!(api["2"]["inputs"], json!({"model": ["1", 0]}));
        assert!(api.get("4").is_none());
        let about = |id: &str| {
            converted
                .notes
                .iter()
                .find(|n| n.node_id == id)
                .expect("noted")
        };
        assert!(about("2").fix.contains("Install"));
        assert!(about("3").fix.contains("Convert to nodes"));
        assert_eq!(
            converted.notes.len(),
            2,
            "notes are silent: {:?}",
            converted.notes
        );
    }

    #[test]
    fn missing_widget_values_take_defaults_and_say_so() {
        let converted = convert(
            vec![node(5, "EmptyLatentImage", &[], json!([640]))],
            json!([]),
        );
        assert_eq!(
            api(&converted)["5"]["inputs"],
            json!({"width": 640, "height": 512, "batch_size": 1})
        );
        assert!(converted.notes[0].problem.contains("height, batch_size"));
    }

    #[test]
    fn a_node_without_a_type_is_left_out_and_the_result_re_reads() {
        // Found by the ui_to_api fuzz target: a UI node with no `type` became an API node
        // with an empty class_type, which the API reader then refused.
        let mut typeless = node(4, "", &[], json!([]));
        typeless.as_object_mut().expect("object").remove("type");
        let converted = convert(
            vec![
                typeless,
                node(6, "", &[], json!([])),
                node(
                    8,
                    "VAEDecode",
                    &[
                        ("samples", "LATENT", None, false),
                        ("vae", "VAE", Some(1), false),
                    ],
                    json!([]),
                ),
            ],
            json!([[1, 4, 2, 8, 1, "VAE"]]),
        );
        let api = api(&converted);
        assert_eq!(api.as_object().map(|o| o.len()), Some(1), "{api}");
        assert_eq!(Workflow::from_api(&api).as_ref(), Ok(&converted.workflow));
        assert!(api["8"]["inputs"].get("vae").is_none());
        let problems: Vec<(&str, &str)> = converted
            .notes
            .iter()
            .map(|n| (n.node_id.as_str(), n.problem.as_str()))
            .collect();
        assert!(problems.contains(&("4", "it has no node type, so it was left out")));
        assert!(problems.contains(&("6", "it has no node type, so it was left out")));
        assert!(
            problems
                .iter()
                .any(|(id, p)| *id == "8" && p.contains("isn't in the workflow")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_graph_of_notes_has_nothing_to_run() {
        let doc =
            json!({"nodes": [{"id": 1, "type": "Note", "widgets_values": ["x"]}], "links": []});
        assert!(matches!(
            ui_to_api(&doc, &index()),
            Err(ConvertError::NothingToRun { .. })
        ));
        assert_eq!(
            ui_to_api(&json!({"links": []}), &index()),
            Err(ConvertError::NotUi)
        );
    }

    #[test]
    fn sd15_ui_export_matches_its_api_export() {
        let read = |name: &str| -> Value {
            let path = format!(
                "{}/tests/fixtures/workflows/ui/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
        };
        let converted = ui_to_api(&read("txt2img_sd15_ui.json"), &index()).expect("converts");
        assert_eq!(converted.workflow.to_api(), read("txt2img_sd15_api.json"));
        assert!(converted.notes.is_empty(), "{:?}", converted.notes);
    }
}
