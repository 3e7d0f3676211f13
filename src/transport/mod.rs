//! Transports: stdio, Streamable HTTP (`/mcp`) and the legacy HTTP+SSE bridge. All of them
//! frame JSON-RPC themselves where rmcp would drop or mis-answer malformed input, and all of
//! them feed the same rmcp `ServerHandler`.

pub mod console;
pub mod http;
pub mod legacy_sse;
pub mod stdio;

use rmcp::model::ClientJsonRpcMessage;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The hard limit between a shutdown signal and exit (the process promises 10 s).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(9);

/// How long in-flight tool calls get to finish before sessions are closed under them.
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(8);

/// The two phases of a graceful stop.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Fired by the signal: stop accepting connections, report not ready.
    pub requested: CancellationToken,
    /// Fired once in-flight calls have finished (or the drain time ran out): close sessions
    /// and their streams.
    pub sessions: CancellationToken,
}

impl Shutdown {
    /// One token for both phases, for servers with nothing to drain (test fixtures).
    pub fn immediate(token: CancellationToken) -> Self {
        Self {
            requested: token.clone(),
            sessions: token,
        }
    }
}

/// A JSON-RPC error response for input that never became a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: i64,
    pub id: Value,
    pub message: String,
}

impl Rejection {
    pub fn to_json(&self) -> String {
        json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": { "code": self.code, "message": self.message },
        })
        .to_string()
    }
}

/// rmcp ends a session whose first message is not a request, so a stray notification or
/// response before the first request is dropped (JSON-RPC answers neither) instead.
#[derive(Debug, Default)]
pub(crate) struct StartGate {
    started: bool,
}

impl StartGate {
    /// Whether `message` may go on to rmcp.
    pub(crate) fn admit(&mut self, message: &ClientJsonRpcMessage) -> bool {
        if matches!(message, ClientJsonRpcMessage::Request(_)) {
            self.started = true;
        }
        if !self.started {
            tracing::debug!("dropped a notification or response sent before the first request");
        }
        self.started
    }
}

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;

/// Decodes one JSON-RPC message, or says precisely why it isn't one. The fast path is a
/// single typed parse; the diagnosis runs only on failure.
pub fn decode(bytes: &[u8]) -> Result<ClientJsonRpcMessage, Rejection> {
    let error = match serde_json::from_slice::<ClientJsonRpcMessage>(bytes) {
        Ok(message) => return Ok(message),
        Err(error) => error,
    };
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(parse) => {
            return Err(Rejection {
                code: PARSE_ERROR,
                id: Value::Null,
                message: format!(
                    "Parse error: the message is not valid JSON ({parse}). Send one JSON-RPC \
                     message as a single line of JSON."
                ),
            });
        }
    };
    let id = value
        .get("id")
        .filter(|id| id.is_string() || id.is_number())
        .cloned()
        .unwrap_or(Value::Null);
    let message = match &value {
        Value::Array(_) => "Invalid request: JSON-RPC batches are not supported; send one \
                            message at a time."
            .to_string(),
        Value::Object(object) if object.get("jsonrpc") != Some(&Value::from("2.0")) => {
            "Invalid request: the message must have \"jsonrpc\": \"2.0\".".to_string()
        }
        Value::Object(object) if !object.contains_key("method") && !object.contains_key("result") && !object.contains_key("error") => {
            "Invalid request: the message needs a \"method\" (or a \"result\" or \"error\" if it is a response).".to_string()
        }
        Value::Object(_) => format!("Invalid request: {error}."),
        _ => "Invalid request: a JSON-RPC message is a JSON object.".to_string(),
    };
    Err(Rejection {
        code: INVALID_REQUEST,
        id,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_messages_decode() {
        let message = decode(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).expect("ping");
        assert!(matches!(message, ClientJsonRpcMessage::Request(_)));
        let message = decode(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .expect("notification");
        assert!(matches!(message, ClientJsonRpcMessage::Notification(_)));
    }

    #[test]
    fn malformed_json_is_a_parse_error_with_null_id() {
        let rejection = decode(b"{not json").expect_err("parse error");
        assert_eq!(rejection.code, PARSE_ERROR);
        assert_eq!(rejection.id, Value::Null);
        let body: Value = serde_json::from_str(&rejection.to_json()).expect("json");
        assert_eq!(body["id"], Value::Null);
        assert_eq!(body["error"]["code"], -32700);
    }

    #[test]
    fn batches_and_non_objects_are_invalid_requests() {
        let rejection =
            decode(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).expect_err("batch");
        assert_eq!(rejection.code, INVALID_REQUEST);
        assert!(rejection.message.contains("batches"));
        assert_eq!(decode(b"42").expect_err("number").code, INVALID_REQUEST);
    }

    #[test]
    fn invalid_requests_keep_their_id() {
        let rejection =
            decode(br#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#).expect_err("version");
        assert_eq!(rejection.id, Value::from("a"));
        assert_eq!(rejection.code, INVALID_REQUEST);
        let rejection = decode(br#"{"jsonrpc":"2.0","id":7}"#).expect_err("no method");
        assert_eq!(rejection.id, Value::from(7));
    }
}
