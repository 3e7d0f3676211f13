//! Per-session state. stdio has one session per process; Streamable HTTP one per
//! `Mcp-Session-Id`; legacy SSE one per stream. Two sessions never share this.

// The logging level type is deprecated by SEP-2577 but still used by pre-2026 clients.
#![allow(deprecated)]

pub mod docs;
pub mod store;

use std::sync::Mutex;

use tokio::time::Instant;

use rmcp::model::LoggingLevel;

use crate::workflow::edit::EditState;

#[derive(Debug, Default)]
pub struct Session {
    /// The level set by `logging/setLevel`; `None` means the client asked for no logs.
    log_level: Mutex<Option<LoggingLevel>>,
    /// The workflow under edit, with its base and undo history. Held across a tool's whole
    /// edit, so two calls in one session apply in order.
    pub workflow: WorkflowSlot,
    /// The name this session's memory (plan, intent, iterations, outcomes…) is kept under
    /// on disk. Unset means [`DEFAULT_NAME`]: stdio (one client per process, so its plan
    /// survives a restart of the client) and detached contexts. HTTP and SSE connections
    /// get a name of their own at `initialize`; named sessions are their name.
    scope: std::sync::OnceLock<store::SessionName>,
    /// The pipeline run in progress, for get_pipeline_status while run_pipeline works.
    pub pipeline: crate::pipeline::Live,
}

impl Session {
    pub fn log_level(&self) -> Option<LoggingLevel> {
        *self.log_level.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_log_level(&self, level: LoggingLevel) {
        *self.log_level.lock().unwrap_or_else(|p| p.into_inner()) = Some(level);
    }

    /// The name this session's memory is kept under (see the field).
    pub fn scope(&self) -> store::SessionName {
        self.scope
            .get()
            .cloned()
            .unwrap_or_else(store::SessionName::default_name)
    }

    /// Names this session's memory, once; later calls keep the first name.
    pub fn set_scope(&self, scope: store::SessionName) {
        let _ = self.scope.set(scope);
    }
}

/// A session's workflow behind a lock that tells watchers (resource subscriptions) when
/// it really changed: a patch, an undo, a reset, or a new workflow loaded in its place.
#[derive(Debug)]
pub struct WorkflowSlot {
    state: tokio::sync::Mutex<Option<EditState>>,
    /// Bumped once per guard that changed the workflow.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for WorkflowSlot {
    fn default() -> Self {
        Self {
            state: tokio::sync::Mutex::default(),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl WorkflowSlot {
    /// Waits for the workflow; other calls on this session wait until the guard drops.
    pub async fn lock(&self) -> WorkflowGuard<'_> {
        let guard = self.state.lock().await;
        let before = guard.as_ref().map(EditState::revision);
        WorkflowGuard {
            guard,
            before,
            replaced: false,
            changes: &self.changes,
        }
    }

    /// A receiver that sees a new value after each change.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The locked workflow. Reads go through `Deref`; changes through [`Self::as_mut`],
/// [`Self::set`] and [`Self::take`], so that none goes unnoticed.
#[derive(Debug)]
pub struct WorkflowGuard<'a> {
    guard: tokio::sync::MutexGuard<'a, Option<EditState>>,
    before: Option<u64>,
    replaced: bool,
    changes: &'a tokio::sync::watch::Sender<u64>,
}

impl WorkflowGuard<'_> {
    /// The workflow to edit in place, if there is one.
    pub fn as_mut(&mut self) -> Option<&mut EditState> {
        self.guard.as_mut()
    }

    /// Puts a newly loaded workflow in place of the current one.
    pub fn set(&mut self, state: EditState) {
        *self.guard = Some(state);
        self.replaced = true;
    }

    /// Removes the workflow.
    pub fn take(&mut self) -> Option<EditState> {
        let taken = self.guard.take();
        self.replaced |= taken.is_some();
        taken
    }
}

impl std::ops::Deref for WorkflowGuard<'_> {
    type Target = Option<EditState>;

    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl Drop for WorkflowGuard<'_> {
    fn drop(&mut self) {
        let after = self.guard.as_ref().map(EditState::revision);
        if self.replaced || after != self.before {
            self.changes.send_modify(|revision| *revision += 1);
        }
    }
}

/// Sessions addressed by name: by tools given a `session` argument, and by stateless clients
/// (protocol 2026-07-28), whose requests carry no connection to hang state on. Shared by every
/// connection; a name not used for `idle` is forgotten (its saved copy on disk, if any, stays).
#[derive(Debug)]
pub struct NamedSessions {
    idle: std::time::Duration,
    sessions: Mutex<std::collections::HashMap<String, (std::sync::Arc<Session>, Instant)>>,
}

/// The name stateless requests use when they give none.
pub const DEFAULT_NAME: &str = "default";

impl NamedSessions {
    pub fn new(idle: std::time::Duration) -> Self {
        Self {
            idle,
            sessions: Mutex::default(),
        }
    }

    /// The session called `name`, created on first use. Sessions idle for longer than the
    /// limit are dropped on the way.
    pub fn get(&self, name: &str) -> std::sync::Arc<Session> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let idle = self.idle;
        sessions.retain(|_, (_, used)| now.duration_since(*used) < idle);
        let entry = sessions.entry(name.to_string()).or_insert_with(|| {
            let session = Session::default();
            if let Ok(scope) = store::SessionName::parse(name) {
                session.set_scope(scope);
            }
            (std::sync::Arc::new(session), now)
        });
        entry.1 = now;
        std::sync::Arc::clone(&entry.0)
    }

    /// The session called `name` if it is in memory, without creating it.
    pub fn peek(&self, name: &str) -> Option<std::sync::Arc<Session>> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(name)
            .filter(|(_, used)| used.elapsed() < self.idle)
            .map(|(session, _)| std::sync::Arc::clone(session))
    }

    /// The names of the sessions in memory, sorted.
    pub fn names(&self) -> Vec<String> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = sessions
            .iter()
            .filter(|(_, (_, used))| used.elapsed() < self.idle)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// How many named sessions are in memory.
    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn named_sessions_are_shared_by_name_and_forgotten_when_idle() {
        let named = NamedSessions::new(std::time::Duration::from_secs(60));
        let a = named.get("a");
        a.set_log_level(LoggingLevel::Info);
        assert!(std::sync::Arc::ptr_eq(&a, &named.get("a")));
        assert!(!std::sync::Arc::ptr_eq(&a, &named.get("b")));
        tokio::time::advance(std::time::Duration::from_secs(30)).await;
        named.get("a");
        tokio::time::advance(std::time::Duration::from_secs(45)).await;
        // "b" was idle 75 s and goes; "a" was used 45 s ago and stays.
        let again = named.get("a");
        assert!(std::sync::Arc::ptr_eq(&a, &again));
        assert_eq!(named.len(), 1);
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        let fresh = named.get("a");
        assert!(
            !std::sync::Arc::ptr_eq(&a, &fresh),
            "idle too long: a new session"
        );
    }
}
