//! Planning tools (catalogue §1.21): `classify_intent` tells what kind of request an artist
//! made and which agents should handle it. Pure and local: it needs neither ComfyUI nor a model.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ToolError;
use crate::mcp::ToolContext;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::refine::iterate::{self, IntentSpec, Iteration, Loop, OutputAnalysis, Verification};
use crate::refine::profile;
use crate::refine::router::{IntentType, WorkflowStage, classify};
use crate::registry::{Hints, ToolSpec, tool};
use crate::session::docs::Loaded;
use crate::tools::blocking;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "classify_intent",
            "Classify a request",
            "Tell what kind of request this is (generation, modification, evaluation or \
             exploration) given where the workflow stands, and which agents handle it, in order.",
            Hints::LOCAL_READ,
            classify_intent,
        ),
        tool(
            "iterative_refine",
            "Refine towards the artist's words",
            "Turn what the artist says (\"sharper, less saturated\") into parameter and prompt \
             changes through the model's profile (SD1.5, SDXL, Flux, SD3, Wan or a general one), \
             then judge each new output you describe in output_analysis and move the loop on: \
             refined (apply the next changes), accepted, or escalated back to the artist. The \
             loop is kept per session, so call again after each render.",
            Hints::MEMORY,
            iterative_refine,
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyIntentParams {
    /// What the artist asked for, in their words, e.g. "make it dreamier".
    #[schemars(length(min = 1, max = 4000))]
    pub user_intent: String,
    /// Where the workflow stands: empty, configured (the default), executing or has_output.
    #[serde(default)]
    pub workflow_state: WorkflowStage,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct IntentClassified {
    pub intent_type: IntentType,
    /// The agents that handle it, in order: intent, execution, verify.
    pub delegation_sequence: Vec<String>,
    pub workflow_state: WorkflowStage,
}

async fn classify_intent(
    _cx: ToolContext,
    params: ClassifyIntentParams,
) -> Result<IntentClassified, ToolError> {
    if params.user_intent.trim().is_empty() {
        return Err(ToolError::rejected(
            "The request is empty, so there is nothing to classify.",
            "Pass what the artist asked for in user_intent, e.g. \"make it sharper\".",
        ));
    }
    let intent_type = classify(&params.user_intent, params.workflow_state);
    Ok(IntentClassified {
        intent_type,
        delegation_sequence: intent_type
            .delegation_sequence()
            .iter()
            .map(|s| (*s).to_string())
            .collect(),
        workflow_state: params.workflow_state,
    })
}

/// The `SessionDocs` kind the refinement loop is kept under.
const REFINEMENTS: &str = "refinements";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IterativeRefineParams {
    /// What the artist wants changed, in their words, e.g. "sharper and less saturated".
    #[schemars(length(min = 1, max = 4000))]
    pub user_intent: String,
    /// The model (a profile name: sd15, sdxl, flux, sd3, wan; or a checkpoint file name).
    #[schemars(length(min = 1, max = 256))]
    pub model_id: String,
    /// Where the workflow stands (`state`: empty, configured, executing or has_output) and
    /// its current parameters (cfg, steps, denoise, sampler_name, guidance, …).
    #[serde(default)]
    pub workflow_state: Option<Map<String, Value>>,
    /// What you saw in the latest output (quality_score, artifacts, issues,
    /// matches_intent), or a list of them, one per iteration, oldest first.
    #[serde(default)]
    pub output_analysis: Option<Value>,
    /// Iterations allowed before handing back to the artist (1 to 10, default 3).
    #[serde(default = "default_iterations")]
    #[schemars(range(min = 1, max = 10))]
    pub max_iterations: u32,
    /// Schema names per agent (intent, execution, verify); only `default` exists.
    #[serde(default)]
    pub schemas: Option<Map<String, Value>>,
    /// The session whose refinement loop to continue (a name); this conversation's own when
    /// omitted.
    #[serde(default)]
    pub session: Option<String>,
}

fn default_iterations() -> u32 {
    3
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Refined {
    /// `planned`, `refined`, `accepted`, `escalated`, `evaluated` or `needs_clarification`.
    pub status: String,
    pub intent_type: IntentType,
    pub delegation_sequence: Vec<String>,
    pub precondition_warnings: Vec<String>,
    pub intent_spec: Option<IntentSpec>,
    /// The judgement of the latest output analysed in this call.
    pub verification: Option<Verification>,
    /// Iterations so far in this session's loop.
    pub iterations: u32,
    pub history: Vec<Iteration>,
    /// The parameters to render with next (after every mutation so far).
    pub next_params: BTreeMap<String, Value>,
    pub schemas_used: BTreeMap<String, String>,
    pub session: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

fn analyses(raw: Option<Value>) -> Result<Vec<OutputAnalysis>, ToolError> {
    let items = match raw {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(object @ Value::Object(_)) => vec![object],
        Some(_) => {
            return Err(ToolError::rejected(
                "output_analysis must be an object (or a list of them).",
                "Pass e.g. {\"quality_score\": 0.7, \"artifacts\": [\"oversaturated\"], \"matches_intent\": 0.8}.",
            ));
        }
    };
    if items.len() > 10 {
        return Err(ToolError::rejected(
            format!(
                "output_analysis lists {} outputs; at most 10 are judged in one call.",
                items.len()
            ),
            "Pass the latest outputs only.",
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value(item).map_err(|error| {
                ToolError::rejected(
                    format!("output_analysis[{i}] doesn't fit: {error}."),
                    "Use quality_score (0 to 1), artifacts and issues (lists of words) and matches_intent (true/false or 0 to 1).",
                )
            })
        })
        .collect()
}

async fn iterative_refine(
    cx: ToolContext,
    params: IterativeRefineParams,
) -> Result<Refined, ToolError> {
    let session = cx.scope(params.session.as_deref())?;
    let intent = params.user_intent.trim().to_string();
    if intent.is_empty() {
        return Err(ToolError::rejected(
            "The request is empty, so there is nothing to refine.",
            "Pass what the artist wants changed in user_intent, e.g. \"sharper, less saturated\".",
        ));
    }
    let max_iterations = params.max_iterations.clamp(1, 10);
    let stage = match params.workflow_state.as_ref().and_then(|s| s.get("state")) {
        None | Some(Value::Null) => WorkflowStage::Configured,
        Some(value) => serde_json::from_value::<WorkflowStage>(value.clone()).map_err(|_| {
            ToolError::rejected(
                format!("workflow_state.state {value} is not a state this tool knows."),
                "Use empty, configured, executing or has_output.",
            )
        })?,
    };
    let outputs = analyses(params.output_analysis)?;
    let intent_type = classify(&intent, stage);
    let mut warnings = Vec::new();
    match (stage, intent_type) {
        (WorkflowStage::Empty, IntentType::Modification) => warnings.push(
            "No workflow is loaded: load one (load_workflow or get_workflow_template) before applying these changes.".to_string(),
        ),
        (WorkflowStage::Executing, _) => {
            warnings.push("A run is in progress: apply the changes after it finishes.".to_string());
        }
        _ => {}
    }
    let schemas_used: BTreeMap<String, String> = ["intent", "execution", "verify"]
        .iter()
        .map(|a| ((*a).to_string(), "default".to_string()))
        .collect();
    for (agent, name) in params.schemas.unwrap_or_default() {
        let name = name.as_str().unwrap_or_default().to_string();
        if !schemas_used.contains_key(&agent) {
            warnings.push(format!(
                "There is no '{agent}' agent; its schema '{name}' was ignored."
            ));
        } else if name != "default" {
            warnings.push(format!(
                "The schema '{name}' for the {agent} agent doesn't exist; the default one is used."
            ));
        }
    }
    let (profile, reason) = profile::resolve(&params.model_id);
    let start = iterate::params_from(params.workflow_state.as_ref());
    let sequence: Vec<String> = intent_type
        .delegation_sequence()
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    let base = |status: &str, message: String| Refined {
        status: status.into(),
        intent_type,
        delegation_sequence: sequence.clone(),
        precondition_warnings: warnings.clone(),
        intent_spec: None,
        verification: None,
        iterations: 0,
        history: Vec::new(),
        next_params: start.clone(),
        schemas_used: schemas_used.clone(),
        session: session.to_string(),
        message,
        set_aside: None,
    };

    if intent_type == IntentType::Evaluation {
        let Some(last) = outputs.last() else {
            return Err(ToolError::rejected(
                "This is a request to judge an output, but no output_analysis was given.",
                "Describe the output in output_analysis (quality_score, artifacts, matches_intent).",
            ));
        };
        let verification = iterate::verify(&profile, last, 1, max_iterations);
        let mut done = base(
            "evaluated",
            format!(
                "Judged the output: {} (overall {}).",
                verification.decision, verification.overall
            ),
        );
        done.verification = Some(verification);
        return Ok(done);
    }

    let mut planned_params = start.clone();
    let spec = iterate::translate(&profile, &reason, &intent, &mut planned_params);
    if spec.confidence < iterate::MIN_CONFIDENCE {
        let known: Vec<&str> = profile
            .translations
            .iter()
            .filter_map(|t| t.words.first().map(String::as_str))
            .collect();
        let mut done = base(
            "needs_clarification",
            format!(
                "Not sure what \"{intent}\" should change (confidence {}). Ask the artist, or use words this profile knows: {}.",
                spec.confidence,
                known.join(", ")
            ),
        );
        done.intent_spec = Some(spec);
        return Ok(done);
    }
    if intent_type == IntentType::Exploration {
        let mut done = base(
            "planned",
            "What these words would change, without starting a refinement loop.".into(),
        );
        done.next_params = planned_params;
        done.intent_spec = Some(spec);
        return Ok(done);
    }

    let profile_name = profile.name.clone();
    blocking(&cx.app, move |app| {
        app.docs().update(REFINEMENTS, &session, |loaded: Loaded<Loop>| {
            let set_aside = loaded.set_aside;
            let continuing = loaded.doc.filter(|l| {
                l.user_intent == intent
                    && l.profile == profile_name
                    && matches!(l.status.as_str(), "planned" | "refined")
                    && !outputs.is_empty()
            });
            let mut state = continuing.unwrap_or_else(|| Loop {
                user_intent: intent.clone(),
                profile: profile_name.clone(),
                params: planned_params.clone(),
                iteration: 1,
                history: vec![Iteration {
                    iteration: 1,
                    parameter_mutations: spec.parameter_mutations.clone(),
                    prompt_mutations: spec.prompt_mutations.clone(),
                    verification: None,
                }],
                status: "planned".into(),
            });
            let mut verification = None;
            for analysis in &outputs {
                let judged = iterate::verify(&profile, analysis, state.iteration, max_iterations);
                if let Some(last) = state.history.last_mut() {
                    last.verification = Some(judged.clone());
                }
                match judged.decision.as_str() {
                    "accept" => state.status = "accepted".into(),
                    "escalate" => state.status = "escalated".into(),
                    decision => {
                        let mut moves = iterate::fixes(&profile, analysis, &mut state.params);
                        let mut prompt = iterate::PromptMutations::default();
                        if decision == "reprompt" {
                            // Say what was asked more plainly in the prompt itself.
                            prompt.add_positive = iterate::split(&intent);
                        } else if judged.intent_score <= 0.7 {
                            // Not there yet: push further the way the artist asked.
                            let again = iterate::translate(&profile, &reason, &intent, &mut state.params);
                            moves.extend(again.parameter_mutations);
                        }
                        if moves.is_empty() && prompt.add_positive.is_empty() {
                            state.status = "escalated".into();
                        } else {
                            state.iteration += 1;
                            state.history.push(Iteration {
                                iteration: state.iteration,
                                parameter_mutations: moves,
                                prompt_mutations: prompt,
                                verification: None,
                            });
                            state.status = "refined".into();
                        }
                    }
                }
                verification = Some(judged);
                if matches!(state.status.as_str(), "accepted" | "escalated") {
                    break;
                }
            }
            if state.history.len() > iterate::MAX_HISTORY {
                let excess = state.history.len() - iterate::MAX_HISTORY;
                state.history.drain(..excess);
            }
            let message = match state.status.as_str() {
                "planned" => "Apply parameter_mutations and prompt_mutations, render, then call again with output_analysis.".to_string(),
                "refined" => format!(
                    "Iteration {}: apply the latest mutations (next_params), render, and call again with the new output_analysis.",
                    state.iteration
                ),
                "accepted" => "The output matches the request: keep it (record_outcome if it's worth remembering).".to_string(),
                _ => "Not converging within the profile's ranges and the iterations allowed: show the artist the results and ask how to proceed.".to_string(),
            };
            let result = Refined {
                status: state.status.clone(),
                intent_type,
                delegation_sequence: sequence.clone(),
                precondition_warnings: warnings.clone(),
                intent_spec: Some(spec.clone()),
                verification,
                iterations: state.iteration,
                history: state.history.clone(),
                next_params: state.params.clone(),
                schemas_used: schemas_used.clone(),
                session: session.to_string(),
                message,
                set_aside,
            };
            Ok::<_, ToolError>((Some(state), result))
        })
    })
    .await
}
