//! The workflow a session is editing: the document as loaded, the current state, and a
//! bounded undo history. Every change (a patch or a semantic edit such as `add_node`) is one
//! undo step, stored as the patch's inverse rather than a copy of the workflow, so a 500-node
//! workflow with a full history costs little more than the workflow itself.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::load::LoadedFormat;
use super::model::Link;
use super::patch::{self, Change, PatchError, PatchOp, Undo};
use crate::comfy::nodes::{self, InputType, NodeIndex, Section};

/// How many undo steps a session keeps unless configured otherwise.
pub const DEFAULT_UNDO_LIMIT: usize = 50;

/// Where the workflow under edit came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Source {
    Path(PathBuf),
    Template(String),
    /// JSON passed in the call.
    Inline,
    /// A named session restored from disk.
    Session(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => write!(f, "{}", path.display()),
            Self::Template(name) => write!(f, "template {name}"),
            Self::Inline => f.write_str("inline JSON"),
            Self::Session(name) => write!(f, "session {name}"),
        }
    }
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub changes: Vec<Change>,
    pub undo_steps: usize,
    pub total_changes_from_base: usize,
}

/// What a patch would do, and the workflow it would give; nothing is changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    pub changes: Vec<Change>,
    pub total_changes_from_base: usize,
    pub workflow: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undone {
    pub remaining_changes_from_base: usize,
    pub undo_steps_remaining: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeAdded {
    pub node_id: String,
    pub class_type: String,
    pub inputs: Value,
    pub total_nodes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connected {
    /// `"<Class> [id] output n"`.
    pub from: String,
    /// `"<Class> [id].<input>"`.
    pub to: String,
    /// What the input held before, if anything.
    pub previous_value: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputSet {
    /// `"<Class> [id]"`.
    pub node: String,
    pub input: String,
    pub old_value: Option<Value>,
    pub new_value: Value,
}

/// Why an edit was refused. The workflow is unchanged. Each message says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Patch(#[from] PatchError),
    #[error(
        "Nothing to undo. Every change since the workflow was loaded (or reset) has been undone, or none was made."
    )]
    NothingToUndo,
    #[error(
        "The workflow under edit is no longer a JSON object of nodes, so nodes can't be edited. Undo the last change or reset the workflow."
    )]
    NotAWorkflow,
    #[error("{role} '{id}' not found in workflow. {}", known_ids(.known))]
    NodeNotFound {
        role: &'static str,
        id: String,
        known: Vec<String>,
    },
    #[error("There is no node class '{class_type}' in this ComfyUI. {}", did_you_mean(.suggestions))]
    UnknownClass {
        class_type: String,
        suggestions: Vec<String>,
    },
    #[error("{node} has {} output(s), so output {output} doesn't exist. {}", .outputs.len(), list_outputs(.outputs))]
    NoSuchOutput {
        node: String,
        output: usize,
        outputs: Vec<String>,
    },
    #[error(
        "Can't connect {from} ({output_type}) to {to}: that input takes {input_type}. Connect an output of type {input_type} instead."
    )]
    TypeMismatch {
        from: String,
        output_type: String,
        to: String,
        input_type: String,
    },
    #[error("{node} has no input '{input}'. Its inputs are: {}. Use one of those names.", .valid.join(", "))]
    UnknownInput {
        node: String,
        input: String,
        valid: Vec<String>,
    },
    #[error("{node}.{input}: {problem}")]
    BadValue {
        node: String,
        input: String,
        problem: String,
    },
}

fn known_ids(known: &[String]) -> String {
    if known.is_empty() {
        "The workflow has no nodes yet; add one with add_node.".to_string()
    } else {
        format!("Its nodes are: {}. Use one of those ids.", known.join(", "))
    }
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        "Check the spelling (class names are case-sensitive), or install the node pack that provides it.".to_string()
    } else {
        format!(
            "Did you mean {}? Class names are case-sensitive.",
            suggestions.join(", ")
        )
    }
}

fn list_outputs(outputs: &[String]) -> String {
    if outputs.is_empty() {
        return "It has no outputs to connect from.".to_string();
    }
    let listed: Vec<String> = outputs
        .iter()
        .enumerate()
        .map(|(index, kind)| format!("{index}: {kind}"))
        .collect();
    format!("Its outputs are {}.", listed.join(", "))
}

/// One session's workflow under edit.
#[derive(Debug, Clone)]
pub struct EditState {
    pub source: Source,
    /// The format of the document it was loaded from (the state itself is API format).
    pub format: LoadedFormat,
    /// The workflow as loaded; `None` until the first change (it is `current` until then),
    /// so loading a workflow copies nothing.
    base: Option<Value>,
    current: Value,
    history: VecDeque<Undo>,
    limit: usize,
    /// Counts the changes made here (patches, undos, resets), so watchers can tell
    /// whether the workflow moved without comparing documents.
    revision: u64,
}

impl EditState {
    /// Starts editing `workflow` (API format). `undo_limit` bounds the history; 0 keeps none.
    pub fn new(source: Source, format: LoadedFormat, workflow: Value, undo_limit: usize) -> Self {
        Self {
            source,
            format,
            base: None,
            current: workflow,
            history: VecDeque::new(),
            limit: undo_limit,
            revision: 0,
        }
    }

    /// Resumes editing a saved session: its base and its edited workflow, with no undo
    /// history (the history is not saved).
    pub fn restore(
        source: Source,
        format: LoadedFormat,
        base: Value,
        current: Value,
        undo_limit: usize,
    ) -> Self {
        Self {
            source,
            format,
            base: Some(base),
            current,
            history: VecDeque::new(),
            limit: undo_limit,
            revision: 0,
        }
    }

    /// The workflow as it was loaded.
    pub fn base(&self) -> &Value {
        self.base.as_ref().unwrap_or(&self.current)
    }

    /// The workflow with every change so far.
    pub fn current(&self) -> &Value {
        &self.current
    }

    pub fn undo_limit(&self) -> usize {
        self.limit
    }

    /// How many times this workflow has changed since it was loaded.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// How many changes can be undone.
    pub fn undo_steps(&self) -> usize {
        self.history.len()
    }

    /// Applies a patch atomically as one undo step; on failure nothing changes.
    pub fn apply(&mut self, ops: &[PatchOp]) -> Result<Applied, PatchError> {
        if self.base.is_none() {
            self.base = Some(self.current.clone());
        }
        let patched = patch::apply_in_place(&mut self.current, ops)?;
        self.remember(patched.undo);
        self.revision += 1;
        Ok(Applied {
            changes: patched.changes,
            undo_steps: self.history.len(),
            total_changes_from_base: self.changes_from_base(),
        })
    }

    /// What `apply` would do, without doing it.
    pub fn preview(&self, ops: &[PatchOp]) -> Result<Preview, PatchError> {
        let mut workflow = self.current.clone();
        let patched = patch::apply_in_place(&mut workflow, ops)?;
        Ok(Preview {
            changes: patched.changes,
            total_changes_from_base: patch::diff(self.base(), &workflow).len(),
            workflow,
        })
    }

    /// Reverts the latest change.
    pub fn undo(&mut self) -> Result<Undone, EditError> {
        let undo = self.history.pop_back().ok_or(EditError::NothingToUndo)?;
        undo.revert(&mut self.current);
        self.revision += 1;
        Ok(Undone {
            remaining_changes_from_base: self.changes_from_base(),
            undo_steps_remaining: self.history.len(),
        })
    }

    /// Back to the workflow as loaded, with an empty history.
    pub fn reset(&mut self) {
        if let Some(base) = self.base.take() {
            self.current = base;
            self.revision += 1;
        }
        self.history.clear();
    }

    /// The changes from the loaded workflow, as RFC 6902 operations.
    pub fn diff(&self) -> Vec<PatchOp> {
        match &self.base {
            Some(base) => patch::diff(base, &self.current),
            None => Vec::new(),
        }
    }

    pub fn changes_from_base(&self) -> usize {
        self.diff().len()
    }

    fn remember(&mut self, undo: Undo) {
        if self.limit == 0 {
            return;
        }
        while self.history.len() >= self.limit {
            self.history.pop_front();
        }
        self.history.push_back(undo);
    }

    fn nodes(&self) -> Result<&Map<String, Value>, EditError> {
        self.current.as_object().ok_or(EditError::NotAWorkflow)
    }

    fn node(&self, role: &'static str, id: &str) -> Result<&Value, EditError> {
        let nodes = self.nodes()?;
        nodes.get(id).ok_or_else(|| {
            let mut known: Vec<String> = nodes.keys().cloned().collect();
            known.sort_by(|a, b| super::model::compare_ids(a, b));
            EditError::NodeNotFound {
                role,
                id: id.to_string(),
                known,
            }
        })
    }

    /// Adds a node with the id after the largest numeric id. With an index, the class must
    /// exist and each input is checked as `set_input` checks it.
    pub fn add_node(
        &mut self,
        class_type: &str,
        inputs: Map<String, Value>,
        index: Option<&NodeIndex>,
    ) -> Result<NodeAdded, EditError> {
        let nodes = self.nodes()?;
        let highest = nodes
            .keys()
            .filter_map(|id| id.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let node_id = (highest + 1).to_string();
        if let Some(index) = index {
            let Some(class) = index.get(class_type) else {
                return Err(EditError::UnknownClass {
                    class_type: class_type.to_string(),
                    suggestions: index
                        .suggest(class_type, 5)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                });
            };
            let label = format!("{class_type} [{node_id}]");
            for (name, value) in &inputs {
                let spec = input_spec(class, &label, name)?;
                self.check_value(Some(index), spec, &label, value)?;
            }
        }
        let inputs = Value::Object(inputs);
        let node = json!({"class_type": class_type, "inputs": inputs});
        self.apply(&[PatchOp::add(patch::to_pointer(&[&node_id]), node)])?;
        Ok(NodeAdded {
            node_id,
            class_type: class_type.to_string(),
            inputs,
            total_nodes: self.nodes()?.len(),
        })
    }

    /// Wires `from_node`'s output `from_output` into `to_node`'s input `to_input`. With an
    /// index, the output must exist and its type fit the input's.
    pub fn connect_nodes(
        &mut self,
        from_node: &str,
        from_output: usize,
        to_node: &str,
        to_input: &str,
        index: Option<&NodeIndex>,
    ) -> Result<Connected, EditError> {
        let from_class = class_of(self.node("Source node", from_node)?).to_string();
        let to_class = class_of(self.node("Target node", to_node)?).to_string();
        let to = format!("{to_class} [{to_node}]");
        if let Some(class) = index.and_then(|index| index.get(&to_class)) {
            let spec = input_spec(class, &to, to_input)?;
            self.check_link(index, from_node, from_output, &to, spec)?;
        }
        let previous_value = self.input_value(to_node, to_input);
        let link = Link {
            node: from_node.to_string(),
            output: from_output,
        };
        self.write_input(to_node, to_input, link.to_value())?;
        Ok(Connected {
            from: format!("{from_class} [{from_node}] output {from_output}"),
            to: format!("{to}.{to_input}"),
            previous_value,
        })
    }

    /// Sets one input to a literal value or a link (`[node_id, output_index]`). With an
    /// index, the value is checked against the input's spec.
    pub fn set_input(
        &mut self,
        node_id: &str,
        input_name: &str,
        value: Value,
        index: Option<&NodeIndex>,
    ) -> Result<InputSet, EditError> {
        let class_type = class_of(self.node("Node", node_id)?).to_string();
        let node = format!("{class_type} [{node_id}]");
        if let Some(class) = index.and_then(|index| index.get(&class_type)) {
            let spec = input_spec(class, &node, input_name)?;
            self.check_value(index, spec, &node, &value)?;
        }
        let old_value = self.input_value(node_id, input_name);
        self.write_input(node_id, input_name, value.clone())?;
        Ok(InputSet {
            node,
            input: input_name.to_string(),
            old_value,
            new_value: value,
        })
    }

    fn input_value(&self, node_id: &str, input: &str) -> Option<Value> {
        self.current
            .get(node_id)?
            .get("inputs")?
            .get(input)
            .cloned()
    }

    /// One undo step that sets the input, creating `inputs` when the node has none.
    fn write_input(&mut self, node_id: &str, input: &str, value: Value) -> Result<(), EditError> {
        let mut ops = Vec::with_capacity(2);
        let has_inputs = self
            .current
            .get(node_id)
            .and_then(|node| node.get("inputs"))
            .is_some_and(|inputs| !inputs.is_null());
        if !has_inputs {
            ops.push(PatchOp::add(
                patch::to_pointer(&[node_id, "inputs"]),
                json!({}),
            ));
        }
        ops.push(PatchOp::add(
            patch::to_pointer(&[node_id, "inputs", input]),
            value,
        ));
        self.apply(&ops)?;
        Ok(())
    }

    /// Checks a value for an input: a link is checked as a connection, a literal against
    /// the input's type and limits.
    fn check_value(
        &self,
        index: Option<&NodeIndex>,
        spec: &nodes::Input,
        node: &str,
        value: &Value,
    ) -> Result<(), EditError> {
        if let Some(link) = Link::from_value(value) {
            return self.check_link(index, &link.node, link.output, node, spec);
        }
        check_literal(&spec.kind, spec, value).map_err(|problem| EditError::BadValue {
            node: node.to_string(),
            input: spec.name.clone(),
            problem,
        })
    }

    fn check_link(
        &self,
        index: Option<&NodeIndex>,
        from_node: &str,
        from_output: usize,
        to: &str,
        spec: &nodes::Input,
    ) -> Result<(), EditError> {
        let from_class = class_of(self.node("Source node", from_node)?);
        let Some(class) = index.and_then(|index| index.get(from_class)) else {
            return Ok(());
        };
        let from = format!("{from_class} [{from_node}]");
        let Some(output) = class.outputs.get(from_output) else {
            return Err(EditError::NoSuchOutput {
                node: from,
                output: from_output,
                outputs: class.outputs.iter().map(|o| o.type_name.clone()).collect(),
            });
        };
        let input_type = spec.kind.name();
        if types_fit(&output.type_name, input_type) {
            Ok(())
        } else {
            Err(EditError::TypeMismatch {
                from: format!("{from} output {from_output}"),
                output_type: output.type_name.clone(),
                to: format!("{to}.{}", spec.name),
                input_type: input_type.to_string(),
            })
        }
    }
}

fn class_of(node: &Value) -> &str {
    node.get("class_type")
        .and_then(Value::as_str)
        .unwrap_or("?")
}

/// The spec of a visible input, or the names that exist.
fn input_spec<'a>(
    class: &'a nodes::Node,
    node: &str,
    name: &str,
) -> Result<&'a nodes::Input, EditError> {
    class
        .inputs
        .iter()
        .find(|input| input.name == name && input.section != Section::Hidden)
        .ok_or_else(|| EditError::UnknownInput {
            node: node.to_string(),
            input: name.to_string(),
            valid: class
                .inputs
                .iter()
                .filter(|input| input.section != Section::Hidden)
                .map(|input| input.name.clone())
                .collect(),
        })
}

/// Whether an output of type `output` may feed an input of type `input`, as ComfyUI
/// decides: `*` fits anything, and comma-joined types fit when any member matches.
pub fn types_fit(output: &str, input: &str) -> bool {
    let members = |types: &str| -> Vec<String> {
        types
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    };
    let outputs = members(output);
    let inputs = members(input);
    outputs.iter().any(|t| t == "*")
        || inputs.iter().any(|t| t == "*")
        || outputs.iter().any(|o| inputs.contains(o))
}

/// Checks a literal against an input's type and limits; the error says what would fit.
fn check_literal(kind: &InputType, spec: &nodes::Input, value: &Value) -> Result<(), String> {
    match kind {
        InputType::Int => {
            let whole = value.as_i64().is_some()
                || value.as_u64().is_some()
                || value.as_f64().is_some_and(|f| f.fract() == 0.0);
            if !whole {
                return Err(format!(
                    "needs a whole number (INT), not {}. {}",
                    short(value),
                    range_hint(spec)
                ));
            }
            check_range(spec, value)
        }
        InputType::Float => {
            if value.as_f64().is_none() {
                return Err(format!(
                    "needs a number (FLOAT), not {}. {}",
                    short(value),
                    range_hint(spec)
                ));
            }
            check_range(spec, value)
        }
        InputType::Boolean if !value.is_boolean() => Err(format!(
            "needs true or false (BOOLEAN), not {}.",
            short(value)
        )),
        InputType::String if !value.is_string() => Err(format!(
            "needs text (STRING), not {}. Put the value in quotes.",
            short(value)
        )),
        InputType::Combo {
            choices,
            multiselect,
            ..
        } => {
            // An empty list is one ComfyUI fills at run time (models, remote lists): no check.
            if choices.is_empty() {
                return Ok(());
            }
            let picked: Vec<&Value> = match value {
                Value::Array(items) if *multiselect => items.iter().collect(),
                other => vec![other],
            };
            match picked.into_iter().find(|v| !choices.contains(v)) {
                None => Ok(()),
                Some(bad) => {
                    const SHOWN: usize = 15;
                    let shown: Vec<String> = choices.iter().take(SHOWN).map(short).collect();
                    let more = if choices.len() > SHOWN {
                        format!(" (and {} more)", choices.len() - SHOWN)
                    } else {
                        String::new()
                    };
                    Err(format!(
                        "{} is not one of the choices. Use one of: {}{more}.",
                        short(bad),
                        shown.join(", ")
                    ))
                }
            }
        }
        InputType::Socket(kind) => Err(format!(
            "is a connection ({kind}), not a typed-in value. Connect another node's output with connect_nodes, or pass [node_id, output_index]."
        )),
        InputType::Boolean | InputType::String => Ok(()),
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn range_hint(spec: &nodes::Input) -> String {
    match (&spec.min, &spec.max) {
        (Some(min), Some(max)) => format!("Use a value from {min} to {max}."),
        (Some(min), None) => format!("Use a value of at least {min}."),
        (None, Some(max)) => format!("Use a value of at most {max}."),
        (None, None) => String::new(),
    }
}

fn check_range(spec: &nodes::Input, value: &Value) -> Result<(), String> {
    let below = spec
        .min
        .as_ref()
        .is_some_and(|min| compare(value, min).is_some_and(|o| o.is_lt()));
    let above = spec
        .max
        .as_ref()
        .is_some_and(|max| compare(value, max).is_some_and(|o| o.is_gt()));
    if below || above {
        let side = if below {
            "below the minimum"
        } else {
            "above the maximum"
        };
        Err(format!("{} is {side}. {}", short(value), range_hint(spec)))
    } else {
        Ok(())
    }
}

/// Compares a JSON number with a limit, exactly for whole numbers (seeds reach u64::MAX).
fn compare(value: &Value, limit: &serde_json::Number) -> Option<std::cmp::Ordering> {
    let whole = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    let Value::Number(n) = value else {
        return None;
    };
    match (whole(n), whole(limit)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => n.as_f64()?.partial_cmp(&limit.as_f64()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::patch::{OpKind, to_pointer};
    use proptest::prelude::*;
    use serde_json::json;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).expect("fixture")
    }

    fn txt2img() -> Value {
        serde_json::from_slice(&fixture("workflows/txt2img_sd15.json")).expect("workflow")
    }

    fn recorded() -> NodeIndex {
        NodeIndex::parse(&fixture("comfyui-0.3.64/object_info.json")).expect("object_info")
    }

    fn state(limit: usize) -> EditState {
        EditState::new(
            Source::Path("txt2img_sd15.json".into()),
            LoadedFormat::Api,
            txt2img(),
            limit,
        )
    }

    fn seed(value: u64) -> Vec<PatchOp> {
        vec![PatchOp::replace("/5/inputs/seed", json!(value))]
    }

    #[test]
    fn apply_undo_and_reset() {
        let mut edit = state(DEFAULT_UNDO_LIMIT);
        let applied = edit
            .apply(&[
                PatchOp::replace("/5/inputs/steps", json!(30)),
                PatchOp::add("/5/_meta", json!({"title": "Sampler"})),
            ])
            .expect("applies");
        assert_eq!(applied.undo_steps, 1);
        assert_eq!(applied.total_changes_from_base, 2);
        assert_eq!(applied.changes[0].before, Some(json!(20)));
        assert_eq!(applied.changes[0].after, Some(json!(30)));
        edit.apply(&seed(7)).expect("applies");
        assert_eq!(edit.changes_from_base(), 3);
        let undone = edit.undo().expect("undoes");
        assert_eq!(
            undone,
            Undone {
                remaining_changes_from_base: 2,
                undo_steps_remaining: 1
            }
        );
        edit.reset();
        assert_eq!(edit.current(), &txt2img());
        assert_eq!(edit.undo_steps(), 0);
        let error = edit.undo().expect_err("nothing left");
        assert_eq!(error, EditError::NothingToUndo);
        assert!(error.to_string().starts_with("Nothing to undo."));
        assert_eq!(edit.source.to_string(), "txt2img_sd15.json");
        assert_eq!(
            serde_json::to_value(&edit.source).expect("serializes"),
            json!({"kind": "path", "name": "txt2img_sd15.json"})
        );
    }

    #[test]
    fn a_failed_patch_changes_nothing_and_adds_no_undo_step() {
        let mut edit = state(DEFAULT_UNDO_LIMIT);
        edit.apply(&seed(1)).expect("applies");
        let before = edit.current().clone();
        let error = edit
            .apply(&[
                PatchOp::replace("/5/inputs/seed", json!(2)),
                PatchOp::remove("/99"),
            ])
            .expect_err("fails");
        assert_eq!(error.index, 1);
        assert_eq!(edit.current(), &before);
        assert_eq!(edit.undo_steps(), 1);
    }

    #[test]
    fn history_is_bounded_and_drops_the_oldest() {
        let mut edit = state(3);
        for value in 1..=5 {
            edit.apply(&seed(value)).expect("applies");
        }
        assert_eq!(edit.undo_steps(), 3);
        for _ in 0..3 {
            edit.undo().expect("undoes");
        }
        assert_eq!(edit.current()["5"]["inputs"]["seed"], json!(2));
        assert_eq!(edit.undo(), Err(EditError::NothingToUndo));
        let mut none = state(0);
        none.apply(&seed(9)).expect("applies");
        assert_eq!(none.undo_steps(), 0);
        assert_eq!(none.undo(), Err(EditError::NothingToUndo));
    }

    #[test]
    fn preview_changes_nothing() {
        let edit = state(DEFAULT_UNDO_LIMIT);
        let preview = edit
            .preview(&[PatchOp::replace("/4/inputs/width", json!(768))])
            .expect("previews");
        assert_eq!(preview.changes[0].before, Some(json!(512)));
        assert_eq!(preview.total_changes_from_base, 1);
        assert_eq!(preview.workflow["4"]["inputs"]["width"], json!(768));
        assert_eq!(edit.current(), &txt2img());
        assert!(edit.preview(&[PatchOp::remove("/4/inputs/depth")]).is_err());
    }

    #[test]
    fn diff_counts_a_new_node_as_one_change() {
        let mut edit = state(DEFAULT_UNDO_LIMIT);
        let index = recorded();
        let added = edit
            .add_node(
                "LoraLoader",
                json!({"model": ["1", 0], "clip": ["1", 1], "strength_model": 0.8})
                    .as_object()
                    .cloned()
                    .expect("object"),
                Some(&index),
            )
            .expect("adds");
        assert_eq!(added.node_id, "8");
        assert_eq!(added.total_nodes, 8);
        edit.connect_nodes("8", 0, "5", "model", Some(&index))
            .expect("connects");
        edit.set_input("5", "cfg", json!(6.5), Some(&index))
            .expect("sets");
        let diff = edit.diff();
        assert_eq!(diff.len(), 3, "{diff:?}");
        assert_eq!(diff[0], PatchOp::replace("/5/inputs/cfg", json!(6.5)));
        assert_eq!(
            diff[1],
            PatchOp::replace("/5/inputs/model", json!(["8", 0]))
        );
        assert_eq!(diff[2].op, OpKind::Add);
        assert_eq!(diff[2].path, "/8");
        assert_eq!(edit.undo_steps(), 3);
        for _ in 0..3 {
            edit.undo().expect("undoes");
        }
        assert_eq!(edit.current(), &txt2img());
    }

    #[test]
    fn add_node_refuses_unknown_classes_and_bad_inputs() {
        let mut edit = state(DEFAULT_UNDO_LIMIT);
        let index = recorded();
        let error = edit
            .add_node("KSampeler", Map::new(), Some(&index))
            .expect_err("unknown");
        let text = error.to_string();
        assert!(
            text.starts_with(
                "There is no node class 'KSampeler' in this ComfyUI. Did you mean KSampler"
            ),
            "{text}"
        );
        let error = edit
            .add_node(
                "EmptyLatentImage",
                json!({"width": 8}).as_object().cloned().expect("object"),
                Some(&index),
            )
            .expect_err("too small");
        assert_eq!(
            error.to_string(),
            "EmptyLatentImage [8].width: 8 is below the minimum. Use a value from 16 to 16384."
        );
        // Without an index nothing can be checked, and ids skip non-numeric keys.
        edit.apply(&[PatchOp::add("/x", json!({"class_type": "Note"}))])
            .expect("applies");
        let added = edit
            .add_node("MyCustomNode", Map::new(), None)
            .expect("adds");
        assert_eq!(added.node_id, "8");
        assert_eq!(
            edit.current()["8"],
            json!({"class_type": "MyCustomNode", "inputs": {}})
        );
        assert_eq!(edit.undo_steps(), 2);
    }

    #[test]
    fn connect_nodes_checks_nodes_outputs_and_types() {
        let mut edit = state(DEFAULT_UNDO_LIMIT);
        let index = recorded();
        let connected = edit
            .connect_nodes("4", 0, "6", "samples", Some(&index))
            .expect("LATENT into LATENT");
        assert_eq!(connected.from, "EmptyLatentImage [4] output 0");
        assert_eq!(connected.to, "VAEDecode [6].samples");
        assert_eq!(connected.previous_value, Some(json!(["5", 0])));
        let error = edit
            .connect_nodes("1", 1, "5", "model", Some(&index))
            .expect_err("CLIP is not MODEL");
        assert_eq!(
            error.to_string(),
            "Can't connect CheckpointLoaderSimple [1] output 1 (CLIP) to KSampler [5].model: that input takes MODEL. Connect an output of type MODEL instead."
        );
        let error = edit
            .connect_nodes("1", 3, "5", "model", Some(&index))
            .expect_err("no output 3");
        assert_eq!(
            error.to_string(),
            "CheckpointLoaderSimple [1] has 3 output(s), so output 3 doesn't exist. Its outputs are 0: MODEL, 1: CLIP, 2: VAE."
        );
        let error = edit
            .connect_nodes("1", 0, "5", "modle", Some(&index))
            .expect_err("no such input");
        assert!(
            error.to_string().starts_with(
                "KSampler [5] has no input 'modle'. Its inputs are: model, seed, steps"
            ),
            "{error}"
        );
        let error = edit
            .connect_nodes("42", 0, "5", "model", None)
            .expect_err("no source");
        assert!(
            error.to_string().starts_with(
                "Source node '42' not found in workflow. Its nodes are: 1, 2, 3, 4, 5, 6, 7."
            ),
            "{error}"
        );
        let error = edit
            .connect_nodes("1", 0, "42", "model", None)
            .expect_err("no target");
        assert!(
            error.to_string().starts_with("Target node '42' not found"),
            "{error}"
        );
        // Without an index the type is not checked (the original behaviour).
        edit.connect_nodes("1", 1, "5", "model", None)
            .expect("unchecked");
        assert_eq!(edit.undo_steps(), 2);
    }

    #[test]
    fn types_fit_wildcards_and_unions() {
        assert!(types_fit("IMAGE", "IMAGE"));
        assert!(types_fit("*", "MODEL"));
        assert!(types_fit("LATENT", "*"));
        assert!(types_fit("MASK", "IMAGE,MASK"));
        assert!(types_fit("IMAGE, MASK", "MASK"));
        assert!(!types_fit("CLIP", "MODEL"));
        assert!(!types_fit("IMAGE", "IMAGES"));
    }

    #[test]
    fn set_input_checks_values_against_the_spec() {
        let mut edit = state(DEFAULT_UNDO_LIMIT);
        let index = recorded();
        let set = edit
            .set_input("5", "steps", json!(35), Some(&index))
            .expect("sets");
        assert_eq!(set.node, "KSampler [5]");
        assert_eq!(set.old_value, Some(json!(20)));
        assert_eq!(set.new_value, json!(35));
        edit.set_input("5", "seed", json!(u64::MAX), Some(&index))
            .expect("the largest seed fits");
        edit.set_input("5", "sampler_name", json!("euler"), Some(&index))
            .expect("a choice");
        edit.set_input(
            "1",
            "ckpt_name",
            json!("anything.safetensors"),
            Some(&index),
        )
        .expect("an empty model list is filled at run time");
        let refused = |edit: &mut EditState, node: &str, input: &str, value: Value| {
            let before = edit.current().clone();
            let error = edit
                .set_input(node, input, value, Some(&index))
                .expect_err("refused")
                .to_string();
            assert_eq!(edit.current(), &before);
            error
        };
        assert_eq!(
            refused(&mut edit, "5", "steps", json!(0)),
            "KSampler [5].steps: 0 is below the minimum. Use a value from 1 to 10000."
        );
        assert_eq!(
            refused(&mut edit, "5", "steps", json!(2.5)),
            "KSampler [5].steps: needs a whole number (INT), not 2.5. Use a value from 1 to 10000."
        );
        assert!(refused(&mut edit, "5", "cfg", json!(101)).contains("101 is above the maximum"));
        assert!(refused(&mut edit, "5", "cfg", json!("7")).contains("needs a number (FLOAT)"));
        let text = refused(&mut edit, "5", "sampler_name", json!("eulr"));
        assert!(
            text.starts_with("KSampler [5].sampler_name: \"eulr\" is not one of the choices. Use one of: \"euler\""),
            "{text}"
        );
        assert!(text.contains("more)."), "{text}");
        assert!(
            refused(&mut edit, "7", "filename_prefix", json!(3)).contains("needs text (STRING)")
        );
        assert!(refused(&mut edit, "5", "model", json!(3)).contains("is a connection (MODEL)"));
        assert!(
            refused(&mut edit, "5", "model", json!(["1", 1]))
                .contains("(CLIP) to KSampler [5].model: that input takes MODEL")
        );
        assert!(
            refused(&mut edit, "5", "sed", json!(1))
                .starts_with("KSampler [5] has no input 'sed'. Its inputs are: model, seed,")
        );
        assert!(
            refused(&mut edit, "9", "seed", json!(1))
                .starts_with("Node '9' not found in workflow.")
        );
        edit.apply(&[PatchOp::add(
            "/8",
            json!({"class_type": "LatentCompositeMasked"}),
        )])
        .expect("applies");
        assert!(refused(&mut edit, "8", "resize_source", json!(1)).contains("needs true or false"));
        let set = edit
            .set_input("8", "resize_source", json!(true), Some(&index))
            .expect("a node without inputs gets some");
        assert_eq!(set.old_value, None);
        assert_eq!(
            edit.current()["8"]["inputs"],
            json!({"resize_source": true})
        );
        edit.undo().expect("undoes");
        assert_eq!(
            edit.current()["8"],
            json!({"class_type": "LatentCompositeMasked"})
        );
        // Classes the index doesn't know, and no index: set as given.
        edit.set_input("8", "anything", json!([1, 2, 3]), None)
            .expect("sets");
    }

    #[test]
    fn semantic_edits_need_a_workflow_object() {
        let mut edit = state(DEFAULT_UNDO_LIMIT);
        edit.apply(&[PatchOp::replace("", json!([1]))])
            .expect("applies");
        assert_eq!(
            edit.add_node("KSampler", Map::new(), None),
            Err(EditError::NotAWorkflow)
        );
        assert_eq!(
            edit.set_input("5", "seed", json!(1), None),
            Err(EditError::NotAWorkflow)
        );
    }

    // --- property tests --------------------------------------------------------------

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            (-1.0e6f64..1.0e6).prop_map(Value::from),
            "[a-z0-9~/-]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(arb_key(), inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["", "-", "0", "1", "a/b", "~", "~1", "inputs", "seed"])
                .prop_map(String::from),
            "[a-z~/0-9]{1,3}",
        ]
    }

    /// Pointers mostly into the fixture workflow, with escapes, `-` and some garbage.
    fn arb_pointer() -> impl Strategy<Value = String> {
        let token = prop::sample::select(vec![
            "1",
            "2",
            "5",
            "7",
            "8",
            "inputs",
            "class_type",
            "seed",
            "steps",
            "text",
            "model",
            "clip",
            "0",
            "1",
            "2",
            "-",
            "01",
            "a/b",
            "~",
            "_meta",
            "title",
        ]);
        prop_oneof![
            4 => prop::collection::vec(token, 0..5).prop_map(|tokens| to_pointer(&tokens)),
            1 => "[/a-z0-9~-]{0,8}",
        ]
    }

    fn arb_op() -> impl Strategy<Value = PatchOp> {
        let kind = prop::sample::select(vec![
            OpKind::Add,
            OpKind::Remove,
            OpKind::Replace,
            OpKind::Move,
            OpKind::Copy,
            OpKind::Test,
        ]);
        (
            kind,
            arb_pointer(),
            prop::option::weighted(0.8, arb_json()),
            prop::option::weighted(0.8, arb_pointer()),
        )
            .prop_map(|(op, path, value, from)| PatchOp {
                op,
                path,
                value,
                from,
            })
    }

    fn arb_patch() -> impl Strategy<Value = Vec<PatchOp>> {
        prop::collection::vec(arb_op(), 0..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn apply_then_undo_restores_the_exact_workflow(patches in prop::collection::vec(arb_patch(), 1..5)) {
            let mut edit = state(DEFAULT_UNDO_LIMIT);
            let mut seen = vec![edit.current().clone()];
            for ops in &patches {
                let before = edit.current().clone();
                match edit.apply(ops) {
                    Ok(_) => seen.push(edit.current().clone()),
                    Err(_) => prop_assert_eq!(edit.current(), &before),
                }
            }
            prop_assert_eq!(edit.undo_steps(), seen.len() - 1);
            while seen.len() > 1 {
                seen.pop();
                edit.undo().map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(Some(edit.current()), seen.last());
            }
            prop_assert_eq!(edit.current(), &txt2img());
        }

        #[test]
        fn preview_equals_apply_without_changing_state(first in arb_patch(), ops in arb_patch()) {
            let mut edit = state(DEFAULT_UNDO_LIMIT);
            let _ = edit.apply(&first);
            let before = edit.current().clone();
            let steps = edit.undo_steps();
            let preview = edit.preview(&ops);
            prop_assert_eq!(edit.current(), &before);
            prop_assert_eq!(edit.undo_steps(), steps);
            match (preview, edit.apply(&ops)) {
                (Ok(preview), Ok(applied)) => {
                    prop_assert_eq!(&preview.workflow, edit.current());
                    prop_assert_eq!(preview.changes, applied.changes);
                    prop_assert_eq!(preview.total_changes_from_base, applied.total_changes_from_base);
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (preview, applied) => prop_assert!(false, "preview {:?} vs apply {:?}", preview.is_ok(), applied.is_ok()),
            }
        }

        #[test]
        fn the_diff_takes_base_to_current(base in arb_json(), current in arb_json()) {
            let ops = patch::diff(&base, &current);
            prop_assert_eq!(patch::apply(&base, &ops).map_err(|e| TestCaseError::fail(e.to_string()))?, current.clone());
            prop_assert_eq!(ops.is_empty(), base == current);
            prop_assert_eq!(patch::diff(&base, &current), ops, "deterministic");
        }

        #[test]
        fn the_diff_of_an_edited_workflow_replays(ops in prop::collection::vec(arb_op(), 0..12)) {
            let mut edit = state(DEFAULT_UNDO_LIMIT);
            for op in ops {
                let _ = edit.apply(std::slice::from_ref(&op));
            }
            let diff = edit.diff();
            prop_assert_eq!(&patch::apply(edit.base(), &diff).map_err(|e| TestCaseError::fail(e.to_string()))?, edit.current());
        }

        #[test]
        fn arbitrary_patches_never_panic(doc in arb_json(), raw in prop::collection::vec((arb_key(), arb_json()), 0..4), ops in arb_patch()) {
            // Raw JSON objects that may or may not be patch ops.
            for (key, value) in raw {
                if let Ok(ops) = serde_json::from_value::<Vec<PatchOp>>(json!([{key: value}])) {
                    let _ = patch::apply(&doc, &ops);
                }
            }
            let mut copy = doc.clone();
            match patch::apply_in_place(&mut copy, &ops) {
                Ok(patched) => {
                    patched.undo.revert(&mut copy);
                    prop_assert_eq!(copy, doc);
                }
                Err(error) => {
                    prop_assert_eq!(&copy, &doc);
                    prop_assert!(error.index < ops.len());
                    prop_assert!(!error.to_string().is_empty());
                }
            }
        }
    }
}
