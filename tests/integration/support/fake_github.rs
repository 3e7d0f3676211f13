//! A fake GitHub REST API built from the documented response shapes (docs.github.com/rest:
//! repositories, releases, tags, commits/compare): `GET /repos/{o}/{r}`, `…/releases`,
//! `…/releases/latest`, `…/tags`, `…/compare/{base}...{head}` and `…/branches/{b}`, with
//! GitHub's 404 body for anything unknown. Faults can be set for one repository or for every
//! request: a slow answer (timeout), 429 with `Retry-After`, 403 with a spent quota, 500, and
//! a body that isn't JSON. Every request is recorded with its `Authorization` header.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What a request meets instead of its normal answer.
#[derive(Debug, Clone)]
pub enum GhFault {
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// 429 with `Retry-After: <seconds>`.
    TooMany(u64),
    /// 403 with `x-ratelimit-remaining: 0` (the unauthenticated hourly quota spent).
    QuotaSpent,
    /// 500 with GitHub's error body.
    ServerError,
    /// 200 with a body that isn't JSON.
    Malformed,
}

/// One repository the fake knows.
#[derive(Debug, Clone, Default)]
pub struct FakeRepo {
    pub default_branch: String,
    /// Release tags, newest first: (tag, name, body, prerelease).
    pub releases: Vec<(String, String, String, bool)>,
    pub tags: Vec<String>,
    /// Per local commit: GitHub's compare `status`, `ahead_by`, `behind_by` against the
    /// default branch. Commits not listed get a 404, as GitHub answers for unknown commits.
    pub compare: HashMap<String, (&'static str, u64, u64)>,
}

impl FakeRepo {
    pub fn new(default_branch: &str) -> Self {
        Self {
            default_branch: default_branch.into(),
            ..Self::default()
        }
    }

    pub fn release(mut self, tag: &str, body: &str) -> Self {
        self.releases
            .push((tag.into(), format!("Release {tag}"), body.into(), false));
        self
    }

    pub fn compare(mut self, sha: &str, status: &'static str, ahead: u64, behind: u64) -> Self {
        self.compare.insert(sha.into(), (status, ahead, behind));
        self
    }
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct GhSeen {
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub api_version: Option<String>,
}

#[derive(Default)]
struct Inner {
    repos: HashMap<String, FakeRepo>,
    repo_faults: HashMap<String, GhFault>,
    standing: Option<GhFault>,
    seen: Vec<GhSeen>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeGitHub {
    addr: SocketAddr,
    shared: Shared,
}

impl FakeGitHub {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared }
    }

    /// The base URL, as `COMFYUI_AGENT_GITHUB_URL` takes it.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn add(&self, full_name: &str, repo: FakeRepo) {
        self.shared
            .lock()
            .repos
            .insert(full_name.to_lowercase(), repo);
    }

    /// Every request about `full_name` meets `fault`.
    pub fn fail_repo(&self, full_name: &str, fault: GhFault) {
        self.shared
            .lock()
            .repo_faults
            .insert(full_name.to_lowercase(), fault);
    }

    /// Every request meets `fault`.
    pub fn always(&self, fault: GhFault) {
        self.shared.lock().standing = Some(fault);
    }

    pub fn seen(&self) -> Vec<GhSeen> {
        self.shared.lock().seen.clone()
    }
}

fn error_body(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.as_u16().to_string()
        })
        .to_string(),
    )
        .into_response()
}

fn not_found() -> Response {
    error_body(StatusCode::NOT_FOUND, "Not Found")
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let headers = request.headers().clone();
    drop(request);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let seen = GhSeen {
        path: path.clone(),
        query,
        authorization: header("authorization"),
        accept: header("accept"),
        api_version: header("x-github-api-version"),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let full_name = match parts.as_slice() {
        ["repos", owner, name, ..] => format!("{owner}/{name}").to_lowercase(),
        _ => String::new(),
    };
    let (fault, repo) = {
        let mut inner = shared.lock();
        inner.seen.push(seen);
        let fault = inner
            .repo_faults
            .get(&full_name)
            .cloned()
            .or_else(|| inner.standing.clone());
        (fault, inner.repos.get(&full_name).cloned())
    };
    match fault {
        Some(GhFault::Delay(wait)) => tokio::time::sleep(wait).await,
        Some(GhFault::TooMany(seconds)) => {
            let mut response = error_body(
                StatusCode::TOO_MANY_REQUESTS,
                "You have exceeded a secondary rate limit.",
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string()).expect("header"),
            );
            return response;
        }
        Some(GhFault::QuotaSpent) => {
            let mut response = error_body(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for 127.0.0.1. (But here's the good news: \
                 Authenticated requests get a higher rate limit.)",
            );
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("60"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("x-ratelimit-used", HeaderValue::from_static("60"));
            headers.insert("x-ratelimit-reset", HeaderValue::from_static("1700000000"));
            return response;
        }
        Some(GhFault::ServerError) => {
            return error_body(StatusCode::INTERNAL_SERVER_ERROR, "Server Error");
        }
        Some(GhFault::Malformed) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"tag_name\": \"v1\", oops",
            )
                .into_response();
        }
        None => {}
    }
    let Some(repo) = repo else {
        return not_found();
    };
    let [_, owner, name, rest @ ..] = parts.as_slice() else {
        return not_found();
    };
    let html = format!("https://github.com/{owner}/{name}");
    let body = match rest {
        [] => json!({
            "id": 1296269,
            "name": name,
            "full_name": format!("{owner}/{name}"),
            "owner": {"login": owner, "type": "User"},
            "private": false,
            "html_url": html,
            "fork": false,
            "default_branch": repo.default_branch,
            "pushed_at": "2024-05-01T12:00:00Z"
        }),
        ["releases"] => Value::Array(
            repo.releases
                .iter()
                .enumerate()
                .map(|(i, r)| release_json(&html, i, r))
                .collect(),
        ),
        ["releases", "latest"] => match repo.releases.iter().position(|r| !r.3) {
            Some(i) => release_json(&html, i, &repo.releases[i]),
            None => return not_found(),
        },
        ["tags"] => Value::Array(
            repo.tags
                .iter()
                .map(|t| {
                    json!({
                        "name": t,
                        "commit": {"sha": "c5b97d5ae6c19d5c5df71a34c7fbeeda2479ccbc",
                                   "url": format!("https://api.github.com/repos/{owner}/{name}/commits/c5b97d5")},
                        "zipball_url": format!("https://github.com/{owner}/{name}/zipball/{t}"),
                        "tarball_url": format!("https://github.com/{owner}/{name}/tarball/{t}")
                    })
                })
                .collect(),
        ),
        ["compare", spec] => {
            let Some((base, head)) = spec.split_once("...") else {
                return not_found();
            };
            if *head != repo.default_branch {
                return not_found();
            }
            let Some((status, ahead, behind)) = repo.compare.get(base) else {
                return not_found();
            };
            json!({
                "url": format!("https://api.github.com/repos/{owner}/{name}/compare/{spec}"),
                "html_url": format!("{html}/compare/{spec}"),
                "status": status,
                "ahead_by": ahead,
                "behind_by": behind,
                "total_commits": ahead,
                "base_commit": {"sha": base},
                "merge_base_commit": {"sha": base},
                "commits": [],
                "files": []
            })
        }
        ["branches", branch] if *branch == repo.default_branch => json!({
            "name": branch,
            "commit": {"sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
            "protected": false
        }),
        _ => return not_found(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn release_json(html: &str, index: usize, release: &(String, String, String, bool)) -> Value {
    let (tag, name, body, prerelease) = release;
    json!({
        "url": format!("https://api.github.com/repos/x/releases/{index}"),
        "html_url": format!("{html}/releases/tag/{tag}"),
        "id": 1000 + index,
        "tag_name": tag,
        "target_commitish": "main",
        "name": name,
        "body": body,
        "draft": false,
        "prerelease": prerelease,
        "created_at": "2024-04-30T10:00:00Z",
        "published_at": format!("2024-05-{:02}T12:00:00Z", 20 - index.min(19)),
        "author": {"login": "octocat"},
        "assets": []
    })
}
