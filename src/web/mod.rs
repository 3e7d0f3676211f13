//! The public web sources the discovery tools read: the Comfy registry (node packs), CivitAI
//! and Hugging Face (models) and GitHub (releases). Each source has its own base URL (so tests
//! and mirrors can stand in), timeout, rate limit and optional key; answers are cached for a
//! while within a memory bound. Keys travel only in request headers: never in a URL, a log
//! line or a result.

mod cache;
mod error;

use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use std::sync::Arc;
use tracing::Instrument;
use url::Url;

pub use cache::ResponseCache;
pub use error::WebError;

use crate::config::{Secret, WebConfig};

/// One web source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The public Comfy registry of node packs (api.comfy.org).
    Registry,
    CivitAi,
    HuggingFace,
    GitHub,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Registry,
        Source::CivitAi,
        Source::HuggingFace,
        Source::GitHub,
    ];

    /// The short name used in results (`sources_searched`, `errors[].source`) and settings.
    pub fn key(self) -> &'static str {
        match self {
            Self::Registry => "comfy_registry",
            Self::CivitAi => "civitai",
            Self::HuggingFace => "huggingface",
            Self::GitHub => "github",
        }
    }

    /// How an artist would name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Registry => "the Comfy registry",
            Self::CivitAi => "CivitAI",
            Self::HuggingFace => "Hugging Face",
            Self::GitHub => "GitHub",
        }
    }

    /// The public API address used unless a setting replaces it.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Registry => "https://api.comfy.org/",
            Self::CivitAi => "https://civitai.com/api/v1/",
            Self::HuggingFace => "https://huggingface.co/",
            Self::GitHub => "https://api.github.com/",
        }
    }

    /// The setting that replaces the base URL.
    pub fn url_setting(self) -> &'static str {
        match self {
            Self::Registry => crate::config::ENV_REGISTRY_URL,
            Self::CivitAi => crate::config::ENV_CIVITAI_URL,
            Self::HuggingFace => crate::config::ENV_HUGGINGFACE_URL,
            Self::GitHub => crate::config::ENV_GITHUB_URL,
        }
    }

    /// The settings a key is read from, first found wins.
    pub fn key_settings(self) -> &'static [&'static str] {
        match self {
            Self::Registry => &[],
            Self::CivitAi => &[crate::config::ENV_CIVITAI_API_KEY],
            Self::HuggingFace => &[crate::config::ENV_HF_TOKEN],
            Self::GitHub => &[
                crate::config::ENV_GITHUB_TOKEN,
                crate::config::ENV_GITHUB_API_TOKEN,
            ],
        }
    }

    /// How long one request may take. CivitAI's search is the slowest of the four.
    pub fn default_timeout(self) -> Duration {
        match self {
            Self::CivitAi => Duration::from_secs(20),
            _ => Duration::from_secs(15),
        }
    }

    /// Requests per second and burst. GitHub allows 60 an hour without a token, so the
    /// burst is what matters there; the cache keeps repeat questions off the network.
    fn quota(self) -> Quota {
        let (per_second, burst) = match self {
            Self::Registry | Self::HuggingFace => (2, 5),
            Self::CivitAi | Self::GitHub => (1, 5),
        };
        Quota::per_second(nonzero(per_second)).allow_burst(nonzero(burst))
    }

    /// Headers the source's API expects on every request.
    fn headers(self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if self == Self::GitHub {
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_static("application/vnd.github+json"),
            );
            headers.insert(
                "x-github-api-version",
                HeaderValue::from_static("2022-11-28"),
            );
        }
        headers
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

fn nonzero(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN)
}

/// One source's settings, resolved from the environment.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub base_url: Url,
    pub key: Option<Secret>,
    pub timeout: Duration,
}

impl SourceConfig {
    /// The public address, no key, the source's own timeout.
    pub fn default_for(source: Source) -> Self {
        Self {
            base_url: Url::parse(source.default_base_url()).expect("built-in URLs are valid"),
            key: None,
            timeout: source.default_timeout(),
        }
    }
}

/// Answers larger than this are refused: no search or release list comes near it.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// How long to wait for our own rate limit before telling the caller to try later.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// The client for every web source, shared by all sessions (it hangs off `AppState`).
#[derive(Debug)]
pub struct Web {
    http: reqwest::Client,
    offline: bool,
    sources: Vec<(Source, SourceState)>,
    cache: Mutex<ResponseCache>,
}

#[derive(Debug)]
struct SourceState {
    config: SourceConfig,
    limiter: DefaultDirectRateLimiter,
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct WebAnswer {
    pub body: Arc<Value>,
    /// Whether it came from the cache rather than the network.
    pub cached: bool,
}

impl Web {
    pub fn new(config: &WebConfig) -> Result<Self, String> {
        let tls = crate::comfy::tls_config().map_err(|e| format!("TLS: {e}"))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("comfyui-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .tls_backend_preconfigured((*tls).clone())
            .build()
            .map_err(|e| e.to_string())?;
        let sources = Source::ALL
            .iter()
            .map(|&source| {
                let config = config
                    .sources
                    .iter()
                    .find(|(s, _)| *s == source)
                    .map_or_else(|| SourceConfig::default_for(source), |(_, c)| c.clone());
                let limiter = RateLimiter::direct(source.quota());
                (source, SourceState { config, limiter })
            })
            .collect();
        Ok(Self {
            http,
            offline: config.offline,
            sources,
            cache: Mutex::new(ResponseCache::new(config.cache_ttl, config.cache_max_bytes)),
        })
    }

    /// The pooled HTTP client (TLS set up), for other outbound calls such as model providers.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Whether network sources are turned off (`COMFYUI_AGENT_OFFLINE`).
    pub fn offline(&self) -> bool {
        self.offline
    }

    /// Whether a key is configured for `source` (results may say so; the key itself never
    /// leaves this module).
    pub fn has_key(&self, source: Source) -> bool {
        self.state(source).config.key.is_some()
    }

    /// The API address in use for `source`.
    pub fn base_url(&self, source: Source) -> &Url {
        &self.state(source).config.base_url
    }

    /// Forgets every cached answer (`check_registry_freshness` with `refresh: true`).
    pub fn clear_cache(&self) {
        self.lock_cache().clear();
    }

    /// Cached answers and their approximate size in bytes.
    pub fn cache_usage(&self) -> (usize, usize) {
        let cache = self.lock_cache();
        (cache.len(), cache.bytes())
    }

    /// GETs `path` (relative to the source's base URL, no leading slash needed) with `query`
    /// and parses the JSON answer. Served from the cache while fresh.
    pub async fn get_json(
        &self,
        source: Source,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<WebAnswer, WebError> {
        if self.offline {
            return Err(WebError::Offline { site: source });
        }
        let state = self.state(source);
        let url = request_url(&state.config.base_url, path, query).ok_or_else(|| {
            WebError::BadRequest {
                site: source,
                detail: format!("{path:?} is not a valid request path"),
            }
        })?;
        if let Some(body) = self.lock_cache().get(url.as_str()) {
            return Ok(WebAnswer { body, cached: true });
        }
        if tokio::time::timeout(RATE_LIMIT_WAIT, state.limiter.until_ready())
            .await
            .is_err()
        {
            return Err(WebError::RateLimited {
                site: source,
                retry_after: None,
                ours: true,
            });
        }
        let span = tracing::debug_span!("web.request", source = source.key(), path = url.path());
        let (bytes, size) = self.fetch(source, state, &url).instrument(span).await?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| WebError::Malformed {
            site: source,
            detail: e.to_string(),
        })?;
        let body = Arc::new(body);
        self.lock_cache()
            .insert(url.as_str().to_string(), Arc::clone(&body), size);
        Ok(WebAnswer {
            body,
            cached: false,
        })
    }

    async fn fetch(
        &self,
        source: Source,
        state: &SourceState,
        url: &Url,
    ) -> Result<(Vec<u8>, usize), WebError> {
        let mut request = self
            .http
            .get(url.clone())
            .headers(source.headers())
            .timeout(state.config.timeout);
        if let Some(key) = &state.config.key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| WebError::BadKey { site: source })?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                WebError::Timeout {
                    site: source,
                    after: state.config.timeout,
                }
            } else {
                WebError::Unreachable {
                    site: source,
                    detail: describe(&e),
                }
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(source, status, response.headers(), state));
        }
        let bytes = crate::httpbody::read_capped(&mut response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    WebError::Timeout {
                        site: source,
                        after: state.config.timeout,
                    }
                } else {
                    WebError::Unreachable {
                        site: source,
                        detail: describe(&e),
                    }
                }
            })?
            .map_err(|_| WebError::TooLarge {
                site: source,
                limit: MAX_RESPONSE_BYTES,
            })?;
        tracing::debug!(status = status.as_u16(), bytes = bytes.len(), "web answer");
        let size = bytes.len();
        Ok((bytes, size))
    }

    fn state(&self, source: Source) -> &SourceState {
        // Every source is built in `new`, so the lookup always succeeds.
        &self
            .sources
            .iter()
            .find(|(s, _)| *s == source)
            .unwrap_or(&self.sources[0])
            .1
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, ResponseCache> {
        // A panic while holding the lock leaves only cached answers behind; keep serving.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `base` joined with `path` and `query`. The path may not leave the base (no `.` or `..`
/// segment, plain or percent-encoded, no absolute URL), so a value taken from a user can't
/// redirect the request elsewhere. Dots inside a segment are fine: GitHub's compare endpoint
/// takes `base...head`.
fn request_url(base: &Url, path: &str, query: &[(&str, String)]) -> Option<Url> {
    let path = path.trim_start_matches('/');
    let dot_segment = path.split(['/', '\\']).any(|segment| {
        let plain = segment.to_ascii_lowercase().replace("%2e", ".");
        plain == "." || plain == ".."
    });
    if dot_segment || path.contains("://") || path.contains('?') || path.contains('#') {
        return None;
    }
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    let mut url = base.join(path).ok()?;
    if url.origin() != base.origin() || !url.path().starts_with(base.path()) {
        return None;
    }
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (key, value) in query {
            pairs.append_pair(key, value);
        }
    }
    Some(url)
}

fn status_error(
    source: Source,
    status: StatusCode,
    headers: &HeaderMap,
    state: &SourceState,
) -> WebError {
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // GitHub says "rate limited" with a 403 and an exhausted quota header.
    let github_quota_spent = source == Source::GitHub
        && status == StatusCode::FORBIDDEN
        && headers
            .get("x-ratelimit-remaining")
            .is_some_and(|v| v.as_bytes() == b"0");
    if status == StatusCode::TOO_MANY_REQUESTS || github_quota_spent {
        return WebError::RateLimited {
            site: source,
            retry_after,
            ours: false,
        };
    }
    match status {
        StatusCode::NOT_FOUND => WebError::NotFound { site: source },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => WebError::Refused {
            site: source,
            status: status.as_u16(),
            had_key: state.config.key.is_some(),
        },
        _ => WebError::Status {
            site: source,
            status: status.as_u16(),
        },
    }
}

/// The transport error in a few words, without the URL (it may carry a path a user typed).
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut cause: Option<&dyn std::error::Error> = error.source();
    let mut last = None;
    while let Some(inner) = cause {
        last = Some(inner.to_string());
        cause = inner.source();
    }
    last.unwrap_or_else(|| {
        if error.is_connect() {
            "the connection failed".into()
        } else {
            "the request failed".into()
        }
    })
}

#[cfg(test)]
mod tests;
