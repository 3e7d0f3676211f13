//! MCP prompts: the starting points an artist picks from the client's menu. Each one
//! turns a few arguments into a first message that tells the assistant what to do with
//! this server's tools, in the order that works, and embeds the workflow it is about
//! when there is one.

use rmcp::model::{ErrorData, GetPromptResult, Prompt, PromptArgument, PromptMessage, Role};
use serde_json::json;

use super::complete::Source;
use super::resources::{Viewer, WorkflowPart, session_uri};

/// One argument of a prompt.
struct Argument {
    name: &'static str,
    description: &'static str,
    required: bool,
    source: Source,
}

struct PromptSpec {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    arguments: &'static [Argument],
}

const SIZES: &[&str] = &[
    "512x512",
    "768x768",
    "1024x1024",
    "832x1216",
    "1216x832",
    "896x1152",
    "1152x896",
    "1344x768",
    "768x1344",
];

const PROMPTS: &[PromptSpec] = &[
    PromptSpec {
        name: "generate_image",
        title: "Generate an image from a description",
        description: "Builds or adapts a workflow for the description, checks it against this ComfyUI, runs it and shows the result.",
        arguments: &[
            Argument {
                name: "description",
                description: "What the image should show, in your words.",
                required: true,
                source: Source::Free,
            },
            Argument {
                name: "checkpoint",
                description: "A checkpoint file to use (optional; otherwise one that is installed is picked).",
                required: false,
                source: Source::ModelFiles {
                    folder: "checkpoints",
                },
            },
            Argument {
                name: "size",
                description: "Width x height, e.g. 1024x1024 (optional; the model's native size otherwise).",
                required: false,
                source: Source::Fixed(SIZES),
            },
        ],
    },
    PromptSpec {
        name: "debug_workflow",
        title: "Debug a failing workflow",
        description: "Finds why a workflow fails (missing nodes or models, bad values, wrong links) and fixes it with undoable edits.",
        arguments: &[
            Argument {
                name: "workflow_path",
                description: "The workflow file (optional; this conversation's workflow otherwise).",
                required: false,
                source: Source::Free,
            },
            Argument {
                name: "error",
                description: "The error ComfyUI showed, if you have it.",
                required: false,
                source: Source::Free,
            },
        ],
    },
    PromptSpec {
        name: "optimize_for_gpu",
        title: "Make this run on my GPU",
        description: "Looks at the GPU and the workflow's memory needs and changes resolution, batch, precision or steps so it runs well here.",
        arguments: &[
            Argument {
                name: "goal",
                description: "speed, memory or quality (optional; memory first if it does not fit).",
                required: false,
                source: Source::Fixed(&["speed", "memory", "quality"]),
            },
            Argument {
                name: "workflow_path",
                description: "The workflow file (optional; this conversation's workflow otherwise).",
                required: false,
                source: Source::Free,
            },
        ],
    },
    PromptSpec {
        name: "find_model_or_node",
        title: "Find a model or node pack",
        description: "Searches what is installed first, then the registries (ComfyUI-Manager, Comfy registry, CivitAI, Hugging Face), and says how to install what is missing.",
        arguments: &[
            Argument {
                name: "need",
                description: "What you are looking for, e.g. 'an SDXL anime LoRA' or 'a node that removes backgrounds'.",
                required: true,
                source: Source::Free,
            },
            Argument {
                name: "kind",
                description: "model, node or either (optional).",
                required: false,
                source: Source::Fixed(&["model", "node", "either"]),
            },
        ],
    },
    PromptSpec {
        name: "explain_workflow",
        title: "Explain a workflow",
        description: "Walks through what each part of a workflow does and which settings matter.",
        arguments: &[
            Argument {
                name: "template",
                description: "A template to explain (optional; this conversation's workflow otherwise).",
                required: false,
                source: Source::Templates,
            },
            Argument {
                name: "audience",
                description: "beginner or experienced (optional).",
                required: false,
                source: Source::Fixed(&["beginner", "experienced"]),
            },
        ],
    },
];

/// `prompts/list`.
pub fn list() -> Vec<Prompt> {
    PROMPTS
        .iter()
        .map(|spec| {
            let arguments = spec
                .arguments
                .iter()
                .map(|argument| {
                    PromptArgument::new(argument.name)
                        .with_description(argument.description)
                        .with_required(argument.required)
                })
                .collect();
            Prompt::new(spec.name, Some(spec.description), Some(arguments)).with_title(spec.title)
        })
        .collect()
}

fn find(name: &str) -> Result<&'static PromptSpec, ErrorData> {
    PROMPTS
        .iter()
        .find(|spec| spec.name == name)
        .ok_or_else(|| {
            ErrorData::invalid_params(
                format!(
                    "There is no prompt {name:?}. Prompts: {}.",
                    PROMPTS
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some(json!({ "prompt": name })),
            )
        })
}

/// Where a prompt argument's completions come from.
pub fn argument_source(prompt: &str, argument: &str) -> Result<Source, ErrorData> {
    let spec = find(prompt)?;
    spec.arguments
        .iter()
        .find(|a| a.name == argument)
        .map(|found| found.source.clone())
        .ok_or_else(|| no_such_argument(spec, argument))
}

fn no_such_argument(spec: &PromptSpec, argument: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!(
            "The prompt {} has no argument {argument:?}. Its arguments: {}.",
            spec.name,
            spec.arguments
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(json!({ "argument": argument })),
    )
}

/// `prompts/get`.
pub async fn get(
    viewer: &Viewer,
    name: &str,
    arguments: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<GetPromptResult, ErrorData> {
    let spec = find(name)?;
    let argument = |key: &str| {
        arguments
            .and_then(|a| a.get(key))
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(String::from)
    };
    if let Some(unknown) = arguments
        .into_iter()
        .flat_map(|a| a.keys())
        .find(|key| !spec.arguments.iter().any(|a| a.name == key.as_str()))
    {
        return Err(no_such_argument(spec, unknown));
    }
    for required in spec.arguments.iter().filter(|a| a.required) {
        if argument(required.name).is_none() {
            return Err(ErrorData::invalid_params(
                format!(
                    "The prompt {name} needs {:?}: {}",
                    required.name, required.description
                ),
                Some(json!({ "argument": required.name })),
            ));
        }
    }
    let mut messages = Vec::new();
    let text = match name {
        "generate_image" => generate_image(
            &argument("description").unwrap_or_default(),
            argument("checkpoint"),
            argument("size"),
        ),
        "debug_workflow" => {
            let path = argument("workflow_path");
            if path.is_none() {
                messages.extend(self_workflow(viewer).await);
            }
            debug_workflow(path, argument("error"))
        }
        "optimize_for_gpu" => {
            let path = argument("workflow_path");
            if path.is_none() {
                messages.extend(self_workflow(viewer).await);
            }
            optimize_for_gpu(path, argument("goal"))
        }
        "find_model_or_node" => {
            find_model_or_node(&argument("need").unwrap_or_default(), argument("kind"))
        }
        _ => {
            let template = argument("template");
            match &template {
                Some(template) => {
                    let Some((_, workflow)) = crate::workflow::templates::template(template) else {
                        return Err(ErrorData::invalid_params(
                            format!(
                                "There is no template {template:?}. Templates: {}.",
                                crate::workflow::templates::names().join(", ")
                            ),
                            Some(json!({ "argument": "template" })),
                        ));
                    };
                    messages.push(embedded(
                        format!(
                            "comfyui://templates/{}",
                            crate::comfy::client::encode_segment(template)
                        ),
                        &workflow,
                    ));
                }
                None => messages.extend(self_workflow(viewer).await),
            }
            explain_workflow(template.as_deref(), argument("audience"))
        }
    };
    messages.insert(0, PromptMessage::new_text(Role::User, text));
    let mut result = GetPromptResult::new(messages);
    result.description = Some(spec.title.to_string());
    Ok(result)
}

/// This conversation's workflow as an embedded resource, when it has one.
async fn self_workflow(viewer: &Viewer) -> Option<PromptMessage> {
    let id = if viewer.stateless {
        crate::session::DEFAULT_NAME.to_string()
    } else {
        viewer.own.scope().as_str().to_string()
    };
    let session = viewer.session(&id)?;
    let guard = session.workflow.lock().await;
    let workflow = guard.as_ref()?.current().clone();
    drop(guard);
    Some(embedded(
        session_uri(&id, WorkflowPart::Workflow),
        &workflow,
    ))
}

fn embedded(uri: String, workflow: &serde_json::Value) -> PromptMessage {
    PromptMessage::new_resource(
        Role::User,
        uri,
        Some("application/json".into()),
        Some(serde_json::to_string_pretty(workflow).unwrap_or_default()),
        None,
        None,
        None,
    )
}

fn generate_image(description: &str, checkpoint: Option<String>, size: Option<String>) -> String {
    let mut text = format!(
        "Make an image in my ComfyUI: {description}\n\n\
         Work in this order:\n\
         1. Check ComfyUI is up (is_comfyui_running) and what GPU it has (get_system_stats).\n"
    );
    match checkpoint {
        Some(checkpoint) => text.push_str(&format!(
            "2. Use the checkpoint {checkpoint}. Confirm it is installed (list_models with \
             model_type checkpoints) and which family it is (identify_model_family).\n"
        )),
        None => text.push_str(
            "2. Pick an installed checkpoint that suits the description (list_models with \
             model_type checkpoints; identify_model_family tells SD 1.5, SDXL, Flux apart).\n",
        ),
    }
    text.push_str(
        "3. Start from a template that fits the family (list_workflow_templates, \
         get_workflow_template), then set the prompt text, checkpoint, size and seed with \
         set_input. Keep the family's native resolution unless I asked for another.\n",
    );
    if let Some(size) = size {
        text.push_str(&format!(
            "   Use the size {size} (width x height) on the EmptyLatentImage node.\n"
        ));
    }
    text.push_str(
        "4. Check it with validate_workflow and fix what it reports.\n\
         5. Run it with execute_with_progress and show me the image. Tell me the seed and the \
         settings you used so I can ask for variations.\n\
         Ask me before you change anything I specified.",
    );
    text
}

fn debug_workflow(path: Option<String>, error: Option<String>) -> String {
    let mut text =
        String::from("A workflow of mine fails in ComfyUI. Find out why and fix it.\n\n");
    match path {
        Some(path) => text.push_str(&format!(
            "The workflow is the file {path}: load it with load_workflow.\n"
        )),
        None => text.push_str(
            "The workflow is this conversation's (attached when one is loaded; otherwise ask me \
             for the file).\n",
        ),
    }
    if let Some(error) = error {
        text.push_str(&format!("ComfyUI said:\n```\n{error}\n```\n"));
    }
    text.push_str(
        "\nWork in this order:\n\
         1. validate_workflow against the live node list: unknown nodes, missing inputs, \
         values outside their range or choices, links of the wrong type.\n\
         2. For unknown nodes, find_missing_nodes and get_install_instructions (tell me what to \
         install; do not install anything yourself).\n\
         3. For missing model files, list_models for that folder and suggest the closest \
         installed file.\n\
         4. Fix what can be fixed with set_input, connect_nodes or apply_workflow_patch, one \
         change at a time, and show me get_workflow_diff at the end. Everything stays undoable \
         (undo_workflow_patch).\n\
         5. If it validates, offer to run it (execute_with_progress); if it then fails, read the \
         node's error and repeat.",
    );
    text
}

fn optimize_for_gpu(path: Option<String>, goal: Option<String>) -> String {
    let goal = goal.unwrap_or_else(|| "memory first if it does not fit, then speed".into());
    let mut text = format!("Make this workflow run well on my machine. Goal: {goal}.\n\n");
    match path {
        Some(path) => text.push_str(&format!(
            "The workflow is the file {path}: load it with load_workflow.\n"
        )),
        None => {
            text.push_str("The workflow is this conversation's (attached when one is loaded).\n")
        }
    }
    text.push_str(
        "\n1. Read the hardware: get_system_stats and get_gpu_status (VRAM total and free).\n\
         2. Identify the model family of each loader (identify_model_family) and what the \
         workflow asks for: resolution, batch size, steps, upscales, video frames.\n\
         3. Propose changes that fit the goal (smaller batch or resolution then upscale, fewer \
         steps with a fitting sampler, tiled VAE decode, fp8 or GGUF weights where installed) \
         and explain the trade-off of each.\n\
         4. Apply only the ones I accept, with set_input or apply_workflow_patch, so each can be \
         undone; show get_workflow_diff.\n\
         5. Offer a test run with execute_with_progress and compare the time with the slowest \
         node it reports.",
    );
    text
}

fn find_model_or_node(need: &str, kind: Option<String>) -> String {
    let kind = kind.unwrap_or_else(|| "either".into());
    format!(
        "I need: {need} (looking for: {kind}).\n\n\
         1. Look at what I already have: list_models and get_models_summary for models, \
         list_custom_nodes and get_all_nodes for nodes.\n\
         2. If nothing fits, search: discover (ComfyUI-Manager lists and the Comfy registry), \
         get_civitai_model and get_trending_models for models.\n\
         3. For each candidate say what it is, which model family it is for, its size and \
         licence where known, and how well it matches.\n\
         4. Give install steps with get_install_instructions; do not download or install \
         anything yourself.\n\
         Check model families (check_model_compatibility) before recommending a LoRA or VAE \
         for my checkpoint."
    )
}

fn explain_workflow(template: Option<&str>, audience: Option<String>) -> String {
    let audience = audience.unwrap_or_else(|| "someone who knows images but not ComfyUI".into());
    let what = match template {
        Some(template) => format!("the template {template} (attached)"),
        None => "this conversation's workflow (attached when one is loaded; otherwise ask me \
                 which one)"
            .into(),
    };
    format!(
        "Explain {what} to {audience}.\n\n\
         Go from the loaders to the outputs: what each group of nodes does, how the links \
         carry models, conditioning, latents and images between them, and which settings \
         matter most (seed, steps, CFG, sampler, scheduler, denoise, size). Use get_node_info \
         for any node you are not sure about. Point out anything unusual or likely to fail \
         (validate_workflow helps). Do not change the workflow."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_a_prompt_names_exists() {
        let tools: Vec<String> = crate::tools::all()
            .iter()
            .map(|spec| spec.tool().name.to_string())
            .collect();
        let texts = [
            generate_image(
                "a cat",
                Some("x.safetensors".into()),
                Some("512x512".into()),
            ),
            debug_workflow(Some("a.json".into()), Some("boom".into())),
            optimize_for_gpu(None, None),
            find_model_or_node("a LoRA", None),
            explain_workflow(Some("t"), None),
        ];
        for text in &texts {
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let looks_like_tool = word.contains('_')
                    && word
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                    && !matches!(word, "model_type");
                if looks_like_tool {
                    assert!(tools.iter().any(|t| t == word), "{word} is not a tool");
                }
            }
        }
    }

    #[test]
    fn prompts_are_listed_with_their_arguments() {
        let listed = list();
        assert_eq!(listed.len(), PROMPTS.len());
        let generate = listed
            .iter()
            .find(|p| p.name == "generate_image")
            .expect("listed");
        let arguments = generate.arguments.as_ref().expect("arguments");
        assert!(
            arguments
                .iter()
                .any(|a| a.name == "description" && a.required == Some(true))
        );
    }

    #[test]
    fn argument_sources_and_unknown_names() {
        assert_eq!(
            argument_source("generate_image", "checkpoint").expect("source"),
            Source::ModelFiles {
                folder: "checkpoints"
            }
        );
        assert_eq!(
            argument_source("explain_workflow", "template").expect("source"),
            Source::Templates
        );
        assert!(argument_source("nope", "x").is_err());
        assert!(argument_source("generate_image", "nope").is_err());
    }
}
