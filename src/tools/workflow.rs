//! Understanding and editing workflows: load, validate, list editable fields, patch with undo,
//! diff, save, reset, the semantic edits, and the shipped templates. Names and parameters are
//! the original project's (§1.3, §1.4, §1.8 of the catalogue); every tool that takes a `path`
//! also takes the workflow JSON inline, and the editing tools take an optional `session` name.
//!
//! The session's workflow lives in [`Session::workflow`]; a tool holds its lock for the whole
//! edit, so calls in one session apply in order and never interleave.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::comfy::nodes::NodeIndex;
use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::registry::{Hints, Structured, ToolSpec, tool};
use crate::session::Session;
use crate::tools::NoParams;
use crate::workflow::convert::ConversionNote;
use crate::workflow::edit::{EditState, Source};
use crate::workflow::load::{self, Loaded, LoadedFormat};
use crate::workflow::model::{Input, Node, NodeId, Workflow};
use crate::workflow::patch::{Change, PatchOp};
use crate::workflow::templates;
use crate::workflow::validate::{self, Problem};

/// The largest workflow file read.
pub const MAX_WORKFLOW_BYTES: u64 = 32 * 1024 * 1024;

const NO_WORKFLOW: &str = "No workflow loaded in this session.";
const NO_WORKFLOW_HINT: &str = "Load one first with load_workflow (a file path or the workflow JSON), \
     get_workflow_template, or load_session.";

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "load_workflow",
            "Load a workflow",
            "Load a workflow (API format, a UI save with its API prompt, or a UI-only save, which \
             is converted using ComfyUI's node list) from a file path or inline JSON, make it \
             this session's workflow for editing, and describe it: nodes, connections, editable \
             fields and a readable summary.",
            Hints::EDIT,
            load_workflow,
        ),
        tool(
            "validate_workflow",
            "Validate a workflow",
            "Check a workflow against ComfyUI's installed nodes before running it: unknown \
             nodes, missing or unknown inputs, broken links, type mismatches, values outside \
             their range or choices, no output node. Reports every problem at once with its \
             node, input and a fix. Without path or workflow, checks this session's workflow.",
            Hints::LIVE_READ,
            validate_workflow,
        ),
        tool(
            "get_editable_fields",
            "List editable fields",
            "List the values a workflow's nodes take (prompts, seeds, steps, sizes, model \
             names…), grouped by node class, optionally filtered by class. Without path or \
             workflow, lists this session's workflow.",
            Hints::LOCAL_READ,
            get_editable_fields,
        ),
        tool(
            "apply_workflow_patch",
            "Patch the workflow",
            "Apply RFC 6902 JSON Patch operations (add, remove, replace, move, copy, test) to \
             this session's workflow, all or nothing, with paths like /3/inputs/seed. Give a \
             path or workflow to (re)load it first. Each call can be undone.",
            Hints::EDIT,
            apply_workflow_patch,
        ),
        tool(
            "preview_workflow_patch",
            "Preview a patch",
            "Show what a JSON Patch would change in this session's workflow, value by value, \
             without changing anything.",
            Hints::LOCAL_READ,
            preview_workflow_patch,
        ),
        tool(
            "undo_workflow_patch",
            "Undo the last edit",
            "Undo the last change to this session's workflow (a patch, add_node, connect_nodes \
             or set_input).",
            Hints::EDIT,
            undo_workflow_patch,
        ),
        tool(
            "get_workflow_diff",
            "Changes since loading",
            "List every change made to this session's workflow since it was loaded, as RFC \
             6902 operations.",
            Hints::LOCAL_READ,
            get_workflow_diff,
        ),
        tool(
            "save_workflow",
            "Save the workflow",
            "Write this session's workflow to a file in API format (atomically). Without \
             output_path, overwrites the API-format file it was loaded from.",
            Hints::WRITE,
            save_workflow,
        ),
        tool(
            "reset_workflow",
            "Reset the workflow",
            "Throw away every change to this session's workflow and return to it as loaded.",
            Hints::EDIT,
            reset_workflow,
        ),
        tool(
            "add_node",
            "Add a node",
            "Add a node of the given class to this session's workflow, with optional input \
             values; checked against ComfyUI's node list when ComfyUI answers. Undoable.",
            Hints::EDIT,
            add_node,
        ),
        tool(
            "connect_nodes",
            "Connect two nodes",
            "Connect one node's output to another node's input in this session's workflow; \
             the types are checked against ComfyUI's node list when ComfyUI answers. Undoable.",
            Hints::EDIT,
            connect_nodes,
        ),
        tool(
            "set_input",
            "Set an input",
            "Set one input value of a node in this session's workflow (a prompt, seed, size, \
             model name…); checked against the input's type, range and choices when ComfyUI \
             answers. Undoable.",
            Hints::EDIT,
            set_input,
        ),
        tool(
            "list_workflow_templates",
            "List templates",
            "List the workflow templates this server ships, with their model family, \
             resolution, the models they need and whether this ComfyUI can run them.",
            Hints::LIVE_READ,
            list_workflow_templates,
        ),
        tool(
            "get_workflow_template",
            "Start from a template",
            "Load one of the shipped templates as this session's workflow, ready to edit and run.",
            Hints::EDIT,
            get_workflow_template,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// ComfyUI's node list if it can be had now (a cached copy counts), else why not.
async fn node_index(cx: &ToolContext) -> Result<Arc<NodeIndex>, crate::comfy::ComfyError> {
    let client = cx.app.comfy().client().await;
    client.nodes(false).await
}

/// Where a workflow given to a tool came from, before it is loaded.
enum Given {
    Path(String),
    Inline(Value),
}

fn given(path: Option<String>, workflow: Option<Value>) -> Result<Option<Given>, ToolError> {
    match (path.filter(|p| !p.trim().is_empty()), workflow) {
        (Some(_), Some(_)) => Err(ToolError::rejected(
            "Both path and workflow were given.",
            "Pass one: a file path, or the workflow JSON itself.",
        )),
        (Some(path), None) => Ok(Some(Given::Path(path))),
        (None, Some(workflow)) => Ok(Some(Given::Inline(workflow))),
        (None, None) => Ok(None),
    }
}

/// Reads and loads a workflow; a UI-only one is converted when ComfyUI's node list is at hand.
async fn load_given(cx: &ToolContext, given: Given) -> Result<(Loaded, Source), ToolError> {
    let (loaded, source) = match given {
        Given::Path(raw) => {
            let bytes = cx.app.paths().read_capped(&raw, MAX_WORKFLOW_BYTES).await?;
            let text = String::from_utf8_lossy(&bytes);
            let resolved = cx.app.paths().existing_file(&raw)?;
            (
                load_with_index(cx, |index| load::load_str(&text, index)).await,
                Source::Path(resolved),
            )
        }
        Given::Inline(Value::String(text)) => (
            load_with_index(cx, |index| load::load_str(&text, index)).await,
            Source::Inline,
        ),
        Given::Inline(doc) => (
            load_with_index(cx, |index| load::load(&doc, index)).await,
            Source::Inline,
        ),
    };
    let loaded = loaded.map_err(|error| ToolError::rejected(error.to_string(), ""))?;
    Ok((loaded, source))
}

/// Loads without asking ComfyUI first; only a UI-only document, which needs the node list,
/// makes it ask.
pub(crate) async fn load_with_index<F>(cx: &ToolContext, load: F) -> Result<Loaded, load::LoadError>
where
    F: Fn(Option<&NodeIndex>) -> Result<Loaded, load::LoadError>,
{
    match load(None) {
        Err(load::LoadError::NeedsNodeList) => match node_index(cx).await {
            Ok(index) => load(Some(&index)),
            Err(_) => Err(load::LoadError::NeedsNodeList),
        },
        other => other,
    }
}

/// Runs `f` on the session's workflow, or says there is none.
async fn with_workflow<T>(
    session: &Session,
    f: impl FnOnce(&mut EditState) -> Result<T, ToolError>,
) -> Result<T, ToolError> {
    let mut guard = session.workflow.lock().await;
    let state = guard
        .as_mut()
        .ok_or_else(|| ToolError::rejected(NO_WORKFLOW, NO_WORKFLOW_HINT))?;
    f(state)
}

fn start_editing(cx: &ToolContext, loaded: Loaded, source: Source) -> EditState {
    EditState::new(
        source,
        loaded.format,
        loaded.workflow.into_api(),
        cx.app.config().sessions.undo_limit,
    )
}

fn as_workflow(doc: &Value) -> Result<Workflow, ToolError> {
    Workflow::from_api(doc).map_err(|error| {
        ToolError::rejected(
            format!("The session's workflow is no longer a valid API workflow: {error}."),
            "Undo the last change with undo_workflow_patch, or reset_workflow.",
        )
    })
}

/// The Python type name the original reported for a value (`str`, `int`, …).
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "str",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::Bool(_) => "bool",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
        Value::Null => "NoneType",
    }
}

/// One widget value a client can change. Borrowed from the workflow: reports are built
/// straight into JSON, without copying the workflow first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EditableField<'a> {
    pub node_id: &'a str,
    pub class_type: &'a str,
    pub field: &'a str,
    pub value: &'a Value,
    /// `str`, `int`, `float`, `bool`, `list`, `dict` or `NoneType`.
    #[serde(rename = "type")]
    pub type_name: &'static str,
}

/// Nodes in reading order, with their ids: what the report builders walk.
type Ordered<'a> = [(&'a NodeId, &'a Node)];

fn editable_fields<'a>(ordered: &Ordered<'a>) -> Vec<EditableField<'a>> {
    ordered
        .iter()
        .flat_map(|&(id, node)| {
            node.inputs
                .iter()
                .filter_map(move |(name, input)| match input {
                    Input::Value(value) => Some(EditableField {
                        node_id: id,
                        class_type: &node.class_type,
                        field: name,
                        value,
                        type_name: type_name(value),
                    }),
                    Input::Link(_) => None,
                })
        })
        .collect()
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Connection<'a> {
    pub from_node: &'a str,
    pub from_class: &'a str,
    pub from_output: usize,
    pub to_node: &'a str,
    pub to_class: &'a str,
    pub to_input: &'a str,
}

/// Every link, by target node in reading order, then by input name.
fn connections<'a>(workflow: &'a Workflow, ordered: &Ordered<'a>) -> Vec<Connection<'a>> {
    let class = |id: &str| {
        workflow
            .nodes
            .get(id)
            .map_or("(missing)", |node| node.class_type.as_str())
    };
    let mut list = Vec::new();
    for &(to, node) in ordered {
        let first = list.len();
        for (input, value) in &node.inputs {
            if let Input::Link(link) = value {
                list.push(Connection {
                    from_node: &link.node,
                    from_class: class(&link.node),
                    from_output: link.output,
                    to_node: to,
                    to_class: &node.class_type,
                    to_input: input,
                });
            }
        }
        list[first..].sort_unstable_by(|a, b| a.to_input.cmp(b.to_input));
    }
    list
}

/// The stage a class belongs to in the summary, by the words in its name.
fn stage(class: &str) -> &'static str {
    // Class names are ASCII in practice; compare without allocating a lower-case copy.
    let has = |words: &[&str]| {
        words.iter().any(|word| {
            class
                .as_bytes()
                .windows(word.len())
                .any(|window| window.eq_ignore_ascii_case(word.as_bytes()))
        })
    };
    if has(&["save", "preview", "output", "combine", "video"]) {
        "Output"
    } else if has(&["sample", "sampler", "denoise"]) {
        "Sampling"
    } else if has(&["encode", "clip", "conditioning"]) {
        "Encoding"
    } else if has(&["load", "checkpoint", "unet", "model"]) {
        "Loaders"
    } else if has(&["mesh", "3d", "voxel", "pointcloud", "point_cloud"]) {
        "3D Processing"
    } else {
        "Other"
    }
}

fn summary(ordered: &Ordered<'_>, connections: &[Connection<'_>]) -> String {
    let mut text = format!("{} nodes, {} connections", ordered.len(), connections.len());
    let mut stages: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for &(id, node) in ordered {
        stages
            .entry(stage(&node.class_type))
            .or_default()
            .push(format!("{} [{id}]", node.label()));
    }
    for name in [
        "Loaders",
        "Encoding",
        "Sampling",
        "3D Processing",
        "Output",
        "Other",
    ] {
        if let Some(nodes) = stages.get(name) {
            text.push_str(&format!("\n{name}: {}", nodes.join(", ")));
        }
    }
    if !connections.is_empty() {
        text.push_str("\nData flow:");
        for c in connections.iter().take(SUMMARY_FLOW_LINES) {
            text.push_str(&format!(
                "\n  {} [{}] output {} -> {} [{}].{}",
                c.from_class, c.from_node, c.from_output, c.to_class, c.to_node, c.to_input
            ));
        }
        if connections.len() > SUMMARY_FLOW_LINES {
            text.push_str(&format!(
                "\n  … and {} more (all are listed in connections)",
                connections.len() - SUMMARY_FLOW_LINES
            ));
        }
    }
    text
}

/// How many connections the summary's data flow lists; `connections` has them all.
const SUMMARY_FLOW_LINES: usize = 60;

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeSummary<'a> {
    pub class_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    pub input_count: usize,
}

// ---------------------------------------------------------------------------------------------
// load_workflow, validate_workflow, get_editable_fields
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadParams {
    /// A workflow file (absolute, or relative to the ComfyUI folder).
    #[serde(default)]
    pub path: Option<String>,
    /// The workflow JSON itself (object, or the file's text), for clients that don't share
    /// this machine's files.
    #[serde(default)]
    pub workflow: Option<Value>,
    /// A named session to load into, instead of this connection's.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LoadReport<'a> {
    /// The file, or `inline`.
    pub file: String,
    pub format: LoadedFormat,
    pub node_count: usize,
    pub connection_count: usize,
    pub editable_field_count: usize,
    pub summary: String,
    pub nodes: BTreeMap<&'a str, NodeSummary<'a>>,
    pub connections: Vec<Connection<'a>>,
    pub editable_fields: Vec<EditableField<'a>>,
    /// For converted UI workflows: nodes that could not be converted completely.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conversion_notes: Vec<ConversionNote>,
    /// It is now this session's workflow, ready for patches and edits.
    pub loaded_into_session: bool,
}

async fn load_workflow(
    cx: ToolContext,
    params: LoadParams,
) -> Result<Structured<LoadReport<'static>>, ToolError> {
    let Some(what) = given(params.path, params.workflow)? else {
        return Err(ToolError::rejected(
            "No workflow was given.",
            "Pass path (a workflow file) or workflow (the JSON itself).",
        ));
    };
    let (mut loaded, source) = load_given(&cx, what).await?;
    // The report borrows from the workflow and goes straight into JSON; the workflow then
    // moves into the session. Nothing is copied on the way.
    let report = {
        let workflow = &loaded.workflow;
        let ordered = workflow.ordered();
        let connections = connections(workflow, &ordered);
        let fields = editable_fields(&ordered);
        let nodes = ordered
            .iter()
            .map(|&(id, node)| {
                (
                    id.as_str(),
                    NodeSummary {
                        class_type: &node.class_type,
                        title: node.title.as_deref(),
                        input_count: node.inputs.len(),
                    },
                )
            })
            .collect();
        let report = LoadReport {
            file: match &source {
                Source::Path(path) => path.display().to_string(),
                other => other.to_string(),
            },
            format: loaded.format,
            node_count: workflow.nodes.len(),
            connection_count: connections.len(),
            editable_field_count: fields.len(),
            summary: summary(&ordered, &connections),
            nodes,
            connections,
            editable_fields: fields,
            conversion_notes: std::mem::take(&mut loaded.notes),
            loaded_into_session: true,
        };
        serde_json::to_value(&report).map_err(|error| ToolError::Internal(error.to_string()))?
    };
    let session = cx.workspace(params.session.as_deref());
    session
        .workflow
        .lock()
        .await
        .set(start_editing(&cx, loaded, source));
    Ok(Structured::new(report))
}

/// A workflow for a tool that reads one: a file, inline JSON, or (neither) the session's.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowInput {
    /// A workflow file; without path or workflow, this session's workflow is used.
    #[serde(default)]
    pub path: Option<String>,
    /// The workflow JSON itself.
    #[serde(default)]
    pub workflow: Option<Value>,
    /// A named session whose workflow to use.
    #[serde(default)]
    pub session: Option<String>,
}

/// The workflow a tool should work on: the workflow, any conversion notes, and where it came
/// from (a path, `inline JSON`, or the session's source).
#[derive(Debug)]
pub struct Resolved {
    pub workflow: Workflow,
    pub notes: Vec<ConversionNote>,
    pub source: String,
}

pub async fn resolve_workflow(
    cx: &ToolContext,
    input: WorkflowInput,
) -> Result<Resolved, ToolError> {
    match given(input.path, input.workflow)? {
        Some(what) => {
            let (loaded, source) = load_given(cx, what).await?;
            Ok(Resolved {
                workflow: loaded.workflow,
                notes: loaded.notes,
                source: source.to_string(),
            })
        }
        None => {
            let session = cx.workspace(input.session.as_deref());
            let (doc, source) = with_workflow(&session, |state| {
                Ok((state.current().clone(), state.source.to_string()))
            })
            .await?;
            Ok(Resolved {
                workflow: as_workflow(&doc)?,
                notes: Vec::new(),
                source,
            })
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ValidationReport {
    /// What the workflow was checked against: ComfyUI's live node list, or a cached copy
    /// while ComfyUI isn't answering.
    pub node_list: String,
    /// No errors (warnings allowed).
    pub valid: bool,
    /// ComfyUI would accept it for running (it runs the outputs whose branches are sound).
    pub would_queue: bool,
    pub summary: String,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// Converted UI workflows: what could not be converted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conversion_notes: Vec<ConversionNote>,
}

async fn validate_workflow(
    cx: ToolContext,
    params: WorkflowInput,
) -> Result<ValidationReport, ToolError> {
    let Resolved {
        workflow, notes, ..
    } = resolve_workflow(&cx, params).await?;
    let client = cx.app.comfy().client().await;
    let index = client.nodes(false).await.map_err(|error| {
        ToolError::rejected(
            format!(
                "{} Checking a workflow needs ComfyUI's list of installed nodes.",
                error.user_message()
            ),
            "",
        )
    })?;
    let report = validate::validate(&workflow, &index);
    let age = client.node_list_age().unwrap_or_default().as_secs();
    let node_list = if client.breaker().state == crate::comfy::breaker::BreakerState::Closed {
        format!(
            "ComfyUI's node list at {} (fetched {age} s ago)",
            client.base_url()
        )
    } else {
        format!(
            "a copy of ComfyUI's node list fetched {age} s ago: ComfyUI at {} isn't answering now, so nodes installed since then are not known",
            client.base_url()
        )
    };
    Ok(ValidationReport {
        node_list,
        valid: report.valid,
        would_queue: report.would_queue,
        summary: report.summary(),
        errors: report.errors,
        warnings: report.warnings,
        conversion_notes: notes,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditableFieldsParams {
    /// A workflow file; without path or workflow, this session's workflow.
    #[serde(default)]
    pub path: Option<String>,
    /// The workflow JSON itself.
    #[serde(default)]
    pub workflow: Option<Value>,
    /// Keep classes whose name contains this text (case-insensitive), e.g. `KSampler`.
    #[serde(default)]
    pub class_filter: Option<String>,
    /// A named session whose workflow to list.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EditableFieldsReport<'a> {
    pub file: String,
    pub total_fields: usize,
    pub fields_by_class: BTreeMap<&'a str, Vec<EditableField<'a>>>,
}

async fn get_editable_fields(
    cx: ToolContext,
    params: EditableFieldsParams,
) -> Result<Structured<EditableFieldsReport<'static>>, ToolError> {
    let Resolved {
        workflow,
        source: file,
        ..
    } = resolve_workflow(
        &cx,
        WorkflowInput {
            path: params.path,
            workflow: params.workflow,
            session: params.session,
        },
    )
    .await?;
    let filter = params
        .class_filter
        .map(|f| f.trim().to_lowercase())
        .filter(|f| !f.is_empty());
    let ordered = workflow.ordered();
    let mut fields_by_class: BTreeMap<&str, Vec<EditableField<'_>>> = BTreeMap::new();
    for field in editable_fields(&ordered) {
        if filter
            .as_deref()
            .is_none_or(|f| field.class_type.to_lowercase().contains(f))
        {
            fields_by_class
                .entry(field.class_type)
                .or_default()
                .push(field);
        }
    }
    let report = EditableFieldsReport {
        file,
        total_fields: fields_by_class.values().map(Vec::len).sum(),
        fields_by_class,
    };
    serde_json::to_value(&report)
        .map(Structured::new)
        .map_err(|error| ToolError::Internal(error.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Patches, undo, diff, reset, save
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyPatchParams {
    /// A workflow file to (re)load first; this discards the session's edits and history.
    #[serde(default)]
    pub path: Option<String>,
    /// The workflow JSON to (re)load first.
    #[serde(default)]
    pub workflow: Option<Value>,
    /// RFC 6902 operations, applied in order, all or nothing. Paths look like
    /// `/3/inputs/seed` (node id, then `inputs`, then the input name).
    #[schemars(length(min = 1, max = 1000))]
    pub patches: Vec<PatchOp>,
    /// A named session to work in.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PatchApplied {
    pub applied: usize,
    pub changes: Vec<Change>,
    pub undo_available: bool,
    pub undo_steps: usize,
    pub total_changes_from_base: usize,
}

async fn apply_workflow_patch(
    cx: ToolContext,
    params: ApplyPatchParams,
) -> Result<PatchApplied, ToolError> {
    let session = cx.workspace(params.session.as_deref());
    if let Some(what) = given(params.path, params.workflow)? {
        let (loaded, source) = load_given(&cx, what).await?;
        let state = start_editing(&cx, loaded, source);
        session.workflow.lock().await.set(state);
    }
    with_workflow(&session, |state| {
        let applied = state.apply(&params.patches)?;
        Ok(PatchApplied {
            applied: params.patches.len(),
            changes: applied.changes,
            undo_available: applied.undo_steps > 0,
            undo_steps: applied.undo_steps,
            total_changes_from_base: applied.total_changes_from_base,
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewPatchParams {
    /// RFC 6902 operations to try on a copy.
    #[schemars(length(min = 1, max = 1000))]
    pub patches: Vec<PatchOp>,
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PreviewChange {
    pub path: String,
    pub op: String,
    pub current_value: Option<Value>,
    pub new_value: Option<Value>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PatchPreview {
    pub preview: Vec<PreviewChange>,
    pub would_succeed: bool,
    /// How many changes from the loaded workflow there would be.
    pub total_changes_from_base: usize,
}

async fn preview_workflow_patch(
    cx: ToolContext,
    params: PreviewPatchParams,
) -> Result<PatchPreview, ToolError> {
    let session = cx.workspace(params.session.as_deref());
    with_workflow(&session, |state| {
        let preview = state
            .preview(&params.patches)
            .map_err(|error| ToolError::rejected(format!("The patch would fail: {error}"), ""))?;
        Ok(PatchPreview {
            preview: preview
                .changes
                .into_iter()
                .map(|change| PreviewChange {
                    path: change.path,
                    op: change.op.to_string(),
                    current_value: change.before,
                    new_value: change.after,
                })
                .collect(),
            would_succeed: true,
            total_changes_from_base: preview.total_changes_from_base,
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionOnly {
    /// A named session to work in, instead of this connection's.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UndoReport {
    pub undone: bool,
    pub remaining_changes_from_base: usize,
    pub undo_steps_remaining: usize,
}

async fn undo_workflow_patch(
    cx: ToolContext,
    params: SessionOnly,
) -> Result<UndoReport, ToolError> {
    let session = cx.workspace(params.session.as_deref());
    with_workflow(&session, |state| {
        let undone = state.undo()?;
        Ok(UndoReport {
            undone: true,
            remaining_changes_from_base: undone.remaining_changes_from_base,
            undo_steps_remaining: undone.undo_steps_remaining,
        })
    })
    .await
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffReport {
    pub changes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Vec<PatchOp>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub loaded_from: String,
}

async fn get_workflow_diff(cx: ToolContext, params: SessionOnly) -> Result<DiffReport, ToolError> {
    let session = cx.workspace(params.session.as_deref());
    with_workflow(&session, |state| {
        let diff = state.diff();
        let loaded_from = state.source.to_string();
        Ok(if diff.is_empty() {
            DiffReport {
                changes: 0,
                diff: None,
                message: Some("No changes from the workflow as loaded.".into()),
                loaded_from,
            }
        } else {
            DiffReport {
                changes: diff.len(),
                diff: Some(diff),
                message: None,
                loaded_from,
            }
        })
    })
    .await
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ResetReport {
    pub reset: bool,
    pub loaded_from: String,
}

async fn reset_workflow(cx: ToolContext, params: SessionOnly) -> Result<ResetReport, ToolError> {
    let session = cx.workspace(params.session.as_deref());
    with_workflow(&session, |state| {
        state.reset();
        Ok(ResetReport {
            reset: true,
            loaded_from: state.source.to_string(),
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveParams {
    /// Where to write (absolute, or relative to the ComfyUI folder). Default: the API-format
    /// file the workflow was loaded from.
    #[serde(default)]
    pub output_path: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SaveReport {
    pub saved: String,
    pub changes_from_base: usize,
    pub size_bytes: usize,
}

async fn save_workflow(cx: ToolContext, params: SaveParams) -> Result<SaveReport, ToolError> {
    let session = cx.workspace(params.session.as_deref());
    let (doc, source, format, changes) = with_workflow(&session, |state| {
        Ok((
            state.current().clone(),
            state.source.clone(),
            state.format,
            state.changes_from_base(),
        ))
    })
    .await?;
    let raw = match (params.output_path.filter(|p| !p.trim().is_empty()), &source) {
        (Some(raw), _) => raw,
        (None, Source::Path(path)) if format == LoadedFormat::Api => path.display().to_string(),
        (None, Source::Path(path)) => {
            return Err(ToolError::rejected(
                format!(
                    "{} is a UI workflow; saving the API version over it would lose its layout.",
                    path.display()
                ),
                "Pass output_path to save the API version as a new file.",
            ));
        }
        (None, other) => {
            return Err(ToolError::rejected(
                format!(
                    "The workflow came from {other}, not a file, so there is nowhere to save it by default."
                ),
                "Pass output_path, e.g. user/default/workflows/my_workflow_api.json.",
            ));
        }
    };
    let target = cx.app.paths().writable_file(&raw)?;
    cx.confirm_overwrite(&target).await?;
    let mut bytes = serde_json::to_vec_pretty(&doc)
        .map_err(|error| ToolError::Internal(format!("encoding the workflow: {error}")))?;
    bytes.push(b'\n');
    let size_bytes = bytes.len();
    let write_to = target.clone();
    tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&write_to, &bytes))
        .await
        .map_err(|error| ToolError::Internal(format!("the save task failed: {error}")))?
        .map_err(|source| {
            ToolError::Path(crate::error::PathError::Io {
                path: raw.clone(),
                source,
            })
        })?;
    Ok(SaveReport {
        saved: target.display().to_string(),
        changes_from_base: changes,
        size_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// Semantic edits
// ---------------------------------------------------------------------------------------------

/// What the edit was checked against, for the result.
fn checked_against(index: &Result<Arc<NodeIndex>, crate::comfy::ComfyError>) -> String {
    match index {
        Ok(_) => "ComfyUI's node list".into(),
        Err(error) => format!(
            "nothing: ComfyUI's node list isn't available ({}), so types and values were not checked",
            error
        ),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNodeParams {
    /// The node class, e.g. `KSampler` or `LoraLoader`.
    #[schemars(length(min = 1, max = 256))]
    pub class_type: String,
    /// Input values and links (`[node_id, output_index]`) to start with.
    #[serde(default)]
    pub inputs: Option<Map<String, Value>>,
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeAddedReport {
    pub added: bool,
    pub node_id: String,
    pub class_type: String,
    pub inputs: Value,
    pub total_nodes: usize,
    pub checked_against: String,
}

async fn add_node(cx: ToolContext, params: AddNodeParams) -> Result<NodeAddedReport, ToolError> {
    let index = node_index(&cx).await;
    let session = cx.workspace(params.session.as_deref());
    let checked = checked_against(&index);
    with_workflow(&session, |state| {
        let added = state.add_node(
            params.class_type.trim(),
            params.inputs.unwrap_or_default(),
            index.as_deref().ok(),
        )?;
        Ok(NodeAddedReport {
            added: true,
            node_id: added.node_id,
            class_type: added.class_type,
            inputs: added.inputs,
            total_nodes: added.total_nodes,
            checked_against: checked,
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectParams {
    /// The node whose output is used.
    #[schemars(length(min = 1, max = 64))]
    pub from_node: String,
    /// Which of its outputs, counting from 0.
    #[schemars(range(max = 1000))]
    pub from_output: u32,
    /// The node receiving it.
    #[schemars(length(min = 1, max = 64))]
    pub to_node: String,
    /// The input name on that node, e.g. `model` or `latent_image`.
    #[schemars(length(min = 1, max = 256))]
    pub to_input: String,
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectedReport {
    pub connected: bool,
    pub from: String,
    pub to: String,
    pub previous_value: Option<Value>,
    pub checked_against: String,
}

async fn connect_nodes(
    cx: ToolContext,
    params: ConnectParams,
) -> Result<ConnectedReport, ToolError> {
    let index = node_index(&cx).await;
    let session = cx.workspace(params.session.as_deref());
    let checked = checked_against(&index);
    with_workflow(&session, |state| {
        let connected = state.connect_nodes(
            params.from_node.trim(),
            params.from_output as usize,
            params.to_node.trim(),
            params.to_input.trim(),
            index.as_deref().ok(),
        )?;
        Ok(ConnectedReport {
            connected: true,
            from: connected.from,
            to: connected.to,
            previous_value: connected.previous_value,
            checked_against: checked,
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetInputParams {
    /// The node's id in the workflow, e.g. `3`.
    #[schemars(length(min = 1, max = 64))]
    pub node_id: String,
    /// The input's name, e.g. `seed`, `text`, `ckpt_name`.
    #[schemars(length(min = 1, max = 256))]
    pub input_name: String,
    /// The new value (a number, text, true/false, or a link `[node_id, output_index]`).
    pub value: Value,
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct InputSetReport {
    pub set: bool,
    pub node: String,
    pub input: String,
    pub old_value: Option<Value>,
    pub new_value: Value,
    pub checked_against: String,
}

async fn set_input(cx: ToolContext, params: SetInputParams) -> Result<InputSetReport, ToolError> {
    let index = node_index(&cx).await;
    let session = cx.workspace(params.session.as_deref());
    let checked = checked_against(&index);
    with_workflow(&session, |state| {
        let set = state.set_input(
            params.node_id.trim(),
            params.input_name.trim(),
            params.value,
            index.as_deref().ok(),
        )?;
        Ok(InputSetReport {
            set: true,
            node: set.node,
            input: set.input,
            old_value: set.old_value,
            new_value: set.new_value,
            checked_against: checked,
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateEntry {
    pub name: String,
    pub description: String,
    pub base_model: String,
    pub resolution: String,
    pub models: Vec<String>,
    /// Whether this ComfyUI has every node and model the template uses; `null` when ComfyUI
    /// isn't answering.
    pub available: Option<bool>,
    /// What stops it from running here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateEntry>,
    pub count: usize,
}

async fn list_workflow_templates(cx: ToolContext, _: NoParams) -> Result<TemplateList, ToolError> {
    let index = node_index(&cx).await.ok();
    let templates: Vec<TemplateEntry> = templates::catalogue()
        .into_iter()
        .map(|info| {
            let (available, missing) = match (&index, templates::template(&info.name)) {
                (Some(index), Some((_, doc))) => match Workflow::from_api(&doc) {
                    Ok(workflow) => {
                        let report = validate::validate(&workflow, index);
                        let missing: Vec<String> =
                            report.errors.iter().map(|p| p.message.clone()).collect();
                        (Some(missing.is_empty()), missing)
                    }
                    Err(error) => (Some(false), vec![error.to_string()]),
                },
                _ => (None, Vec::new()),
            };
            TemplateEntry {
                name: info.name,
                description: info.description,
                base_model: info.base_model,
                resolution: info.resolution,
                models: info.models,
                available,
                missing,
            }
        })
        .collect();
    Ok(TemplateList {
        count: templates.len(),
        templates,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetTemplateParams {
    /// The template's name, as list_workflow_templates gives it (e.g. `txt2img_sdxl`).
    #[schemars(length(min = 1, max = 128))]
    pub template: String,
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateNode {
    pub class_type: String,
    /// Inputs holding values (not links), which are the ones to edit.
    pub editable_inputs: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateLoaded {
    pub loaded: String,
    pub description: String,
    pub base_model: String,
    pub node_count: usize,
    pub nodes: BTreeMap<String, TemplateNode>,
    pub message: String,
}

async fn get_workflow_template(
    cx: ToolContext,
    params: GetTemplateParams,
) -> Result<TemplateLoaded, ToolError> {
    let name = params.template.trim();
    let Some((info, doc)) = templates::template(name) else {
        return Err(ToolError::rejected(
            format!("There is no template called {name:?}."),
            format!("Available templates: {}.", templates::names().join(", ")),
        ));
    };
    let workflow = Workflow::from_api(&doc)
        .map_err(|error| ToolError::Internal(format!("template {name}: {error}")))?;
    let session = cx.workspace(params.session.as_deref());
    session.workflow.lock().await.set(EditState::new(
        Source::Template(info.name.clone()),
        LoadedFormat::Api,
        doc,
        cx.app.config().sessions.undo_limit,
    ));
    let nodes = workflow
        .nodes
        .iter()
        .map(|(id, node)| {
            (
                id.clone(),
                TemplateNode {
                    class_type: node.class_type.clone(),
                    editable_inputs: node
                        .inputs
                        .iter()
                        .filter(|(_, input)| matches!(input, Input::Value(_)))
                        .map(|(name, _)| name.clone())
                        .collect(),
                },
            )
        })
        .collect();
    Ok(TemplateLoaded {
        loaded: info.name.clone(),
        description: info.description,
        base_model: info.base_model,
        node_count: workflow.nodes.len(),
        nodes,
        message: format!(
            "Template {} is now this session's workflow. Change values with set_input or \
             apply_workflow_patch, check it with validate_workflow, and save it with \
             save_workflow.",
            info.name
        ),
    })
}
