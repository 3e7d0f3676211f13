//! The fixture server for the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`), served through the product's HTTP transport so
//! every scenario also exercises our guard (Host, Origin, token, body checks).
//!
//! This is a test server, not a mode of the product: it implements the tools, resources,
//! prompts and completions the suite's scenarios call by name, with the payloads they
//! check. `tests/conformance/run.sh` builds it, starts it and runs the suite against it.
//!
//! ```text
//! cargo run --example conformance-server -- --port 0
//! ```
//!
//! The port comes from `--port N` (or `CONFORMANCE_PORT`); 0 picks a free one. The bound
//! endpoint is printed to stderr as `conformance-server listening on http://ADDR/mcp`.
//!
//! Both protocol eras are served: initialize sessions (2025-11-25 and older) get
//! server-to-client requests for sampling, elicitation and roots; stateless 2026-07-28
//! requests get the same inputs through `InputRequiredResult` (MRTR), with the
//! `requestState` sealed so a tampered one is refused.

// Sampling, roots and logging are deprecated by SEP-2577 but still part of the protocol,
// and the suite's fixtures exercise them on purpose.
#![allow(deprecated)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comfyui_agent::config::HttpConfig;
use comfyui_agent::transport::Shutdown;
use comfyui_agent::transport::http::{router, serve};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities,
    CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock, CreateMessageRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
    ElicitResult, ElicitationSchema, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
    Implementation, InputRequest, InputRequests, InputRequiredResult, InputResponses, JsonObject,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListRootsRequest,
    ListRootsResult, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam,
    PaginatedRequestParams, ProgressNotificationParam, Prompt, PromptArgument, PromptMessage,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Reference, RequestStateCodec, Resource, ResourceContents, ResourceTemplate, Role,
    SamplingMessage, SealOptions, ServerCapabilities, ServerInfo, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A 1x1 red PNG.
const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// Eight samples of silence: 8 kHz, mono, 8-bit PCM.
const WAV_BASE64: &str = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

const TEMPLATE_URI: &str = "test://template/{id}/data";
const WATCHED_URI: &str = "test://watched-resource";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    let port = port_from_args()?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let bound = listener.local_addr()?;
    let http = HttpConfig {
        bind: bound,
        ..HttpConfig::default()
    };
    let shared = Arc::new(Shared::new());
    let shutdown = Shutdown::immediate(comfyui_agent::shutdown_on_signal());
    let app = router(move || Fixture::new(shared.clone()), &http, &shutdown, None);
    eprintln!("conformance-server listening on http://{bound}/mcp");
    serve(app, listener, &shutdown).await?;
    Ok(())
}

/// `--port N`, `--port=N`, or `CONFORMANCE_PORT`; 0 (any free port) by default.
fn port_from_args() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut raw = std::env::var("CONFORMANCE_PORT").ok();
    while let Some(arg) = args.next() {
        if arg == "--port" {
            raw = Some(args.next().ok_or("--port needs a value")?);
        } else if let Some(value) = arg.strip_prefix("--port=") {
            raw = Some(value.to_string());
        } else {
            return Err(format!("unknown argument `{arg}` (usage: --port N)"));
        }
    }
    match raw {
        None => Ok(0),
        Some(raw) => raw
            .parse()
            .map_err(|_| format!("`{raw}` is not a port number (0-65535)")),
    }
}

/// A change announced to every open `subscriptions/listen` stream.
#[derive(Debug, Clone)]
enum Change {
    Tools,
    Prompts,
}

/// State shared by every handler instance: stateless requests each get a fresh handler,
/// so anything that must outlive one request lives here.
#[derive(Debug)]
struct Shared {
    changes: broadcast::Sender<Change>,
    codec: RequestStateCodec,
}

impl Shared {
    fn new() -> Self {
        // A fresh secret per process: sealed states never need to survive a restart.
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self {
            changes: broadcast::channel(16).0,
            codec: RequestStateCodec::new_unchecked(key.into_bytes()),
        }
    }
}

/// One handler per HTTP session (or per stateless request).
#[derive(Debug, Clone)]
struct Fixture {
    shared: Arc<Shared>,
    /// The level set by `logging/setLevel` in this session.
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// URIs subscribed with `resources/subscribe` in this session.
    subscriptions: Arc<Mutex<HashSet<String>>>,
}

impl Fixture {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            log_level: Arc::new(Mutex::new(None)),
            subscriptions: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Catalogue
// ---------------------------------------------------------------------------------------

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn no_arguments() -> JsonObject {
    object(json!({ "type": "object", "properties": {} }))
}

fn string_argument(name: &str, description: &str) -> JsonObject {
    object(json!({
        "type": "object",
        "properties": { name: { "type": "string", "description": description } },
        "required": [name],
    }))
}

/// Every tool, in the order `tools/list` returns them (deterministic, as 2026-07-28 asks).
fn tools() -> Vec<Tool> {
    let plain = |name: &'static str, description: &'static str| {
        Tool::new(name, description, no_arguments())
    };
    vec![
        plain("test_simple_text", "Returns a simple text response"),
        plain("test_image_content", "Returns a small PNG image"),
        plain("test_audio_content", "Returns a short WAV clip"),
        plain(
            "test_embedded_resource",
            "Returns an embedded text resource",
        ),
        plain(
            "test_multiple_content_types",
            "Returns text, an image and an embedded resource",
        ),
        plain(
            "test_tool_with_logging",
            "Sends three info log messages while it runs",
        ),
        plain("test_error_handling", "Always fails with a tool error"),
        plain(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100",
        ),
        Tool::new(
            "test_sampling",
            "Asks the client's LLM to answer a prompt",
            string_argument("prompt", "The prompt to send to the LLM"),
        ),
        Tool::new(
            "test_elicitation",
            "Asks the user for a username and an email address",
            string_argument("message", "The message to show the user"),
        ),
        plain(
            "test_elicitation_sep1034_defaults",
            "Elicits every primitive type with a default value (SEP-1034)",
        ),
        plain(
            "test_elicitation_sep1330_enums",
            "Elicits the five enum schema forms (SEP-1330)",
        ),
        Tool::new(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            object(json_schema_2020_12()),
        ),
        plain(
            "test_reconnection",
            "Takes a moment to answer, for the SSE polling scenario",
        ),
        Tool::new(
            "test_header_param",
            "Echoes a parameter mirrored into the Mcp-Param-Region header (SEP-2243)",
            object(json!({
                "type": "object",
                "properties": {
                    "region": {
                        "type": "string",
                        "description": "Any text; clients also send it as Mcp-Param-Region",
                        "x-mcp-header": "Region",
                    },
                },
                "required": ["region"],
            })),
        ),
        plain(
            "test_missing_capability",
            "Needs the client's sampling capability",
        ),
        plain(
            "test_streaming_elicitation",
            "Asks the user for confirmation",
        ),
        plain(
            "test_logging_tool",
            "Logs one message, only when the request asked for logs",
        ),
        plain(
            "test_trigger_tool_change",
            "Announces that the tool list changed",
        ),
        plain(
            "test_trigger_prompt_change",
            "Announces that the prompt list changed",
        ),
        plain(
            "test_input_required_result_elicitation",
            "Asks for the user's name",
        ),
        plain(
            "test_input_required_result_sampling",
            "Asks the client's LLM a question",
        ),
        plain(
            "test_input_required_result_list_roots",
            "Asks for the client's roots",
        ),
        plain(
            "test_input_required_result_request_state",
            "Asks for confirmation and checks the echoed request state",
        ),
        plain(
            "test_input_required_result_multiple_inputs",
            "Asks for an elicitation, a sampling and the roots at once",
        ),
        plain(
            "test_input_required_result_multi_round",
            "Asks for a name, then a colour",
        ),
        plain(
            "test_input_required_result_tampered_state",
            "Asks for confirmation and refuses a tampered request state",
        ),
        plain(
            "test_input_required_result_capabilities",
            "Asks only for what the client declared it can provide",
        ),
    ]
}

fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {
                    "street": { "type": "string" },
                    "city": { "type": "string" },
                },
            },
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" },
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": {
            "properties": { "contactMethod": { "const": "phone" } },
            "required": ["contactMethod"],
        },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false,
    })
}

fn prompts() -> Vec<Prompt> {
    let argument = |name: &str, description: &str| {
        PromptArgument::new(name)
            .with_description(description)
            .with_required(true)
    };
    vec![
        Prompt::new(
            "test_simple_prompt",
            Some("A simple prompt without arguments"),
            None,
        ),
        Prompt::new(
            "test_prompt_with_arguments",
            Some("A prompt with two required arguments"),
            Some(vec![
                argument("arg1", "First test argument"),
                argument("arg2", "Second test argument"),
            ]),
        ),
        Prompt::new(
            "test_prompt_with_embedded_resource",
            Some("A prompt that embeds a resource"),
            Some(vec![argument(
                "resourceUri",
                "URI of the resource to embed",
            )]),
        ),
        Prompt::new(
            "test_prompt_with_image",
            Some("A prompt that includes an image"),
            None,
        ),
        Prompt::new(
            "test_input_required_result_prompt",
            Some("A prompt that first asks the user for context"),
            None,
        ),
    ]
}

fn resources() -> Vec<Resource> {
    vec![
        Resource::new("test://static-text", "static-text")
            .with_description("A static text resource")
            .with_mime_type("text/plain"),
        Resource::new("test://static-binary", "static-binary")
            .with_description("A static binary resource (a PNG image)")
            .with_mime_type("image/png"),
        Resource::new(WATCHED_URI, "watched-resource")
            .with_description("A resource that can be subscribed to")
            .with_mime_type("text/plain"),
    ]
}

// ---------------------------------------------------------------------------------------
// Inputs from the client: server-to-client requests (sessions) or MRTR (2026-07-28)
// ---------------------------------------------------------------------------------------

/// Something a tool or prompt needs from the client before it can finish.
enum Need {
    Elicit(ElicitRequestParams),
    Sample(CreateMessageRequestParams),
    Roots,
}

impl Need {
    fn elicit(message: &str, schema: Value) -> Result<Self, McpError> {
        let requested_schema: ElicitationSchema = serde_json::from_value(schema)
            .map_err(|e| McpError::internal_error(format!("bad fixture schema: {e}"), None))?;
        Ok(Self::Elicit(ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_string(),
            requested_schema,
        }))
    }

    fn sample(text: &str, max_tokens: u32) -> Self {
        Self::Sample(CreateMessageRequestParams::new(
            vec![SamplingMessage::user_text(text)],
            max_tokens,
        ))
    }

    fn declared_by(&self, caps: &ClientCapabilities) -> bool {
        match self {
            Self::Elicit(_) => caps.elicitation.is_some(),
            Self::Sample(_) => caps.sampling.is_some(),
            Self::Roots => caps.roots.is_some(),
        }
    }

    fn required_capability(&self) -> ClientCapabilities {
        match self {
            Self::Elicit(_) => ClientCapabilities::builder().enable_elicitation().build(),
            Self::Sample(_) => ClientCapabilities::builder().enable_sampling().build(),
            Self::Roots => ClientCapabilities::builder().enable_roots().build(),
        }
    }

    fn into_request(self) -> InputRequest {
        match self {
            Self::Elicit(params) => InputRequest::Elicitation(ElicitRequest::new(params)),
            Self::Sample(params) => InputRequest::CreateMessage(CreateMessageRequest::new(params)),
            Self::Roots => InputRequest::ListRoots(ListRootsRequest::default()),
        }
    }

    /// Checks that a client's answer has the shape of this request's result.
    fn check_response(&self, key: &str, value: &Value) -> Result<(), McpError> {
        let parsed = match self {
            Self::Elicit(_) => serde_json::from_value::<ElicitResult>(value.clone()).map(drop),
            Self::Sample(_) => {
                serde_json::from_value::<CreateMessageResult>(value.clone()).map(drop)
            }
            Self::Roots => serde_json::from_value::<ListRootsResult>(value.clone()).map(drop),
        };
        parsed.map_err(|e| {
            McpError::invalid_params(
                format!("inputResponses.{key} is not a valid result for its request: {e}"),
                Some(json!({ "inputResponse": key })),
            )
        })
    }

    /// Sends this request to the client over the session (legacy lifecycle).
    async fn ask_peer(self, cx: &RequestContext<RoleServer>) -> Result<Value, McpError> {
        let failed = |e: rmcp::ServiceError| {
            McpError::internal_error(format!("the client did not answer: {e}"), None)
        };
        let value = match self {
            Self::Elicit(params) => {
                serde_json::to_value(cx.peer.create_elicitation(params).await.map_err(failed)?)
            }
            Self::Sample(params) => {
                serde_json::to_value(cx.peer.create_message(params).await.map_err(failed)?)
            }
            Self::Roots => serde_json::to_value(cx.peer.list_roots().await.map_err(failed)?),
        };
        value.map_err(|e| McpError::internal_error(e.to_string(), None))
    }
}

/// Either every answer is in, or the client must be asked for the missing ones.
enum Gathered {
    Ready(BTreeMap<String, Value>),
    Ask(InputRequiredResult),
}

/// Whether a request uses the 2026-07-28 (stateless, MRTR) lifecycle.
fn is_modern(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// Collects the answers to `needs`: from the session peer on the legacy lifecycle, from
/// `inputResponses` on 2026-07-28 (returning an `InputRequiredResult` for what is missing,
/// carrying `state` as the `requestState`).
async fn gather(
    cx: &RequestContext<RoleServer>,
    given: Option<&InputResponses>,
    needs: Vec<(&'static str, Need)>,
    state: Option<String>,
) -> Result<Gathered, McpError> {
    let caps = cx.client_capabilities().unwrap_or_default();
    if let Some((_, need)) = needs.iter().find(|(_, need)| !need.declared_by(&caps)) {
        return Err(McpError::missing_required_client_capability(
            need.required_capability(),
        ));
    }
    let mut answers = BTreeMap::new();
    if !is_modern(cx) {
        for (key, need) in needs {
            answers.insert(key.to_string(), need.ask_peer(cx).await?);
        }
        return Ok(Gathered::Ready(answers));
    }
    let mut missing = InputRequests::new();
    for (key, need) in needs {
        match given.and_then(|given| given.get(key)) {
            Some(value) => {
                need.check_response(key, value)?;
                answers.insert(key.to_string(), value.clone());
            }
            None => {
                missing.insert(key.to_string(), need.into_request());
            }
        }
    }
    if missing.is_empty() {
        Ok(Gathered::Ready(answers))
    } else {
        Ok(Gathered::Ask(InputRequiredResult::new(
            Some(missing),
            state,
        )))
    }
}

/// The progress of a multi-step exchange, sealed into `requestState`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
enum Stage {
    Start,
    Named { name: String },
}

impl Fixture {
    /// Seals `stage` for `purpose` (a tool or prompt name), valid for ten minutes.
    fn seal(&self, purpose: &str, stage: &Stage) -> Result<String, McpError> {
        self.shared
            .codec
            .seal_json_with(
                stage,
                &SealOptions::new()
                    .associated_data(purpose.as_bytes())
                    .ttl(Duration::from_secs(600)),
            )
            .map_err(|e| McpError::internal_error(e.to_string(), None))
    }

    /// Opens a `requestState` echoed by the client; anything forged, tampered with,
    /// expired or minted for another purpose is an invalid-params error.
    fn open(&self, purpose: &str, sealed: Option<&str>) -> Result<Option<Stage>, McpError> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        self.shared
            .codec
            .open_json_with(sealed, purpose.as_bytes())
            .map(Some)
            .map_err(|e| {
                McpError::invalid_params(
                    format!("requestState failed its integrity check: {e}"),
                    None,
                )
            })
    }
}

fn text(value: &str) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(value)]).into()
}

fn answer_text(answers: &BTreeMap<String, Value>, key: &str) -> String {
    answers
        .get(key)
        .map(Value::to_string)
        .unwrap_or_else(|| "null".to_string())
}

fn elicited_field(answers: &BTreeMap<String, Value>, key: &str, field: &str) -> String {
    answers
        .get(key)
        .and_then(|a| a.get("content"))
        .and_then(|c| c.get(field))
        .and_then(Value::as_str)
        .unwrap_or("(none)")
        .to_string()
}

fn name_schema(field: &str) -> Value {
    json!({
        "type": "object",
        "properties": { field: { "type": "string" } },
        "required": [field],
    })
}

fn confirm_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "ok": { "type": "boolean" } },
        "required": ["ok"],
    })
}

// ---------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------

impl Fixture {
    /// Whether a message at `level` may be sent for this request: 2026-07-28 requests
    /// get logs only when they carry a log level; sessions follow `logging/setLevel`.
    fn may_log(&self, cx: &RequestContext<RoleServer>, level: LoggingLevel) -> bool {
        let threshold = if is_modern(cx) {
            match cx.meta.log_level() {
                Some(threshold) => threshold,
                None => return false,
            }
        } else {
            match self.log_level.lock().map(|l| *l) {
                Ok(Some(threshold)) => threshold,
                _ => LoggingLevel::Debug,
            }
        };
        comfyui_agent::mcp::severity(level) >= comfyui_agent::mcp::severity(threshold)
    }

    async fn log(&self, cx: &RequestContext<RoleServer>, message: &str) {
        if self.may_log(cx, LoggingLevel::Info) {
            let param = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message))
                .with_logger("conformance-server");
            if let Err(error) = cx.peer.notify_logging_message(param).await {
                tracing::debug!(%error, "could not send a log message");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------

fn argument<'a>(arguments: Option<&'a JsonObject>, name: &str) -> Option<&'a str> {
    arguments.and_then(|a| a.get(name)).and_then(Value::as_str)
}

impl Fixture {
    async fn call(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.as_ref();
        let given = request.input_responses.as_ref();
        let name = request.name.as_ref();
        match name {
            "test_simple_text" => Ok(text("This is a simple text response for testing.")),
            "test_image_content" => Ok(CallToolResult::success(vec![ContentBlock::image(
                PNG_BASE64,
                "image/png",
            )])
            .into()),
            "test_audio_content" => Ok(CallToolResult::success(vec![ContentBlock::audio(
                WAV_BASE64,
                "audio/wav",
            )])
            .into()),
            "test_embedded_resource" => Ok(CallToolResult::success(vec![ContentBlock::resource(
                ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                )
                .with_mime_type("text/plain"),
            )])
            .into()),
            "test_multiple_content_types" => Ok(CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(PNG_BASE64, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        json!({ "test": "data", "value": 123 }).to_string(),
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ])
            .into()),
            "test_tool_with_logging" => {
                self.log(&cx, "Tool execution started").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.log(&cx, "Tool processing data").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.log(&cx, "Tool execution completed").await;
                Ok(text("Tool with logging executed successfully"))
            }
            "test_error_handling" => Ok(CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )])
            .into()),
            "test_tool_with_progress" => {
                let token = cx.meta.get_progress_token();
                for (step, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if step > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if let Some(token) = &token {
                        let param = ProgressNotificationParam::new(token.clone(), progress)
                            .with_total(100.0);
                        if let Err(error) = cx.peer.notify_progress(param).await {
                            tracing::debug!(%error, "could not send progress");
                        }
                    }
                }
                Ok(text("Tool with progress executed successfully"))
            }
            "test_sampling" => {
                let Some(prompt) = argument(args, "prompt") else {
                    return Ok(missing_argument("prompt"));
                };
                let needs = vec![("sampling", Need::sample(prompt, 100))];
                Ok(match gather(&cx, given, needs, None).await? {
                    Gathered::Ask(ask) => ask.into(),
                    Gathered::Ready(answers) => {
                        let reply = answers
                            .get("sampling")
                            .and_then(|a| a.get("content"))
                            .and_then(|c| c.get("text"))
                            .and_then(Value::as_str)
                            .unwrap_or("(no text)")
                            .to_string();
                        text(&format!("LLM response: {reply}"))
                    }
                })
            }
            "test_elicitation" => {
                let Some(message) = argument(args, "message") else {
                    return Ok(missing_argument("message"));
                };
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "username": { "type": "string", "description": "User's response" },
                        "email": { "type": "string", "description": "User's email address" },
                    },
                    "required": ["username", "email"],
                });
                self.elicit_once(&cx, given, "user_info", message, schema, "User response")
                    .await
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "default": "John Doe" },
                        "age": { "type": "integer", "default": 30 },
                        "score": { "type": "number", "default": 95.5 },
                        "status": {
                            "type": "string",
                            "enum": ["active", "inactive", "pending"],
                            "default": "active",
                        },
                        "verified": { "type": "boolean", "default": true },
                    },
                });
                self.elicit_once(
                    &cx,
                    given,
                    "defaults",
                    "Please review the defaults",
                    schema,
                    "Elicitation completed",
                )
                .await
            }
            "test_elicitation_sep1330_enums" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": {
                            "type": "string",
                            "enum": ["option1", "option2", "option3"],
                        },
                        "titledSingle": {
                            "type": "string",
                            "oneOf": [
                                { "const": "value1", "title": "First Option" },
                                { "const": "value2", "title": "Second Option" },
                                { "const": "value3", "title": "Third Option" },
                            ],
                        },
                        "legacyEnum": {
                            "type": "string",
                            "enum": ["opt1", "opt2", "opt3"],
                            "enumNames": ["Option One", "Option Two", "Option Three"],
                        },
                        "untitledMulti": {
                            "type": "array",
                            "items": { "type": "string", "enum": ["option1", "option2", "option3"] },
                        },
                        "titledMulti": {
                            "type": "array",
                            "items": {
                                "anyOf": [
                                    { "const": "value1", "title": "First Choice" },
                                    { "const": "value2", "title": "Second Choice" },
                                    { "const": "value3", "title": "Third Choice" },
                                ],
                            },
                        },
                    },
                });
                self.elicit_once(
                    &cx,
                    given,
                    "enums",
                    "Please pick some options",
                    schema,
                    "Elicitation completed",
                )
                .await
            }
            "json_schema_2020_12_tool" => {
                let echoed = args
                    .map(|a| Value::Object(a.clone()))
                    .unwrap_or(Value::Null);
                Ok(text(&format!("Received: {echoed}")))
            }
            "test_reconnection" => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(text("Reconnection test completed"))
            }
            "test_header_param" => {
                let region = argument(args, "region").unwrap_or("(none)");
                Ok(text(&format!("region: {region}")))
            }
            "test_missing_capability" => {
                let needs = vec![("answer", Need::sample("Say hello", 20))];
                Ok(match gather(&cx, given, needs, None).await? {
                    Gathered::Ask(ask) => ask.into(),
                    Gathered::Ready(answers) => {
                        text(&format!("sampled: {}", answer_text(&answers, "answer")))
                    }
                })
            }
            "test_streaming_elicitation" => {
                self.elicit_once(
                    &cx,
                    given,
                    "confirmation",
                    "Please confirm",
                    confirm_schema(),
                    "Confirmation",
                )
                .await
            }
            "test_logging_tool" => {
                self.log(&cx, "test_logging_tool ran").await;
                Ok(text("Logging tool executed"))
            }
            "test_trigger_tool_change" => {
                let _ = self.shared.changes.send(Change::Tools);
                if !is_modern(&cx) {
                    let _ = cx.peer.notify_tool_list_changed().await;
                }
                Ok(text("Tool list change announced"))
            }
            "test_trigger_prompt_change" => {
                let _ = self.shared.changes.send(Change::Prompts);
                if !is_modern(&cx) {
                    let _ = cx.peer.notify_prompt_list_changed().await;
                }
                Ok(text("Prompt list change announced"))
            }
            "test_input_required_result_elicitation" => {
                let needs = vec![(
                    "user_name",
                    Need::elicit("What is your name?", name_schema("name"))?,
                )];
                Ok(match gather(&cx, given, needs, None).await? {
                    Gathered::Ask(ask) => ask.into(),
                    Gathered::Ready(answers) => text(&format!(
                        "Hello, {}!",
                        elicited_field(&answers, "user_name", "name")
                    )),
                })
            }
            "test_input_required_result_sampling" => {
                let needs = vec![(
                    "capital_question",
                    Need::sample("What is the capital of France?", 100),
                )];
                Ok(match gather(&cx, given, needs, None).await? {
                    Gathered::Ask(ask) => ask.into(),
                    Gathered::Ready(answers) => text(&format!(
                        "Sampling answered: {}",
                        answer_text(&answers, "capital_question")
                    )),
                })
            }
            "test_input_required_result_list_roots" => {
                let needs = vec![("client_roots", Need::Roots)];
                Ok(match gather(&cx, given, needs, None).await? {
                    Gathered::Ask(ask) => ask.into(),
                    Gathered::Ready(answers) => text(&format!(
                        "Client roots: {}",
                        answer_text(&answers, "client_roots")
                    )),
                })
            }
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                // The sealed state is checked first: a forged one never reaches the answers.
                let stage = self.open(name, request.request_state.as_deref())?;
                let state = Some(self.seal(name, &Stage::Start)?);
                let needs = vec![("confirm", Need::elicit("Please confirm", confirm_schema())?)];
                Ok(match gather(&cx, given, needs, state).await? {
                    Gathered::Ask(ask) => ask.into(),
                    Gathered::Ready(answers) if stage.is_some() || !is_modern(&cx) => {
                        text(&format!("state-ok: {}", answer_text(&answers, "confirm")))
                    }
                    Gathered::Ready(_) => {
                        return Err(McpError::invalid_params(
                            "inputResponses were sent without the requestState they answer",
                            None,
                        ));
                    }
                })
            }
            "test_input_required_result_multiple_inputs" => {
                self.open(name, request.request_state.as_deref())?;
                let state = Some(self.seal(name, &Stage::Start)?);
                let needs = vec![
                    (
                        "user_name",
                        Need::elicit("What is your name?", name_schema("name"))?,
                    ),
                    ("greeting", Need::sample("Generate a greeting", 50)),
                    ("client_roots", Need::Roots),
                ];
                Ok(match gather(&cx, given, needs, state).await? {
                    Gathered::Ask(ask) => ask.into(),
                    Gathered::Ready(answers) => text(&format!(
                        "name: {}, greeting: {}, roots: {}",
                        elicited_field(&answers, "user_name", "name"),
                        answer_text(&answers, "greeting"),
                        answer_text(&answers, "client_roots"),
                    )),
                })
            }
            "test_input_required_result_multi_round" => {
                let mut stage = self
                    .open(name, request.request_state.as_deref())?
                    .unwrap_or(Stage::Start);
                loop {
                    stage = match stage {
                        Stage::Start => {
                            let state = Some(self.seal(name, &Stage::Start)?);
                            let needs = vec![(
                                "step1",
                                Need::elicit("Step 1: What is your name?", name_schema("name"))?,
                            )];
                            match gather(&cx, given, needs, state).await? {
                                Gathered::Ask(ask) => return Ok(ask.into()),
                                Gathered::Ready(answers) => Stage::Named {
                                    name: elicited_field(&answers, "step1", "name"),
                                },
                            }
                        }
                        Stage::Named { name: person } => {
                            let state = Some(self.seal(
                                name,
                                &Stage::Named {
                                    name: person.clone(),
                                },
                            )?);
                            let needs = vec![(
                                "step2",
                                Need::elicit(
                                    "Step 2: What is your favorite color?",
                                    name_schema("color"),
                                )?,
                            )];
                            return Ok(match gather(&cx, given, needs, state).await? {
                                Gathered::Ask(ask) => ask.into(),
                                Gathered::Ready(answers) => text(&format!(
                                    "{person} likes {}",
                                    elicited_field(&answers, "step2", "color")
                                )),
                            });
                        }
                    };
                }
            }
            "test_input_required_result_capabilities" => {
                let caps = cx.client_capabilities().unwrap_or_default();
                let mut needs = Vec::new();
                if caps.elicitation.is_some() {
                    needs.push((
                        "user_name",
                        Need::elicit("What is your name?", name_schema("name"))?,
                    ));
                }
                if caps.sampling.is_some() {
                    needs.push(("greeting", Need::sample("Generate a greeting", 50)));
                }
                if caps.roots.is_some() {
                    needs.push(("client_roots", Need::Roots));
                }
                if needs.is_empty() {
                    return Ok(text("The client declared nothing this tool could ask for"));
                }
                Ok(match gather(&cx, given, needs, None).await? {
                    Gathered::Ask(ask) => ask.into(),
                    Gathered::Ready(answers) => {
                        text(&format!("Received {} answer(s)", answers.len()))
                    }
                })
            }
            other => Err(McpError::invalid_params(
                format!("unknown tool: {other}"),
                Some(json!({ "tool": other })),
            )),
        }
    }

    /// One form elicitation; the result text is `"{label}: action=…, content=…"`.
    async fn elicit_once(
        &self,
        cx: &RequestContext<RoleServer>,
        given: Option<&InputResponses>,
        key: &'static str,
        message: &str,
        schema: Value,
        label: &str,
    ) -> Result<CallToolResponse, McpError> {
        let needs = vec![(key, Need::elicit(message, schema)?)];
        Ok(match gather(cx, given, needs, None).await? {
            Gathered::Ask(ask) => ask.into(),
            Gathered::Ready(answers) => {
                let answer = answers.get(key).cloned().unwrap_or(Value::Null);
                let action = answer.get("action").cloned().unwrap_or(Value::Null);
                let content = answer.get("content").cloned().unwrap_or(Value::Null);
                text(&format!("{label}: action={action}, content={content}"))
            }
        })
    }
}

/// Argument problems are tool errors the model can correct (SEP-1303), not protocol errors.
fn missing_argument(name: &str) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "The required argument `{name}` is missing or not a string."
    ))])
    .into()
}

// ---------------------------------------------------------------------------------------
// Prompts and resources
// ---------------------------------------------------------------------------------------

impl Fixture {
    async fn prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let args = request.arguments.as_ref();
        let required = |name: &str| {
            argument(args, name).ok_or_else(|| {
                McpError::invalid_params(
                    format!("prompt argument `{name}` is required"),
                    Some(json!({ "argument": name })),
                )
            })
        };
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )],
            "test_prompt_with_arguments" => {
                let (arg1, arg2) = (required("arg1")?, required("arg2")?);
                vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = required("resourceUri")?;
                vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(
                            ResourceContents::text("Embedded resource content for testing.", uri)
                                .with_mime_type("text/plain"),
                        ),
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ]
            }
            "test_prompt_with_image" => vec![
                PromptMessage::new(Role::User, ContentBlock::image(PNG_BASE64, "image/png")),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ],
            "test_input_required_result_prompt" => {
                let needs = vec![(
                    "user_context",
                    Need::elicit(
                        "What context should the prompt use?",
                        name_schema("context"),
                    )?,
                )];
                match gather(&cx, request.input_responses.as_ref(), needs, None).await? {
                    Gathered::Ask(ask) => return Ok(ask.into()),
                    Gathered::Ready(answers) => vec![PromptMessage::new_text(
                        Role::User,
                        format!(
                            "Use this context: {}",
                            elicited_field(&answers, "user_context", "context")
                        ),
                    )],
                }
            }
            other => {
                return Err(McpError::invalid_params(
                    format!("unknown prompt: {other}"),
                    Some(json!({ "prompt": other })),
                ));
            }
        };
        Ok(GetPromptResult::new(messages).into())
    }
}

fn read(uri: &str) -> Option<ResourceContents> {
    match uri {
        "test://static-text" => Some(
            ResourceContents::text("This is the content of the static text resource.", uri)
                .with_mime_type("text/plain"),
        ),
        "test://static-binary" => {
            Some(ResourceContents::blob(PNG_BASE64, uri).with_mime_type("image/png"))
        }
        WATCHED_URI => Some(
            ResourceContents::text("The watched resource has not changed.", uri)
                .with_mime_type("text/plain"),
        ),
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")
                .filter(|id| !id.is_empty() && !id.contains('/'))?;
            let body =
                json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
            Some(ResourceContents::text(body.to_string(), uri).with_mime_type("application/json"))
        }
    }
}

// ---------------------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------------------

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerInfo {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerInfo::new(capabilities)
            .with_server_info(Implementation::new(
                "comfyui-agent-conformance",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Fixture server for the MCP conformance suite.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|tool| tool.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.call(request, cx).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(prompts()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.prompt(request, cx).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(resources()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(TEMPLATE_URI, "template-data")
                .with_description("JSON data for any id")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        match read(&request.uri) {
            Some(contents) => Ok(ReadResourceResult::new(vec![contents]).into()),
            // -32002 for sessions; rmcp turns it into -32602 for 2026-07-28 (SEP-2164).
            None => Err(McpError::resource_not_found(
                "Resource not found",
                Some(json!({ "uri": request.uri })),
            )),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if read(&request.uri).is_none() {
            return Err(McpError::resource_not_found(
                "Resource not found",
                Some(json!({ "uri": request.uri })),
            ));
        }
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.insert(request.uri);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.remove(&request.uri);
        }
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // rmcp narrows this to what was requested and what get_info advertises.
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.shared.changes.subscribe();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = changes.recv() => {
                    // The sink drops what this stream did not ask for.
                    let sent = match change {
                        Ok(Change::Tools) => context.sink().notify_tool_list_changed().await,
                        Ok(Change::Prompts) => context.sink().notify_prompt_list_changed().await,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    if let Err(error) = sent {
                        tracing::debug!(%error, "subscription notification not sent");
                    }
                }
            }
        }
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(mut level) = self.log_level.lock() {
            *level = Some(request.level);
        }
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let candidates: &[&str] = match (&request.r#ref, request.argument.name.as_str()) {
            (Reference::Prompt(prompt), "arg1") if prompt.name == "test_prompt_with_arguments" => {
                &["paris", "park", "party", "test", "testValue1"]
            }
            (Reference::Prompt(prompt), "arg2") if prompt.name == "test_prompt_with_arguments" => {
                &["test", "testValue2", "world"]
            }
            (Reference::Resource(template), "id") if template.uri == TEMPLATE_URI => {
                &["1", "123", "42"]
            }
            _ => &[],
        };
        let prefix = request.argument.value.as_str();
        let values = candidates
            .iter()
            .filter(|c| c.starts_with(prefix))
            .map(|c| c.to_string())
            .collect();
        let completion =
            CompletionInfo::new(values).map_err(|e| McpError::internal_error(e, None))?;
        Ok(CompleteResult::new(completion))
    }
}
