//! MCP over HTTP: Streamable HTTP at `/mcp`, the legacy SSE bridge at `/sse` + `/messages`,
//! Prometheus metrics at `/metrics`, `/healthz` + `/readyz`, and the web console at `/`. One
//! guard checks every MCP request and `/metrics`, in this order: Host, Origin (a CORS preflight
//! from an allowed origin is answered here, before the token, which a preflight never
//! carries), bearer token, body size, then the JSON-RPC shape of POST bodies. Responses to
//! an allowed cross-origin request carry CORS headers naming that origin, never `*`.
//! The console's pages pass the Host check only: the page is public, `/mcp` needs the token.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{DRAIN_TIME, Rejection, SHUTDOWN_GRACE, Shutdown, console, decode, legacy_sse};
use crate::app::AppState;
use crate::config::HttpConfig;
use crate::error::StartupError;
use crate::mcp::McpServer;

/// Binds the listening socket (so a busy port is reported before anything else starts).
pub async fn bind(http: &HttpConfig) -> Result<TcpListener, StartupError> {
    TcpListener::bind(http.bind)
        .await
        .map_err(|source| StartupError::Bind {
            addr: http.bind,
            source,
        })
}

/// Time for the last results to reach their clients once every call has finished.
const RESPONSE_FLUSH_TIME: std::time::Duration = std::time::Duration::from_millis(250);

/// Serves the product over HTTP until `signal`; then stops accepting, lets in-flight calls
/// finish (up to [`DRAIN_TIME`]), and only then closes sessions and streams.
pub async fn serve_app(
    app: AppState,
    listener: TcpListener,
    signal: CancellationToken,
) -> Result<(), StartupError> {
    let http = app.config().http.clone();
    let shutdown = Shutdown {
        requested: signal,
        sessions: CancellationToken::new(),
    };
    let in_flight = app.in_flight().clone();
    let phases = shutdown.clone();
    tokio::spawn(async move {
        phases.requested.cancelled().await;
        in_flight.close();
        if !in_flight.is_empty() {
            match tokio::time::timeout(DRAIN_TIME, in_flight.wait()).await {
                // The last results still have to travel from rmcp's session to the client.
                Ok(()) => tokio::time::sleep(RESPONSE_FLUSH_TIME).await,
                Err(_) => {
                    tracing::warn!(
                        "tool calls still running after {DRAIN_TIME:?}; closing sessions"
                    );
                }
            }
        }
        phases.sessions.cancel();
    });
    let status = app.clone();
    let make = move || McpServer::new(app.clone(), "http");
    let router = router(make, &http, &shutdown, Some(status));
    serve(router, listener, &shutdown).await
}

/// Runs `router` on `listener` with TCP_NODELAY on every connection (without it each small
/// response waits ~40 ms for Nagle), stopping gracefully on `shutdown`.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: &Shutdown,
) -> Result<(), StartupError> {
    let addr = listener.local_addr().ok();
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    if let Some(addr) = addr {
        tracing::info!(%addr, "serving MCP over HTTP at /mcp (Streamable HTTP) and /sse (legacy)");
    }
    let stop = shutdown.requested.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        stop.cancelled().await;
    });
    let requested = shutdown.requested.clone();
    let server = server.into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.map_err(|source| StartupError::Io { context: "serving HTTP", source }),
        () = async { requested.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("connections did not close within {SHUTDOWN_GRACE:?}; exiting");
            Ok(())
        }
    }
}

/// The HTTP surface for any handler: the product uses [`McpServer`], the conformance
/// fixture server its own handler, behind the same guard. With `app`, `/readyz` also reports
/// where the ComfyUI connection stands, and `/metrics` serves the server's metrics.
pub fn router<H, F>(
    make: F,
    http: &HttpConfig,
    shutdown: &Shutdown,
    app: Option<AppState>,
) -> Router
where
    H: ServerHandler,
    F: Fn() -> H + Clone + Send + Sync + 'static,
{
    let guard = Arc::new(Guard::new(http));
    // rmcp's own Host check is off: the guard checks Host for every route alike.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(http.max_body_bytes)
        .with_cancellation_token(shutdown.sessions.child_token());
    let make_streamable = make.clone();
    let streamable = StreamableHttpService::new(
        move || Ok(make_streamable()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    // Behind the same guard as /mcp: a scraper sends the Host it was configured with and
    // can send the bearer token; nothing on /metrics needs a browser.
    let metrics_routes = match &app {
        Some(app) => Router::new()
            .route("/metrics", get(metrics))
            .with_state(app.clone()),
        None => Router::new(),
    };
    // The console is the product's, so only with `app`; the fixture server has none.
    let console_routes = if app.is_some() && http.console {
        console::routes().layer(middleware::from_fn_with_state(guard.clone(), check_host))
    } else {
        Router::new()
    };
    let health = Health {
        shutdown: shutdown.requested.clone(),
        app,
    };
    let mcp_routes = Router::new()
        .nest_service("/mcp", streamable)
        .merge(legacy_sse::routes(
            make,
            http.max_body_bytes,
            shutdown.sessions.clone(),
        ))
        .merge(metrics_routes)
        .layer(middleware::from_fn_with_state(guard, check));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
        .merge(mcp_routes)
        .merge(console_routes)
}

#[derive(Debug, Clone)]
struct Health {
    shutdown: CancellationToken,
    app: Option<AppState>,
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })).into_response()
}

/// Ready while not shutting down. ComfyUI being down does not make this server unready (its
/// tools still answer, with clear errors), so the ComfyUI connection is reported alongside,
/// from what the client already knows: this probe never touches the network.
async fn readyz(State(health): State<Health>) -> Response {
    if health.shutdown.is_cancelled() {
        let body = json!({ "status": "shutting down" });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let mut body = json!({ "status": "ready" });
    if let Some(app) = &health.app {
        let status = app.comfy().status();
        body["comfyui"] = json!({
            "url": status.url.as_str(),
            "discovered": status.discovered,
            "breaker": status.breaker.state.as_str(),
            "consecutive_failures": status.breaker.consecutive_failures,
            "retry_in_s": status.breaker.retry_in.as_secs_f64(),
            "transitions": status.breaker.transitions,
            "calls": status.calls.calls,
            "failures": status.calls.failures,
            "retries": status.calls.retries,
        });
    }
    axum::Json(body).into_response()
}

/// Prometheus text exposition (format 0.0.4) of every metric in the catalogue.
async fn metrics(State(app): State<AppState>) -> Response {
    let mut gauges = app.gauges();
    gauges.gpus = app.gpu().gauges().await;
    let text = app.metrics().render_prometheus(&gauges);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// The request checks shared by `/mcp`, `/sse`, `/messages` and `/metrics`.
#[derive(Debug)]
struct Guard {
    allowed_hosts: Vec<String>,
    any_host: bool,
    allowed_origins: Vec<String>,
    any_origin: bool,
    token: Option<Vec<u8>>,
    max_body_bytes: usize,
}

impl Guard {
    fn new(http: &HttpConfig) -> Self {
        let mut allowed_hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .into_iter()
            .map(String::from)
            .collect();
        if !http.bind.ip().is_unspecified() {
            allowed_hosts.push(http.bind.ip().to_string());
        }
        allowed_hosts.extend(http.allowed_hosts.iter().map(|h| normal_host(h)));
        let any_host = http.allowed_hosts.iter().any(|h| h == "*");
        let allowed_origins: Vec<String> = http
            .allowed_origins
            .iter()
            .map(|o| normal_origin(o).unwrap_or_else(|| o.clone()))
            .collect();
        let any_origin = allowed_origins.iter().any(|o| o == "*");
        if http.bind.ip().is_unspecified() && !any_host && http.allowed_hosts.is_empty() {
            tracing::warn!(
                "listening on every address, but only loopback Host names are accepted: add the \
                 names clients use to reach this machine to COMFYUI_AGENT_ALLOWED_HOSTS"
            );
        }
        Self {
            allowed_hosts,
            any_host,
            allowed_origins,
            any_origin,
            token: http.token.as_ref().map(|t| t.expose().as_bytes().to_vec()),
            max_body_bytes: http.max_body_bytes,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.any_host || self.allowed_hosts.contains(&normal_host(host))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let Some(origin) = normal_origin(origin) else {
            return false;
        };
        if self.allowed_origins.contains(&origin) {
            return true;
        }
        // Pages served from this machine (any port) may connect; DNS rebinding can't fake
        // an Origin, so this is what stops a hostile page.
        let Ok(url) = url::Url::parse(&origin) else {
            return false;
        };
        matches!(url.scheme(), "http" | "https")
            && match url.host() {
                Some(url::Host::Domain(domain)) => domain == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            }
    }

    /// Whether a browser may send this request: an allowed origin, or the page's own origin
    /// (the console at `http://box.lan:8765/` calling `/mcp` there). Same-origin is judged
    /// against a Host that already passed the Host check, so DNS rebinding can't use it.
    fn origin_allowed_for(&self, origin: &str, host: &str) -> bool {
        self.origin_allowed(origin) || same_origin(origin, host)
    }

    fn token_ok(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or_default();
        presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected))
    }
}

/// A Host value or allow-list entry as compared: name only, lower case, no trailing dot.
fn normal_host(host: &str) -> String {
    host_name(host.trim())
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// An origin as browsers send it (`https://app.example.com`, default port left out).
fn normal_origin(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin.trim()).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Whether `origin` names the server the request reached at `host` (a Host header value).
fn same_origin(origin: &str, host: &str) -> bool {
    let Ok(url) = url::Url::parse(origin.trim()) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let ours = normal_origin(&format!("{}://{}", url.scheme(), host.trim()));
    ours.is_some() && ours == normal_origin(origin)
}

/// Headers a browser page may send to `/mcp`, `/sse`, `/messages` and `/metrics`.
const CORS_ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept, Mcp-Session-Id, \
                                  MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name";
/// Response headers a page may read: the session id it must send back, the protocol version,
/// and the token challenge.
const CORS_EXPOSE_HEADERS: &str = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate";
const CORS_ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// How long, in seconds, a browser may reuse a preflight answer (Chromium caps it at 7200).
const CORS_MAX_AGE: &str = "600";

/// Marks `response` as readable by the page at `origin`, which the guard has allowed.
fn allow_origin(response: &mut Response, origin: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(CORS_EXPOSE_HEADERS),
    );
}

/// The answer to a CORS preflight from an allowed origin.
fn preflight(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    allow_origin(&mut response, origin);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_ALLOW_METHODS),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(CORS_MAX_AGE),
    );
    response
}

/// The name part of a Host header: `[::1]:8765` → `::1`, `localhost:8765` → `localhost`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// An HTTP error whose body is a JSON-RPC error, which every MCP client can read.
pub(crate) fn reject(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    respond(
        status,
        &Rejection {
            code,
            id: serde_json::Value::Null,
            message: message.into(),
        },
    )
}

/// `rejection` as an HTTP response with `status`.
pub(crate) fn respond(status: StatusCode, rejection: &Rejection) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        rejection.to_json(),
    )
        .into_response()
}

/// The Host header (or the request target's authority) when it is allowed; otherwise what
/// was sent, if anything, for the refusal.
fn allowed_host(guard: &Guard, request: &Request) -> Result<String, Option<String>> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(host) if guard.host_allowed(&host) => Ok(host),
        other => Err(other),
    }
}

fn refuse_host(host: Option<String>) -> Response {
    tracing::warn!(host = ?host, "refused a request with a Host that is not allowed");
    reject(
        StatusCode::FORBIDDEN,
        -32000,
        format!(
            "Forbidden: the Host {:?} is not allowed. Connect through localhost, or add that \
             name to COMFYUI_AGENT_ALLOWED_HOSTS.",
            host.unwrap_or_default()
        ),
    )
}

/// The console's guard: the Host check alone (the page is public; `/mcp` needs the token).
async fn check_host(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    match allowed_host(&guard, &request) {
        Ok(_) => next.run(request).await,
        Err(host) => refuse_host(host),
    }
}

async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let host = match allowed_host(&guard, &request) {
        Ok(host) => host,
        Err(host) => return refuse_host(host),
    };
    let origin = request.headers().get(header::ORIGIN).cloned();
    if let Some(origin) = &origin {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| guard.origin_allowed_for(o, &host));
        if !allowed {
            tracing::warn!(origin = ?origin, "refused a request from an Origin that is not allowed");
            let mut refusal = reject(
                StatusCode::FORBIDDEN,
                -32000,
                format!(
                    "Forbidden: the Origin {:?} is not allowed. Add it to \
                     COMFYUI_AGENT_ALLOWED_ORIGINS to let that page connect.",
                    origin.to_str().unwrap_or_default()
                ),
            );
            vary_on_origin(&mut refusal);
            return refusal;
        }
    }
    let mut response = match origin {
        // A preflight carries no token; it only asks whether the real request may be sent.
        Some(origin) if request.method() == Method::OPTIONS => preflight(origin),
        // Errors too (a wrong token, a bad body) are readable, so a page can say what failed.
        Some(origin) => {
            let mut response = guarded(&guard, request, next).await;
            allow_origin(&mut response, origin);
            response
        }
        None => guarded(&guard, request, next).await,
    };
    vary_on_origin(&mut response);
    response
}

fn vary_on_origin(response: &mut Response) {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The token, size and body checks, then the route itself.
async fn guarded(guard: &Guard, request: Request, next: Next) -> Response {
    let headers = request.headers();

    if !guard.token_ok(headers) {
        tracing::warn!(path = %request.uri().path(), "refused a request without a valid token");
        let mut response = reject(
            StatusCode::UNAUTHORIZED,
            -32001,
            "Unauthorized: send the server's token as `Authorization: Bearer <token>` (the \
             value of COMFYUI_AGENT_TOKEN).",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"comfyui-agent\""),
        );
        return response;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > guard.max_body_bytes) {
        return too_large(guard.max_body_bytes);
    }
    let path = request.uri().path();
    let carries_message =
        path == "/mcp" || path.starts_with("/mcp/") || path == "/messages" || path == "/message";
    if request.method() == Method::POST && carries_message {
        return check_body(guard, request, next).await;
    }
    next.run(request).await
}

fn too_large(limit: usize) -> Response {
    reject(
        StatusCode::PAYLOAD_TOO_LARGE,
        -32600,
        format!(
            "Payload too large: requests are limited to {limit} bytes. Send large workflows by \
             path, or raise COMFYUI_AGENT_MAX_BODY_BYTES."
        ),
    )
}

/// rmcp answers malformed bodies with a plain-text 415; clients deserve JSON-RPC errors.
async fn check_body(guard: &Guard, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, guard.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(error) if is_length_limit(&error) => return too_large(guard.max_body_bytes),
        Err(error) => {
            return reject(
                StatusCode::BAD_REQUEST,
                -32600,
                format!("The request body could not be read ({error}). Send it again."),
            );
        }
    };
    // rmcp parses the body with the same typed parse `decode` starts with, so a valid body is
    // parsed once, by rmcp; only a body rmcp refuses (415, or 406 which it checks first) is
    // diagnosed here, so the JSON-RPC error still wins over both, as before.
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    if matches!(
        response.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::NOT_ACCEPTABLE
    ) && let Err(rejection) = decode(&bytes)
    {
        return respond(StatusCode::BAD_REQUEST, &rejection);
    }
    response
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(hosts: &[&str], origins: &[&str], token: Option<&str>) -> Guard {
        let mut http = HttpConfig {
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..HttpConfig::default()
        };
        if let Some(token) = token {
            http = http.with_token(token);
        }
        Guard::new(&http)
    }

    #[test]
    fn host_names_ignore_ports_and_brackets() {
        assert_eq!(host_name("localhost:8765"), "localhost");
        assert_eq!(host_name("[::1]:8765"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn loopback_hosts_pass_and_others_need_listing() {
        let g = guard(&[], &[], None);
        assert!(g.host_allowed("localhost:8765"));
        assert!(g.host_allowed("LOCALHOST"));
        assert!(g.host_allowed("[::1]:1"));
        assert!(!g.host_allowed("evil.example:8765"));
        assert!(guard(&["box.lan"], &[], None).host_allowed("box.lan:8765"));
        assert!(guard(&["Box.LAN.:8765"], &[], None).host_allowed("box.lan"));
        assert!(guard(&["[fe80::1]"], &[], None).host_allowed("[fe80::1]:8765"));
        assert!(guard(&["*"], &[], None).host_allowed("anything"));
    }

    #[test]
    fn origins_from_this_machine_or_the_list_pass() {
        let g = guard(&[], &["https://app.example.com"], None);
        assert!(g.origin_allowed("http://localhost:5173"));
        assert!(g.origin_allowed("http://127.0.0.1:3000"));
        assert!(g.origin_allowed("https://app.example.com"));
        assert!(!g.origin_allowed("https://evil.example"));
        assert!(!g.origin_allowed("null"));
        assert!(!g.origin_allowed("http://localhost.evil.example"));
        let explicit_port = guard(&[], &["https://app.example.com:443/"], None);
        assert!(explicit_port.origin_allowed("https://app.example.com"));
    }

    #[test]
    fn a_page_from_the_host_it_reached_is_same_origin() {
        assert!(same_origin("http://box.lan:8765", "box.lan:8765"));
        assert!(same_origin("https://box.lan", "box.lan:443"));
        assert!(same_origin("http://[fe80::1]:8765", "[fe80::1]:8765"));
        assert!(!same_origin("http://box.lan:1", "box.lan:8765"));
        assert!(!same_origin("http://other.lan:8765", "box.lan:8765"));
        assert!(!same_origin("null", "box.lan:8765"));
        assert!(!same_origin("file:///x", "box.lan"));
        let g = guard(&["box.lan"], &[], None);
        assert!(g.origin_allowed_for("http://box.lan:8765", "box.lan:8765"));
        assert!(!g.origin_allowed_for("http://box.lan:8765", "localhost:8765"));
    }

    #[test]
    fn preflights_name_the_origin_and_every_mcp_header() {
        let response = preflight(HeaderValue::from_static("https://app.example.com"));
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let headers = response.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .expect("ascii");
        for name in [
            "Authorization",
            "Mcp-Session-Id",
            "MCP-Protocol-Version",
            "Last-Event-ID",
        ] {
            assert!(allowed.contains(name), "{name}");
        }
    }

    #[test]
    fn tokens_compare_exactly() {
        let g = guard(&[], &[], Some("s3cret"));
        let mut headers = HeaderMap::new();
        assert!(!g.token_ok(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(g.token_ok(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(!g.token_ok(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!g.token_ok(&headers));
        assert!(guard(&[], &[], None).token_ok(&HeaderMap::new()));
    }
}
