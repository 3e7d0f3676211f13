//! Why a call to ComfyUI failed, in words an artist can act on.

use std::time::Duration;

/// One failed call to ComfyUI.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ComfyError {
    /// No connection: refused, reset, unknown host.
    #[error("ComfyUI isn't answering at {url} ({detail})")]
    Unreachable {
        url: String,
        detail: String,
        hint: PortHint,
    },
    /// Recent calls all failed; this one was not attempted.
    #[error("ComfyUI isn't answering at {url}")]
    BreakerOpen {
        url: String,
        retry_in: Duration,
        failures: u32,
        hint: PortHint,
    },
    #[error("ComfyUI at {url} took longer than {} s to answer {what}", after.as_secs_f64())]
    Timeout {
        url: String,
        operation: &'static str,
        what: &'static str,
        after: Duration,
    },
    /// ComfyUI answered with an error status where the call has no better reading of it.
    #[error("ComfyUI answered {status} to {what}")]
    Status {
        url: String,
        what: &'static str,
        status: u16,
        body: String,
    },
    /// The live event connection dropped and could not be re-opened within the reconnect
    /// bound. Kept apart from `Unreachable` because queued work may well still be running.
    #[error("lost the live connection to ComfyUI at {url} and couldn't re-open it ({detail})")]
    ConnectionLost {
        url: String,
        attempts: u32,
        waited: Duration,
        detail: String,
        hint: PortHint,
    },
    /// ComfyUI has no such file (`GET /view` answered 404). ComfyUI itself is fine.
    #[error("ComfyUI has no file {file}")]
    FileNotFound { url: String, file: String },
    /// ComfyUI refused to serve a file: a name it won't take (400: empty, absolute, or with
    /// `..`) or a subfolder outside its folders (403).
    #[error("ComfyUI refused to serve {file} ({status})")]
    FileRefused {
        url: String,
        file: String,
        status: u16,
    },
    /// A file too large to send or to read: `size` is at least what it is, `limit` what this
    /// server allows.
    #[error("{what} is too large: at least {} MB, over the {} MB limit", size.div_ceil(1024 * 1024), limit / (1024 * 1024))]
    TooLarge {
        url: String,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// The answer was not what ComfyUI sends: probably another program on that address.
    #[error("ComfyUI's answer to {what} couldn't be read: {reason}")]
    BadAnswer {
        url: String,
        what: &'static str,
        reason: String,
    },
}

/// Which port advice fits: the ComfyUI Desktop app listens on 8000, the standalone and
/// portable builds on 8188.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortHint {
    /// The user set the address; mention the other usual port if theirs is one of them.
    Configured { port: Option<u16> },
    /// Nothing was set and both usual ports were tried.
    Discovered,
}

impl PortHint {
    fn advice(self) -> &'static str {
        match self {
            Self::Configured { port: Some(8188) } => {
                " If you use the ComfyUI Desktop app, it listens on port 8000: set COMFYUI_URL=http://127.0.0.1:8000."
            }
            Self::Configured { port: Some(8000) } => {
                " The standalone and portable ComfyUI listen on port 8188: set COMFYUI_URL=http://127.0.0.1:8188 if that's yours."
            }
            Self::Configured { .. } => "",
            Self::Discovered => {
                " (Looked on 127.0.0.1 ports 8188 and 8000, where the ComfyUI and ComfyUI Desktop apps listen.)"
            }
        }
    }
}

impl ComfyError {
    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "comfyui_unreachable",
            Self::BreakerOpen { .. } => "comfyui_unreachable",
            Self::ConnectionLost { .. } => "comfyui_unreachable",
            Self::Timeout { .. } => "comfyui_timeout",
            Self::Status { .. } => "comfyui_error",
            Self::BadAnswer { .. } => "comfyui_bad_answer",
            Self::FileNotFound { .. } => "comfyui_file_not_found",
            Self::FileRefused { .. } => "comfyui_file_refused",
            Self::TooLarge { .. } => "comfyui_too_large",
        }
    }

    /// Whether ComfyUI is down (as opposed to up and unhappy).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::BreakerOpen { .. } | Self::ConnectionLost { .. }
        )
    }

    /// What happened, why, and the next step.
    pub fn user_message(&self) -> String {
        match self {
            Self::Unreachable { url, detail, hint } => format!(
                "ComfyUI isn't answering at {url} ({detail}). Start ComfyUI, or set COMFYUI_URL if it runs elsewhere.{}",
                hint.advice()
            ),
            Self::BreakerOpen {
                url,
                retry_in,
                failures,
                hint,
            } => {
                let when = if retry_in.is_zero() {
                    "a check is under way now".to_string()
                } else {
                    format!("the next check is in {} s", retry_in.as_secs_f64().ceil())
                };
                format!(
                    "ComfyUI isn't answering at {url}: the last {failures} attempts failed, so this call wasn't tried ({when}). Start ComfyUI, or set COMFYUI_URL if it runs elsewhere.{}",
                    hint.advice()
                )
            }
            Self::Timeout {
                operation, after, ..
            } => format!(
                "{self}. It may be busy loading a model or running a large job; try again in a moment, or allow more time with COMFYUI_AGENT_TIMEOUTS={operation}={}.",
                (after.as_secs() * 2).max(10)
            ),
            Self::Status { status, body, .. } => {
                let body = snippet(body);
                let said = if body.is_empty() {
                    String::new()
                } else {
                    format!(": {body}")
                };
                let next = match status {
                    401 | 407 => {
                        "ComfyUI (or a proxy in front of it) wants credentials: set COMFYUI_AUTH_TOKEN (and COMFYUI_AUTH_HEADER if it isn't Authorization)."
                    }
                    403 => {
                        "ComfyUI (or a proxy in front of it) refused the request. Check COMFYUI_AUTH_TOKEN if it needs one, and that COMFYUI_URL is right."
                    }
                    404 => {
                        "This ComfyUI doesn't offer that; it may be an older version, or COMFYUI_URL may point at the wrong place (a reverse proxy needs its base path, like https://host/comfy/)."
                    }
                    413 => {
                        "The upload is larger than ComfyUI accepts (100 MB by default): send a smaller or more compressed image (a JPEG or WEBP instead of a PNG), or start ComfyUI with a larger --max-upload-size."
                    }
                    500..=599 => {
                        "ComfyUI hit an internal error; its console window or log shows the details. Try again, or restart ComfyUI if it keeps happening."
                    }
                    _ => "Check the request and try again.",
                };
                format!("{self}{said}. {next}")
            }
            Self::ConnectionLost {
                url,
                attempts,
                waited,
                detail,
                hint,
            } => format!(
                "Lost the live connection to ComfyUI at {url}: {attempts} attempts to re-open it over {} s failed ({detail}). Work already queued may still be running or finished; once ComfyUI answers again, check it with get_execution_status or get_history. If ComfyUI was closed, start it again, or set COMFYUI_URL if it runs elsewhere.{}",
                waited.as_secs_f64().ceil(),
                hint.advice()
            ),
            Self::BadAnswer { url, .. } => format!(
                "{self}. Check that COMFYUI_URL ({url}) points at ComfyUI itself and not another web app."
            ),
            Self::FileNotFound { .. } => format!(
                "{self}. Check the file name, subfolder and folder type (output, input or temp) against the run's outputs (get_history lists them); temp previews are removed when ComfyUI restarts."
            ),
            Self::FileRefused { status, .. } => {
                let next = if *status == 403 {
                    "The subfolder points outside ComfyUI's folders, or a proxy in front of ComfyUI refused the request (check COMFYUI_AUTH_TOKEN if it needs one)."
                } else {
                    "ComfyUI takes a plain file name (not empty, not starting with /, without ..) plus a subfolder inside its output, input or temp folder."
                };
                format!("{self}. {next}")
            }
            Self::TooLarge { what, .. } => {
                let next = if *what == "the image upload" {
                    "Send a smaller or more compressed image (a JPEG or WEBP instead of a PNG); ComfyUI accepts 100 MB by default."
                } else {
                    "Open it from ComfyUI's folder directly (get_output_path gives its location), or ask for a smaller output."
                };
                format!("{self}. {next}")
            }
        }
    }
}

/// The first 200 characters of a body, on one line.
pub fn snippet(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 200 {
        format!("{}…", flat.chars().take(200).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_says_what_to_do_and_which_port() {
        let error = ComfyError::Unreachable {
            url: "http://127.0.0.1:8188/".into(),
            detail: "connection refused".into(),
            hint: PortHint::Configured { port: Some(8188) },
        };
        let text = error.user_message();
        assert!(text.starts_with("ComfyUI isn't answering at http://127.0.0.1:8188/"));
        assert!(text.contains("Start ComfyUI, or set COMFYUI_URL if it runs elsewhere."));
        assert!(text.contains("port 8000"));
        let other = ComfyError::Unreachable {
            url: "http://gpu-box:9000/".into(),
            detail: "connection refused".into(),
            hint: PortHint::Configured { port: Some(9000) },
        };
        assert!(!other.user_message().contains("8000"));
    }

    #[test]
    fn breaker_open_says_when_the_next_try_is() {
        let error = ComfyError::BreakerOpen {
            url: "http://127.0.0.1:8188/".into(),
            retry_in: Duration::from_millis(4200),
            failures: 5,
            hint: PortHint::Discovered,
        };
        let text = error.user_message();
        assert!(text.contains("the last 5 attempts failed"), "{text}");
        assert!(text.contains("next check is in 5 s"), "{text}");
        assert!(text.contains("8188 and 8000"));
        assert_eq!(error.kind(), "comfyui_unreachable");
    }

    #[test]
    fn a_lost_connection_points_at_the_queued_work() {
        let error = ComfyError::ConnectionLost {
            url: "http://127.0.0.1:8000/".into(),
            attempts: 10,
            waited: Duration::from_millis(59_200),
            detail: "connection refused".into(),
            hint: PortHint::Configured { port: Some(8000) },
        };
        let text = error.user_message();
        assert!(
            text.contains("10 attempts to re-open it over 60 s failed"),
            "{text}"
        );
        assert!(text.contains("get_execution_status"), "{text}");
        assert!(text.contains("port 8188"), "{text}");
        assert!(error.is_unreachable());
        assert_eq!(error.kind(), "comfyui_unreachable");
    }

    #[test]
    fn status_errors_quote_the_body_briefly_and_advise() {
        let error = ComfyError::Status {
            url: "u".into(),
            what: "the node list",
            status: 500,
            body: format!("500 Internal Server Error\n\n{}", "x".repeat(500)),
        };
        let text = error.user_message();
        assert!(
            text.starts_with("ComfyUI answered 500 to the node list: 500 Internal Server Error x")
        );
        assert!(text.contains('…'));
        assert!(text.contains("console"));
        let timeout = ComfyError::Timeout {
            url: "http://h/".into(),
            operation: "object_info",
            what: "the node list",
            after: Duration::from_secs(30),
        };
        assert!(
            timeout
                .user_message()
                .contains("COMFYUI_AGENT_TIMEOUTS=object_info=60")
        );
    }
}
