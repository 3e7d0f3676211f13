//! Why a web source gave no answer, in words an artist can act on.

use std::time::Duration;

use super::Source;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WebError {
    #[error("{site} wasn't asked: this server is set to work offline")]
    Offline { site: Source },
    #[error("{site} couldn't be reached ({detail})")]
    Unreachable { site: Source, detail: String },
    #[error("{site} didn't answer within {} seconds", after.as_secs())]
    Timeout { site: Source, after: Duration },
    #[error("{site} is limiting how often it may be asked")]
    RateLimited {
        site: Source,
        /// Seconds the source asked us to wait, when it said.
        retry_after: Option<u64>,
        /// Whether our own limit (not the source's) stopped the request.
        ours: bool,
    },
    #[error("{site} has no such item")]
    NotFound { site: Source },
    #[error("{site} refused the request (HTTP {status})")]
    Refused {
        site: Source,
        status: u16,
        had_key: bool,
    },
    #[error("{site} answered with HTTP {status}")]
    Status { site: Source, status: u16 },
    #[error("{site} sent an answer that isn't the JSON expected ({detail})")]
    Malformed { site: Source, detail: String },
    #[error("{site}'s answer was larger than {} MiB", limit / (1024 * 1024))]
    TooLarge { site: Source, limit: usize },
    #[error("the key set for {site} can't be sent in a request header")]
    BadKey { site: Source },
    #[error("the request to {site} couldn't be built: {detail}")]
    BadRequest { site: Source, detail: String },
}

impl WebError {
    /// The source that failed.
    pub fn site(&self) -> Source {
        match self {
            Self::Offline { site }
            | Self::Unreachable { site, .. }
            | Self::Timeout { site, .. }
            | Self::RateLimited { site, .. }
            | Self::NotFound { site }
            | Self::Refused { site, .. }
            | Self::Status { site, .. }
            | Self::Malformed { site, .. }
            | Self::TooLarge { site, .. }
            | Self::BadKey { site }
            | Self::BadRequest { site, .. } => *site,
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Offline { .. } => "web_offline",
            Self::Unreachable { .. } => "web_unreachable",
            Self::Timeout { .. } => "web_timeout",
            Self::RateLimited { .. } => "web_rate_limited",
            Self::NotFound { .. } => "web_not_found",
            Self::Refused { .. } => "web_refused",
            Self::Status { .. } => "web_status",
            Self::Malformed { .. } => "web_malformed",
            Self::TooLarge { .. } => "web_too_large",
            Self::BadKey { .. } => "web_bad_key",
            Self::BadRequest { .. } => "web_bad_request",
        }
    }

    /// What happened, then what to do next.
    pub fn user_message(&self) -> String {
        let mut text = self.to_string();
        if let Some(first) = text.get(..1) {
            let upper = first.to_uppercase();
            text.replace_range(..1, &upper);
        }
        format!("{text}.\n{}", self.hint())
    }

    fn hint(&self) -> String {
        let source = self.site();
        match self {
            Self::Offline { .. } => format!(
                "Unset {} to let the server look things up online.",
                crate::config::ENV_OFFLINE
            ),
            Self::Unreachable { .. } => format!(
                "Check this machine's internet connection (or proxy). If {} should be reached at \
                 another address, set {}.",
                source.label(),
                source.url_setting()
            ),
            Self::Timeout { .. } => {
                "The site may be slow or busy right now; try again in a minute.".into()
            }
            Self::RateLimited {
                retry_after, ours, ..
            } => {
                let wait = match retry_after {
                    Some(seconds) => format!("Wait about {seconds} seconds and try again."),
                    None => "Wait a minute and try again.".into(),
                };
                match (ours, source.key_settings().first()) {
                    (false, Some(key)) => format!(
                        "{wait} Setting {key} raises the limit {} allows.",
                        source.label()
                    ),
                    _ => wait,
                }
            }
            Self::NotFound { .. } => "Check the name or id and try again.".into(),
            Self::Refused { had_key: true, .. } => match source.key_settings().first() {
                Some(key) => format!("Check that {key} holds a valid, unexpired key."),
                None => "This source doesn't accept the request; try again later.".into(),
            },
            Self::Refused { had_key: false, .. } => match source.key_settings().first() {
                Some(key) => format!("This may need an account: set {key} to your API key."),
                None => "This source doesn't accept the request; try again later.".into(),
            },
            Self::Status { status, .. } if *status >= 500 => {
                format!("{} is having trouble; try again later.", source.label())
            }
            Self::Status { .. } | Self::Malformed { .. } | Self::TooLarge { .. } => format!(
                "If {} points at a mirror, check that it serves the same API.",
                source.url_setting()
            ),
            Self::BadKey { .. } => format!(
                "Check {} for stray spaces or line breaks.",
                source.key_settings().join(" or ")
            ),
            Self::BadRequest { .. } => "Check the name or id you gave and try again.".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened_and_what_to_do() {
        let error = WebError::RateLimited {
            site: Source::CivitAi,
            retry_after: Some(30),
            ours: false,
        };
        let text = error.user_message();
        assert!(text.starts_with("CivitAI is limiting"), "{text}");
        assert!(text.contains("Wait about 30 seconds"), "{text}");
        assert!(text.contains("CIVITAI_API_KEY"), "{text}");

        let text = WebError::Offline {
            site: Source::Registry,
        }
        .user_message();
        assert!(
            text.starts_with("The Comfy registry wasn't asked"),
            "{text}"
        );
        assert!(text.contains("COMFYUI_AGENT_OFFLINE"), "{text}");

        let text = WebError::Refused {
            site: Source::GitHub,
            status: 401,
            had_key: true,
        }
        .user_message();
        assert!(text.contains("GITHUB_TOKEN holds a valid"), "{text}");
    }
}
