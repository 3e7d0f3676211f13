//! Planning tools (catalogue §1.21): `classify_intent` tells what kind of request an artist
//! made and which agents should handle it. Pure and local: it needs neither ComfyUI nor a model.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::refine::router::{IntentType, WorkflowStage, classify};
use crate::registry::{Hints, ToolSpec, tool};

pub fn tools() -> Vec<ToolSpec> {
    vec![tool(
        "classify_intent",
        "Classify a request",
        "Tell what kind of request this is (generation, modification, evaluation or \
         exploration) given where the workflow stands, and which agents handle it, in order.",
        Hints::LOCAL_READ,
        classify_intent,
    )]
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
