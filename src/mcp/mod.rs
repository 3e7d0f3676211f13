//! The MCP protocol handler: a hand-written rmcp `ServerHandler` over the tool registry.
//! One `McpServer` exists per MCP session; all of them share one [`AppState`].

// Logging is deprecated by SEP-2577 (2026-07-28) but stays part of every earlier protocol
// version, which most clients still speak.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, ContentBlock,
    ErrorData, GetPromptRequestParams, GetPromptResponse, Implementation, InitializeRequestParams,
    InitializeResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, ResourceContents, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, SubscriptionContext};
use rmcp::{RoleServer, ServerHandler};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::error::ToolError;
use crate::registry::into_call_result;
use crate::session::Session;
use crate::session::store::SessionName;
use crate::telemetry::metrics::{ConnectionGuard, McpMethod};

pub use rmcp::model::LoggingLevel;

mod ask;
pub(crate) use ask::ClientAnswer;
pub mod complete;
pub mod consent;
pub mod prompts;
pub mod resources;
mod span;
mod subscriptions;
pub mod tasks;
use span::Target;

/// The largest file `resources/read` returns (base64 grows it by a third on the wire).
const MAX_RESOURCE_BYTES: usize = 20 * 1024 * 1024;

/// What the assistant reads about this server when it connects.
pub const INSTRUCTIONS: &str = "comfyui-agent gives you command of the user's ComfyUI (a node-based image and video \
generation app). Inspect it (is_comfyui_running, get_all_nodes, get_node_info), start from a \
workflow (load_workflow with a path or the JSON, or get_workflow_template), edit it with undo \
(set_input, add_node, connect_nodes, apply_workflow_patch), check it (validate_workflow), run it \
(execute_with_progress; long runs return a prompt_id for get_execution_status), and the images \
come back inline. Check model families (identify_model_family) before mixing models. Each \
conversation has its own workflow; pass `session` to share one by name. Results are JSON; errors \
say what happened and what to do. Paths must lie inside the ComfyUI folder or the folders the \
user allowed.";

/// The per-session protocol handler.
#[derive(Debug, Clone)]
pub struct McpServer {
    app: AppState,
    /// `stdio`, `http`, `sse`: names the session in logs.
    transport: &'static str,
    session: Arc<Session>,
    /// Whether this connection began with `initialize`. Stateless requests (2026-07-28)
    /// don't, and keep their state in a named session instead.
    initialized: Arc<std::sync::atomic::AtomicBool>,
    /// This session's name in logs and traces (`stdio-1`), given at `initialize`.
    label: Arc<std::sync::OnceLock<String>>,
    /// `pipe` (stdio, in-process) or `tcp` (HTTP), for `network.transport`.
    network: &'static str,
    /// Counts this connection in the sessions gauge from `initialize` until the last copy
    /// of this handler (the session) is dropped.
    connection: Arc<std::sync::OnceLock<ConnectionGuard>>,
    /// Its resource subscriptions; they stop when the last copy is dropped.
    subscriptions: Arc<subscriptions::Subscriptions>,
}

impl McpServer {
    /// Cheap: rmcp builds one per HTTP POST (for header checks), not only per session.
    pub fn new(app: AppState, transport: &'static str) -> Self {
        Self {
            app,
            transport,
            session: Arc::default(),
            initialized: Arc::default(),
            label: Arc::default(),
            network: if matches!(transport, "http" | "sse") {
                "tcp"
            } else {
                "pipe"
            },
            connection: Arc::default(),
            subscriptions: Arc::default(),
        }
    }

    /// What this connection's requests can see of the sessions.
    fn viewer(&self) -> resources::Viewer {
        resources::Viewer {
            app: self.app.clone(),
            own: Arc::clone(&self.session),
            stateless: !self.initialized.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The span for one request (see `span.rs`).
    fn span(
        &self,
        method: &'static str,
        target: Target<'_>,
        context: &RequestContext<RoleServer>,
    ) -> span::RequestSpan {
        span::request(method, target, context, self.network, self.label.get())
    }
}

/// The `error.type` of a JSON-RPC error answer.
fn rpc_error_type(error: &ErrorData) -> &'static str {
    match error.code {
        rmcp::model::ErrorCode::RESOURCE_NOT_FOUND => "resource_not_found",
        rmcp::model::ErrorCode::INVALID_PARAMS => "invalid_params",
        rmcp::model::ErrorCode::INTERNAL_ERROR => "internal_error",
        _ => "jsonrpc_error",
    }
}

/// What a tool sees of the call it serves: shared state, its session, and a way to talk back.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub app: AppState,
    pub session: Arc<Session>,
    /// Fires when the client cancels the call or the session ends.
    pub cancelled: CancellationToken,
    /// A request outside an initialized connection (2026-07-28 stateless).
    pub stateless: bool,
    peer: Option<Peer<RoleServer>>,
    log_level: Option<LoggingLevel>,
    /// The client's token for `notifications/progress`, when it asked for progress.
    progress_token: Option<ProgressToken>,
    /// Content blocks (images, resource links) to send after the result's JSON.
    attachments: Arc<std::sync::Mutex<Vec<ContentBlock>>>,
    /// The tool this call runs (empty for detached contexts).
    pub tool: Arc<str>,
    /// What the client can do for this call (ask the user, answers it already gave).
    client: ClientSide,
    /// Set when the call runs as a task: questions go through the task.
    task: Option<TaskHandle>,
}

/// What the calling client can do, from its declared capabilities and this request.
#[derive(Debug, Clone, Default)]
struct ClientSide {
    /// It declared elicitation: it can put a question to the user.
    can_elicit: bool,
    /// It declared sampling: it lends its own model.
    can_sample: bool,
    /// The request uses the 2026-07-28 lifecycle: questions go back as an
    /// `input_required` result instead of a request to the client.
    modern: bool,
    /// Answers sent with a retried request (`inputResponses`).
    responses: Arc<rmcp::model::InputResponses>,
    /// The `requestState` a retried request echoes back.
    request_state: Option<Arc<str>>,
}

/// The task a call runs as.
#[derive(Clone)]
struct TaskHandle(rmcp::task_manager::TaskContext);

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TaskHandle")
            .field(&self.0.task_id())
            .finish()
    }
}

impl ToolContext {
    /// A context with no client attached (unit tests, benchmarks).
    pub fn detached(app: AppState) -> Self {
        Self {
            app,
            session: Arc::default(),
            cancelled: CancellationToken::new(),
            stateless: false,
            peer: None,
            log_level: None,
            progress_token: None,
            attachments: Arc::default(),
            tool: Arc::from(""),
            client: ClientSide::default(),
            task: None,
        }
    }

    /// Tells the client how far a long call has got, if it asked (a progress token in the
    /// request). `progress` must grow from one report to the next.
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: impl Into<String>) {
        if let Some(task) = &self.task {
            // A task's progress is its status message, which `tasks/get` returns.
            task.0.set_status_message(message);
            return;
        }
        let (Some(peer), Some(token)) = (&self.peer, &self.progress_token) else {
            return;
        };
        let mut param = ProgressNotificationParam::new(token.clone(), progress);
        param.total = total;
        param.message = Some(message.into());
        if let Err(error) = peer.notify_progress(param).await {
            tracing::debug!(%error, "could not deliver a progress notification");
        }
    }

    /// Whether the client asked for progress notifications on this call.
    pub fn wants_progress(&self) -> bool {
        (self.progress_token.is_some() && self.peer.is_some()) || self.task.is_some()
    }

    /// The answer a retried 2026-07-28 request carries under `key`, if any.
    pub(crate) fn input_response(&self, key: &str) -> Option<&serde_json::Value> {
        self.client.responses.get(key)
    }

    /// The `requestState` a retried 2026-07-28 request echoes back, if any.
    pub(crate) fn request_state(&self) -> Option<&str> {
        self.client.request_state.as_deref()
    }

    /// Whether the client lends its own model (it declared sampling).
    pub(crate) fn client_can_sample(&self) -> bool {
        self.client.can_sample
    }

    /// Whether the client can put a question to the user (it declared elicitation).
    pub(crate) fn client_can_elicit(&self) -> bool {
        self.client.can_elicit
    }

    /// Adds a content block (an image, a resource link) to the result, after its JSON.
    pub fn attach(&self, block: ContentBlock) {
        self.attachments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(block);
    }

    fn take_attachments(&self) -> Vec<ContentBlock> {
        std::mem::take(
            &mut *self
                .attachments
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The session whose workflow and notes a call works on: the named one when the call
    /// names one, else this connection's, else (for stateless requests, which have no
    /// connection) the default named session.
    pub fn workspace(&self, named: Option<&str>) -> Arc<Session> {
        match named.map(str::trim).filter(|name| !name.is_empty()) {
            Some(name) => self.app.named_sessions().get(name),
            None if self.stateless => self.app.named_sessions().get(crate::session::DEFAULT_NAME),
            None => Arc::clone(&self.session),
        }
    }

    /// The session whose memory (plan, intent, iterations, outcomes, pipeline) a call works
    /// on: the named one when the call names one (checked as a file-safe name), else this
    /// connection's scope (`default` on stdio), else `default` for stateless requests.
    pub fn scope(&self, named: Option<&str>) -> Result<SessionName, ToolError> {
        match named.map(str::trim).filter(|name| !name.is_empty()) {
            Some(name) => Ok(SessionName::parse(name)?),
            None if self.stateless => Ok(SessionName::default_name()),
            None => Ok(self.session.scope()),
        }
    }

    /// Sends a log message to the client if it asked for this level (per request on
    /// 2026-07-28, through `logging/setLevel` before).
    pub async fn log(&self, level: LoggingLevel, message: impl Into<String>) {
        let (Some(peer), Some(threshold)) = (&self.peer, self.log_level) else {
            return;
        };
        if severity(level) < severity(threshold) {
            return;
        }
        let param = LoggingMessageNotificationParam::new(level, json!(message.into()))
            .with_logger("comfyui-agent");
        if let Err(error) = peer.notify_logging_message(param).await {
            tracing::debug!(%error, "could not deliver a log message to the client");
        }
    }
}

/// Whether a request uses the 2026-07-28 lifecycle (no server-to-client requests).
fn is_modern(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= rmcp::model::ProtocolVersion::V_2026_07_28.as_str())
}

/// Log levels in order of severity (rmcp's enum has no ordering).
pub fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// The server's identity and capabilities, shared by every session.
pub fn server_config() -> ServerConfig {
    let capabilities = ServerCapabilities::builder()
        .enable_tools()
        .enable_tool_list_changed()
        .enable_logging()
        .enable_resources()
        .enable_resources_subscribe()
        .enable_resources_list_changed()
        .enable_prompts()
        .enable_completions()
        .enable_tasks()
        .build();
    let mut implementation = Implementation::new("comfyui-agent", env!("CARGO_PKG_VERSION"));
    implementation.title = Some("ComfyUI Agent".into());
    implementation.description = Some(env!("CARGO_PKG_DESCRIPTION").into());
    ServerConfig::new(capabilities)
        .with_server_info(implementation)
        .with_instructions(INSTRUCTIONS)
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        server_config()
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.observe(
            self.span("initialize", Target::None, &context),
            async move {
                let label = self
                    .label
                    .get_or_init(|| self.app.next_session_id(self.transport));
                tracing::info!(
                    session = %label,
                    client = %request.client_info.name,
                    client_version = %request.client_info.version,
                    requested_protocol = %request.protocol_version,
                    "client connected"
                );
                context.peer.set_peer_info(request.clone());
                if self.transport != "stdio" {
                    // Its own memory scope, unique across restarts: `http-3-1a2b3c4d`.
                    let unique = uuid::Uuid::new_v4().simple().to_string();
                    if let Ok(scope) = SessionName::parse(&format!("{label}-{}", &unique[..8])) {
                        self.session.set_scope(scope);
                    }
                }
                self.initialized
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.connection
                    .get_or_init(|| self.app.metrics().connection_opened());
                self.negotiate_initialize(&request)
            },
            Some(McpMethod::Initialize),
        )
        .await
    }

    /// The handshake is done: compile the validators now, off the path of the initialize
    /// response, so the first call finds them ready.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.app.warm_up_in_background();
        self.subscriptions
            .forward_list_changes(&self.viewer(), context.peer.clone());
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.observe(
            self.span("logging/setLevel", Target::None, &context),
            async move {
                self.session.set_log_level(request.level);
                Ok(())
            },
            None,
        )
        .await
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.observe(
            self.span("tools/list", Target::None, &context),
            async move {
                // Clients on 2026-07-28 skip initialize; listing tools is their first step instead.
                self.app.warm_up_in_background();
                Ok(ListToolsResult::with_all_items(
                    self.app.tool_view().listed().to_vec(),
                ))
            },
            Some(McpMethod::ToolsList),
        )
        .await
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.observe(
            self.span("ping", Target::None, &context),
            async { Ok(()) },
            None,
        )
        .await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.observe(
            self.span("resources/list", Target::None, &context),
            async {
                Ok(ListResourcesResult::with_all_items(
                    self.viewer().list().await,
                ))
            },
            None,
        )
        .await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.observe(
            self.span(
                "resources/subscribe",
                Target::Resource(&request.uri),
                &context,
            ),
            async {
                self.subscriptions
                    .subscribe(&self.viewer(), &request.uri, context.peer.clone())
            },
            None,
        )
        .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.observe(
            self.span(
                "resources/unsubscribe",
                Target::Resource(&request.uri),
                &context,
            ),
            async {
                self.subscriptions.unsubscribe(&request.uri);
                Ok(())
            },
            None,
        )
        .await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.observe(
            self.span("prompts/list", Target::None, &context),
            async { Ok(ListPromptsResult::with_all_items(prompts::list())) },
            None,
        )
        .await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.observe(
            self.span("prompts/get", Target::Prompt(&request.name), &context),
            async {
                prompts::get(&self.viewer(), &request.name, request.arguments.as_ref())
                    .await
                    .map(Into::into)
            },
            None,
        )
        .await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.observe(
            self.span("completion/complete", Target::None, &context),
            complete::complete(&self.viewer(), &request),
            None,
        )
        .await
    }

    async fn get_task(
        &self,
        request: rmcp::model::GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetTaskResult, ErrorData> {
        self.observe(
            self.span("tasks/get", Target::None, &context),
            async {
                let task = self.app.tasks().manager().get_task(&request.task_id)?;
                Ok(rmcp::model::GetTaskResult::new(task))
            },
            None,
        )
        .await
    }

    async fn update_task(
        &self,
        request: rmcp::model::UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.observe(
            self.span("tasks/update", Target::None, &context),
            async {
                self.app
                    .tasks()
                    .manager()
                    .update_task(&request.task_id, request.input_responses)
            },
            None,
        )
        .await
    }

    async fn cancel_task(
        &self,
        request: rmcp::model::CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.observe(
            self.span("tasks/cancel", Target::None, &context),
            async { self.app.tasks().manager().cancel_task(&request.task_id) },
            None,
        )
        .await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(subscriptions::accepted_filter(requested))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let ended = context.request_context().ct.clone();
        let accepted = context.accepted().clone();
        let sink = context.sink().clone();
        subscriptions::listen(self.viewer(), accepted, sink, ended).await;
        Ok(())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.observe(
            self.span("resources/templates/list", Target::None, &context),
            async {
                Ok(ListResourceTemplatesResult::with_all_items(
                    resources::templates(),
                ))
            },
            Some(McpMethod::ResourceTemplatesList),
        )
        .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.observe(
            self.span("resources/read", Target::Resource(&request.uri), &context),
            self.read(request),
            Some(McpMethod::ResourcesRead),
        )
        .await
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.app.tool(name).map(|spec| spec.tool().clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let span = self.span("tools/call", Target::Tool(&request.name), &context);
        span.run(self.run_tool(request, context), &self.label).await
    }
}

impl McpServer {
    /// Runs one request inside its span; `method`, when given, is timed for the metrics
    /// (`tools/call` is timed per tool in [`Self::run_tool`] instead).
    async fn observe<T>(
        &self,
        span: span::RequestSpan,
        request: impl Future<Output = Result<T, ErrorData>>,
        method: Option<McpMethod>,
    ) -> Result<T, ErrorData> {
        let started = Instant::now();
        let answer = span.run(request, &self.label).await;
        if let Some(method) = method {
            self.app.metrics().record_method(
                method,
                started.elapsed(),
                answer.as_ref().err().map(rpc_error_type),
            );
        }
        answer
    }

    async fn run_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(spec) = self.app.tool(&request.name) else {
            self.app.metrics().record_tool_call(
                &request.name,
                std::time::Duration::ZERO,
                Some("unknown_tool"),
            );
            let message = if self.app.registry().get(&request.name).is_some() {
                format!(
                    "The tool {:?} is turned off on this server (COMFYUI_AGENT_DISABLED_TOOLS). \
                     Ask the operator to turn it on, or use another tool from tools/list.",
                    request.name
                )
            } else {
                format!(
                    "Unknown tool {:?}. Call tools/list to see the {} tools this server offers.",
                    request.name,
                    self.app.tool_view().listed().len()
                )
            };
            return Err(ErrorData::invalid_params(
                message,
                Some(json!({ "tool": request.name })),
            ));
        };
        let log_level = context
            .meta
            .log_level()
            .or_else(|| self.session.log_level());
        let capabilities = context.client_capabilities().unwrap_or_default();
        let cx = ToolContext {
            app: self.app.clone(),
            session: Arc::clone(&self.session),
            cancelled: context.ct.clone(),
            stateless: !self.initialized.load(std::sync::atomic::Ordering::Relaxed),
            peer: Some(context.peer.clone()),
            log_level,
            progress_token: context.meta.get_progress_token(),
            attachments: Arc::default(),
            tool: Arc::from(request.name.as_ref()),
            client: ClientSide {
                can_elicit: capabilities.elicitation.is_some(),
                can_sample: capabilities.sampling.is_some(),
                modern: is_modern(&context),
                responses: Arc::new(request.input_responses.clone().unwrap_or_default()),
                request_state: request.request_state.as_deref().map(Arc::from),
            },
            task: None,
        };
        if capabilities.supports_tasks() && tasks::TASK_TOOLS.contains(&spec.tool().name.as_ref()) {
            return Ok(tasks::start(spec, cx, request.arguments));
        }
        let started = Instant::now();
        let running = self
            .app
            .in_flight()
            .track_future(spec.call(cx.clone(), request.arguments));
        // A tool watching `cancelled` is polled once more and may return its own result; any
        // other is dropped at the next await.
        let outcome = tokio::select! {
            biased;
            outcome = running => outcome,
            () = context.ct.cancelled() => Err(ToolError::Cancelled),
        };
        let elapsed = started.elapsed();
        let kind = outcome.as_ref().err().map(ToolError::kind);
        self.app
            .metrics()
            .record_tool_call(&request.name, elapsed, kind);
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        match kind {
            None => {
                tracing::debug!(tool = %request.name, elapsed_ms, "tool call finished");
                cx.log(
                    LoggingLevel::Debug,
                    format!("{} finished in {elapsed_ms:.1} ms", request.name),
                )
                .await;
            }
            Some(kind) => {
                span::tool_error();
                tracing::info!(tool = %request.name, error.type = kind, elapsed_ms, "tool call failed");
                cx.log(
                    LoggingLevel::Warning,
                    format!("{} failed: {kind}", request.name),
                )
                .await;
            }
        }
        if let Err(ToolError::NeedsInput {
            key,
            request,
            state,
        }) = outcome
        {
            let mut requests = rmcp::model::InputRequests::new();
            requests.insert(key, *request);
            return Ok(CallToolResponse::InputRequired(
                rmcp::model::InputRequiredResult::new(Some(requests), state),
            ));
        }
        let succeeded = outcome.is_ok();
        let mut result = into_call_result(outcome);
        if succeeded {
            result.content.extend(cx.take_attachments());
        }
        Ok(result.into())
    }

    /// `resources/read`: ComfyUI's files here, everything else in `resources.rs`.
    async fn read(
        &self,
        request: ReadResourceRequestParams,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        match resources::Uri::parse(&uri) {
            Some(resources::Uri::Output(folder, subfolder, filename)) => {
                self.read_output(uri, folder, subfolder, filename).await
            }
            Some(parsed) => {
                let contents = self.viewer().read(&uri, parsed).await?;
                Ok(ReadResourceResult::new(vec![contents]).into())
            }
            None => Err(resources::not_found(
                &uri,
                format!(
                    "There is no resource {uri}. resources/list and resources/templates/list \
                     show what this server offers (comfyui://session/…, nodes/…, models/…, \
                     templates/…, knowledge/…, output/…)."
                ),
            )),
        }
    }

    /// A ComfyUI file named by a `comfyui://output/…` link, full size up to the cap.
    async fn read_output(
        &self,
        uri: String,
        folder: String,
        subfolder: String,
        filename: String,
    ) -> Result<ReadResourceResponse, ErrorData> {
        use base64::Engine as _;
        let not_found = |why: String| resources::not_found(&uri, why);
        let client = self.app.comfy().client().await;
        match client
            .view(&filename, Some(&subfolder), Some(&folder))
            .await
        {
            Ok(viewed) if viewed.bytes.len() > MAX_RESOURCE_BYTES => {
                Err(ErrorData::invalid_params(
                    format!(
                        "{filename} is {} MB, more than the {} MB a resource read returns. Open it \
                     from ComfyUI's {folder} folder instead.",
                        viewed.bytes.len() / (1024 * 1024),
                        MAX_RESOURCE_BYTES / (1024 * 1024)
                    ),
                    Some(json!({ "uri": uri })),
                ))
            }
            Ok(viewed) => {
                // The bytes say best what an image is; then ComfyUI's header unless it is
                // the generic one; then the file name (videos, audio).
                let mime = crate::images::sniff_mime(&viewed.bytes)
                    .map(String::from)
                    .or_else(|| {
                        viewed
                            .content_type
                            .clone()
                            .filter(|t| !t.starts_with("application/octet-stream"))
                    })
                    .unwrap_or_else(|| resources::mime_from_name(&filename).to_string());
                let blob = base64::engine::general_purpose::STANDARD.encode(&viewed.bytes);
                Ok(ReadResourceResult::new(vec![
                    ResourceContents::blob(blob, uri.clone()).with_mime_type(mime),
                ])
                .into())
            }
            Err(crate::comfy::ComfyError::FileNotFound { .. }) => Err(not_found(format!(
                "ComfyUI has no file {filename} in its {folder} folder{}.",
                if subfolder.is_empty() {
                    String::new()
                } else {
                    format!(" (subfolder {subfolder})")
                }
            ))),
            Err(error) => Err(ErrorData::internal_error(error.user_message(), None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> ToolContext {
        let dir = std::env::temp_dir().join("comfyui-agent-scope-test");
        let app = AppState::new(crate::config::Config::for_data_dir(dir)).expect("app");
        ToolContext::detached(app)
    }

    #[test]
    fn memory_scope_is_the_named_session_else_the_connections() {
        let cx = context();
        assert_eq!(cx.scope(None).expect("scope").as_str(), "default");
        assert_eq!(cx.scope(Some("  ")).expect("scope").as_str(), "default");
        assert_eq!(
            cx.scope(Some("portrait")).expect("scope").as_str(),
            "portrait"
        );
        cx.session
            .set_scope(SessionName::parse("http-1-abcd1234").expect("name"));
        assert_eq!(cx.scope(None).expect("scope").as_str(), "http-1-abcd1234");
        let error = cx.scope(Some("../etc")).expect_err("refused");
        assert!(
            error.user_message().contains("session name"),
            "{}",
            error.user_message()
        );
    }

    #[test]
    fn a_named_session_keeps_its_memory_under_its_name() {
        let cx = context();
        let named = cx.app.named_sessions().get("moodboard");
        assert_eq!(named.scope().as_str(), "moodboard");
    }
}
