//! The span and attribute names this server emits, each with its meaning: one catalogue,
//! mirrored in `docs/operations.md` ("Logs and traces"). Names follow the OpenTelemetry
//! semantic conventions (MCP, HTTP client, errors) where one exists; ours start `comfyui.`.

// Span names (the `tracing` names; the exported name is the `otel.name` field when set).

/// One span per MCP request; exported as `"{method} {target}"` (`tools/call load_workflow`)
/// or just the method (`tools/list`).
pub const SPAN_MCP_REQUEST: &str = "mcp.request";
/// One span per HTTP request to ComfyUI (each retry is its own span); exported as the HTTP
/// method (`GET`, `POST`).
pub const SPAN_COMFY_HTTP: &str = "comfyui.http";
/// Opening the WebSocket to ComfyUI's event stream.
pub const SPAN_COMFY_WS_CONNECT: &str = "comfyui.ws.connect";

// Fields tracing-opentelemetry reads as span settings rather than attributes.

/// The exported span name, when it is built at run time.
pub const OTEL_NAME: &str = "otel.name";
/// The span kind: `server` for MCP requests, `client` for calls to ComfyUI.
pub const OTEL_KIND: &str = "otel.kind";
/// `ERROR` on a span that failed.
pub const OTEL_STATUS_CODE: &str = "otel.status_code";

// MCP request attributes.

/// The JSON-RPC method, e.g. `tools/call`, `initialize`, `resources/read`.
pub const MCP_METHOD_NAME: &str = "mcp.method.name";
/// The MCP session: the `Mcp-Session-Id` over HTTP, this server's session label on stdio.
pub const MCP_SESSION_ID: &str = "mcp.session.id";
/// The protocol version the client speaks on this request (`2025-06-18`, …), when known.
pub const MCP_PROTOCOL_VERSION: &str = "mcp.protocol.version";
/// The URI a `resources/read` asks for.
pub const MCP_RESOURCE_URI: &str = "mcp.resource.uri";
/// The tool a `tools/call` runs.
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
/// The prompt a `prompts/get` asks for.
pub const GEN_AI_PROMPT_NAME: &str = "gen_ai.prompt.name";
/// `execute_tool` on `tools/call` spans.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// The JSON-RPC request id, as text.
pub const JSONRPC_REQUEST_ID: &str = "jsonrpc.request.id";
/// How the client reached us: `pipe` (stdio) or `tcp` (HTTP).
pub const NETWORK_TRANSPORT: &str = "network.transport";
/// The JSON-RPC error code of a protocol error, as text (`-32602`).
pub const RPC_RESPONSE_STATUS_CODE: &str = "rpc.response.status_code";
/// Why a request or call failed: `tool_error` for a tool result with `isError`, the JSON-RPC
/// error code for protocol errors; on ComfyUI calls, the HTTP status or `timeout`,
/// `connect`, `breaker_open`, `too_large`.
pub const ERROR_TYPE: &str = "error.type";

// ComfyUI call attributes (HTTP client conventions).

/// `GET` or `POST`.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// The status ComfyUI answered with.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// The full request URL, without credentials.
pub const URL_FULL: &str = "url.full";
/// ComfyUI's host.
pub const SERVER_ADDRESS: &str = "server.address";
/// ComfyUI's port.
pub const SERVER_PORT: &str = "server.port";
/// Which kind of ComfyUI call (`system_stats`, `object_info`, `prompt`, `view`, …; the names
/// `COMFYUI_AGENT_TIMEOUTS` uses).
pub const COMFYUI_OPERATION: &str = "comfyui.operation";
/// The retry this attempt is (0 for the first attempt).
pub const HTTP_REQUEST_RESEND_COUNT: &str = "http.request.resend_count";

/// Every name above with its meaning, for docs and the catalogue test.
pub const CATALOGUE: &[(&str, &str)] = &[
    (SPAN_MCP_REQUEST, "span: one per MCP request"),
    (SPAN_COMFY_HTTP, "span: one per HTTP request to ComfyUI"),
    (SPAN_COMFY_WS_CONNECT, "span: opening ComfyUI's WebSocket"),
    (MCP_METHOD_NAME, "the JSON-RPC method"),
    (MCP_SESSION_ID, "the MCP session"),
    (MCP_PROTOCOL_VERSION, "the protocol version of the request"),
    (MCP_RESOURCE_URI, "the URI a resources/read asks for"),
    (GEN_AI_TOOL_NAME, "the tool a tools/call runs"),
    (GEN_AI_PROMPT_NAME, "the prompt a prompts/get asks for"),
    (GEN_AI_OPERATION_NAME, "execute_tool on tools/call"),
    (JSONRPC_REQUEST_ID, "the JSON-RPC request id"),
    (NETWORK_TRANSPORT, "pipe (stdio) or tcp (HTTP)"),
    (RPC_RESPONSE_STATUS_CODE, "the JSON-RPC error code"),
    (ERROR_TYPE, "why it failed"),
    (HTTP_REQUEST_METHOD, "GET or POST"),
    (HTTP_RESPONSE_STATUS_CODE, "ComfyUI's HTTP status"),
    (URL_FULL, "the request URL without credentials"),
    (SERVER_ADDRESS, "ComfyUI's host"),
    (SERVER_PORT, "ComfyUI's port"),
    (COMFYUI_OPERATION, "which kind of ComfyUI call"),
    (HTTP_REQUEST_RESEND_COUNT, "which retry this attempt is"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_described() {
        let mut seen = std::collections::HashSet::new();
        for (name, meaning) in CATALOGUE {
            assert!(seen.insert(*name), "{name} appears twice");
            assert!(!meaning.is_empty(), "{name} has no meaning");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{name} is not a dotted lower-case name"
            );
        }
    }
}
