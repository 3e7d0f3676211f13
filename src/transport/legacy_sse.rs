//! The HTTP+SSE transport of protocol 2024-11-05, for older clients: `GET /sse` opens a
//! stream whose first event, `endpoint`, names where to POST; every server message then
//! arrives as a `message` event. rmcp dropped this transport, so this small bridge feeds the
//! same handler through a [`ChannelTransport`]. One session per stream; it ends when the
//! stream drops.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::StartGate;
use super::http::{reject, respond};

/// The outgoing side closed: the client went away.
#[derive(Debug, thiserror::Error)]
#[error("the client connection is closed")]
pub struct Closed;

/// An rmcp transport over two channels: parsed messages in (from `POST /messages`),
/// serialised lines out (to the event stream).
#[derive(Debug)]
pub struct ChannelTransport {
    gate: StartGate,
    outgoing: mpsc::Sender<String>,
    incoming: mpsc::Receiver<ClientJsonRpcMessage>,
}

impl ChannelTransport {
    pub fn new(
        outgoing: mpsc::Sender<String>,
        incoming: mpsc::Receiver<ClientJsonRpcMessage>,
    ) -> Self {
        Self {
            gate: StartGate::default(),
            outgoing,
            incoming,
        }
    }
}

impl Transport<RoleServer> for ChannelTransport {
    type Error = Closed;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let outgoing = self.outgoing.clone();
        async move {
            let line = serde_json::to_string(&item).map_err(|error| {
                tracing::error!(%error, "a response could not be serialised");
                Closed
            })?;
            outgoing.send(line).await.map_err(|_| Closed)
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            let message = self.incoming.recv().await?;
            if self.gate.admit(&message) {
                return Some(message);
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.incoming.close();
        Ok(())
    }
}

/// How long a new stream may go without its first request.
const INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Open legacy streams allowed at once; more get 503 rather than exhausting the process.
const MAX_SESSIONS: usize = 1024;

/// Sessions by id. Lives in the router's state, not in a global.
type Sessions = Arc<Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>>;

struct Bridge<F> {
    make: F,
    sessions: Sessions,
    shutdown: CancellationToken,
}

/// `GET /sse`, and `POST /messages` (also `/message`, which some clients use).
pub fn routes<H, F>(make: F, max_body_bytes: usize, shutdown: CancellationToken) -> Router
where
    H: ServerHandler,
    F: Fn() -> H + Clone + Send + Sync + 'static,
{
    let bridge = Arc::new(Bridge {
        make,
        sessions: Sessions::default(),
        shutdown,
    });
    Router::new()
        .route("/sse", get(open::<H, F>))
        .route("/messages", post(deliver::<F>))
        .route("/message", post(deliver::<F>))
        // The guard has already capped and checked the body; this only lifts axum's default.
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(bridge)
}

/// Removes the session and stops its handler when the client's stream goes away.
struct SessionGuard {
    id: String,
    sessions: Sessions,
    _stop: DropGuard,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        tracing::debug!(session = %self.id, "legacy SSE session closed");
    }
}

async fn open<H, F>(State(bridge): State<Arc<Bridge<F>>>) -> Response
where
    H: ServerHandler,
    F: Fn() -> H + Clone + Send + Sync + 'static,
{
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::channel::<String>(64);
    {
        let mut sessions = bridge.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            return reject(
                StatusCode::SERVICE_UNAVAILABLE,
                -32000,
                "Too many open SSE streams; close some, or use Streamable HTTP at /mcp.",
            );
        }
        sessions.insert(id.clone(), in_tx);
    }
    let session_stop = bridge.shutdown.child_token();
    let handler = (bridge.make)();
    let stop = session_stop.clone();
    let session = id.clone();
    tokio::spawn(async move {
        let transport = ChannelTransport::new(out_tx, in_rx);
        // A stream that never initializes is closed, as rmcp does for Streamable HTTP.
        let started = tokio::time::timeout(INIT_TIMEOUT, handler.serve_with_ct(transport, stop));
        match started.await {
            Ok(Ok(running)) => {
                let _ = running.waiting().await;
            }
            Ok(Err(error)) => tracing::debug!(%session, %error, "legacy SSE session ended early"),
            Err(_) => tracing::debug!(%session, "legacy SSE session never initialized; closed"),
        }
    });
    tracing::debug!(session = %id, "legacy SSE session opened");

    let guard = SessionGuard {
        id: id.clone(),
        sessions: Arc::clone(&bridge.sessions),
        _stop: session_stop.clone().drop_guard(),
    };
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/messages?sessionId={id}"));
    let messages = futures::stream::unfold((out_rx, guard), |(mut rx, guard)| async move {
        let line = rx.recv().await?;
        Some((Event::default().event("message").data(line), (rx, guard)))
    });
    let shutdown = bridge.shutdown.clone();
    let stream = futures::stream::once(async move { endpoint })
        .chain(messages)
        .take_until(async move { shutdown.cancelled().await })
        .map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Debug, Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId", alias = "session_id")]
    session_id: Option<String>,
}

async fn deliver<F>(
    State(bridge): State<Arc<Bridge<F>>>,
    Query(query): Query<SessionQuery>,
    body: Bytes,
) -> Response {
    let Some(id) = query.session_id else {
        return reject(
            StatusCode::BAD_REQUEST,
            -32600,
            "Missing sessionId: POST to the URL from the stream's `endpoint` event.",
        );
    };
    let sender = bridge
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned();
    let Some(sender) = sender else {
        return reject(
            StatusCode::NOT_FOUND,
            -32600,
            "Unknown or closed session: open a new stream at /sse.",
        );
    };
    let message = match super::decode(&body) {
        Ok(message) => message,
        Err(rejection) => return respond(StatusCode::BAD_REQUEST, &rejection),
    };
    match sender.send(message).await {
        Ok(()) => (StatusCode::ACCEPTED, "Accepted").into_response(),
        Err(_) => reject(
            StatusCode::NOT_FOUND,
            -32600,
            "The session has ended: open a new stream at /sse.",
        ),
    }
}
