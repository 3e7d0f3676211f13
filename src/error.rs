//! Typed errors. Each error knows the sentence an artist reads and the next step to take;
//! they are turned into protocol shapes once, at the edge (`registry.rs` and the transports).

use std::path::PathBuf;

/// A setting that cannot be used. Start-up stops with this one line.
#[derive(Debug, thiserror::Error)]
#[error("{setting} is set to {value:?}, {problem}. {fix}")]
pub struct ConfigError {
    /// The environment variable or flag, e.g. `COMFYUI_URL`.
    pub setting: &'static str,
    /// The value as given (never a secret: tokens are described, not echoed).
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
    /// What to do instead.
    pub fix: String,
}

impl ConfigError {
    pub fn new(
        setting: &'static str,
        value: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            setting,
            value: value.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "cannot listen on {addr}: {source}. Pick a free port with --bind or COMFYUI_AGENT_BIND."
    )]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    #[error("tool registry is inconsistent: {0}")]
    Registry(String),
    #[error(transparent)]
    Comfy(#[from] crate::comfy::ClientSetupError),
    #[error("cannot set up the client for web sources: {0}")]
    WebSetup(String),
    /// `healthcheck` found the server down or unhealthy (exit status 1, not 2).
    #[error("{0}")]
    Unhealthy(String),
}

/// One problem with a tool's arguments, found by schema validation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArgumentProblem {
    /// Where in the arguments, e.g. `models[2]`; empty for the arguments object itself.
    pub field: String,
    /// What the tool expected there.
    pub expected: String,
    /// What it got instead.
    pub got: String,
}

impl std::fmt::Display for ArgumentProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = if self.field.is_empty() {
            "the arguments"
        } else {
            &self.field
        };
        write!(f, "{field}: expected {}, got {}", self.expected, self.got)
    }
}

/// Why a path from a client was refused or could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("{path} is outside the folders this server may use ({roots})")]
    OutsideRoots { path: String, roots: String },
    #[error("{path} does not exist")]
    NotFound { path: String },
    #[error("{path} is a folder, not a file")]
    NotAFile { path: String },
    #[error("{path} can't be written: the folder {folder} does not exist")]
    NoFolder { path: String, folder: String },
    #[error("{path} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path} could not be read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Everything a tool can fail with. Mapped to an `isError: true` result by the registry.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("The arguments don't fit this tool")]
    InvalidArguments(Vec<ArgumentProblem>),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("{path} is not a usable workflow file: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("{message}")]
    Rejected { message: String, hint: String },
    #[error(transparent)]
    Comfy(#[from] crate::comfy::ComfyError),
    #[error(transparent)]
    Web(#[from] crate::web::WebError),
    #[error("the call was cancelled")]
    Cancelled,
    /// The call can finish only once the user answers a question (2026-07-28 clients get
    /// an `input_required` result and retry with the answer).
    #[error("this call needs your answer before it can go on")]
    NeedsInput {
        key: String,
        request: Box<rmcp::model::InputRequest>,
        /// Echoed back by the client with the answer (`requestState`): what earlier rounds
        /// of this call learned.
        state: Option<String>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ToolError {
    /// A request the tool understood but cannot act on, with what to do instead.
    pub fn rejected(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Rejected {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A short, stable, low-cardinality name for logs and metrics (`error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidArguments(_) => "invalid_arguments",
            Self::Path(PathError::OutsideRoots { .. }) => "path_not_allowed",
            Self::Path(PathError::NotFound { .. }) => "not_found",
            Self::Path(_) => "path_error",
            Self::BadFile { .. } => "bad_file",
            Self::Rejected { .. } => "rejected",
            Self::Comfy(error) => error.kind(),
            Self::Web(error) => error.kind(),
            Self::Cancelled => "cancelled",
            Self::NeedsInput { .. } => "input_required",
            Self::Internal(_) => "internal",
        }
    }

    /// The full message an artist reads: what happened, then the next step.
    pub fn user_message(&self) -> String {
        match self {
            Self::InvalidArguments(problems) => {
                let mut text = String::from("The arguments don't fit this tool:");
                for problem in problems {
                    text.push_str("\n- ");
                    text.push_str(&problem.to_string());
                }
                text.push_str("\nFix these and call the tool again.");
                text
            }
            Self::Rejected { message, hint } if hint.is_empty() => message.clone(),
            Self::Rejected { message, hint } => format!("{message}\n{hint}"),
            Self::Comfy(error) => error.user_message(),
            Self::Web(error) => error.user_message(),
            other => format!("{}\n{}", capitalise(&other.to_string()), other.hint()),
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Self::Path(PathError::OutsideRoots { .. }) => {
                "Use a file inside one of those folders, or let the server use its folder: set COMFYUI_DIR to your ComfyUI folder, or add the folder to COMFYUI_AGENT_ALLOWED_ROOTS."
            }
            Self::Path(PathError::NotFound { .. }) | Self::Path(PathError::NotAFile { .. }) => {
                "Check the path (absolute, or relative to the ComfyUI folder) and try again."
            }
            Self::Path(PathError::NoFolder { .. }) => {
                "Create that folder first, or save into an existing folder such as the ComfyUI folder's user/default/workflows."
            }
            Self::Path(PathError::Empty) => "Pass the path of a file.",
            Self::Path(PathError::TooLarge { .. }) => "Use a smaller file.",
            Self::Path(PathError::Io { .. }) => "Check the file's permissions and try again.",
            Self::BadFile { .. } => {
                "Export the workflow again from ComfyUI (Save or Export (API)) and pass that file."
            }
            Self::Cancelled => {
                "The call was stopped before it finished; call the tool again if you still need it."
            }
            Self::NeedsInput { .. } => {
                "Answer the question your client shows, then the call goes on."
            }
            Self::Internal(_) => {
                "This is a bug in comfyui-agent; the server keeps running. Please report it with the server log."
            }
            Self::InvalidArguments(_) | Self::Rejected { .. } | Self::Comfy(_) | Self::Web(_) => "",
        }
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Edit, patch and load errors already say what to do next; they reach the artist as they are.
impl From<crate::workflow::edit::EditError> for ToolError {
    fn from(error: crate::workflow::edit::EditError) -> Self {
        Self::rejected(error.to_string(), "")
    }
}

impl From<crate::workflow::patch::PatchError> for ToolError {
    fn from(error: crate::workflow::patch::PatchError) -> Self {
        Self::rejected(error.to_string(), "")
    }
}

/// A refused prompt keeps ComfyUI's own words, rendered node by node; a ComfyUI that is down
/// is reported like any other unreachable call.
impl From<crate::comfy::SubmitError> for ToolError {
    fn from(error: crate::comfy::SubmitError) -> Self {
        match error {
            crate::comfy::SubmitError::Comfy(error) => Self::Comfy(error),
            other => Self::rejected(other.user_message(), ""),
        }
    }
}

impl From<crate::session::store::StoreError> for ToolError {
    fn from(error: crate::session::store::StoreError) -> Self {
        Self::rejected(error.to_string(), error.hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_error_names_setting_value_and_fix_in_one_line() {
        let error = ConfigError::new(
            "COMFYUI_URL",
            "ftp://x",
            "which is not an http or https address",
            "Set it to something like http://127.0.0.1:8188.",
        );
        let line = error.to_string();
        assert_eq!(
            line,
            "COMFYUI_URL is set to \"ftp://x\", which is not an http or https address. Set it to something like http://127.0.0.1:8188."
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn invalid_arguments_list_every_problem() {
        let error = ToolError::InvalidArguments(vec![
            ArgumentProblem {
                field: "model_name".into(),
                expected: "a string".into(),
                got: "42 (a number)".into(),
            },
            ArgumentProblem {
                field: String::new(),
                expected: "no parameter named \"x\"".into(),
                got: "\"x\"".into(),
            },
        ]);
        let text = error.user_message();
        assert!(text.contains("- model_name: expected a string, got 42 (a number)"));
        assert!(text.contains("- the arguments: expected no parameter named"));
        assert_eq!(error.kind(), "invalid_arguments");
    }

    #[test]
    fn path_errors_carry_a_next_step() {
        let error = ToolError::from(PathError::OutsideRoots {
            path: "/etc/passwd".into(),
            roots: "/home/me/ComfyUI".into(),
        });
        let text = error.user_message();
        assert!(text.starts_with("/etc/passwd is outside"));
        assert!(text.contains("COMFYUI_AGENT_ALLOWED_ROOTS"));
        assert_eq!(error.kind(), "path_not_allowed");
    }
}
