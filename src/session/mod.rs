//! Per-session state. stdio has one session per process; Streamable HTTP one per
//! `Mcp-Session-Id`; legacy SSE one per stream. Two sessions never share this.

// The logging level type is deprecated by SEP-2577 but still used by pre-2026 clients.
#![allow(deprecated)]

pub mod store;

use std::sync::Mutex;

use rmcp::model::LoggingLevel;

#[derive(Debug, Default)]
pub struct Session {
    /// The level set by `logging/setLevel`; `None` means the client asked for no logs.
    log_level: Mutex<Option<LoggingLevel>>,
}

impl Session {
    pub fn log_level(&self) -> Option<LoggingLevel> {
        *self.log_level.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_log_level(&self, level: LoggingLevel) {
        *self.log_level.lock().unwrap_or_else(|p| p.into_inner()) = Some(level);
    }
}
