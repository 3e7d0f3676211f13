//! The web client against a local server that plays each source's good and bad days.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::*;
use crate::config::WebConfig;

#[derive(Clone, Default)]
struct Seen {
    hits: Arc<AtomicUsize>,
    authorization: Arc<Mutex<Vec<Option<String>>>>,
}

async fn models(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    seen.authorization.lock().expect("lock").push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    axum::Json(json!({ "items": [{ "name": query.get("query").cloned().unwrap_or_default() }] }))
        .into_response()
}

async fn fake() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/api/v1/models", get(models))
        .route(
            "/api/v1/busy",
            get(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "42")],
                    "slow down",
                )
            }),
        )
        .route(
            "/api/v1/quota",
            get(|| async {
                (
                    StatusCode::FORBIDDEN,
                    [("x-ratelimit-remaining", "0")],
                    "{}",
                )
            }),
        )
        .route(
            "/api/v1/private",
            get(|| async { (StatusCode::UNAUTHORIZED, "{}") }),
        )
        .route(
            "/api/v1/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
        )
        .route("/api/v1/garbled", get(|| async { "{not json" }))
        .route(
            "/api/v1/huge",
            get(|| async { "x".repeat(MAX_RESPONSE_BYTES + 1) }),
        )
        .route(
            "/api/v1/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "{}"
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api/v1/"), seen)
}

fn web_at(base: &str, key: Option<&str>, timeout: Duration) -> Web {
    let config = WebConfig {
        sources: vec![(
            Source::CivitAi,
            SourceConfig {
                base_url: Url::parse(base).expect("url"),
                key: key.map(Secret::new),
                timeout,
            },
        )],
        ..WebConfig::default()
    };
    Web::new(&config).expect("web client")
}

fn query(q: &str) -> Vec<(&'static str, String)> {
    vec![("query", q.to_string())]
}

#[tokio::test]
async fn answers_are_parsed_cached_and_sent_with_the_key_in_a_header() {
    let (base, seen) = fake().await;
    let web = web_at(&base, Some("sekrit-key"), Duration::from_secs(5));
    let first = web
        .get_json(Source::CivitAi, "models", &query("flux"))
        .await
        .expect("answer");
    assert!(!first.cached);
    assert_eq!(first.body["items"][0]["name"], "flux");
    let again = web
        .get_json(Source::CivitAi, "/models", &query("flux"))
        .await
        .expect("answer");
    assert!(again.cached);
    assert_eq!(seen.hits.load(Ordering::SeqCst), 1);
    assert_eq!(web.cache_usage().0, 1);

    web.get_json(Source::CivitAi, "models", &query("sdxl"))
        .await
        .expect("answer");
    assert_eq!(seen.hits.load(Ordering::SeqCst), 2);
    assert_eq!(
        seen.authorization.lock().expect("lock")[0].as_deref(),
        Some("Bearer sekrit-key")
    );
    web.clear_cache();
    assert_eq!(web.cache_usage(), (0, 0));
    assert!(!format!("{web:?}").contains("sekrit-key"));
}

#[tokio::test]
async fn no_key_means_no_authorization_header() {
    let (base, seen) = fake().await;
    let web = web_at(&base, None, Duration::from_secs(5));
    web.get_json(Source::CivitAi, "models", &[])
        .await
        .expect("answer");
    assert_eq!(seen.authorization.lock().expect("lock")[0], None);
    assert!(!web.has_key(Source::CivitAi));
}

#[tokio::test]
async fn each_failure_becomes_its_own_error_and_never_mentions_the_key() {
    let (base, _) = fake().await;
    let web = web_at(&base, Some("sekrit-key"), Duration::from_millis(300));
    let cases = [
        ("busy", "web_rate_limited"),
        ("private", "web_refused"),
        ("broken", "web_status"),
        ("garbled", "web_malformed"),
        ("huge", "web_too_large"),
        ("slow", "web_timeout"),
        ("missing", "web_not_found"),
    ];
    for (path, kind) in cases {
        let error = web
            .get_json(Source::CivitAi, path, &[])
            .await
            .expect_err(path);
        assert_eq!(error.kind(), kind, "{path}: {error:?}");
        assert_eq!(error.site(), Source::CivitAi);
        let message = error.user_message();
        assert!(!message.contains("sekrit"), "{message}");
        assert!(message.contains("CivitAI"), "{message}");
    }
    let busy = web
        .get_json(Source::CivitAi, "busy", &[])
        .await
        .expect_err("busy");
    assert!(
        matches!(
            busy,
            WebError::RateLimited {
                retry_after: Some(42),
                ours: false,
                ..
            }
        ),
        "{busy:?}"
    );
    // Failures are not cached: the same question is asked again.
    assert_eq!(web.cache_usage().0, 0);
}

#[tokio::test]
async fn github_says_rate_limited_with_a_403_and_a_spent_quota() {
    let (base, _) = fake().await;
    let config = WebConfig {
        sources: vec![(
            Source::GitHub,
            SourceConfig {
                base_url: Url::parse(&base).expect("url"),
                key: None,
                timeout: Duration::from_secs(5),
            },
        )],
        ..WebConfig::default()
    };
    let web = Web::new(&config).expect("web");
    let error = web
        .get_json(Source::GitHub, "quota", &[])
        .await
        .expect_err("limited");
    assert_eq!(error.kind(), "web_rate_limited");
    assert!(error.user_message().contains("GITHUB_TOKEN"));
}

#[tokio::test]
async fn an_unreachable_source_says_which_one_and_what_to_set() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let web = web_at(
        &format!("http://127.0.0.1:{port}/"),
        None,
        Duration::from_secs(5),
    );
    let error = web
        .get_json(Source::CivitAi, "models", &[])
        .await
        .expect_err("nothing listens");
    assert_eq!(error.kind(), "web_unreachable");
    assert!(error.user_message().contains("COMFYUI_AGENT_CIVITAI_URL"));
}

#[tokio::test]
async fn offline_mode_asks_nobody() {
    let (base, seen) = fake().await;
    let mut config = WebConfig {
        offline: true,
        ..WebConfig::default()
    };
    config.sources.push((
        Source::CivitAi,
        SourceConfig {
            base_url: Url::parse(&base).expect("url"),
            key: None,
            timeout: Duration::from_secs(5),
        },
    ));
    let web = Web::new(&config).expect("web");
    let error = web
        .get_json(Source::CivitAi, "models", &[])
        .await
        .expect_err("offline");
    assert_eq!(error.kind(), "web_offline");
    assert_eq!(seen.hits.load(Ordering::SeqCst), 0);
}

#[test]
fn request_paths_stay_under_the_base_url() {
    let base = Url::parse("https://civitai.com/api/v1").expect("url");
    let url = request_url(&base, "models/123", &[("a", "b c".into())]).expect("url");
    assert_eq!(url.as_str(), "https://civitai.com/api/v1/models/123?a=b+c");
    for bad in [
        "../secrets",
        "models/../../x",
        "https://evil.example/x",
        "//evil.example/x",
        "models?token=x",
        "models#frag",
        "models/%2e%2e/%2E%2E/x",
        "models/.%2e/x",
        "models\\..\\..\\x",
    ] {
        let joined = request_url(&base, bad, &[]);
        assert!(
            joined
                .as_ref()
                .is_none_or(|u| u.as_str().starts_with("https://civitai.com/api/v1/")),
            "{bad} → {joined:?}"
        );
    }
}

#[test]
fn dots_inside_a_segment_are_allowed() {
    let base = Url::parse("https://api.github.com/").expect("url");
    let url = request_url(&base, "repos/o/r/compare/abc...main", &[]).expect("url");
    assert_eq!(
        url.as_str(),
        "https://api.github.com/repos/o/r/compare/abc...main"
    );
}

#[test]
fn values_in_queries_are_encoded_not_interpreted() {
    let base = Url::parse("https://huggingface.co/").expect("url");
    let url = request_url(
        &base,
        "api/models",
        &[("search", "flux&limit=1000#x".into())],
    )
    .expect("url");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs, [("search".into(), "flux&limit=1000#x".into())]);
}
