//! The span around each MCP request: named `"{method} {target}"` (`tools/call load_workflow`)
//! or just the method, with the MCP semantic-convention attributes, and a child of the trace
//! the client names in the request's `_meta` (`traceparent`, `tracestate`).

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rmcp::RoleServer;
use rmcp::model::ErrorData;
use rmcp::service::RequestContext;
use tracing::field::Empty;
use tracing::{Instrument as _, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry::names::{
    ERROR_TYPE, GEN_AI_OPERATION_NAME, GEN_AI_PROMPT_NAME, GEN_AI_TOOL_NAME, JSONRPC_REQUEST_ID,
    MCP_METHOD_NAME, MCP_PROTOCOL_VERSION, MCP_RESOURCE_URI, MCP_SESSION_ID, NETWORK_TRANSPORT,
    OTEL_KIND, OTEL_NAME, OTEL_STATUS_CODE, RPC_RESPONSE_STATUS_CODE, SPAN_MCP_REQUEST,
};

/// The request's span, and whether it already names its session.
pub(super) struct RequestSpan {
    span: Span,
    session_known: bool,
}

/// What a request is about: its method and, for `tools/call` and `resources/read`, what it
/// names.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    None,
    Tool(&'a str),
    Resource(&'a str),
    Prompt(&'a str),
}

/// Opens the span for one request. Every request is a root (or a child of the client's
/// trace): rmcp's long-lived connection span must not become the parent of a whole session's
/// requests. When no subscriber wants the span, nothing below the first line runs.
pub(super) fn request(
    method: &'static str,
    target: Target<'_>,
    context: &RequestContext<RoleServer>,
    network: &'static str,
    label: Option<&String>,
) -> RequestSpan {
    let span = tracing::info_span!(
        parent: None,
        SPAN_MCP_REQUEST,
        { OTEL_NAME } = method,
        { OTEL_KIND } = "server",
        { MCP_METHOD_NAME } = method,
        { GEN_AI_TOOL_NAME } = Empty,
        { GEN_AI_OPERATION_NAME } = Empty,
        { MCP_RESOURCE_URI } = Empty,
        { GEN_AI_PROMPT_NAME } = Empty,
        { MCP_SESSION_ID } = Empty,
        { JSONRPC_REQUEST_ID } = %context.id,
        { NETWORK_TRANSPORT } = network,
        { MCP_PROTOCOL_VERSION } = Empty,
        { ERROR_TYPE } = Empty,
        { RPC_RESPONSE_STATUS_CODE } = Empty,
        { OTEL_STATUS_CODE } = Empty,
    );
    if span.is_disabled() {
        return RequestSpan {
            span,
            session_known: true,
        };
    }
    match target {
        Target::Tool(tool) => {
            span.record(OTEL_NAME, format!("{method} {tool}"));
            span.record(GEN_AI_TOOL_NAME, tool);
            span.record(GEN_AI_OPERATION_NAME, "execute_tool");
        }
        // URIs are unbounded: an attribute, not part of the name.
        Target::Resource(uri) => {
            span.record(MCP_RESOURCE_URI, uri);
        }
        // Prompt names come from the client: an attribute too.
        Target::Prompt(name) => {
            span.record(GEN_AI_PROMPT_NAME, name);
        }
        Target::None => {}
    }
    let header = context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|value| value.to_str().ok());
    let session = header.or(label.map(String::as_str));
    if let Some(session) = session {
        span.record(MCP_SESSION_ID, session);
    }
    if let Some(version) = context.protocol_version() {
        span.record(MCP_PROTOCOL_VERSION, version.as_str());
    }
    if let Some(traceparent) = context.meta.get_traceparent() {
        let carrier = TraceCarrier {
            traceparent,
            tracestate: context.meta.get_tracestate(),
        };
        let parent = TraceContextPropagator::new().extract(&carrier);
        // Without an OpenTelemetry layer there is no trace to join; that's fine.
        let _ = span.set_parent(parent);
    }
    RequestSpan {
        span,
        session_known: session.is_some(),
    }
}

impl RequestSpan {
    /// Runs the request inside the span, then records how it ended: the JSON-RPC code for a
    /// protocol error, and the session label `initialize` just gave.
    pub(super) async fn run<T>(
        self,
        request: impl Future<Output = Result<T, ErrorData>>,
        label: &std::sync::OnceLock<String>,
    ) -> Result<T, ErrorData> {
        let result = request.instrument(self.span.clone()).await;
        let span = &self.span;
        if span.is_disabled() {
            return result;
        }
        if !self.session_known
            && let Some(label) = label.get()
        {
            span.record(MCP_SESSION_ID, label.as_str());
        }
        if let Err(error) = &result {
            let code = error.code.0.to_string();
            span.record(ERROR_TYPE, code.as_str());
            span.record(RPC_RESPONSE_STATUS_CODE, code.as_str());
            span.record(OTEL_STATUS_CODE, "ERROR");
        }
        result
    }
}

/// Marks the current request as ended by a tool result with `isError`.
pub(super) fn tool_error() {
    let span = Span::current();
    span.record(ERROR_TYPE, "tool_error");
    span.record(OTEL_STATUS_CODE, "ERROR");
}

/// The W3C trace context fields of `_meta`, as the propagator reads them.
struct TraceCarrier<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for TraceCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}
