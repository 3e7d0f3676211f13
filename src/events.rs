//! What changed in the server that a connected client may want to hear about: new
//! outputs from a run and a changed tool set. Session workflows have their own watch
//! (`session::WorkflowSlot`). The MCP layer turns these into list-changed and
//! resource-updated notifications for the clients that asked.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a slow listener may fall behind before it skips to the newest.
const FEED_CAPACITY: usize = 256;

/// How many recent outputs the server remembers for `comfyui://outputs/recent`.
pub const RECENT_OUTPUTS: usize = 50;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A run finished with new files; their `comfyui://output/...` links.
    NewOutputs(Vec<String>),
    /// The set of tools changed (an operator enabled or disabled some).
    ToolsChanged,
}

/// A file a run produced, as `comfyui://outputs/recent` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecentOutput {
    pub uri: String,
    pub filename: String,
    /// `output`, `temp` or `input`.
    pub folder: String,
    pub prompt_id: String,
    /// When the run finished (RFC 3339, UTC).
    pub finished_at: String,
}

/// The server-wide feed of changes, and the short list of recent outputs.
#[derive(Debug)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
    recent: Mutex<VecDeque<RecentOutput>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self {
            sender: broadcast::Sender::new(FEED_CAPACITY),
            recent: Mutex::default(),
        }
    }
}

impl ChangeFeed {
    /// Tells every listener; nobody listening is fine.
    pub fn publish(&self, change: Change) {
        let _ = self.sender.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// Remembers the files a run produced (newest first, bounded) and tells listeners.
    pub fn outputs_produced(&self, prompt_id: &str, files: Vec<(String, String, String)>) {
        if files.is_empty() {
            return;
        }
        let finished_at = crate::session::store::rfc3339_utc(SystemTime::now());
        let mut uris = Vec::with_capacity(files.len());
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            for (uri, folder, filename) in files {
                recent.retain(|known| known.uri != uri);
                recent.push_front(RecentOutput {
                    uri: uri.clone(),
                    filename,
                    folder,
                    prompt_id: prompt_id.to_string(),
                    finished_at: finished_at.clone(),
                });
                uris.push(uri);
            }
            recent.truncate(RECENT_OUTPUTS);
        }
        self.publish(Change::NewOutputs(uris));
    }

    /// The recent outputs, newest first.
    pub fn recent_outputs(&self) -> Vec<RecentOutput> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: usize) -> (String, String, String) {
        (
            format!("comfyui://output/output/img_{n}.png"),
            "output".into(),
            format!("img_{n}.png"),
        )
    }

    #[tokio::test]
    async fn outputs_are_remembered_newest_first_bounded_and_announced() {
        let feed = ChangeFeed::default();
        let mut listener = feed.subscribe();
        feed.outputs_produced("p1", vec![file(1), file(2)]);
        assert_eq!(
            listener.recv().await.expect("event"),
            Change::NewOutputs(vec![file(1).0, file(2).0])
        );
        for n in 3..(RECENT_OUTPUTS + 10) {
            feed.outputs_produced("p2", vec![file(n)]);
        }
        let recent = feed.recent_outputs();
        assert_eq!(recent.len(), RECENT_OUTPUTS);
        assert_eq!(
            recent[0].filename,
            format!("img_{}.png", RECENT_OUTPUTS + 9)
        );
        // The same file produced again moves to the front instead of repeating.
        feed.outputs_produced("p3", vec![file(RECENT_OUTPUTS)]);
        let recent = feed.recent_outputs();
        assert_eq!(recent[0].prompt_id, "p3");
        assert_eq!(
            recent
                .iter()
                .filter(|o| o.uri == file(RECENT_OUTPUTS).0)
                .count(),
            1
        );
    }

    #[test]
    fn a_run_without_files_announces_nothing() {
        let feed = ChangeFeed::default();
        let mut listener = feed.subscribe();
        feed.outputs_produced("p", Vec::new());
        assert!(listener.try_recv().is_err());
        assert!(feed.recent_outputs().is_empty());
    }
}
