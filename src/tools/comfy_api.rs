//! The live-instance tools: is ComfyUI up, what nodes does it have, what is it doing, what
//! did it make. Names and parameters are the original project's (§1.1 of the catalogue).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::comfy::api::{Output, QueueItem, QueuePosition, RunError};
use crate::comfy::nodes::{Node, Section};
use crate::comfy::{ComfyError, Operation};
use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::tools::NoParams;

/// How many close names a "no such node" answer offers.
const SUGGESTIONS: usize = 10;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "is_comfyui_running",
            "Is ComfyUI running?",
            "Check whether ComfyUI answers, and report its address, version, GPU and Python, \
             and the ComfyUI folder on this machine with how it was found. Never fails: when \
             ComfyUI is down the answer says so and what to do.",
            Hints::LIVE_READ,
            is_comfyui_running,
        ),
        tool(
            "get_all_nodes",
            "List nodes",
            "List the node classes this ComfyUI offers, sorted by name. Filter by category \
             (e.g. `sampling`, `image/upscaling`) or by name, case-insensitively. `names_only` is \
             the most compact; `summary` (default) adds category and display name; `full` adds \
             descriptions, required inputs and outputs. Answers from a cached copy of the node \
             list; pass refresh=true after installing custom nodes.",
            Hints::LIVE_READ,
            get_all_nodes,
        ),
        tool(
            "get_node_info",
            "Describe a node",
            "Give the full schema of one node class: its inputs (required, optional, hidden, with \
             types, defaults, ranges and choices), outputs and category. Case-insensitive; an \
             unknown name gets the closest real names as suggestions.",
            Hints::LIVE_READ,
            get_node_info,
        ),
        tool(
            "get_system_stats",
            "System stats",
            "ComfyUI's own system report, unchanged: OS, RAM, versions of ComfyUI, Python and \
             PyTorch, the command line it was started with, and each device's name and VRAM.",
            Hints::LIVE_READ,
            get_system_stats,
        ),
        tool(
            "get_queue_status",
            "Queue status",
            "What ComfyUI is running now and what waits in its queue, in the order it will run.",
            Hints::LIVE_READ,
            get_queue_status,
        ),
        tool(
            "get_history",
            "Run history",
            "Finished runs, newest first: status, error, and every output (images, animations, \
             videos, audio, latents, text) with its file name, subfolder and folder. Give a \
             prompt_id for one run (a queued or running one reports its place), or max_items for \
             the most recent runs (default 5). ComfyUI keeps history in memory only, so a restart \
             clears it.",
            Hints::LIVE_READ,
            get_history,
        ),
    ]
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RunningReport {
    pub running: bool,
    /// The address asked.
    pub url: String,
    /// The first GPU's name, or "no GPU detected".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comfyui_version: Option<String>,
    /// Why it isn't reachable, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The ComfyUI folder on this machine (models, custom_nodes, output), when configured
    /// or found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comfyui_dir: Option<String>,
    /// How that folder was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comfyui_dir_source: Option<String>,
}

async fn is_comfyui_running(cx: ToolContext, _: NoParams) -> Result<RunningReport, ToolError> {
    let (client, outcome) = cx.app.comfy().check().await;
    let url = client.base_url().to_string();
    let install = cx.app.install();
    let comfyui_dir = install.map(|i| i.base_dir.display().to_string());
    let comfyui_dir_source = install.map(|i| i.found_by.to_string());
    Ok(match outcome {
        Ok(stats) => RunningReport {
            running: true,
            url,
            gpu: Some(
                stats
                    .gpu_name()
                    .map_or_else(|| "no GPU detected".to_string(), String::from),
            ),
            python: stats.system.python_version.clone(),
            comfyui_version: stats.system.comfyui_version.clone(),
            error: None,
            comfyui_dir,
            comfyui_dir_source,
        },
        Err(error) => RunningReport {
            running: false,
            url,
            gpu: None,
            python: None,
            comfyui_version: None,
            error: Some(error.user_message()),
            comfyui_dir,
            comfyui_dir_source,
        },
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeListFormat {
    /// Class names only.
    NamesOnly,
    /// Category and display name per class.
    #[default]
    Summary,
    /// Also description, required inputs and outputs.
    Full,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetAllNodesParams {
    /// Keep classes whose category contains this text (case-insensitive), e.g. `sampling`.
    #[serde(default)]
    pub category_filter: Option<String>,
    /// Keep classes whose class or display name contains this text (case-insensitive).
    #[serde(default)]
    pub name_filter: Option<String>,
    /// How much to say about each class.
    #[serde(default)]
    pub format: Option<NodeListFormat>,
    /// Fetch the node list from ComfyUI again instead of using the cached copy.
    #[serde(default)]
    pub refresh: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeList {
    pub count: usize,
    /// `names_only`: a list of class names. Otherwise an object keyed by class name.
    pub nodes: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

async fn get_all_nodes(cx: ToolContext, params: GetAllNodesParams) -> Result<NodeList, ToolError> {
    let client = cx.app.comfy().client().await;
    let index = client.nodes(params.refresh.unwrap_or(false)).await?;
    let category = lowered(params.category_filter.as_deref());
    let name = lowered(params.name_filter.as_deref());
    let selected: Vec<&Node> = index
        .nodes()
        .iter()
        .filter(|node| {
            category
                .as_deref()
                .is_none_or(|c| node.category.to_lowercase().contains(c))
                && name.as_deref().is_none_or(|n| {
                    node.name.to_lowercase().contains(n)
                        || node.display_name.to_lowercase().contains(n)
                })
        })
        .collect();
    let format = params.format.unwrap_or_default();
    let nodes = match format {
        NodeListFormat::NamesOnly => Value::Array(
            selected
                .iter()
                .map(|node| Value::String(node.name.clone()))
                .collect(),
        ),
        NodeListFormat::Summary | NodeListFormat::Full => {
            let mut map = Map::with_capacity(selected.len());
            for node in &selected {
                let mut entry = Map::new();
                entry.insert("category".into(), node.category.clone().into());
                entry.insert("display_name".into(), node.display_name.clone().into());
                if format == NodeListFormat::Full {
                    entry.insert("description".into(), node.description.clone().into());
                    let mut required: Vec<&str> = node
                        .inputs
                        .iter()
                        .filter(|input| input.section == Section::Required)
                        .map(|input| input.name.as_str())
                        .collect();
                    required.sort_unstable();
                    entry.insert("input_types".into(), required.into());
                    entry.insert(
                        "output_types".into(),
                        node.outputs
                            .iter()
                            .map(|output| output.type_name.as_str())
                            .collect::<Vec<_>>()
                            .into(),
                    );
                    entry.insert("output_node".into(), node.output_node.into());
                }
                map.insert(node.name.clone(), Value::Object(entry));
            }
            Value::Object(map)
        }
    };
    let hint = if selected.is_empty() {
        Some(
            "No node matches these filters. Filters are case-insensitive substrings; try a shorter \
             one, or call without filters to see every category."
                .to_string(),
        )
    } else if format == NodeListFormat::Summary {
        Some("Call get_node_info with a class name for its inputs and outputs.".to_string())
    } else {
        None
    };
    Ok(NodeList {
        count: selected.len(),
        nodes,
        hint,
    })
}

fn lowered(filter: Option<&str>) -> Option<String> {
    filter
        .map(|f| f.trim().to_lowercase())
        .filter(|f| !f.is_empty())
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetNodeInfoParams {
    /// The node's class name, e.g. `KSampler` or `CheckpointLoaderSimple`.
    #[schemars(length(min = 1, max = 256))]
    pub node_type: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeDetails {
    /// The exact class name to use in workflows.
    pub class_type: String,
    pub display_name: String,
    pub category: String,
    pub description: String,
    /// ComfyUI's input spec: `{required, optional, hidden}`, each mapping an input name to
    /// `[type or choices, options]`. Names are listed alphabetically; `input_order` gives
    /// the order of the node's widgets.
    pub input: Value,
    /// Input names in widget order, per section.
    pub input_order: BTreeMap<String, Vec<String>>,
    /// Output types, in slot order.
    pub output: Vec<String>,
    pub output_name: Vec<String>,
    pub output_is_list: Vec<bool>,
    /// Whether the node is an output (saves or shows a result).
    pub output_node: bool,
    pub python_module: String,
    pub deprecated: bool,
    pub experimental: bool,
}

impl NodeDetails {
    fn of(node: &Node) -> Result<Self, ToolError> {
        let input = serde_json::from_str(node.raw_input.get())
            .map_err(|e| ToolError::Internal(format!("stored input spec: {e}")))?;
        let mut input_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in &node.inputs {
            let section = match item.section {
                Section::Required => "required",
                Section::Optional => "optional",
                Section::Hidden => "hidden",
            };
            input_order
                .entry(section.to_string())
                .or_default()
                .push(item.name.clone());
        }
        Ok(Self {
            class_type: node.name.clone(),
            display_name: node.display_name.clone(),
            category: node.category.clone(),
            description: node.description.clone(),
            input,
            input_order,
            output: node.outputs.iter().map(|o| o.type_name.clone()).collect(),
            output_name: node.outputs.iter().map(|o| o.name.clone()).collect(),
            output_is_list: node.outputs.iter().map(|o| o.is_list).collect(),
            output_node: node.output_node,
            python_module: node.python_module.clone(),
            deprecated: node.deprecated,
            experimental: node.experimental,
        })
    }
}

async fn get_node_info(
    cx: ToolContext,
    params: GetNodeInfoParams,
) -> Result<NodeDetails, ToolError> {
    let wanted = params.node_type.trim();
    let client = cx.app.comfy().client().await;
    let index = client.nodes(false).await?;
    if let Some(node) = index.find(wanted) {
        return NodeDetails::of(node);
    }
    // Not in the cached list: a pack installed since it was fetched shows up here.
    if let Some(node) = client.node(wanted).await? {
        return NodeDetails::of(&node);
    }
    let similar = index.suggest(wanted, SUGGESTIONS);
    let message = if similar.is_empty() {
        format!("ComfyUI has no node called {wanted:?}.")
    } else {
        format!(
            "ComfyUI has no node called {wanted:?}. Did you mean: {}?",
            similar.join(", ")
        )
    };
    Err(ToolError::rejected(
        message,
        "Use the class name (like KSampler), not the title shown on the node; get_all_nodes \
         lists them. If the node comes from a custom node pack, install the pack and restart \
         ComfyUI.",
    ))
}

async fn get_system_stats(cx: ToolContext, _: NoParams) -> Result<Map<String, Value>, ToolError> {
    let client = cx.app.comfy().client().await;
    let stats: Value = client
        .get_json(Operation::SystemStats, "system_stats", &[])
        .await?;
    match stats {
        Value::Object(map) if map.get("system").is_some_and(Value::is_object) => Ok(map),
        _ => Err(ComfyError::BadAnswer {
            url: client.base_url().to_string(),
            what: "the system check",
            reason: "it has no `system` section".into(),
        }
        .into()),
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct QueueEntry {
    pub prompt_id: String,
    /// ComfyUI's queue number; lower runs first.
    pub number: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct QueueReport {
    pub running_count: usize,
    pub pending_count: usize,
    pub running: Vec<QueueEntry>,
    /// In the order they will run.
    pub pending: Vec<QueueEntry>,
}

async fn get_queue_status(cx: ToolContext, _: NoParams) -> Result<QueueReport, ToolError> {
    let client = cx.app.comfy().client().await;
    let queue = client.queue().await?;
    let entries = |items: &[QueueItem]| -> Vec<QueueEntry> {
        items
            .iter()
            .map(|item| QueueEntry {
                prompt_id: item.prompt_id.clone(),
                number: item.number,
            })
            .collect()
    };
    Ok(QueueReport {
        running_count: queue.running.len(),
        pending_count: queue.pending.len(),
        running: entries(&queue.running),
        pending: entries(&queue.pending),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetHistoryParams {
    /// One run's id (as returned when it was queued).
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    pub prompt_id: Option<String>,
    /// How many recent runs to return when no prompt_id is given (default 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    pub max_items: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Success,
    Error,
    Interrupted,
    Queued,
    Running,
    Unknown,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RunReport {
    pub prompt_id: String,
    pub status: RunStatus,
    pub completed: bool,
    pub outputs: Vec<Output>,
    /// Why it failed, for failed runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// For a queued run, its place in the queue (1 = next).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoryReport {
    pub count: usize,
    /// Newest first.
    pub runs: Vec<RunReport>,
}

async fn get_history(
    cx: ToolContext,
    params: GetHistoryParams,
) -> Result<HistoryReport, ToolError> {
    let client = cx.app.comfy().client().await;
    let runs = match params.prompt_id.as_deref().map(str::trim) {
        Some(id) => match client.history_entry(id).await? {
            Some(entry) => vec![finished(id.to_string(), &entry)],
            None => vec![unfinished(id, &client.queue().await?)?],
        },
        None => {
            let history = client.history(Some(params.max_items.unwrap_or(5))).await?;
            history
                .entries
                .iter()
                .rev()
                .map(|(id, entry)| finished(id.clone(), entry))
                .collect()
        }
    };
    Ok(HistoryReport {
        count: runs.len(),
        runs,
    })
}

fn finished(prompt_id: String, entry: &crate::comfy::api::HistoryEntry) -> RunReport {
    let status = if entry.interrupted() {
        RunStatus::Interrupted
    } else {
        match entry.status.as_deref() {
            Some("success") => RunStatus::Success,
            Some("error") => RunStatus::Error,
            _ => RunStatus::Unknown,
        }
    };
    RunReport {
        prompt_id,
        status,
        completed: entry.completed,
        outputs: entry.output_list(),
        error: entry.error(),
        queue_position: None,
    }
}

fn unfinished(prompt_id: &str, queue: &crate::comfy::api::Queue) -> Result<RunReport, ToolError> {
    let (status, queue_position) = match queue.position(prompt_id) {
        Some(QueuePosition::Running) => (RunStatus::Running, None),
        Some(QueuePosition::Pending(place)) => (RunStatus::Queued, Some(place)),
        None => {
            return Err(ToolError::rejected(
                format!("ComfyUI has no run with id {prompt_id:?}, finished or queued."),
                "ComfyUI keeps history in memory only, so a restart clears it. Call get_history \
                 without prompt_id to see recent runs.",
            ));
        }
    };
    Ok(RunReport {
        prompt_id: prompt_id.to_string(),
        status,
        completed: false,
        outputs: Vec::new(),
        error: None,
        queue_position,
    })
}
