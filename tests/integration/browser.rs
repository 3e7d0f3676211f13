//! The browser path over HTTP: CORS preflights and headers on `/mcp`, `/sse`, `/messages` and
//! `/metrics`, and the web console at `/` (its headers, its Host check, `--no-console`). The
//! console itself is exercised in a real browser by tests/browser/.

use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::support::{HttpServer, Scratch, http_client, initialize_body, rpc_payload};

const TOKEN: &str = "cors-test-token-31f9b2";
const STUDIO: &str = "https://studio.example";

async fn preflight(server: &HttpServer, path: &str, origin: &str) -> reqwest::Response {
    http_client()
        .request(Method::OPTIONS, server.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, mcp-session-id, mcp-protocol-version",
        )
        .send()
        .await
        .expect("preflight")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map_or("", |v| v.to_str().expect("ascii header"))
}

fn listed(headers: &HeaderMap, name: &str) -> Vec<String> {
    header(headers, name)
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

fn varies_on_origin(headers: &HeaderMap) -> bool {
    headers.get_all("vary").iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("origin"))
    })
}

#[tokio::test]
async fn preflights_from_allowed_origins_are_answered_before_the_token() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(
        &scratch,
        &["--allowed-origin", STUDIO],
        &[("COMFYUI_AGENT_TOKEN", TOKEN)],
    )
    .await;
    for path in ["/mcp", "/sse", "/messages", "/metrics"] {
        for origin in [STUDIO, "http://localhost:5173"] {
            let response = preflight(&server, path, origin).await;
            assert_eq!(response.status(), 204, "{path} from {origin}");
            let headers = response.headers();
            assert_eq!(header(headers, "access-control-allow-origin"), origin);
            let allowed = listed(headers, "access-control-allow-headers");
            for needed in [
                "authorization",
                "content-type",
                "mcp-session-id",
                "mcp-protocol-version",
                "last-event-id",
            ] {
                assert!(
                    allowed.contains(&needed.to_string()),
                    "{needed}: {allowed:?}"
                );
            }
            let methods = listed(headers, "access-control-allow-methods");
            for method in ["get", "post", "delete", "options"] {
                assert!(methods.contains(&method.to_string()), "{methods:?}");
            }
            let exposed = listed(headers, "access-control-expose-headers");
            assert!(exposed.contains(&"mcp-session-id".to_string()));
            assert!(exposed.contains(&"mcp-protocol-version".to_string()));
            let max_age: u32 = header(headers, "access-control-max-age")
                .parse()
                .expect("max age");
            assert!((60..=7200).contains(&max_age));
            assert!(varies_on_origin(headers));
            assert!(
                headers.get("access-control-allow-credentials").is_none(),
                "the token travels in a header, never in cookies"
            );
        }
    }
}

#[tokio::test]
async fn other_origins_get_403_without_cors_headers() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(
        &scratch,
        &["--allowed-origin", STUDIO],
        &[("COMFYUI_AGENT_TOKEN", TOKEN)],
    )
    .await;
    for origin in [
        "https://evil.example",
        "https://studio.example.evil.example",
        "null",
    ] {
        let response = preflight(&server, "/mcp", origin).await;
        assert_eq!(response.status(), 403, "{origin}");
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        assert!(varies_on_origin(response.headers()));
    }
    // A preflight with a Host that is not allowed is refused before anything else.
    let response = http_client()
        .request(Method::OPTIONS, server.url("/mcp"))
        .header("host", "evil.example")
        .header("origin", STUDIO)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(response.status(), 403);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn allowed_origins_can_read_answers_and_refusals_but_never_get_a_wildcard() {
    let scratch = Scratch::new();
    // `*` allows every origin, yet each answer names the one that asked.
    let server = HttpServer::spawn(
        &scratch,
        &["--allowed-origin", "*"],
        &[("COMFYUI_AGENT_TOKEN", TOKEN)],
    )
    .await;
    let http = http_client();
    let post = |auth: Option<&str>| {
        let mut request = http
            .post(server.url("/mcp"))
            .header("origin", STUDIO)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize_body().to_string());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    let ok = post(Some(&format!("Bearer {TOKEN}"))).await.expect("post");
    assert_eq!(ok.status(), 200);
    let headers = ok.headers().clone();
    assert_eq!(header(&headers, "access-control-allow-origin"), STUDIO);
    assert!(
        listed(&headers, "access-control-expose-headers").contains(&"mcp-session-id".to_string())
    );
    assert!(headers.get("mcp-session-id").is_some());
    assert!(varies_on_origin(&headers));
    let body = ok.text().await.expect("body");
    assert_eq!(
        rpc_payload(&body)["result"]["serverInfo"]["name"],
        "comfyui-agent"
    );

    // A refused token is readable too, so a page can say why it failed.
    let refused = post(None).await.expect("post");
    assert_eq!(refused.status(), 401);
    assert_eq!(
        header(refused.headers(), "access-control-allow-origin"),
        STUDIO
    );
    let exposed = listed(refused.headers(), "access-control-expose-headers");
    assert!(exposed.contains(&"www-authenticate".to_string()));

    // The token is read from the Authorization header only, never from the URL.
    let in_query = http
        .post(server.url(&format!("/mcp?token={TOKEN}")))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize_body().to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(in_query.status(), 401);
    let in_query = http
        .get(server.url(&format!("/sse?access_token={TOKEN}")))
        .send()
        .await
        .expect("get");
    assert_eq!(in_query.status(), 401);

    // Non-browser clients (no Origin) get no CORS headers.
    let plain = http
        .post(server.url("/mcp"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize_body().to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_page_served_by_this_server_under_an_allowed_host_may_call_it() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &["--allowed-host", "box.lan"], &[]).await;
    let port = server.base.rsplit(':').next().expect("port").to_string();
    let host = format!("box.lan:{port}");
    let post = |origin: String| {
        http_client()
            .post(server.url("/mcp"))
            .header("host", &host)
            .header("origin", origin)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize_body().to_string())
            .send()
    };
    let same = post(format!("http://box.lan:{port}")).await.expect("post");
    assert_eq!(same.status(), 200, "the console's own origin");
    let other_port = post("http://box.lan:1".to_string()).await.expect("post");
    assert_eq!(other_port.status(), 403, "another port is another origin");
    let other_name = post(format!("http://other.lan:{port}"))
        .await
        .expect("post");
    assert_eq!(other_name.status(), 403);
}

#[tokio::test]
async fn the_console_is_public_strict_and_behind_the_host_check() {
    let scratch = Scratch::new();
    let server = HttpServer::spawn(&scratch, &[], &[("COMFYUI_AGENT_TOKEN", TOKEN)]).await;
    let http = http_client();
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/mcp.js", "text/javascript"),
        ("/console/style.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let response = http.get(server.url(path)).send().await.expect("get");
        assert_eq!(response.status(), 200, "{path} needs no token");
        let headers = response.headers();
        assert!(header(headers, "content-type").starts_with(kind), "{path}");
        let policy = header(headers, "content-security-policy");
        assert!(policy.contains("default-src 'self'"), "{policy}");
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert_eq!(header(headers, "x-content-type-options"), "nosniff");
        assert!(response.text().await.expect("body").len() > 100, "{path}");
    }
    let page = http
        .get(server.url("/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(page.contains("src=\"/console/app.js\""));
    let rebinding = http
        .get(server.url("/"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(rebinding.status(), 403);
    let missing = http
        .get(server.url("/console/nope.js"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn no_console_turns_the_page_off_but_not_mcp() {
    for (args, env) in [
        (&["--no-console"][..], &[][..]),
        (&[][..], &[("COMFYUI_AGENT_CONSOLE", "0")][..]),
    ] {
        let scratch = Scratch::new();
        let server = HttpServer::spawn(&scratch, args, env).await;
        let http = http_client();
        for path in ["/", "/console/app.js"] {
            let response = http.get(server.url(path)).send().await.expect("get");
            assert_eq!(response.status(), 404, "{path} with {args:?} {env:?}");
        }
        let response = http
            .post(server.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize_body().to_string())
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 200);
    }
}
