//! Asking the user before a tool overwrites a file outside the data folder, replaces an
//! upload, or runs ComfyUI's paid API nodes. The question goes to the user through the
//! client (elicitation: a request on sessions that began with `initialize`, an
//! `input_required` result on 2026-07-28, a task input request inside a task). A client
//! that can't ask gets a refusal, never a silent yes, unless the operator pre-approved
//! the tool (`COMFYUI_AGENT_PRE_APPROVE`).

use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    InputRequest,
};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::ToolContext;
use super::ask::ClientAnswer;
use crate::error::ToolError;

/// How long the user has to answer a question asked over a session.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// One question: what is about to happen, and what it means.
#[derive(Debug, Clone)]
pub struct Consent {
    /// "Overwrite /work/flows/portrait.json?"
    pub question: String,
    /// "The file's current content will be replaced."
    pub consequence: String,
}

impl Consent {
    pub fn new(question: impl Into<String>, consequence: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            consequence: consequence.into(),
        }
    }

    /// The key the answer travels under: the same question gets the same key on a retry,
    /// and an answer to one question never approves another.
    fn key(&self, tool: &str) -> String {
        let digest = sha2::Sha256::digest(format!("{tool}\n{}", self.question).as_bytes());
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("confirm-{hex}")
    }

    fn request(&self) -> Result<ElicitRequestParams, ToolError> {
        let schema: ElicitationSchema = serde_json::from_value(json!({
            "type": "object",
            "properties": {
                "confirm": {
                    "type": "boolean",
                    "title": "Go ahead",
                    "description": self.consequence,
                    "default": false,
                }
            },
            "required": ["confirm"],
        }))
        .map_err(|error| ToolError::Internal(format!("consent form: {error}")))?;
        Ok(ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: format!("{} {}", self.question, self.consequence),
            requested_schema: schema,
        })
    }
}

/// Whether `path` lies outside the server's own data folder (where overwriting needs
/// no question: the server wrote those files).
pub fn outside_data_dir(app: &crate::app::AppState, path: &std::path::Path) -> bool {
    let data_dir = &app.config().data_dir;
    let data_dir = data_dir.canonicalize().unwrap_or_else(|_| data_dir.clone());
    !path.starts_with(data_dir)
}

impl ToolContext {
    /// Asks before overwriting an existing file outside the data folder.
    pub async fn confirm_overwrite(&self, path: &std::path::Path) -> Result<(), ToolError> {
        if !path.exists() || !outside_data_dir(&self.app, path) {
            return Ok(());
        }
        self.confirm(Consent::new(
            format!("Overwrite {}?", path.display()),
            "The file's current content will be replaced and can't be brought back by this server.",
        ))
        .await
    }

    /// Asks the user to approve `consent`; `Ok` means go ahead. Declined, cancelled,
    /// unanswered or unaskable all refuse, with what to do instead.
    pub async fn confirm(&self, consent: Consent) -> Result<(), ToolError> {
        let tool = self.tool.as_ref();
        if self.app.tool_view().is_pre_approved(tool) {
            tracing::info!(tool, question = %consent.question, "pre-approved by the operator");
            return Ok(());
        }
        let key = consent.key(tool);
        // Without elicitation only an answer already given (a retried call) can approve.
        if !self.client_can_elicit() && self.input_response(&key).is_none() {
            return Err(cannot_ask(tool, &consent));
        }
        let request = InputRequest::Elicitation(ElicitRequest::new(consent.request()?));
        match self.ask_client(&key, request, ANSWER_WITHIN).await? {
            ClientAnswer::Given(answer) => judge(&consent, &answer),
            ClientAnswer::Failed(why) => Err(ToolError::rejected(
                format!(
                    "{} The client could not ask you ({why}), so nothing was done.",
                    consent.question
                ),
                "Try again; if your client can't show questions, the operator can pre-approve this tool with COMFYUI_AGENT_PRE_APPROVE.",
            )),
            ClientAnswer::TimedOut => Err(ToolError::rejected(
                format!(
                    "{} No answer came within {} minutes, so nothing was done.",
                    consent.question,
                    ANSWER_WITHIN.as_secs() / 60
                ),
                "Call the tool again when you are ready to answer.",
            )),
        }
    }
}

fn judge(consent: &Consent, answer: &Value) -> Result<(), ToolError> {
    match serde_json::from_value::<ElicitResult>(answer.clone()) {
        Ok(result) => judge_result(consent, &result),
        Err(error) => Err(ToolError::rejected(
            format!(
                "{} The answer the client sent is not an elicitation result ({error}), so nothing was done.",
                consent.question
            ),
            "Answer the question again.",
        )),
    }
}

fn judge_result(consent: &Consent, result: &ElicitResult) -> Result<(), ToolError> {
    let confirmed = result
        .content
        .as_ref()
        .and_then(|content| content.get("confirm"))
        .and_then(Value::as_bool)
        == Some(true);
    match result.action {
        ElicitationAction::Accept if confirmed => Ok(()),
        ElicitationAction::Accept | ElicitationAction::Decline => Err(ToolError::rejected(
            format!("You said no to: {} Nothing was changed.", consent.question),
            "",
        )),
        _ => Err(ToolError::rejected(
            format!("You cancelled: {} Nothing was changed.", consent.question),
            "",
        )),
    }
}

fn cannot_ask(tool: &str, consent: &Consent) -> ToolError {
    ToolError::rejected(
        format!(
            "{} {} needs your OK for this, and this client can't ask you (it does not support \
             elicitation), so nothing was done.",
            consent.question, tool
        ),
        format!(
            "Use a client that can show questions, or have the operator pre-approve it by \
             adding {tool} to COMFYUI_AGENT_PRE_APPROVE."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent() -> Consent {
        Consent::new("Overwrite a.json?", "Its content will be replaced.")
    }

    #[test]
    fn the_same_question_keeps_its_key_and_another_gets_another() {
        assert_eq!(
            consent().key("save_workflow"),
            consent().key("save_workflow")
        );
        assert_ne!(
            consent().key("save_workflow"),
            consent().key("write_image_metadata")
        );
        let other = Consent::new("Overwrite b.json?", "");
        assert_ne!(consent().key("save_workflow"), other.key("save_workflow"));
        assert!(consent().key("x").starts_with("confirm-"));
    }

    #[test]
    fn only_an_accepted_yes_goes_ahead() {
        let yes = json!({ "action": "accept", "content": { "confirm": true } });
        assert!(judge(&consent(), &yes).is_ok());
        for no in [
            json!({ "action": "accept", "content": { "confirm": false } }),
            json!({ "action": "accept" }),
            json!({ "action": "decline" }),
            json!({ "action": "cancel" }),
            json!({ "confirm": true }),
            json!("yes"),
        ] {
            let error = judge(&consent(), &no).expect_err("refused");
            assert!(
                error.user_message().contains("Overwrite a.json?"),
                "{}",
                error.user_message()
            );
        }
    }

    #[test]
    fn the_form_asks_for_one_boolean_defaulting_to_no() {
        let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = consent().request().expect("form")
        else {
            panic!("a form");
        };
        assert!(message.starts_with("Overwrite a.json?"));
        let schema = serde_json::to_value(requested_schema).expect("json");
        assert_eq!(schema["properties"]["confirm"]["type"], "boolean");
        assert_eq!(schema["properties"]["confirm"]["default"], false);
        assert_eq!(schema["required"], json!(["confirm"]));
    }
}
