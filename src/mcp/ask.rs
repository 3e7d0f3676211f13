//! Putting a request to the client (a question for the user, a message for its model) the
//! way this call's protocol allows: the answer a retried 2026-07-28 request already carries,
//! a task input request inside a task, an `input_required` result on 2026-07-28, or a
//! server-to-client request on sessions that began with `initialize`. Consent and the
//! vision tools both ask through here; each decides what the answer means.

// Sampling is deprecated by SEP-2577 but is how clients lend their model today.
#![allow(deprecated)]

use std::time::Duration;

use rmcp::model::InputRequest;
use serde_json::Value;

use super::ToolContext;
use crate::error::ToolError;

/// What came back.
#[derive(Debug)]
pub(crate) enum ClientAnswer {
    /// The client's result, as JSON (an `ElicitResult`, a `CreateMessageResult`…).
    Given(Value),
    /// The client answered with an error, or there is no client to ask; why.
    Failed(String),
    /// No answer within the time given.
    TimedOut,
}

impl ToolContext {
    /// Asks the client `request` under `key` (stable across retries of the same call).
    /// A 2026-07-28 request without the answer yet ends the call with
    /// [`ToolError::NeedsInput`]; the caller checks the client's capability first.
    pub(crate) async fn ask_client(
        &self,
        key: &str,
        request: InputRequest,
        within: Duration,
    ) -> Result<ClientAnswer, ToolError> {
        if let Some(answer) = self.client.responses.get(key) {
            return Ok(ClientAnswer::Given(answer.clone()));
        }
        if let Some(task) = &self.task {
            return task
                .0
                .request_input(key, request)
                .await
                .map(ClientAnswer::Given)
                .map_err(|_| ToolError::Cancelled);
        }
        if self.client.modern {
            return Err(ToolError::NeedsInput {
                key: key.to_string(),
                request: Box::new(request),
                state: None,
            });
        }
        let Some(peer) = &self.peer else {
            return Ok(ClientAnswer::Failed(
                "there is no client connection to ask".into(),
            ));
        };
        let json = |value: Result<Value, serde_json::Error>| value.map_err(|e| e.to_string());
        let asked = async {
            match request {
                InputRequest::Elicitation(request) => {
                    match peer.create_elicitation(request.params).await {
                        Ok(result) => json(serde_json::to_value(result)),
                        Err(error) => Err(error.to_string()),
                    }
                }
                InputRequest::CreateMessage(request) => {
                    match peer.create_message(request.params).await {
                        Ok(result) => json(serde_json::to_value(result)),
                        Err(error) => Err(error.to_string()),
                    }
                }
                InputRequest::ListRoots(_) => match peer.list_roots().await {
                    Ok(result) => json(serde_json::to_value(result)),
                    Err(error) => Err(error.to_string()),
                },
                other => Err(format!("this server can't send {other:?} to a client")),
            }
        };
        let answered = tokio::select! {
            biased;
            () = self.cancelled.cancelled() => return Err(ToolError::Cancelled),
            answered = tokio::time::timeout(within, asked) => answered,
        };
        Ok(match answered {
            Ok(Ok(value)) => ClientAnswer::Given(value),
            Ok(Err(why)) => ClientAnswer::Failed(why),
            Err(_) => ClientAnswer::TimedOut,
        })
    }
}
