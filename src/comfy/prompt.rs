//! Queuing a workflow and what ComfyUI says back: the accepted prompt (with the branches it
//! dropped, if any), the typed rejection of a workflow that failed validation, and the
//! answers of the upload and file routes. Every reading is lenient: ComfyUI's error bodies
//! vary by error type and version, so a missing or odd field degrades the wording, never the
//! parse.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::{Client, MAX_UPLOAD_BYTES, Operation, Payload};
use super::error::{ComfyError, snippet};

impl Client {
    /// Queues `workflow` (API format) as `prompt_id`, reporting to the WebSocket `client_id`
    /// (open it first, so no event is missed). Posted once, never retried: a retry could run
    /// the job twice.
    pub async fn submit(
        &self,
        workflow: &Value,
        client_id: &str,
        prompt_id: &str,
    ) -> Result<Submitted, SubmitError> {
        let op = Operation::Prompt;
        let body = json!({"prompt": workflow, "client_id": client_id, "prompt_id": prompt_id});
        let answer = match self.post_json(op, "prompt", &body).await {
            Ok(answer) => answer,
            Err(ComfyError::Status {
                status, body, url, ..
            }) if status == 500 => {
                return Err(SubmitError::ServerTrouble { url, status, body });
            }
            Err(error) => return Err(error.into()),
        };
        if answer.status == 400 {
            let mut rejection = Rejection::from_body(&answer.body);
            self.annotate(&mut rejection.node_errors);
            return Err(SubmitError::Rejected(rejection));
        }
        self.expect_ok(op, &answer)?;
        let value: Value = self.parse(op, &answer.body)?;
        let mut node_errors = node_problems(&value["node_errors"]);
        self.annotate(&mut node_errors);
        Ok(Submitted {
            prompt_id: text_of(&value["prompt_id"]).unwrap_or_else(|| prompt_id.to_string()),
            number: value["number"].as_f64().unwrap_or(0.0),
            node_errors,
        })
    }

    /// Removes pending prompts from the queue. ComfyUI ignores ids that aren't pending (a
    /// running prompt needs [`Self::interrupt`]).
    pub async fn delete_queued(&self, prompt_ids: &[String]) -> Result<(), ComfyError> {
        let op = Operation::Cancel;
        let answer = self
            .post_json(op, "queue", &json!({"delete": prompt_ids}))
            .await?;
        self.expect_ok(op, &answer)
    }

    /// Stops the running prompt. With an id, only if that prompt is the one running
    /// (ComfyUI then does nothing otherwise); without, whatever runs, which may be someone
    /// else's work.
    pub async fn interrupt(&self, prompt_id: Option<&str>) -> Result<(), ComfyError> {
        let op = Operation::Cancel;
        let body = prompt_id.map_or_else(|| json!({}), |id| json!({"prompt_id": id}));
        let answer = self.post_json(op, "interrupt", &body).await?;
        self.expect_ok(op, &answer)
    }

    /// Puts an image into ComfyUI's input folder (for LoadImage), under `subfolder` if
    /// given. Without `overwrite`, ComfyUI keeps an existing file of that name with other
    /// content and stores this one as "name (1).ext": use the returned name.
    pub async fn upload_image(
        &self,
        bytes: Vec<u8>,
        filename: &str,
        subfolder: Option<&str>,
        overwrite: bool,
    ) -> Result<Uploaded, ComfyError> {
        let op = Operation::Upload;
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(ComfyError::TooLarge {
                url: self.base_url().to_string(),
                what: "the image upload",
                size: bytes.len() as u64,
                limit: MAX_UPLOAD_BYTES as u64,
            });
        }
        let payload = Payload::Image {
            bytes,
            filename: filename.to_string(),
            subfolder: subfolder.unwrap_or_default().to_string(),
            overwrite,
        };
        let answer = self
            .call(
                op,
                reqwest::Method::POST,
                "upload/image",
                &[],
                Some(payload),
            )
            .await?;
        self.expect_ok(op, &answer)?;
        self.parse(op, &answer.body)
    }

    /// Reads one file ComfyUI serves: an output (`folder_type` "output", the default),
    /// a temp preview ("temp") or an input ("input"). Files over
    /// [`super::client::MAX_VIEW_BYTES`] are refused rather than read.
    pub async fn view(
        &self,
        filename: &str,
        subfolder: Option<&str>,
        folder_type: Option<&str>,
    ) -> Result<Viewed, ComfyError> {
        let op = Operation::View;
        let folder_type = folder_type.filter(|t| !t.is_empty()).unwrap_or("output");
        let subfolder = subfolder.unwrap_or_default();
        let query = [
            ("filename", filename.to_string()),
            ("type", folder_type.to_string()),
            ("subfolder", subfolder.to_string()),
        ];
        let answer = self
            .call(op, reqwest::Method::GET, "view", &query, None)
            .await?;
        let file = if subfolder.is_empty() {
            format!("{folder_type}/{filename}")
        } else {
            format!("{folder_type}/{subfolder}/{filename}")
        };
        let url = self.base_url().to_string();
        match answer.status {
            404 => Err(ComfyError::FileNotFound { url, file }),
            400 | 403 => Err(ComfyError::FileRefused {
                url,
                file,
                status: answer.status,
            }),
            _ => {
                self.expect_ok(op, &answer)?;
                Ok(Viewed {
                    bytes: answer.body,
                    content_type: answer.content_type,
                })
            }
        }
    }

    /// Fills in what each failing input takes from the cached node list, when there is one
    /// (no fetch: an error path shouldn't wait on the network), so the advice can say
    /// "connect an IMAGE output" rather than "connect something".
    fn annotate(&self, problems: &mut [NodeProblem]) {
        let Some(index) = self.cached_nodes(Duration::MAX) else {
            return;
        };
        for problem in problems {
            let Some(node) = problem.class_type.as_deref().and_then(|c| index.get(c)) else {
                continue;
            };
            for error in &mut problem.errors {
                let Some(input) = error.input_name.as_deref().and_then(|n| node.input(n)) else {
                    continue;
                };
                if error.expected_type.is_none() {
                    error.expected_type = Some(input.kind.name().to_string());
                }
                if error.expects_link.is_none() {
                    error.expects_link = Some(!input.kind.is_widget() || input.force_input);
                }
            }
        }
    }
}

/// A prompt ComfyUI queued.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Submitted {
    pub prompt_id: String,
    /// The queue number (ComfyUI echoes an explicit one as a float, and `front` makes it
    /// negative).
    pub number: f64,
    /// Partial acceptance: nodes that failed validation. The outputs that depend on them
    /// will not run; the rest of the workflow does.
    pub node_errors: Vec<NodeProblem>,
}

impl Submitted {
    /// Whether ComfyUI dropped part of the workflow.
    pub fn partially_accepted(&self) -> bool {
        !self.node_errors.is_empty()
    }

    /// The output nodes that will not run, in order, without repeats.
    pub fn dropped_outputs(&self) -> Vec<String> {
        let mut outputs: Vec<String> = Vec::new();
        for problem in &self.node_errors {
            for output in &problem.dependent_outputs {
                if !outputs.contains(output) {
                    outputs.push(output.clone());
                }
            }
        }
        sort_ids(&mut outputs);
        outputs
    }

    /// What the artist should know about a partial acceptance, if there was one.
    pub fn warning(&self) -> Option<String> {
        if !self.partially_accepted() {
            return None;
        }
        let dropped = self.dropped_outputs();
        let which = match dropped.as_slice() {
            [] => "Some outputs".to_string(),
            [one] => format!("Output node {one}"),
            many => format!("Output nodes {}", many.join(", ")),
        };
        Some(format!(
            "ComfyUI queued the workflow, but {} won't run because of problems upstream: {}. The other outputs will run; fix these and queue it again to get the rest.",
            lowercase_first(&which),
            describe_all(&self.node_errors)
        ))
    }
}

/// ComfyUI refused a workflow (400): nothing was queued.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Rejection {
    /// ComfyUI's `error.type`: `prompt_outputs_failed_validation`, `invalid_prompt`,
    /// `prompt_no_outputs`, `no_prompt`, or something newer.
    pub kind: String,
    pub message: String,
    pub details: String,
    pub node_errors: Vec<NodeProblem>,
}

impl Rejection {
    /// Reads a 400 body; anything that isn't ComfyUI's JSON still becomes a rejection that
    /// quotes it.
    pub fn from_body(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Self {
                kind: "unknown".into(),
                message: snippet(&String::from_utf8_lossy(body)),
                details: String::new(),
                node_errors: Vec::new(),
            };
        };
        let error = &value["error"];
        // Some proxies and older versions send `error` as a plain string.
        let (kind, message, details) = match error {
            Value::String(text) => ("unknown".to_string(), text.clone(), String::new()),
            _ => (
                text_of(&error["type"]).unwrap_or_else(|| "unknown".into()),
                text_of(&error["message"]).unwrap_or_default(),
                text_of(&error["details"]).unwrap_or_default(),
            ),
        };
        Self {
            kind,
            message,
            details,
            node_errors: node_problems(&value["node_errors"]),
        }
    }

    /// What went wrong and what to do, in plain words.
    pub fn user_message(&self) -> String {
        match self.kind.as_str() {
            "prompt_outputs_failed_validation" if !self.node_errors.is_empty() => format!(
                "ComfyUI refused the workflow: none of its outputs can run. {}. Fix these and queue it again.",
                describe_all(&self.node_errors)
            ),
            "prompt_outputs_failed_validation" => format!(
                "ComfyUI refused the workflow: none of its outputs can run{}. Check the workflow with validate_workflow and queue it again.",
                said(&self.details)
            ),
            "prompt_no_outputs" => "ComfyUI refused the workflow: it has no output node (such as SaveImage or PreviewImage), so there is nothing to run. Add one, connect it, and queue it again.".into(),
            "no_prompt" => "ComfyUI got no workflow to run. Send an API-format workflow (node id → {class_type, inputs}).".into(),
            "invalid_prompt" => {
                let node = node_from_details(&self.details);
                let at = node.map(|id| format!(" (node {id})")).unwrap_or_default();
                let next = if self.message.contains("does not exist") {
                    "This ComfyUI doesn't have that node class: install the custom node pack that provides it (and restart ComfyUI), or replace the node with one that exists (search_nodes finds them)."
                } else if self.message.contains("class_type") {
                    "Every node needs a class_type. This often means a UI-format workflow was sent where the API format belongs, or an edit left a node half-made."
                } else {
                    "Check the workflow with validate_workflow and queue it again."
                };
                format!(
                    "ComfyUI refused the workflow: {}{at}. {next}",
                    trim_period(&self.message)
                )
            }
            _ => {
                let what = [self.message.as_str(), self.details.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(": ");
                let nodes = if self.node_errors.is_empty() {
                    String::new()
                } else {
                    format!(" {}.", describe_all(&self.node_errors))
                };
                let what = if what.is_empty() {
                    "no reason given".to_string()
                } else {
                    trim_period(&what).to_string()
                };
                format!(
                    "ComfyUI refused the workflow ({what}).{nodes} Check the workflow with validate_workflow and queue it again."
                )
            }
        }
    }
}

/// One node that failed validation, with its own problems (downstream nodes that failed only
/// because of it are not listed, as in ComfyUI).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct NodeProblem {
    pub node_id: String,
    pub class_type: Option<String>,
    pub errors: Vec<InputProblem>,
    /// The output nodes that can't run because of this node.
    pub dependent_outputs: Vec<String>,
}

impl NodeProblem {
    /// "Node 2 (SaveImage): required input images is missing — connect an IMAGE output".
    pub fn describe(&self) -> String {
        let name = match &self.class_type {
            Some(class) => format!("Node {} ({class})", self.node_id),
            None => format!("Node {}", self.node_id),
        };
        if self.errors.is_empty() {
            return format!("{name}: failed validation");
        }
        let problems: Vec<String> = self.errors.iter().map(InputProblem::describe).collect();
        format!("{name}: {}", problems.join("; "))
    }
}

/// One validation error on a node, usually about one input.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct InputProblem {
    /// ComfyUI's error type (`required_input_missing`, `value_not_in_list`, …).
    pub kind: String,
    pub message: String,
    pub details: String,
    pub input_name: Option<String>,
    /// What the input takes (`IMAGE`, `INT`, `COMBO`, …), from the error or the node list.
    pub expected_type: Option<String>,
    /// Whether the input is wired from another node's output rather than typed in.
    pub expects_link: Option<bool>,
    /// ComfyUI's `extra_info`, kept as sent (tracebacks, received values, configs).
    pub extra_info: Value,
}

impl InputProblem {
    fn from_wire(value: &Value) -> Self {
        let extra_info = match &value["extra_info"] {
            Value::Null => Value::Object(serde_json::Map::new()),
            other => other.clone(),
        };
        let config_type = match &extra_info["input_config"][0] {
            Value::String(name) => Some(name.clone()),
            Value::Array(_) => Some("COMBO".to_string()),
            _ => None,
        };
        let expects_link = config_type.as_deref().map(|name| !is_widget_type(name));
        Self {
            kind: text_of(&value["type"]).unwrap_or_else(|| "unknown".into()),
            message: text_of(&value["message"]).unwrap_or_default(),
            details: text_of(&value["details"]).unwrap_or_default(),
            input_name: text_of(&extra_info["input_name"]),
            expected_type: config_type,
            expects_link,
            extra_info,
        }
    }

    /// The problem and the fix, in plain words.
    pub fn describe(&self) -> String {
        let input = self
            .input_name
            .clone()
            .or_else(|| {
                // `details` names the input for most per-input errors.
                let first = self.details.split([',', ':']).next().unwrap_or("").trim();
                (!first.is_empty() && !first.contains(' ')).then(|| first.to_string())
            })
            .unwrap_or_else(|| "an input".into());
        let received = display_value(&self.extra_info["received_value"]);
        let config = &self.extra_info["input_config"];
        match self.kind.as_str() {
            "required_input_missing" => {
                let fix = match (self.expects_link, self.expected_type.as_deref()) {
                    (Some(true), Some(kind)) => format!("connect {} output", with_article(kind)),
                    (Some(false), Some(kind)) => format!("give it a value ({kind})"),
                    _ => "connect another node's output to it or give it a value".into(),
                };
                format!("required input {input} is missing — {fix}")
            }
            "bad_linked_input" => format!(
                "input {input} has a malformed link{} — a link is [node id, output slot]; reconnect it",
                received.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            "return_type_mismatch" => {
                let got = text_of(&self.extra_info["received_type"]);
                let from = link_source(&self.extra_info["linked_node"]);
                let wants = self.expected_type.clone();
                match (got, wants) {
                    (Some(got), Some(wants)) => format!(
                        "input {input} is connected to {} output{from} but takes {wants} — connect {} output instead",
                        with_article(&got),
                        with_article(&wants)
                    ),
                    _ => format!(
                        "input {input} is connected to an output of the wrong type{from} ({}) — connect a matching output",
                        self.details
                    ),
                }
            }
            "invalid_input_type" => {
                let kind = self.expected_type.as_deref().unwrap_or("value");
                let hint = match kind {
                    "INT" => " — use a whole number",
                    "FLOAT" => " — use a number",
                    "BOOLEAN" => " — use true or false",
                    _ => " — fix the value",
                };
                match received {
                    Some(value) => {
                        format!("input {input} is {value}, which isn't a valid {kind}{hint}")
                    }
                    None => format!("input {input} isn't a valid {kind}{hint}"),
                }
            }
            "value_smaller_than_min" => {
                let min = display_value(&config[1]["min"]);
                match (received, min) {
                    (Some(value), Some(min)) => format!(
                        "input {input} is {value}, below the minimum of {min} — use {min} or more"
                    ),
                    _ => format!(
                        "input {input}: {} — raise the value",
                        trim_period(&self.message)
                    ),
                }
            }
            "value_bigger_than_max" => {
                let max = display_value(&config[1]["max"]);
                match (received, max) {
                    (Some(value), Some(max)) => format!(
                        "input {input} is {value}, above the maximum of {max} — use {max} or less"
                    ),
                    _ => format!(
                        "input {input}: {} — lower the value",
                        trim_period(&self.message)
                    ),
                }
            }
            "value_not_in_list" => {
                let value = received.unwrap_or_else(|| "the value".into());
                match config[0].as_array() {
                    Some(choices) if !choices.is_empty() && choices.len() <= 20 => {
                        let choices: Vec<String> =
                            choices.iter().filter_map(display_value).collect();
                        format!(
                            "input {input} is {value}, which isn't one of its choices ({}) — pick one of those",
                            choices.join(", ")
                        )
                    }
                    _ => format!(
                        "input {input} is {value}, which isn't one of its choices — pick one that this ComfyUI has (get_node_info lists them; a model or file may need installing or uploading)"
                    ),
                }
            }
            "custom_validation_failed" => {
                // details: "image - Invalid image file: x.png"
                let said = self
                    .details
                    .split_once(" - ")
                    .map_or(self.details.as_str(), |(_, rest)| rest)
                    .trim();
                let said = if said.is_empty() {
                    trim_period(&self.message)
                } else {
                    said
                };
                let fix = if said.contains("Invalid image file") {
                    "upload the image first (upload_image) or pick one that's in ComfyUI's input folder"
                } else {
                    "fix that input's value"
                };
                format!("input {input}: {said} — {fix}")
            }
            kind @ ("exception_during_validation" | "exception_during_inner_validation") => {
                let exception = text_of(&self.extra_info["exception_type"]);
                let why = match exception {
                    Some(exception) if !self.details.is_empty() => {
                        format!("{exception}: {}", self.details)
                    }
                    Some(exception) => exception,
                    None => self.details.clone(),
                };
                let upstream = if kind == "exception_during_inner_validation" {
                    link_source(&self.extra_info["linked_node"])
                } else {
                    String::new()
                };
                format!(
                    "ComfyUI couldn't check this node{upstream} ({why}) — usually a link to a node that doesn't exist or to an output slot it doesn't have; check its connections"
                )
            }
            _ => {
                let what = [self.message.as_str(), self.details.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(": ");
                if what.is_empty() {
                    format!("failed validation ({})", self.kind)
                } else {
                    trim_period(&what).to_string()
                }
            }
        }
    }
}

/// Why a workflow wasn't queued.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// ComfyUI validated the workflow and refused it (400).
    #[error("ComfyUI refused the workflow ({})", .0.kind)]
    Rejected(Rejection),
    /// ComfyUI failed while reading the request (500 with a plain-text body): the workflow
    /// isn't shaped as ComfyUI expects, or ComfyUI has a bug.
    #[error("ComfyUI couldn't read the workflow and answered {status}")]
    ServerTrouble {
        url: String,
        status: u16,
        body: String,
    },
    #[error(transparent)]
    Comfy(#[from] ComfyError),
}

impl SubmitError {
    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rejected(_) => "workflow_rejected",
            Self::ServerTrouble { .. } => "comfyui_error",
            Self::Comfy(error) => error.kind(),
        }
    }

    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Self::Rejected(rejection) => Some(rejection),
            _ => None,
        }
    }

    /// What happened and what to do, in plain words.
    pub fn user_message(&self) -> String {
        match self {
            Self::Rejected(rejection) => rejection.user_message(),
            Self::ServerTrouble { body, .. } => format!(
                "{self}{}. ComfyUI answers this way when the workflow isn't an API-format object (node id → {{class_type, inputs}}) or when it hits a bug: check the workflow with validate_workflow, and ComfyUI's console for the details.",
                said(&snippet(body))
            ),
            Self::Comfy(error) => error.user_message(),
        }
    }
}

/// `POST /upload/image`'s answer: where ComfyUI stored the file. `name` may differ from the
/// name sent: ComfyUI renames on a clash with different content ("x (1).png").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
pub struct Uploaded {
    pub name: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(rename = "type", default = "input_folder")]
    pub folder_type: String,
}

impl Uploaded {
    /// The value a LoadImage `image` input takes for this file.
    pub fn load_image_value(&self) -> String {
        if self.subfolder.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.subfolder, self.name)
        }
    }
}

fn input_folder() -> String {
    "input".into()
}

/// A file read through `GET /view`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewed {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

/// Reads `node_errors`: an object keyed by node id (a list or null reads as none), in node
/// id order.
pub(crate) fn node_problems(value: &Value) -> Vec<NodeProblem> {
    let Some(nodes) = value.as_object() else {
        return Vec::new();
    };
    let mut problems: Vec<NodeProblem> = nodes
        .iter()
        .map(|(node_id, entry)| NodeProblem {
            node_id: node_id.clone(),
            class_type: text_of(&entry["class_type"]),
            errors: entry["errors"]
                .as_array()
                .map(|errors| errors.iter().map(InputProblem::from_wire).collect())
                .unwrap_or_default(),
            dependent_outputs: entry["dependent_outputs"]
                .as_array()
                .map(|ids| ids.iter().filter_map(text_of).collect())
                .unwrap_or_default(),
        })
        .collect();
    problems.sort_by(|a, b| id_order(&a.node_id, &b.node_id));
    problems
}

fn describe_all(problems: &[NodeProblem]) -> String {
    problems
        .iter()
        .map(NodeProblem::describe)
        .collect::<Vec<_>>()
        .join(". ")
}

/// Numeric ids in number order, then the rest by name.
fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

fn sort_ids(ids: &mut [String]) {
    ids.sort_by(|a, b| id_order(a, b));
}

/// A string, or a number written as one (ids and details come both ways).
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A received value as an artist would read it: strings quoted, numbers bare.
fn display_value(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(format!("'{s}'")),
        other => Some(other.to_string()),
    }
}

/// " (from node 1, output 1)" for a `[node id, slot]` link.
fn link_source(link: &Value) -> String {
    match (
        link.get(0).and_then(text_of),
        link.get(1).and_then(Value::as_u64),
    ) {
        (Some(node), Some(slot)) => format!(" (from node {node}, output {slot})"),
        (Some(node), None) => format!(" (from node {node})"),
        _ => String::new(),
    }
}

fn is_widget_type(name: &str) -> bool {
    matches!(name, "INT" | "FLOAT" | "STRING" | "BOOLEAN" | "COMBO")
}

fn with_article(kind: &str) -> String {
    let vowel = kind
        .chars()
        .next()
        .is_some_and(|c| "AEIOUaeiou".contains(c));
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// "Node ID '#1'" → "1".
fn node_from_details(details: &str) -> Option<&str> {
    let start = details.find("'#")? + 2;
    let rest = &details[start..];
    let end = rest.find('\'')?;
    Some(&rest[..end]).filter(|id| !id.is_empty())
}

fn said(text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", trim_period(text.trim()))
    }
}

fn trim_period(text: &str) -> &str {
    text.trim().trim_end_matches('.')
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().collect::<String>() + chars.as_str()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded_errors() -> serde_json::Map<String, Value> {
        let path = format!(
            "{}/tests/fixtures/comfyui-0.3.64/errors.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).expect("fixture");
        match serde_json::from_str(&text).expect("json") {
            Value::Object(cases) => cases,
            _ => panic!("errors.json is an object"),
        }
    }

    fn recorded_rejection(case: &str) -> Rejection {
        let cases = recorded_errors();
        let response = &cases[case]["response"];
        assert_eq!(response["status"], 400, "{case} is a 400");
        Rejection::from_body(response["body"].to_string().as_bytes())
    }

    /// What each recorded 400 says, in plain words.
    const EXPECTED: &[(&str, &str, &str)] = &[
        (
            "no_prompt_key",
            "no_prompt",
            "ComfyUI got no workflow to run",
        ),
        (
            "missing_class_type",
            "invalid_prompt",
            "missing the class_type property (node 1). Every node needs a class_type",
        ),
        (
            "unknown_class_type",
            "invalid_prompt",
            "node NoSuchNode does not exist (node 1). This ComfyUI doesn't have that node class: install the custom node pack",
        ),
        (
            "no_output_nodes",
            "prompt_no_outputs",
            "it has no output node (such as SaveImage or PreviewImage)",
        ),
        (
            "missing_required_input",
            "prompt_outputs_failed_validation",
            "Node 1 (EmptyImage): required input height is missing — connect another node's output to it or give it a value",
        ),
        (
            "missing_linked_input_on_output_node",
            "prompt_outputs_failed_validation",
            "Node 2 (SaveImage): required input images is missing",
        ),
        (
            "bad_link_length3",
            "prompt_outputs_failed_validation",
            "Node 2 (SaveImage): input images has a malformed link ([\"1\",0,0]) — a link is [node id, output slot]; reconnect it",
        ),
        (
            "link_to_nonexistent_node",
            "prompt_outputs_failed_validation",
            "Node 2 (SaveImage): ComfyUI couldn't check this node (KeyError: '99') — usually a link to a node that doesn't exist",
        ),
        (
            "link_slot_out_of_range",
            "prompt_outputs_failed_validation",
            "Node 2 (SaveImage): ComfyUI couldn't check this node (IndexError: tuple index out of range)",
        ),
        (
            "return_type_mismatch",
            "prompt_outputs_failed_validation",
            "Node 2 (SaveImage): input images is connected to a MASK output (from node 1, output 1) but takes IMAGE — connect an IMAGE output instead",
        ),
        (
            "invalid_int_value",
            "prompt_outputs_failed_validation",
            "Node 1 (EmptyImage): input width is 'abc', which isn't a valid INT — use a whole number",
        ),
        (
            "value_below_min",
            "prompt_outputs_failed_validation",
            "Node 1 (EmptyImage): input width is 0, below the minimum of 1 — use 1 or more",
        ),
        (
            "value_above_max",
            "prompt_outputs_failed_validation",
            "Node 1 (EmptyImage): input width is 99999, above the maximum of 16384 — use 16384 or less",
        ),
        (
            "combo_value_not_in_list",
            "prompt_outputs_failed_validation",
            "Node 3 (ImageStitch): input direction is 'diagonal', which isn't one of its choices ('right', 'down', 'left', 'up') — pick one of those",
        ),
        (
            "custom_validation_loadimage_missing_file",
            "prompt_outputs_failed_validation",
            "Node 1 (LoadImage): input image: Invalid image file: does_not_exist.png — upload the image first (upload_image)",
        ),
        (
            "errors_in_two_nodes",
            "prompt_outputs_failed_validation",
            "Node 1 (EmptyImage): input height is 99999, above the maximum of 16384 — use 16384 or less; required input color is missing",
        ),
    ];

    #[test]
    fn every_recorded_rejection_reads_as_plain_language() {
        let cases = recorded_errors();
        let rejected: Vec<&String> = cases
            .iter()
            .filter(|(_, case)| case["response"]["status"] == 400)
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            rejected.len(),
            EXPECTED.len(),
            "every recorded 400 is covered"
        );
        for (case, kind, says) in EXPECTED {
            let rejection = recorded_rejection(case);
            let body = &cases[*case]["response"]["body"];
            assert_eq!(rejection.kind, *kind, "{case}");
            assert_eq!(rejection.message, body["error"]["message"], "{case}");
            let recorded_nodes = body["node_errors"].as_object().map_or(0, |n| n.len());
            assert_eq!(rejection.node_errors.len(), recorded_nodes, "{case}");
            let text = rejection.user_message();
            assert!(text.contains(says), "{case}: {text}");
            assert!(!text.contains("Traceback"), "{case}: no traceback: {text}");
            let error = SubmitError::Rejected(rejection);
            assert_eq!(error.kind(), "workflow_rejected");
            assert_eq!(error.user_message(), text);
        }
    }

    #[test]
    fn per_node_errors_keep_their_details() {
        let rejection = recorded_rejection("errors_in_two_nodes");
        let [node] = rejection.node_errors.as_slice() else {
            panic!("one node: {rejection:?}");
        };
        assert_eq!(node.node_id, "1");
        assert_eq!(node.class_type.as_deref(), Some("EmptyImage"));
        assert_eq!(node.dependent_outputs, ["2"]);
        let kinds: Vec<&str> = node.errors.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "value_bigger_than_max",
                "required_input_missing",
                "value_smaller_than_min"
            ]
        );
        let inputs: Vec<Option<&str>> = node
            .errors
            .iter()
            .map(|e| e.input_name.as_deref())
            .collect();
        assert_eq!(inputs, [Some("height"), Some("color"), Some("width")]);
        assert_eq!(node.errors[0].expected_type.as_deref(), Some("INT"));
        assert_eq!(node.errors[0].expects_link, Some(false));
        assert_eq!(
            node.errors[1].expected_type, None,
            "no config for a missing input"
        );
        assert_eq!(node.errors[0].extra_info["received_value"], 99999);

        let traced = recorded_rejection("link_to_nonexistent_node");
        let error = &traced.node_errors[0].errors[0];
        assert_eq!(error.extra_info["exception_type"], "KeyError");
        assert!(error.extra_info["traceback"].is_array());
    }

    #[test]
    fn a_missing_input_names_the_type_it_takes_when_known() {
        let mut problem =
            recorded_rejection("missing_linked_input_on_output_node").node_errors[0].clone();
        problem.errors[0].expected_type = Some("IMAGE".into());
        problem.errors[0].expects_link = Some(true);
        assert_eq!(
            problem.describe(),
            "Node 2 (SaveImage): required input images is missing — connect an IMAGE output"
        );
        let mut widget = recorded_rejection("missing_required_input").node_errors[0].clone();
        widget.errors[0].expected_type = Some("INT".into());
        widget.errors[0].expects_link = Some(false);
        assert_eq!(
            widget.describe(),
            "Node 1 (EmptyImage): required input height is missing — give it a value (INT)"
        );
    }

    #[test]
    fn recorded_acceptances_parse_with_and_without_dropped_outputs() {
        let cases = recorded_errors();
        for (name, case) in &cases {
            if case["response"]["status"] != 200 || !case["response"]["body"].is_object() {
                continue;
            }
            let body = &case["response"]["body"];
            let problems = node_problems(&body["node_errors"]);
            let submitted = Submitted {
                prompt_id: text_of(&body["prompt_id"]).expect("id"),
                number: body["number"].as_f64().expect("number"),
                node_errors: problems,
            };
            if name == "two_outputs_one_invalid_still_queued" {
                assert!(submitted.partially_accepted());
                assert_eq!(submitted.dropped_outputs(), ["4"]);
                let warning = submitted.warning().expect("a warning");
                assert!(
                    warning.starts_with(
                        "ComfyUI queued the workflow, but output node 4 won't run because of problems upstream: Node 3 (EmptyImage): input width is 0, below the minimum of 1 — use 1 or more."
                    ),
                    "{warning}"
                );
                assert!(warning.contains("The other outputs will run"), "{warning}");
            } else {
                assert!(!submitted.partially_accepted(), "{name}");
                assert_eq!(submitted.warning(), None, "{name}");
            }
        }
        let explicit = &cases["explicit_number_and_prompt_id"]["response"]["body"];
        assert_eq!(
            explicit["number"].as_f64(),
            Some(7.0),
            "a float number reads"
        );
        let front = &cases["front_true"]["response"]["body"];
        assert_eq!(
            front["number"].as_f64(),
            Some(-23.0),
            "a negative number reads"
        );
    }

    #[test]
    fn odd_bodies_still_make_a_rejection() {
        let not_json = Rejection::from_body(b"<html>400 Bad Request</html>");
        assert_eq!(not_json.kind, "unknown");
        assert!(
            not_json.user_message().contains("400 Bad Request"),
            "{}",
            not_json.user_message()
        );
        let string_error = Rejection::from_body(br#"{"error": "bad things", "node_errors": []}"#);
        assert_eq!(string_error.message, "bad things");
        assert!(string_error.node_errors.is_empty());
        assert!(string_error.user_message().contains("(bad things)"));
        let bare = Rejection::from_body(
            br#"{"error": {"type": "prompt_outputs_failed_validation"}, "node_errors": {"7": {"errors": [{"type": "brand_new", "message": "Something new"}], "dependent_outputs": [9]}}}"#,
        );
        assert_eq!(bare.node_errors[0].dependent_outputs, ["9"]);
        assert_eq!(bare.node_errors[0].class_type, None);
        let text = bare.user_message();
        assert!(text.contains("Node 7: Something new"), "{text}");
        let empty = Rejection::from_body(b"");
        assert!(empty.user_message().contains("no reason given"));
        // Ids sort as numbers.
        let many = node_problems(&json!({"10": {}, "9": {}, "a": {}}));
        let ids: Vec<&str> = many.iter().map(|p| p.node_id.as_str()).collect();
        assert_eq!(ids, ["9", "10", "a"]);
        assert_eq!(many[0].describe(), "Node 9: failed validation");
    }

    #[test]
    fn a_server_error_explains_itself() {
        let cases = recorded_errors();
        let body = cases["prompt_is_a_list"]["response"]["body"]
            .as_str()
            .expect("plain text")
            .to_string();
        let error = SubmitError::ServerTrouble {
            url: "http://127.0.0.1:8188/".into(),
            status: 500,
            body,
        };
        let text = error.user_message();
        assert!(
            text.starts_with("ComfyUI couldn't read the workflow and answered 500: 500 Internal Server Error Server got itself in trouble."),
            "{text}"
        );
        assert!(text.contains("API-format"), "{text}");
        assert_eq!(error.kind(), "comfyui_error");
    }

    #[test]
    fn uploads_name_the_load_image_value() {
        let plain: Uploaded =
            serde_json::from_str(r#"{"name": "probe.png", "subfolder": "", "type": "input"}"#)
                .expect("parses");
        assert_eq!(plain.load_image_value(), "probe.png");
        let nested: Uploaded =
            serde_json::from_str(r#"{"name": "a (1).png", "subfolder": "refs"}"#).expect("parses");
        assert_eq!(nested.folder_type, "input");
        assert_eq!(nested.load_image_value(), "refs/a (1).png");
    }
}
