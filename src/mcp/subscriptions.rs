//! Change notifications: `resources/subscribe` (sessions that began with `initialize`) and
//! `subscriptions/listen` (2026-07-28). Both watch the same sources: a session's workflow
//! slot (a patch, an undo, a new workflow) and the server's change feed (new outputs, a
//! changed tool set), and send only what the client asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::RoleServer;
use rmcp::model::{ErrorData, ResourceUpdatedNotificationParam, SubscriptionFilter};
use rmcp::service::{Peer, SubscriptionSink};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::resources::{RECENT_OUTPUTS_URI, Uri, Viewer, not_found, session_uri};
use crate::events::Change;

/// Where notifications go: the session's peer (legacy) or one listen request's stream.
#[derive(Debug, Clone)]
pub(super) enum Notifier {
    Peer(Peer<RoleServer>),
    Listen(SubscriptionSink),
}

impl Notifier {
    /// Sends `notifications/resources/updated`; false once the client is gone.
    async fn resource_updated(&self, uri: &str) -> bool {
        match self {
            Self::Peer(peer) => peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
                .is_ok(),
            Self::Listen(sink) => sink.notify_resource_updated(uri).await.is_ok(),
        }
    }

    async fn resource_list_changed(&self) -> bool {
        match self {
            Self::Peer(peer) => peer.notify_resource_list_changed().await.is_ok(),
            Self::Listen(sink) => sink.notify_resource_list_changed().await.is_ok(),
        }
    }

    async fn tool_list_changed(&self) -> bool {
        match self {
            Self::Peer(peer) => peer.notify_tool_list_changed().await.is_ok(),
            Self::Listen(sink) => sink.notify_tool_list_changed().await.is_ok(),
        }
    }
}

/// The subscriptions of one connection. Every watcher stops when the connection ends
/// (the last copy of its handler is dropped) or when its URI is unsubscribed.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    by_uri: Mutex<HashMap<String, CancellationToken>>,
    /// Cancelled when the connection's handler is dropped.
    connection: CancellationToken,
    /// Whether the list-changed forwarder runs.
    lists_started: std::sync::atomic::AtomicBool,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.connection.cancel();
    }
}

impl Subscriptions {
    /// `resources/subscribe`: watches `uri` for this connection (once; again is a no-op).
    pub(super) fn subscribe(
        &self,
        viewer: &Viewer,
        uri: &str,
        peer: Peer<RoleServer>,
    ) -> Result<(), ErrorData> {
        let watch = Watch::of(viewer, uri)?;
        let mut by_uri = self.by_uri.lock().unwrap_or_else(|p| p.into_inner());
        if by_uri.contains_key(uri) {
            return Ok(());
        }
        let stop = self.connection.child_token();
        by_uri.insert(uri.to_string(), stop.clone());
        tokio::spawn(watch.run(uri.to_string(), Notifier::Peer(peer), viewer.clone(), stop));
        Ok(())
    }

    /// `resources/unsubscribe`: unknown URIs are fine (nothing to stop).
    pub(super) fn unsubscribe(&self, uri: &str) {
        if let Some(stop) = self
            .by_uri
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uri)
        {
            stop.cancel();
        }
    }

    /// Starts forwarding list changes (new outputs, a changed tool set) to a session's
    /// peer, once per connection.
    pub(super) fn forward_list_changes(&self, viewer: &Viewer, peer: Peer<RoleServer>) {
        if self
            .lists_started
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let stop = self.connection.child_token();
        let feed = viewer.app.changes().subscribe();
        tokio::spawn(forward_lists(feed, Notifier::Peer(peer), true, true, stop));
    }
}

/// What a listen request (2026-07-28) may receive from us: list changes for tools and
/// resources, and updates for the resources we can watch. Prompts never change.
pub(super) fn accepted_filter(requested: &SubscriptionFilter) -> SubscriptionFilter {
    let mut accepted = SubscriptionFilter::new();
    accepted.tools_list_changed = requested.tools_list_changed;
    accepted.resources_list_changed = requested.resources_list_changed;
    accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
        uris.iter()
            .filter(|uri| Uri::parse(uri).is_some())
            .cloned()
            .collect()
    });
    accepted
}

/// Serves one `subscriptions/listen` request until the client ends it.
pub(super) async fn listen(
    viewer: Viewer,
    accepted: SubscriptionFilter,
    sink: SubscriptionSink,
    ended: CancellationToken,
) {
    let stop = ended.child_token();
    for uri in accepted.resource_subscriptions.iter().flatten() {
        if let Ok(watch) = Watch::of(&viewer, uri) {
            tokio::spawn(watch.run(
                uri.clone(),
                Notifier::Listen(sink.clone()),
                viewer.clone(),
                stop.clone(),
            ));
        }
    }
    let tools = accepted.tools_list_changed == Some(true);
    let resources = accepted.resources_list_changed == Some(true);
    if tools || resources {
        let feed = viewer.app.changes().subscribe();
        tokio::spawn(forward_lists(
            feed,
            Notifier::Listen(sink),
            tools,
            resources,
            stop.clone(),
        ));
    }
    ended.cancelled().await;
    stop.cancel();
}

/// What one subscribed URI watches.
enum Watch {
    /// A session's workflow slot.
    Session(Arc<crate::session::Session>),
    /// The change feed's new outputs.
    RecentOutputs,
    /// A resource that does not change while the server runs (a template, a knowledge
    /// page, a node definition, a finished file): nothing is ever sent.
    Still,
}

impl Watch {
    fn of(viewer: &Viewer, uri: &str) -> Result<Self, ErrorData> {
        let Some(parsed) = Uri::parse(uri) else {
            return Err(not_found(
                uri,
                format!(
                    "There is no resource {uri} to subscribe to. resources/list and resources/templates/list show what there is."
                ),
            ));
        };
        Ok(match parsed {
            Uri::Session { id, .. } => match viewer.session(&id) {
                Some(session) => Self::Session(session),
                None => match crate::session::store::SessionName::parse(&id) {
                    // A named session not used yet: watch it from now on.
                    Ok(name) if !id.starts_with("http-") && !id.starts_with("sse-") => {
                        Self::Session(viewer.app.named_sessions().get(name.as_str()))
                    }
                    _ => {
                        return Err(not_found(
                            uri,
                            format!(
                                "There is no session {id:?} here. Your own workflow is {}.",
                                session_uri(
                                    viewer.own.scope().as_str(),
                                    super::resources::WorkflowPart::Workflow
                                )
                            ),
                        ));
                    }
                },
            },
            Uri::RecentOutputs => Self::RecentOutputs,
            _ => Self::Still,
        })
    }

    async fn run(self, uri: String, notifier: Notifier, viewer: Viewer, stop: CancellationToken) {
        match self {
            Self::Session(session) => {
                let mut changes = session.workflow.watch();
                changes.mark_unchanged();
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        changed = changes.changed() => {
                            if changed.is_err() || !notifier.resource_updated(&uri).await {
                                return;
                            }
                        }
                    }
                }
            }
            Self::RecentOutputs => {
                let mut feed = viewer.app.changes().subscribe();
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        change = feed.recv() => match change {
                            Ok(Change::NewOutputs(_)) | Err(RecvError::Lagged(_)) => {
                                if !notifier.resource_updated(RECENT_OUTPUTS_URI).await {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(RecvError::Closed) => return,
                        }
                    }
                }
            }
            Self::Still => stop.cancelled().await,
        }
    }
}

/// Forwards list changes from the feed until `stop` or the client is gone.
async fn forward_lists(
    mut feed: tokio::sync::broadcast::Receiver<Change>,
    notifier: Notifier,
    tools: bool,
    resources: bool,
    stop: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            () = stop.cancelled() => return,
            change = feed.recv() => change,
        };
        let delivered = match change {
            Ok(Change::NewOutputs(_)) if resources => notifier.resource_list_changed().await,
            Ok(Change::ToolsChanged) if tools => notifier.tool_list_changed().await,
            Ok(_) => true,
            Err(RecvError::Lagged(_)) => {
                (!resources || notifier.resource_list_changed().await)
                    && (!tools || notifier.tool_list_changed().await)
            }
            Err(RecvError::Closed) => return,
        };
        if !delivered {
            return;
        }
    }
}
