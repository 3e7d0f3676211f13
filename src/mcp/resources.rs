//! MCP resources: what an assistant can read without calling a tool. Each connection's
//! workflow (current, as loaded, and the changes between), node definitions, model lists,
//! the workflow templates, recent outputs and their files, and a short knowledge base
//! written for this project. Node and model resources are views of the same tools an
//! assistant would call (`get_node_info`, `list_models`), so both always agree.

use std::sync::Arc;

use rmcp::model::{ErrorData, Resource, ResourceContents, ResourceTemplate};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::ToolError;
use crate::session::Session;

/// One page of the knowledge base: topic (the URI's last part), title, markdown.
struct Page {
    topic: &'static str,
    title: &'static str,
    description: &'static str,
    text: &'static str,
}

const KNOWLEDGE: &[Page] = &[
    Page {
        topic: "comfyui-basics",
        title: "ComfyUI basics",
        description: "How ComfyUI workflows are built and run, and how this server drives them.",
        text: include_str!("knowledge/comfyui-basics.md"),
    },
    Page {
        topic: "recipes",
        title: "Common recipes",
        description: "Text to image, image to image, upscaling, inpainting, LoRAs, batches: which nodes and which tool calls.",
        text: include_str!("knowledge/recipes.md"),
    },
    Page {
        topic: "model-families",
        title: "Model families",
        description: "SD 1.5, SDXL, SD3, Flux and Wan: resolutions, steps, CFG, loaders and pitfalls.",
        text: include_str!("knowledge/model-families.md"),
    },
    Page {
        topic: "troubleshooting",
        title: "Troubleshooting",
        description: "Reading ComfyUI's errors, running out of memory, missing nodes and models.",
        text: include_str!("knowledge/troubleshooting.md"),
    },
];

/// The knowledge base's topics, for completion.
pub fn knowledge_topics() -> impl Iterator<Item = &'static str> {
    KNOWLEDGE.iter().map(|page| page.topic)
}

/// The parts of a session's workflow a resource can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowPart {
    /// The workflow with every change so far.
    Workflow,
    /// The workflow as it was loaded.
    Base,
    /// The changes from base to workflow, as RFC 6902 operations.
    Diff,
}

impl WorkflowPart {
    const ALL: [Self; 3] = [Self::Workflow, Self::Base, Self::Diff];

    fn name(self) -> &'static str {
        match self {
            Self::Workflow => "workflow",
            Self::Base => "base",
            Self::Diff => "diff",
        }
    }
}

/// A parsed `comfyui://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Session {
        id: String,
        part: WorkflowPart,
    },
    Node {
        class: String,
    },
    NodeInput {
        class: String,
        input: String,
    },
    Models {
        folder: String,
    },
    Template {
        name: String,
    },
    Knowledge {
        topic: String,
    },
    RecentOutputs,
    /// A ComfyUI file: folder type, subfolder, file name.
    Output(String, String, String),
}

impl Uri {
    pub fn parse(uri: &str) -> Option<Self> {
        if uri.starts_with("comfyui://output/") {
            let (folder, subfolder, filename) = crate::tools::execution::parse_output_uri(uri)?;
            return Some(Self::Output(folder, subfolder, filename));
        }
        let rest = uri.strip_prefix("comfyui://")?;
        let parts: Vec<String> = rest
            .split('/')
            .map(decode)
            .collect::<Option<Vec<String>>>()?;
        if parts.iter().any(|part| part.is_empty()) {
            return None;
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        Some(match parts.as_slice() {
            ["session", id, part] => Self::Session {
                id: (*id).to_string(),
                part: WorkflowPart::ALL.into_iter().find(|p| p.name() == *part)?,
            },
            ["nodes", class] => Self::Node {
                class: (*class).to_string(),
            },
            ["nodes", class, input] => Self::NodeInput {
                class: (*class).to_string(),
                input: (*input).to_string(),
            },
            ["models", folder] => Self::Models {
                folder: (*folder).to_string(),
            },
            ["templates", name] => Self::Template {
                name: (*name).to_string(),
            },
            ["knowledge", topic] => Self::Knowledge {
                topic: (*topic).to_string(),
            },
            ["outputs", "recent"] => Self::RecentOutputs,
            _ => return None,
        })
    }
}

/// Percent-decodes one URI segment (clients encode spaces in names); a segment that would
/// climb out (`.`, `..`) is refused like the separators `decode_segment` refuses.
fn decode(segment: &str) -> Option<String> {
    crate::tools::execution::decode_segment(segment).filter(|text| text != "." && text != "..")
}

/// The session workflow URI for a session scope.
pub fn session_uri(id: &str, part: WorkflowPart) -> String {
    format!(
        "comfyui://session/{}/{}",
        crate::comfy::client::encode_segment(id),
        part.name()
    )
}

/// The URI of the recent-outputs index.
pub const RECENT_OUTPUTS_URI: &str = "comfyui://outputs/recent";

/// The sessions one request can see: its connection's own, and the named ones.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub app: AppState,
    pub own: Arc<Session>,
    /// A stateless (2026-07-28) request: it has no connection of its own.
    pub stateless: bool,
}

impl Viewer {
    /// The session a `comfyui://session/{id}/…` URI names, if this request may see it: its
    /// connection's own (by its scope name), or a named session in memory. Another HTTP
    /// connection's session is never reachable: its name is not a named session.
    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        if !self.stateless && self.own.scope().as_str() == id {
            return Some(Arc::clone(&self.own));
        }
        self.app.named_sessions().peek(id)
    }

    /// The name this request's own workflow is listed under.
    fn own_id(&self) -> String {
        if self.stateless {
            crate::session::DEFAULT_NAME.to_string()
        } else {
            self.own.scope().as_str().to_string()
        }
    }

    fn own_session(&self) -> Option<Arc<Session>> {
        self.session(&self.own_id())
    }

    /// `resources/list`: the knowledge base, the templates, the recent outputs, and this
    /// connection's workflow when it has one. Nothing here calls ComfyUI.
    pub async fn list(&self) -> Vec<Resource> {
        let mut list = Vec::new();
        if let Some(session) = self.own_session()
            && session.workflow.lock().await.is_some()
        {
            let id = self.own_id();
            for (part, title, description) in [
                (
                    WorkflowPart::Workflow,
                    "Current workflow",
                    "This conversation's workflow with every change so far (API format).",
                ),
                (
                    WorkflowPart::Base,
                    "Workflow as loaded",
                    "This conversation's workflow before any change (API format).",
                ),
                (
                    WorkflowPart::Diff,
                    "Workflow changes",
                    "The changes from the loaded workflow, as JSON Patch operations.",
                ),
            ] {
                list.push(
                    Resource::new(session_uri(&id, part), format!("session-{}", part.name()))
                        .with_title(title)
                        .with_description(description)
                        .with_mime_type(part_mime(part)),
                );
            }
        }
        for page in KNOWLEDGE {
            list.push(
                Resource::new(format!("comfyui://knowledge/{}", page.topic), page.topic)
                    .with_title(page.title)
                    .with_description(page.description)
                    .with_mime_type("text/markdown")
                    .with_size(page.text.len() as u64),
            );
        }
        for template in crate::workflow::templates::catalogue() {
            list.push(
                Resource::new(
                    format!(
                        "comfyui://templates/{}",
                        crate::comfy::client::encode_segment(&template.name)
                    ),
                    format!("template-{}", template.name),
                )
                .with_title(format!("Template: {}", template.name))
                .with_description(template.description.clone())
                .with_mime_type("application/json"),
            );
        }
        list.push(
            Resource::new(RECENT_OUTPUTS_URI, "recent-outputs")
                .with_title("Recent outputs")
                .with_description(
                    "The files the latest runs produced, newest first, with their links.",
                )
                .with_mime_type("application/json"),
        );
        for output in self.app.changes().recent_outputs() {
            list.push(
                Resource::new(output.uri.clone(), output.filename.clone())
                    .with_description(format!(
                        "Made by prompt {} at {}",
                        output.prompt_id, output.finished_at
                    ))
                    .with_mime_type(mime_from_name(&output.filename)),
            );
        }
        list
    }

    /// `resources/read` for everything but ComfyUI's files (served by the caller, which
    /// knows the size cap and the ComfyUI client).
    pub async fn read(&self, uri: &str, parsed: Uri) -> Result<ResourceContents, ErrorData> {
        let text = |text: String, mime: &str| {
            Ok(ResourceContents::text(text, uri.to_string()).with_mime_type(mime.to_string()))
        };
        match parsed {
            Uri::Session { id, part } => {
                let Some(session) = self.session(&id) else {
                    return Err(not_found(
                        uri,
                        format!(
                            "There is no session {id:?} here. Your own workflow is at {}; named \
                             sessions appear once a tool call uses them.",
                            session_uri(&self.own_id(), WorkflowPart::Workflow)
                        ),
                    ));
                };
                let guard = session.workflow.lock().await;
                let Some(state) = guard.as_ref() else {
                    return Err(not_found(
                        uri,
                        format!(
                            "Session {id:?} has no workflow yet. Load one with load_workflow or \
                             get_workflow_template."
                        ),
                    ));
                };
                let value = match part {
                    WorkflowPart::Workflow => state.current().clone(),
                    WorkflowPart::Base => state.base().clone(),
                    WorkflowPart::Diff => serde_json::to_value(state.diff())
                        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?,
                };
                drop(guard);
                text(pretty(&value)?, part_mime(part))
            }
            Uri::Node { class } => {
                let details = self
                    .tool("get_node_info", json!({ "node_type": class }), uri)
                    .await?;
                text(pretty(&details)?, "application/json")
            }
            Uri::NodeInput { class, input } => {
                let details = self
                    .tool("get_node_info", json!({ "node_type": class }), uri)
                    .await?;
                let found = ["required", "optional", "hidden"]
                    .into_iter()
                    .find_map(|section| {
                        details
                            .pointer(&format!("/input/{section}/{}", pointer_escape(&input)))
                            .map(|spec| (section, spec.clone()))
                    });
                let Some((section, spec)) = found else {
                    let names: Vec<&str> = ["required", "optional"]
                        .into_iter()
                        .filter_map(|section| details.pointer(&format!("/input/{section}")))
                        .filter_map(Value::as_object)
                        .flat_map(|inputs| inputs.keys().map(String::as_str))
                        .collect();
                    return Err(not_found(
                        uri,
                        format!(
                            "{class} has no input {input:?}. Its inputs: {}.",
                            names.join(", ")
                        ),
                    ));
                };
                let class_type = details.get("class_type").cloned().unwrap_or(Value::Null);
                let value = json!({ "class_type": class_type, "input": input, "section": section, "spec": spec });
                text(pretty(&value)?, "application/json")
            }
            Uri::Models { folder } => {
                let models = self
                    .tool(
                        "list_models",
                        json!({ "model_type": folder, "format": "summary" }),
                        uri,
                    )
                    .await?;
                text(pretty(&models)?, "application/json")
            }
            Uri::Template { name } => match crate::workflow::templates::template(&name) {
                Some((_, workflow)) => text(pretty(&workflow)?, "application/json"),
                None => Err(not_found(
                    uri,
                    format!(
                        "There is no template {name:?}. Templates: {}.",
                        crate::workflow::templates::names().join(", ")
                    ),
                )),
            },
            Uri::Knowledge { topic } => match KNOWLEDGE.iter().find(|page| page.topic == topic) {
                Some(page) => text(page.text.to_string(), "text/markdown"),
                None => Err(not_found(
                    uri,
                    format!(
                        "There is no knowledge page {topic:?}. Pages: {}.",
                        knowledge_topics().collect::<Vec<_>>().join(", ")
                    ),
                )),
            },
            Uri::RecentOutputs => {
                let outputs = self.app.changes().recent_outputs();
                text(
                    pretty(&json!({ "count": outputs.len(), "outputs": outputs }))?,
                    "application/json",
                )
            }
            Uri::Output(..) => Err(ErrorData::internal_error(
                "ComfyUI files are read by the caller",
                None,
            )),
        }
    }

    /// Runs a read-only tool for a resource, with this request's view of the sessions.
    async fn tool(&self, name: &str, arguments: Value, uri: &str) -> Result<Value, ErrorData> {
        let Some(spec) = self.app.registry().get(name) else {
            return Err(ErrorData::internal_error(
                format!("{name} is not registered"),
                None,
            ));
        };
        let mut cx = crate::mcp::ToolContext::detached(self.app.clone());
        cx.session = Arc::clone(&self.own);
        cx.stateless = self.stateless;
        let arguments = match arguments {
            Value::Object(map) => Some(map),
            _ => None,
        };
        spec.call(cx, arguments)
            .await
            .map_err(|error| tool_error(uri, &error))
    }
}

/// The templates clients fill in to read a resource.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new("comfyui://session/{session}/workflow", "session-workflow")
            .with_title("A session's workflow")
            .with_description(
                "The workflow of your conversation (its session name is listed by resources/list) \
                 or of a named session, with every change so far.",
            )
            .with_mime_type("application/json"),
        ResourceTemplate::new("comfyui://session/{session}/base", "session-base")
            .with_title("A session's workflow as loaded")
            .with_mime_type("application/json"),
        ResourceTemplate::new("comfyui://session/{session}/diff", "session-diff")
            .with_title("A session's changes")
            .with_description("The changes since the workflow was loaded, as JSON Patch.")
            .with_mime_type("application/json-patch+json"),
        ResourceTemplate::new("comfyui://nodes/{class}", "node")
            .with_title("Node definition")
            .with_description(
                "A node class's inputs, outputs and category from ComfyUI's object_info.",
            )
            .with_mime_type("application/json"),
        ResourceTemplate::new("comfyui://nodes/{class}/{input}", "node-input")
            .with_title("One input of a node")
            .with_description("Its type, default, range or choices.")
            .with_mime_type("application/json"),
        ResourceTemplate::new("comfyui://models/{folder}", "models")
            .with_title("Models in a folder")
            .with_description(
                "The model files of one kind (checkpoints, loras, vae, …) in the ComfyUI folder.",
            )
            .with_mime_type("application/json"),
        ResourceTemplate::new("comfyui://templates/{name}", "template")
            .with_title("Workflow template")
            .with_mime_type("application/json"),
        ResourceTemplate::new("comfyui://knowledge/{topic}", "knowledge")
            .with_title("Knowledge base page")
            .with_mime_type("text/markdown"),
        ResourceTemplate::new("comfyui://output/{type}/{+path}", "comfyui-file")
            .with_title("ComfyUI file")
            .with_description(
                "A file in ComfyUI's output, temp or input folder, full size (the links \
                 execution results carry).",
            ),
    ]
}

fn part_mime(part: WorkflowPart) -> &'static str {
    match part {
        WorkflowPart::Diff => "application/json-patch+json",
        _ => "application/json",
    }
}

/// The MIME type a file name suggests (ComfyUI's outputs are images, videos and audio).
pub fn mime_from_name(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit('.').next().unwrap_or("");
    match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "json" => "application/json",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

fn pretty(value: &impl serde::Serialize) -> Result<String, ErrorData> {
    serde_json::to_string_pretty(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

pub fn not_found(uri: &str, message: String) -> ErrorData {
    ErrorData::resource_not_found(message, Some(json!({ "uri": uri })))
}

/// A tool's error as a resource error: what the artist could fix is "not found" with the
/// tool's message; anything else (ComfyUI down) an internal error that still says why.
fn tool_error(uri: &str, error: &ToolError) -> ErrorData {
    match error {
        ToolError::Rejected { .. }
        | ToolError::InvalidArguments(_)
        | ToolError::Path(_)
        | ToolError::BadFile { .. } => not_found(uri, error.user_message()),
        _ => ErrorData::internal_error(error.user_message(), Some(json!({ "uri": uri }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_to_what_they_name_and_nothing_else() {
        assert_eq!(
            Uri::parse("comfyui://session/default/diff"),
            Some(Uri::Session {
                id: "default".into(),
                part: WorkflowPart::Diff
            })
        );
        assert_eq!(
            Uri::parse("comfyui://nodes/KSampler/cfg"),
            Some(Uri::NodeInput {
                class: "KSampler".into(),
                input: "cfg".into()
            })
        );
        assert_eq!(
            Uri::parse("comfyui://nodes/Load%20Image%20%28x%29"),
            Some(Uri::Node {
                class: "Load Image (x)".into()
            })
        );
        assert_eq!(
            Uri::parse("comfyui://outputs/recent"),
            Some(Uri::RecentOutputs)
        );
        assert_eq!(
            Uri::parse("comfyui://output/output/sub/a.png"),
            Some(Uri::Output("output".into(), "sub".into(), "a.png".into()))
        );
        for bad in [
            "comfyui://session/default/secrets",
            "comfyui://nodes/",
            "comfyui://nodes/a%2Fb",
            "comfyui://models/..",
            "comfyui://knowledge/%zz",
            "file:///etc/passwd",
            "comfyui://templates/a/b",
        ] {
            assert_eq!(Uri::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn session_uris_round_trip() {
        let uri = session_uri("http-1-abcd1234", WorkflowPart::Base);
        assert_eq!(
            Uri::parse(&uri),
            Some(Uri::Session {
                id: "http-1-abcd1234".into(),
                part: WorkflowPart::Base
            })
        );
    }

    #[test]
    fn every_knowledge_page_has_a_title_line_and_content() {
        for page in KNOWLEDGE {
            assert!(page.text.starts_with("# "), "{}", page.topic);
            assert!(page.text.lines().count() > 30, "{}", page.topic);
        }
    }

    /// Every `snake_case` name in backticks that looks like a tool is one, and every
    /// `CamelCase` name in backticks is a node class of the recorded ComfyUI: the pages must
    /// not send an assistant to tools or nodes that don't exist.
    #[test]
    fn knowledge_pages_name_only_real_tools_and_nodes() {
        let tools: Vec<String> = crate::tools::all()
            .iter()
            .map(|spec| spec.tool().name.to_string())
            .collect();
        let recorded = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/comfyui-0.3.64/object_info.json"
        ))
        .expect("fixture");
        let nodes: serde_json::Map<String, Value> =
            serde_json::from_slice(&recorded).expect("object_info");
        let not_tools = [
            "model_type",
            "ckpt_name",
            "batch_size",
            "latent_image",
            "filename_prefix",
            "grow_mask_by",
            "strength_model",
            "strength_clip",
            "weight_dtype",
            "sampler_name",
            "output_path",
            "upscale_models",
            "node_errors",
            "prompt_id",
            "dpmpp_2m",
            "uni_pc",
            "prompt_no_outputs",
            "invalid_prompt",
            "required_input_missing",
            "value_not_in_list",
            "value_smaller_than_min",
            "value_bigger_than_max",
            "invalid_input_type",
            "return_type_mismatch",
            "bad_linked_input",
            "custom_validation_failed",
            "class_type",
            "output_index",
            "node_id",
            "latent_image",
        ];
        let mut checked = 0;
        for page in KNOWLEDGE {
            for quoted in page.text.split('`').skip(1).step_by(2) {
                let word = quoted.trim();
                let snake = word.contains('_')
                    && word
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if snake && !not_tools.contains(&word) {
                    assert!(
                        tools.iter().any(|tool| tool == word),
                        "{}: `{word}` is not a tool",
                        page.topic
                    );
                    checked += 1;
                }
                let camel = word.len() > 3
                    && word.starts_with(|c: char| c.is_ascii_uppercase())
                    && word.chars().all(|c| c.is_ascii_alphanumeric())
                    && word.chars().any(|c| c.is_ascii_lowercase())
                    && !matches!(word, "Cancel");
                if camel {
                    assert!(
                        nodes.contains_key(word),
                        "{}: `{word}` is not a ComfyUI node",
                        page.topic
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 60, "only {checked} names checked");
    }

    #[test]
    fn output_names_get_their_media_types() {
        assert_eq!(mime_from_name("ComfyUI_00001_.PNG"), "image/png");
        assert_eq!(mime_from_name("clip.webm"), "video/webm");
        assert_eq!(mime_from_name("noext"), "application/octet-stream");
    }
}
