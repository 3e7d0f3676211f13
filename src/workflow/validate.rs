//! Checks an API-format workflow against the node registry before it is queued, with the
//! same rules ComfyUI's `/prompt` applies, and reports every problem at once in words an
//! artist can act on.
//!
//! Two verdicts come back, because ComfyUI's own is partial: it queues a prompt as soon as one
//! output node's branch is sound and silently drops the others. [`Report::valid`] is the
//! strict one (nothing wrong anywhere); [`Report::would_queue`] is what `/prompt` would answer.
//!
//! Known gaps, all things that can't be known offline: nodes' own `VALIDATE_INPUTS` checks
//! (LoadImage looks for the file on disk; we compare with the file list `/object_info` gave),
//! and choices a node loads from a route at run time (`remote` COMBOs are not checked).

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Number, Value};

use super::model::{Input, Link, Node, NodeId, Workflow, compare_ids};
use crate::comfy::nodes::{self, InputType, NodeIndex, Section};

/// How much a problem matters: errors stop ComfyUI from running the branch, warnings don't.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// What is wrong, one variant per rule.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The class isn't installed in this ComfyUI.
    UnknownClass,
    /// A required input has neither a value nor a connection.
    MissingInput,
    /// An input the class doesn't have (ComfyUI ignores it).
    UnknownInput,
    /// A list that isn't `[node_id, output_index]`.
    MalformedLink,
    /// A connection from a node id that isn't in the workflow.
    LinkToMissingNode,
    /// A connection from an output the source node doesn't have.
    OutputOutOfRange,
    /// A connection whose output type the input doesn't accept.
    TypeMismatch,
    /// A value ComfyUI can't turn into the input's type (`"abc"` for an INT).
    InvalidValue,
    /// A COMBO value that isn't one of the choices.
    NotInChoices,
    BelowMin,
    AboveMax,
    /// A typed value where a connection is expected; ComfyUI passes it on as is, and the node
    /// usually fails when it runs.
    ValueForSocket,
    /// A value ComfyUI accepts but reads differently from how it looks (`"false"` is true).
    SuspiciousValue,
    /// Nodes that feed each other in a loop.
    Cycle,
    /// Nothing saves or previews a result, so ComfyUI has nothing to run.
    NoOutputNode,
}

/// One problem, located as precisely as the rule allows.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// `None` for problems of the whole workflow (no output node).
    pub node_id: Option<NodeId>,
    pub class_type: Option<String>,
    pub input: Option<String>,
    pub kind: ProblemKind,
    pub severity: Severity,
    /// What is wrong, in plain words.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// Everything [`validate`] found.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// No errors anywhere (warnings allowed).
    pub valid: bool,
    /// ComfyUI's `/prompt` would accept it: every class is known and at least one output
    /// node's branch has no errors. It then runs only those outputs.
    pub would_queue: bool,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Report {
    /// One line for the artist.
    pub fn summary(&self) -> String {
        let count = |n: usize, what: &str| {
            if n == 1 {
                format!("1 {what}")
            } else {
                format!("{n} {what}s")
            }
        };
        let warnings = self.warnings.len();
        match (self.valid, warnings) {
            (true, 0) => "The workflow is ready to queue: no problems found.".into(),
            (true, _) => format!(
                "The workflow can be queued; {} worth a look.",
                count(warnings, "warning")
            ),
            (false, _) => {
                let mut line = format!("{} to fix", count(self.errors.len(), "error"));
                if warnings > 0 {
                    let _ = write!(line, " and {}", count(warnings, "warning"));
                }
                if self.would_queue {
                    line.push_str(
                        ". ComfyUI would still queue it, but only the outputs whose branches are \
                         sound would run.",
                    );
                } else {
                    line.push_str(". ComfyUI would refuse to queue it as it is.");
                }
                line
            }
        }
    }
}

/// Checks `workflow` against `index` and reports every problem at once, errors and
/// warnings apart, each sorted by node id.
pub fn validate(workflow: &Workflow, index: &NodeIndex) -> Report {
    let mut problems = Vec::new();
    let ids: Vec<&str> = workflow.nodes.keys().map(String::as_str).collect();
    let nodes: Vec<&Node> = workflow.nodes.values().collect();
    let mut own_error = vec![false; nodes.len()];
    let mut unknown_classes = false;
    let mut outputs = Vec::new();

    for (position, (&id, &node)) in ids.iter().zip(&nodes).enumerate() {
        let before = problems.len();
        match index.get(&node.class_type) {
            None => {
                unknown_classes = true;
                problems.push(unknown_class(id, node, index));
            }
            Some(class) => {
                if class.output_node {
                    outputs.push(position);
                }
                check_node(id, node, class, workflow, index, &mut problems);
            }
        }
        own_error[position] = problems[before..]
            .iter()
            .any(|p| p.severity == Severity::Error);
    }

    let tainted = trace_links(&ids, &nodes, own_error, &mut problems);

    if outputs.is_empty() && !unknown_classes {
        problems.push(Problem {
            node_id: None,
            class_type: None,
            input: None,
            kind: ProblemKind::NoOutputNode,
            severity: Severity::Error,
            message: "Nothing in this workflow saves or previews a result, so ComfyUI has \
                      nothing to run."
                .into(),
            fix: "Add an output node such as Save Image or Preview Image and connect the final \
                  image (or other result) to it."
                .into(),
        });
    }

    let would_queue = !unknown_classes && outputs.iter().any(|&o| !tainted[o]);
    problems.sort_by(|a, b| match (&a.node_id, &b.node_id) {
        (Some(a), Some(b)) => compare_ids(a, b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    });
    let (errors, warnings): (Vec<_>, Vec<_>) = problems
        .into_iter()
        .partition(|p| p.severity == Severity::Error);
    Report {
        valid: errors.is_empty(),
        would_queue,
        errors,
        warnings,
    }
}

/// The node pack that provides a well-known custom node class, for the install hint.
pub fn node_pack(class_type: &str) -> Option<&'static str> {
    PACKS.iter().find_map(|(pattern, pack)| {
        let hit = match pattern {
            Pattern::Exact(name) => class_type == *name,
            Pattern::Prefix(prefix) => class_type.starts_with(prefix),
            Pattern::Suffix(suffix) => class_type.ends_with(suffix),
        };
        hit.then_some(*pack)
    })
}

enum Pattern {
    Exact(&'static str),
    Prefix(&'static str),
    Suffix(&'static str),
}

/// Popular packs whose classes turn up in shared workflows. Not exhaustive: ComfyUI-Manager
/// knows the rest.
const PACKS: &[(Pattern, &str)] = &[
    (Pattern::Prefix("VHS_"), "ComfyUI-VideoHelperSuite"),
    (Pattern::Prefix("ADE_"), "ComfyUI-AnimateDiff-Evolved"),
    (Pattern::Prefix("IPAdapter"), "ComfyUI_IPAdapter_plus"),
    (
        Pattern::Exact("PrepImageForClipVision"),
        "ComfyUI_IPAdapter_plus",
    ),
    (Pattern::Exact("FaceDetailer"), "ComfyUI-Impact-Pack"),
    (Pattern::Exact("SAMLoader"), "ComfyUI-Impact-Pack"),
    (Pattern::Exact("DetailerForEach"), "ComfyUI-Impact-Pack"),
    (
        Pattern::Exact("ImpactWildcardProcessor"),
        "ComfyUI-Impact-Pack",
    ),
    (
        Pattern::Exact("UltralyticsDetectorProvider"),
        "ComfyUI-Impact-Subpack",
    ),
    (Pattern::Exact("AIO_Preprocessor"), "comfyui_controlnet_aux"),
    (Pattern::Exact("DWPreprocessor"), "comfyui_controlnet_aux"),
    (
        Pattern::Exact("OpenposePreprocessor"),
        "comfyui_controlnet_aux",
    ),
    (
        Pattern::Exact("CannyEdgePreprocessor"),
        "comfyui_controlnet_aux",
    ),
    (
        Pattern::Exact("DepthAnythingV2Preprocessor"),
        "comfyui_controlnet_aux",
    ),
    (
        Pattern::Exact("LineArtPreprocessor"),
        "comfyui_controlnet_aux",
    ),
    (Pattern::Prefix("CR "), "ComfyUI_Comfyroll_CustomNodes"),
    (Pattern::Prefix("easy "), "ComfyUI-Easy-Use"),
    (Pattern::Suffix("(rgthree)"), "rgthree-comfy"),
    (Pattern::Suffix("|pysssss"), "ComfyUI-Custom-Scripts"),
    (Pattern::Suffix("(Efficient)"), "efficiency-nodes-comfyui"),
    (
        Pattern::Exact("Efficient Loader"),
        "efficiency-nodes-comfyui",
    ),
    (Pattern::Suffix("GGUF"), "ComfyUI-GGUF"),
    (
        Pattern::Exact("UltimateSDUpscale"),
        "ComfyUI_UltimateSDUpscale",
    ),
    (Pattern::Exact("ReActorFaceSwap"), "comfyui-reactor-node"),
    (Pattern::Exact("ApplyInstantID"), "ComfyUI_InstantID"),
    (Pattern::Prefix("InstantID"), "ComfyUI_InstantID"),
    (Pattern::Exact("ApplyPulid"), "PuLID_ComfyUI"),
    (Pattern::Exact("PulidModelLoader"), "PuLID_ComfyUI"),
    (Pattern::Prefix("LayerMask: "), "ComfyUI_LayerStyle"),
    (Pattern::Prefix("LayerStyle: "), "ComfyUI_LayerStyle"),
    (Pattern::Exact("Florence2Run"), "ComfyUI-Florence2"),
    (Pattern::Prefix("WanVideo"), "ComfyUI-WanVideoWrapper"),
    (Pattern::Prefix("SUPIR_"), "ComfyUI-SUPIR"),
    (Pattern::Suffix("KJ"), "ComfyUI-KJNodes"),
    (Pattern::Exact("GetImageSizeAndCount"), "ComfyUI-KJNodes"),
    (Pattern::Exact("ColorMatch"), "ComfyUI-KJNodes"),
    (Pattern::Suffix(" (WAS)"), "was-node-suite-comfyui"),
    (Pattern::Exact("Image Resize"), "was-node-suite-comfyui"),
    (Pattern::Exact("Text Concatenate"), "was-node-suite-comfyui"),
];

/// "KSampler (node 3)", or the title the artist gave it.
fn name(id: &str, node: &Node) -> String {
    format!("{} (node {id})", node.label())
}

fn unknown_class(id: &str, node: &Node, index: &NodeIndex) -> Problem {
    let class = node.class_type.as_str();
    let who = match &node.title {
        Some(title) => format!("{title} (node {id})"),
        None => format!("Node {id}"),
    };
    let message = format!("{who} uses the node type “{class}”, which this ComfyUI doesn't have.");
    let mut hints = Vec::new();
    if let Some(pack) = node_pack(class) {
        hints.push(format!(
            "Install the “{pack}” node pack (ComfyUI-Manager → Install Custom Nodes), then \
             restart ComfyUI."
        ));
    }
    let suggestions = index.suggest(class, 3);
    if !suggestions.is_empty() {
        let list: Vec<String> = suggestions.iter().map(|s| format!("“{s}”")).collect();
        hints.push(format!("Did you mean {}?", list.join(" or ")));
    }
    if hints.is_empty() {
        hints.push(
            "Install the node pack that provides it (ComfyUI-Manager's “Install Missing Custom \
             Nodes” finds it from the workflow), then restart ComfyUI, or replace the node."
                .into(),
        );
    }
    Problem {
        node_id: Some(id.to_string()),
        class_type: Some(class.to_string()),
        input: None,
        kind: ProblemKind::UnknownClass,
        severity: Severity::Error,
        message,
        fix: hints.join(" "),
    }
}

/// Builds problems for one node, filling in where they are.
struct At<'a> {
    id: &'a str,
    node: &'a Node,
    problems: &'a mut Vec<Problem>,
}

impl At<'_> {
    fn push(
        &mut self,
        input: &str,
        kind: ProblemKind,
        severity: Severity,
        message: String,
        fix: String,
    ) {
        self.problems.push(Problem {
            node_id: Some(self.id.to_string()),
            class_type: Some(self.node.class_type.clone()),
            input: Some(input.to_string()),
            kind,
            severity,
            message,
            fix,
        });
    }

    fn error(&mut self, input: &str, kind: ProblemKind, message: String, fix: String) {
        self.push(input, kind, Severity::Error, message, fix);
    }

    fn warning(&mut self, input: &str, kind: ProblemKind, message: String, fix: String) {
        self.push(input, kind, Severity::Warning, message, fix);
    }

    fn name(&self) -> String {
        name(self.id, self.node)
    }
}

fn check_node(
    id: &str,
    node: &Node,
    class: &nodes::Node,
    workflow: &Workflow,
    index: &NodeIndex,
    problems: &mut Vec<Problem>,
) {
    let mut at = At { id, node, problems };
    for spec in &class.inputs {
        if spec.section == Section::Hidden {
            continue;
        }
        match node.input(&spec.name) {
            None if spec.section == Section::Required => missing_input(&mut at, spec),
            None => {}
            Some(Input::Link(link)) => check_link(&mut at, spec, link, workflow, index),
            Some(Input::Value(value)) => check_value(&mut at, spec, value),
        }
    }
    for (input_name, _) in &node.inputs {
        match class.input(input_name) {
            Some(spec) if spec.section != Section::Hidden => {}
            Some(_) => at.warning(
                input_name,
                ProblemKind::UnknownInput,
                format!(
                    "{} sets “{input_name}”, which ComfyUI fills in by itself; the value given \
                     is ignored.",
                    at.name()
                ),
                format!("Remove “{input_name}” from the node's inputs."),
            ),
            None => {
                let known: Vec<&str> = class
                    .inputs
                    .iter()
                    .filter(|i| i.section != Section::Hidden)
                    .map(|i| i.name.as_str())
                    .collect();
                let fix = if known.is_empty() {
                    format!("Remove “{input_name}”; this node takes no inputs.")
                } else {
                    format!(
                        "Remove it, or rename it to one of the node's inputs: {}.",
                        known.join(", ")
                    )
                };
                at.warning(
                    input_name,
                    ProblemKind::UnknownInput,
                    format!(
                        "{} has an input “{input_name}” that {} doesn't know; ComfyUI ignores it.",
                        at.name(),
                        node.class_type
                    ),
                    fix,
                );
            }
        }
    }
}

fn missing_input(at: &mut At<'_>, spec: &nodes::Input) {
    let input = spec.name.as_str();
    if spec.kind.is_widget() && !spec.force_input {
        let fix = match &spec.default {
            Some(default) => format!("Set “{input}” (its default is {default})."),
            None => format!("Set “{input}” to a value."),
        };
        at.error(
            input,
            ProblemKind::MissingInput,
            format!("{} needs a value for “{input}”.", at.name()),
            fix,
        );
    } else {
        let kind = spec.kind.name();
        at.error(
            input,
            ProblemKind::MissingInput,
            format!("{} needs “{input}” connected, but nothing is.", at.name()),
            format!("Connect an output of type {kind} to “{input}”."),
        );
    }
}

fn check_link(
    at: &mut At<'_>,
    spec: &nodes::Input,
    link: &Link,
    workflow: &Workflow,
    index: &NodeIndex,
) {
    let input = spec.name.as_str();
    let Some(source) = workflow.nodes.get(&link.node) else {
        at.error(
            input,
            ProblemKind::LinkToMissingNode,
            format!(
                "“{input}” on {} is connected to node {}, which isn't in the workflow.",
                at.name(),
                link.node
            ),
            format!(
                "Reconnect “{input}” to an existing node's {} output.",
                spec.kind.name()
            ),
        );
        return;
    };
    // An unknown source class is reported on its own node.
    let Some(source_class) = index.get(&source.class_type) else {
        return;
    };
    let outputs = &source_class.outputs;
    let source_name = name(&link.node, source);
    let Some(output) = outputs.get(link.output) else {
        at.error(
            input,
            ProblemKind::OutputOutOfRange,
            format!(
                "“{input}” on {} is connected to output {} of {source_name}, which has only {} \
                 ({}).",
                at.name(),
                link.output,
                plural(outputs.len(), "output"),
                list_outputs(outputs)
            ),
            format!("Reconnect “{input}” to one of {source_name}'s outputs."),
        );
        return;
    };
    let expected = spec.kind.name();
    if types_match(&output.type_name, expected) {
        return;
    }
    let better: Vec<String> = outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| types_match(&o.type_name, expected))
        .map(|(i, o)| format!("output {i} ({})", o.name))
        .collect();
    let fix = if better.is_empty() {
        format!(
            "Connect an output of type {expected} to “{input}”, or add a node that converts {} \
             to {expected} between them.",
            output.type_name
        )
    } else {
        format!(
            "Use {} of {source_name} instead, which gives {expected}.",
            better.join(" or ")
        )
    };
    at.error(
        input,
        ProblemKind::TypeMismatch,
        format!(
            "“{input}” on {} expects {expected}, but it is connected to {source_name}'s output {} \
             ({}), which gives {}.",
            at.name(),
            link.output,
            output.name,
            output.type_name
        ),
        fix,
    );
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn list_outputs(outputs: &[nodes::NodeOutput]) -> String {
    if outputs.is_empty() {
        return "none".into();
    }
    let items: Vec<String> = outputs
        .iter()
        .enumerate()
        .map(|(i, o)| format!("{i}: {}", o.type_name))
        .collect();
    items.join(", ")
}

/// ComfyUI's rule: equal names, `*` on either side, or comma-joined unions that share a type.
pub fn types_match(received: &str, expected: &str) -> bool {
    if received == expected {
        return true;
    }
    let mut received_parts = received.split(',').map(str::trim);
    if received_parts.clone().any(|t| t == "*") || expected.split(',').any(|t| t.trim() == "*") {
        return true;
    }
    received_parts.any(|r| expected.split(',').any(|e| e.trim() == r))
}

/// A number as ComfyUI holds it after converting the input.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn from_json(number: &Number) -> Self {
        if let Some(i) = number.as_i64() {
            Self::Int(i128::from(i))
        } else if let Some(u) = number.as_u64() {
            Self::Int(i128::from(u))
        } else {
            Self::Float(number.as_f64().unwrap_or(f64::NAN))
        }
    }

    /// Like Python's `<`: exact for integers, and false whenever NaN is involved.
    fn less_than(self, other: Self) -> bool {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a < b,
            (a, b) => a.as_f64() < b.as_f64(),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn as_f64(self) -> f64 {
        match self {
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }
}

/// Python's `int(value)`: integers, floats truncated, `True`, and base-10 text.
#[allow(clippy::cast_possible_truncation)]
fn to_int(value: &Value) -> Option<Num> {
    match value {
        Value::Bool(b) => Some(Num::Int(i128::from(*b))),
        Value::Number(n) => Some(match Num::from_json(n) {
            Num::Float(f) if f.is_finite() => Num::Int(f.trunc() as i128),
            Num::Float(_) => return None,
            int => int,
        }),
        Value::String(s) => {
            let digits = python_digits(s.trim(), false)?;
            Some(
                digits
                    .parse::<i128>()
                    .map(Num::Int)
                    .or_else(|_| digits.parse::<f64>().map(Num::Float))
                    .ok()?,
            )
        }
        _ => None,
    }
}

/// Python's `float(value)`.
fn to_float(value: &Value) -> Option<Num> {
    match value {
        Value::Bool(b) => Some(Num::Float(f64::from(u8::from(*b)))),
        Value::Number(n) => Some(Num::Float(Num::from_json(n).as_f64())),
        Value::String(s) => {
            let text = python_digits(s.trim(), true)?;
            text.parse::<f64>().ok().map(Num::Float)
        }
        _ => None,
    }
}

/// Drops the underscores Python allows between digits (`1_000`), refusing misplaced ones;
/// for integers, also refuses anything but an optional sign and digits.
fn python_digits(text: &str, float: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let between = i > 0
                && bytes[i - 1].is_ascii_digit()
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !between {
                return None;
            }
            continue;
        }
        if !float && !(b.is_ascii_digit() || (i == 0 && (b == b'+' || b == b'-'))) {
            return None;
        }
        out.push(char::from(b));
    }
    let has_digit = out.bytes().any(|b| b.is_ascii_digit());
    (float || has_digit).then_some(out)
}

/// Python's `==` between JSON values as ComfyUI compares a value with a COMBO's choices:
/// `1 == 1.0 == True`, text exactly.
fn same_choice(a: &Value, b: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Number(n) => Some(Num::from_json(n)),
        Value::Bool(b) => Some(Num::Int(i128::from(*b))),
        _ => None,
    };
    match (number(a), number(b)) {
        (Some(Num::Int(x)), Some(Num::Int(y))) => x == y,
        #[allow(clippy::float_cmp)]
        (Some(x), Some(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn check_value(at: &mut At<'_>, spec: &nodes::Input, value: &Value) {
    let input = spec.name.as_str();
    // A list that isn't a link is a broken link to ComfyUI; a literal list is written
    // `{"__value__": [...]}`.
    if let Value::Array(items) = value {
        let message = if items.len() == 2 {
            format!(
                "“{input}” on {} holds {}, which looks like a connection but isn't one: it must \
                 be [node id as text, output number].",
                at.name(),
                show(value)
            )
        } else {
            format!(
                "“{input}” on {} holds a list of {} items ({}); ComfyUI reads lists as \
                 connections, which have exactly 2: [node id, output number].",
                at.name(),
                items.len(),
                show(value)
            )
        };
        at.error(
            input,
            ProblemKind::MalformedLink,
            message,
            format!(
                "Reconnect “{input}” as [\"<node id>\", <output number>], or, to pass a list as \
                 a value, write {{\"__value__\": [...]}}."
            ),
        );
        return;
    }
    let value = match value {
        Value::Object(object) => object.get("__value__").unwrap_or(value),
        _ => value,
    };
    let converted = match &spec.kind {
        InputType::Int => match to_int(value) {
            Some(n) => Some(n),
            None => {
                at.error(
                    input,
                    ProblemKind::InvalidValue,
                    format!(
                        "“{input}” on {} must be a whole number, but it is {}.",
                        at.name(),
                        show(value)
                    ),
                    format!("Set “{input}” to a whole number such as {}.", example(spec)),
                );
                return;
            }
        },
        InputType::Float => match to_float(value) {
            Some(n) => Some(n),
            None => {
                at.error(
                    input,
                    ProblemKind::InvalidValue,
                    format!(
                        "“{input}” on {} must be a number, but it is {}.",
                        at.name(),
                        show(value)
                    ),
                    format!("Set “{input}” to a number such as {}.", example(spec)),
                );
                return;
            }
        },
        InputType::Boolean => {
            if let Value::String(text) = value {
                at.warning(
                    input,
                    ProblemKind::SuspiciousValue,
                    format!(
                        "“{input}” on {} is the text {}; ComfyUI reads any non-empty text as \
                         true.",
                        at.name(),
                        show(value)
                    ),
                    format!(
                        "Write {} without quotes.",
                        if text.trim().eq_ignore_ascii_case("false") || text.is_empty() {
                            "false"
                        } else {
                            "true"
                        }
                    ),
                );
            }
            None
        }
        InputType::String => None,
        InputType::Combo {
            choices,
            multiselect,
            remote,
        } => {
            if !remote {
                check_choice(at, spec, value, choices, *multiselect);
            }
            None
        }
        // Wildcard inputs of custom nodes often take typed values on purpose.
        InputType::Socket(kind) if kind.split(',').any(|t| t.trim() == "*") => None,
        InputType::Socket(kind) => {
            at.warning(
                input,
                ProblemKind::ValueForSocket,
                format!(
                    "“{input}” on {} expects a connection ({kind}) but holds the value {}; \
                     ComfyUI passes it on as is and the node will probably fail when it runs.",
                    at.name(),
                    show(value)
                ),
                format!("Connect an output of type {kind} to “{input}” instead."),
            );
            None
        }
    };
    let Some(number) = converted else {
        return;
    };
    let range = range_text(spec);
    if let Some(min) = &spec.min
        && number.less_than(Num::from_json(min))
    {
        at.error(
            input,
            ProblemKind::BelowMin,
            format!(
                "“{input}” on {} is {}, below the smallest allowed value {min}.",
                at.name(),
                show(value)
            ),
            format!("Set “{input}” to a value {range}."),
        );
    } else if let Some(max) = &spec.max
        && Num::from_json(max).less_than(number)
    {
        at.error(
            input,
            ProblemKind::AboveMax,
            format!(
                "“{input}” on {} is {}, above the largest allowed value {max}.",
                at.name(),
                show(value)
            ),
            format!("Set “{input}” to a value {range}."),
        );
    }
}

fn range_text(spec: &nodes::Input) -> String {
    match (&spec.min, &spec.max) {
        (Some(min), Some(max)) => format!("from {min} to {max}"),
        (Some(min), None) => format!("of at least {min}"),
        (None, Some(max)) => format!("of at most {max}"),
        (None, None) => "in range".into(),
    }
}

fn example(spec: &nodes::Input) -> String {
    match (spec.default.as_ref().filter(|d| d.is_number()), &spec.min) {
        (Some(default), _) => default.to_string(),
        (None, Some(min)) => min.to_string(),
        (None, None) if spec.kind == InputType::Float => "1.0".into(),
        (None, None) => "1".into(),
    }
}

fn check_choice(
    at: &mut At<'_>,
    spec: &nodes::Input,
    value: &Value,
    choices: &[Value],
    multiselect: bool,
) {
    let input = spec.name.as_str();
    let allowed = |v: &Value| choices.iter().any(|c| same_choice(v, c));
    let bad: Vec<&Value> = match value {
        Value::Array(values) if multiselect => values.iter().filter(|v| !allowed(v)).collect(),
        _ if allowed(value) => Vec::new(),
        _ => vec![value],
    };
    let Some(first) = bad.first() else {
        return;
    };
    let shown: Vec<String> = bad.iter().map(|v| show(v)).collect();
    let fix = if choices.is_empty() {
        format!(
            "This ComfyUI offers no choices for “{input}” (for a model or file list, nothing is \
             installed yet): add the file to the right ComfyUI folder, refresh, then pick it."
        )
    } else {
        let mut fix = match closest_choice(first, choices) {
            Some(close) => format!("Did you mean {close}? "),
            None => String::new(),
        };
        if first.as_str().is_some_and(|v| v.contains('.')) {
            fix.push_str(
                "If it is a file you have, put it in the matching ComfyUI folder (or upload it), \
                 refresh, and pick it. ",
            );
        }
        let listed: Vec<String> = choices.iter().take(8).map(show).collect();
        let _ = write!(
            fix,
            "Pick one of: {}{}.",
            listed.join(", "),
            if choices.len() > 8 {
                format!(" (and {} more)", choices.len() - 8)
            } else {
                String::new()
            }
        );
        fix
    };
    at.error(
        input,
        ProblemKind::NotInChoices,
        format!(
            "“{input}” on {} is {}, which isn't one of the choices ComfyUI offers.",
            at.name(),
            shown.join(", ")
        ),
        fix,
    );
}

/// A choice equal to `value` ignoring case, or the first that contains it (file names
/// typed without their folder or extension).
fn closest_choice(value: &Value, choices: &[Value]) -> Option<String> {
    let wanted = value.as_str()?.trim().to_lowercase();
    if wanted.is_empty() {
        return None;
    }
    choices
        .iter()
        .filter_map(Value::as_str)
        .find(|c| c.to_lowercase() == wanted)
        .or_else(|| {
            choices
                .iter()
                .filter_map(Value::as_str)
                .find(|c| c.to_lowercase().contains(&wanted))
        })
        .map(|c| format!("“{c}”"))
}

/// Follows links from every node: reports loops, and returns which nodes have an error in
/// themselves or anywhere upstream (ComfyUI drops an output whose branch has one).
fn trace_links(
    ids: &[&str],
    nodes: &[&Node],
    mut tainted: Vec<bool>,
    problems: &mut Vec<Problem>,
) -> Vec<bool> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; nodes.len()];
    // (node, next input to look at)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..nodes.len() {
        if state[root] != NEW {
            continue;
        }
        state[root] = OPEN;
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            let Some((input_name, input)) = nodes[node].inputs.get(next) else {
                state[node] = DONE;
                stack.pop();
                if let Some(&(parent, _)) = stack.last() {
                    tainted[parent] |= tainted[node];
                }
                continue;
            };
            top.1 += 1;
            let Some(link) = input.as_link() else {
                continue;
            };
            let Ok(source) = ids.binary_search(&link.node.as_str()) else {
                continue;
            };
            match state[source] {
                NEW => {
                    state[source] = OPEN;
                    stack.push((source, 0));
                }
                OPEN => {
                    tainted[node] = true;
                    let here = name(ids[node], nodes[node]);
                    problems.push(Problem {
                        node_id: Some(ids[node].to_string()),
                        class_type: Some(nodes[node].class_type.clone()),
                        input: Some(input_name.clone()),
                        kind: ProblemKind::Cycle,
                        severity: Severity::Error,
                        message: format!(
                            "“{input_name}” on {here} closes a loop: node {} depends on this \
                             node's own result.",
                            link.node
                        ),
                        fix: format!(
                            "Disconnect “{input_name}” on {here} or another link in the loop; \
                             ComfyUI can only run workflows that flow one way."
                        ),
                    });
                }
                _ => tainted[node] |= tainted[source],
            }
        }
    }
    tainted
}

#[cfg(test)]
mod tests;
