//! The web console `serve` offers at `/`: a hand-written page, stylesheet and two ES modules
//! embedded in the binary. It speaks MCP to `/mcp` like any other client; nothing here serves
//! data. Every answer carries a strict Content-Security-Policy (no inline script or style,
//! nothing from other sites but the MCP servers the user points it at).

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const MCP_JS: &str = include_str!("console/mcp.js");
const STYLE_CSS: &str = include_str!("console/style.css");
const ICON_SVG: &str = include_str!("console/icon.svg");

/// Scripts, styles and fonts only from this server; images also from `data:` (tool results
/// carry images inline); connections to any http(s) server, since the page may be pointed at
/// another comfyui-agent (whose own CORS settings decide). No framing, no forms, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self' http: https:; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes: `/` and its assets under `/console/`.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/mcp.js",
            get(|| async { asset("text/javascript; charset=utf-8", MCP_JS) }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/console/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // Assets change with the binary; revalidate rather than run a stale page.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_and_style_from_files_only() {
        assert!(INDEX_HTML.contains(r#"<script type="module" src="/console/app.js"></script>"#));
        assert!(INDEX_HTML.contains(r#"href="/console/style.css""#));
        // No inline script or style: the policy would block them.
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains(" style="));
        assert!(!INDEX_HTML.contains(" onclick="));
        assert!(APP_JS.contains("from './mcp.js'"));
    }

    #[test]
    fn the_console_never_puts_the_token_in_a_url_or_local_storage() {
        for source in [APP_JS, MCP_JS] {
            assert!(!source.contains("localStorage"));
            assert!(!source.contains("?token") && !source.contains("&token"));
            assert!(!source.contains("new EventSource"));
        }
    }
}
