//! Settings: raw values from flags, the environment and `.env`, turned once into a validated
//! [`Config`]. Every error names the setting, the bad value and the fix, in one line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::cli::{Cli, Command, ServeArgs};
use crate::error::ConfigError;
use crate::images::ImageBudget;
use crate::paths::expand_home;

pub const ENV_COMFYUI_URL: &str = "COMFYUI_URL";
pub const ENV_COMFYUI_HOST: &str = "COMFYUI_HOST";
pub const ENV_COMFYUI_PORT: &str = "COMFYUI_PORT";
pub const ENV_COMFYUI_DIR: &str = "COMFYUI_DIR";
pub const ENV_COMFYUI_DATABASE: &str = "COMFYUI_DATABASE";
pub const ENV_DATA_DIR: &str = "COMFYUI_AGENT_DATA_DIR";
pub const ENV_ALLOWED_ROOTS: &str = "COMFYUI_AGENT_ALLOWED_ROOTS";
pub const ENV_BIND: &str = "COMFYUI_AGENT_BIND";
pub const ENV_TOKEN: &str = "COMFYUI_AGENT_TOKEN";
pub const ENV_ALLOWED_HOSTS: &str = "COMFYUI_AGENT_ALLOWED_HOSTS";
pub const ENV_ALLOWED_ORIGINS: &str = "COMFYUI_AGENT_ALLOWED_ORIGINS";
pub const ENV_MAX_BODY_BYTES: &str = "COMFYUI_AGENT_MAX_BODY_BYTES";
pub const ENV_CONSOLE: &str = "COMFYUI_AGENT_CONSOLE";
pub const ENV_AUTH_HEADER: &str = "COMFYUI_AUTH_HEADER";
pub const ENV_AUTH_TOKEN: &str = "COMFYUI_AUTH_TOKEN";
pub const ENV_BREAKER_FAILURES: &str = "COMFYUI_AGENT_BREAKER_FAILURES";
pub const ENV_TIMEOUTS: &str = "COMFYUI_AGENT_TIMEOUTS";
pub const ENV_UNDO_LIMIT: &str = "COMFYUI_AGENT_UNDO_LIMIT";
pub const ENV_SESSION_IDLE_MINUTES: &str = "COMFYUI_AGENT_SESSION_IDLE_MINUTES";
pub const ENV_SESSION_MAX_AGE_DAYS: &str = "COMFYUI_AGENT_SESSION_MAX_AGE_DAYS";
pub const ENV_IMAGE_MAX_SIDE: &str = "COMFYUI_AGENT_IMAGE_MAX_SIDE";
pub const ENV_IMAGE_MAX_KB: &str = "COMFYUI_AGENT_IMAGE_MAX_KB";
pub const ENV_IMAGE_MAX_INLINE: &str = "COMFYUI_AGENT_IMAGE_MAX_INLINE";
pub const ENV_GPU_METRICS: &str = "COMFYUI_AGENT_GPU_METRICS";
pub const ENV_PRE_APPROVE: &str = "COMFYUI_AGENT_PRE_APPROVE";
pub const ENV_MODEL_URL: &str = "COMFYUI_AGENT_MODEL_URL";
pub const ENV_MODEL_NAME: &str = "COMFYUI_AGENT_MODEL_NAME";
pub const ENV_MODEL_API_KEY: &str = "COMFYUI_AGENT_MODEL_API_KEY";
pub const ENV_ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
pub const ENV_ANTHROPIC_MODEL: &str = "COMFYUI_AGENT_ANTHROPIC_MODEL";
pub const ENV_ANTHROPIC_URL: &str = "COMFYUI_AGENT_ANTHROPIC_URL";

/// The Anthropic model asked when none is named.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";
pub const ENV_DISABLED_TOOLS: &str = "COMFYUI_AGENT_DISABLED_TOOLS";
pub const ENV_OFFLINE: &str = "COMFYUI_AGENT_OFFLINE";
pub const ENV_REGISTRY_URL: &str = "COMFYUI_AGENT_REGISTRY_URL";
pub const ENV_CIVITAI_URL: &str = "COMFYUI_AGENT_CIVITAI_URL";
pub const ENV_HUGGINGFACE_URL: &str = "COMFYUI_AGENT_HUGGINGFACE_URL";
pub const ENV_GITHUB_URL: &str = "COMFYUI_AGENT_GITHUB_URL";
pub const ENV_WEB_TIMEOUT: &str = "COMFYUI_AGENT_WEB_TIMEOUT";
pub const ENV_WEB_CACHE_MINUTES: &str = "COMFYUI_AGENT_WEB_CACHE_MINUTES";
pub const ENV_CIVITAI_API_KEY: &str = "CIVITAI_API_KEY";
pub const ENV_HF_TOKEN: &str = "HF_TOKEN";
pub const ENV_GITHUB_TOKEN: &str = "GITHUB_TOKEN";
pub const ENV_GITHUB_API_TOKEN: &str = "GITHUB_API_TOKEN";

pub const DEFAULT_COMFYUI_URL: &str = "http://127.0.0.1:8188/";
pub const DEFAULT_BIND: &str = "127.0.0.1:8765";
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Environment-style settings: the process environment over a `.env` file. Built from a
/// plain map in tests.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_map<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The process environment, falling back to `dotenv_path` for keys it lacks.
    pub fn from_process_and_dotenv(dotenv_path: &Path) -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        match dotenvy::from_path_iter(dotenv_path) {
            Ok(entries) => {
                for entry in entries {
                    let (key, value) = entry.map_err(|error| {
                        ConfigError::new(
                            ".env",
                            dotenv_path.display().to_string(),
                            format!("which cannot be read ({error})"),
                            "Fix the line it names, or remove the file.",
                        )
                    })?;
                    vars.insert(key, value);
                }
            }
            Err(dotenvy::Error::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(ConfigError::new(
                    ".env",
                    dotenv_path.display().to_string(),
                    format!("which cannot be read ({error})"),
                    "Fix the file or remove it.",
                ));
            }
        }
        // Non-UTF-8 values can't be settings of ours; skip them rather than panic.
        vars.extend(
            std::env::vars_os().filter_map(|(key, value)| {
                Some((key.into_string().ok()?, value.into_string().ok()?))
            }),
        );
        Ok(Self { vars })
    }

    /// A non-empty value for `key` (blank values count as unset).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub comfyui_url: Url,
    /// Whether the user chose the address. When not, the client looks for a running ComfyUI
    /// on the usual local ports (8188, then the Desktop app's 8000).
    pub comfyui_url_configured: bool,
    pub comfy: ComfyConfig,
    /// The ComfyUI install folder, when known.
    pub comfyui_dir: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// Extra folders clients may name, besides the ComfyUI folder and the data folder.
    pub extra_roots: Vec<PathBuf>,
    pub http: HttpConfig,
    pub sessions: SessionConfig,
    /// How much image data results carry inline.
    pub images: ImageBudget,
    /// Whether per-GPU metrics gauges are offered (off by default: each scrape reads NVML).
    pub gpu_metrics: bool,
    /// The public web sources (registry, CivitAI, Hugging Face, GitHub).
    pub web: WebConfig,
    /// Which tools are pre-approved or turned off.
    pub tools: ToolSettings,
    /// The model asked when the client can't lend its own (MCP sampling).
    pub model: Option<ModelProvider>,
}

/// A model provider for clients that can't sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelProvider {
    pub kind: ProviderKind,
    /// The API's base address (`…/v1/` for OpenAI-compatible ones).
    pub url: Url,
    pub model: String,
    pub api_key: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// `POST {url}chat/completions` with image_url parts (Ollama, vLLM, LM Studio, OpenAI…).
    OpenaiCompatible,
    /// `POST {url}v1/messages`.
    Anthropic,
}

impl ModelProvider {
    /// How an artist would name it: `llava at localhost:11434`.
    pub fn label(&self) -> String {
        format!(
            "{} ({})",
            self.model,
            match self.kind {
                ProviderKind::OpenaiCompatible => "OpenAI-compatible",
                ProviderKind::Anthropic => "Anthropic",
            }
        )
    }
}

/// The OpenAI-compatible endpoint when one is set (it is an explicit local choice), else
/// Anthropic when its key is set, else none.
fn model_provider(env: &Env) -> Result<Option<ModelProvider>, ConfigError> {
    let with_slash = |mut url: Url| {
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url
    };
    if let Some(raw) = env.get(ENV_MODEL_URL) {
        let url = http_url(
            ENV_MODEL_URL,
            raw,
            "Give the API's base address, like http://localhost:11434/v1 for Ollama.",
        )?;
        let Some(model) = env.get(ENV_MODEL_NAME) else {
            return Err(ConfigError::new(
                ENV_MODEL_NAME,
                "",
                format!("which must name the model when {ENV_MODEL_URL} is set"),
                "Name a vision model the endpoint serves, like llava or qwen2.5vl.",
            ));
        };
        return Ok(Some(ModelProvider {
            kind: ProviderKind::OpenaiCompatible,
            url: with_slash(url),
            model: model.to_string(),
            api_key: env.get(ENV_MODEL_API_KEY).map(Secret::new),
        }));
    }
    let Some(key) = env.get(ENV_ANTHROPIC_API_KEY) else {
        return Ok(None);
    };
    let url = http_url(
        ENV_ANTHROPIC_URL,
        env.get(ENV_ANTHROPIC_URL)
            .unwrap_or("https://api.anthropic.com/"),
        "Leave it unset for Anthropic's API, or give a proxy's address.",
    )?;
    Ok(Some(ModelProvider {
        kind: ProviderKind::Anthropic,
        url: with_slash(url),
        model: env
            .get(ENV_ANTHROPIC_MODEL)
            .unwrap_or(DEFAULT_ANTHROPIC_MODEL)
            .to_string(),
        api_key: Some(Secret::new(key)),
    }))
}

/// The operator's say over the tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolSettings {
    /// Tools that may overwrite, delete or spend without asking the user first
    /// (`COMFYUI_AGENT_PRE_APPROVE`; `*` for all).
    pub pre_approved: Vec<String>,
    /// Tools this server does not offer (`COMFYUI_AGENT_DISABLED_TOOLS`). Re-read from `.env`
    /// on SIGHUP, and clients are told the tool list changed.
    pub disabled: Vec<String>,
}

impl ToolSettings {
    /// Reads both lists (comma-separated tool names) from `env`.
    pub fn from_env(env: &Env) -> Self {
        let list = |key: &str| -> Vec<String> {
            let mut names: Vec<String> = env
                .get(key)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(String::from)
                .collect();
            names.sort();
            names.dedup();
            names
        };
        Self {
            pre_approved: list(ENV_PRE_APPROVE),
            disabled: list(ENV_DISABLED_TOOLS),
        }
    }

    /// Whether the operator approved `tool` in advance.
    pub fn is_pre_approved(&self, tool: &str) -> bool {
        self.pre_approved
            .iter()
            .any(|name| name == "*" || name == tool)
    }
}

/// How the web sources are reached.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// No web source is asked; tools say so and return what local sources know.
    pub offline: bool,
    /// Per-source address, key and timeout; sources not listed use their defaults.
    pub sources: Vec<(crate::web::Source, crate::web::SourceConfig)>,
    /// How long an answer is reused.
    pub cache_ttl: Duration,
    /// How much answer JSON the cache may hold.
    pub cache_max_bytes: usize,
}

pub const DEFAULT_WEB_CACHE_MINUTES: u64 = 10;
pub const WEB_CACHE_MAX_BYTES: usize = 32 * 1024 * 1024;

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            offline: false,
            sources: Vec::new(),
            cache_ttl: Duration::from_secs(DEFAULT_WEB_CACHE_MINUTES * 60),
            cache_max_bytes: WEB_CACHE_MAX_BYTES,
        }
    }
}

/// How sessions keep state: undo depth, in-memory lifetime, and how long saved sessions last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Patches a session can undo.
    pub undo_limit: usize,
    /// An in-memory session unused this long is dropped (its saved copy, if any, stays).
    pub idle: Duration,
    /// Saved sessions not written this long are removed; `None` keeps them forever.
    pub max_age: Option<Duration>,
}

pub const DEFAULT_UNDO_LIMIT: usize = 50;
pub const DEFAULT_SESSION_IDLE_MINUTES: u64 = 60;
pub const DEFAULT_SESSION_MAX_AGE_DAYS: u64 = 90;

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            undo_limit: DEFAULT_UNDO_LIMIT,
            idle: Duration::from_secs(DEFAULT_SESSION_IDLE_MINUTES * 60),
            max_age: Some(Duration::from_secs(DEFAULT_SESSION_MAX_AGE_DAYS * 86_400)),
        }
    }
}

/// How the ComfyUI client behaves.
#[derive(Debug, Clone)]
pub struct ComfyConfig {
    /// Sent with every request to ComfyUI (for instances behind an authenticating proxy).
    pub auth: Option<UpstreamAuth>,
    /// Consecutive failures (refused connections, timeouts, 5xx) that open the breaker.
    pub breaker_failures: u32,
    /// Per-operation timeout overrides, by operation name (`object_info`, `history`, …).
    pub timeouts: Vec<(String, std::time::Duration)>,
}

impl Default for ComfyConfig {
    fn default() -> Self {
        Self {
            auth: None,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            timeouts: Vec::new(),
        }
    }
}

pub const DEFAULT_BREAKER_FAILURES: u32 = 5;

/// A header sent to ComfyUI on every request, e.g. `Authorization: Bearer …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAuth {
    /// The header name, lower-case.
    pub header: String,
    /// The full header value (a secret).
    pub value: Secret,
}

/// Settings of the HTTP transport (`serve`).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind: SocketAddr,
    pub token: Option<Secret>,
    /// Host header values accepted besides the loopback names. `*` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted besides loopback ones. `*` accepts any.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// Whether `serve` offers the web console at `/`.
    pub console: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8765)),
            token: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            console: true,
        }
    }
}

impl HttpConfig {
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret(token.into()));
        self
    }
}

impl Config {
    /// Resolves flags over `env`, validating every value.
    pub fn resolve(cli: &Cli, env: &Env) -> Result<Self, ConfigError> {
        let serve = match &cli.command {
            Command::Serve(args) => Some(args),
            _ => None,
        };
        let comfyui_url_configured = cli.comfyui_url.is_some()
            || [ENV_COMFYUI_URL, ENV_COMFYUI_HOST, ENV_COMFYUI_PORT]
                .iter()
                .any(|key| env.get(key).is_some());
        let comfyui_url = comfyui_url(cli.comfyui_url.as_deref(), env)?;
        let comfy = comfy_config(env)?;
        let comfyui_dir = comfyui_dir(cli.comfyui_dir.as_deref(), env)?;
        let data_dir = data_dir(cli.data_dir.as_deref(), env)?;
        let extra_roots = extra_roots(env)?;
        let sessions = session_config(env)?;
        let images = image_budget(env)?;
        let gpu_metrics = switch(env, ENV_GPU_METRICS, false)?;
        let web = web_config(env)?;
        let tools = ToolSettings::from_env(env);
        let model = model_provider(env)?;
        // HTTP settings are checked only when serving HTTP; stdio needs just the size limit.
        let http = match serve {
            Some(args) => {
                let http = http_config(args, env)?;
                require_token_off_loopback(&http)?;
                http
            }
            None => HttpConfig {
                max_body_bytes: max_body_bytes(&ServeArgs::default(), env)?,
                ..HttpConfig::default()
            },
        };
        Ok(Self {
            comfyui_url,
            comfyui_url_configured,
            comfy,
            comfyui_dir,
            data_dir,
            extra_roots,
            http,
            sessions,
            images,
            gpu_metrics,
            web,
            tools,
            model,
        })
    }

    /// The same settings talking to ComfyUI at `url` (tests and fixture servers).
    pub fn with_comfyui_url(mut self, url: Url) -> Self {
        self.comfyui_url = url;
        self.comfyui_url_configured = true;
        self
    }

    /// Settings for tests and embedding: defaults everywhere, the given data folder.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            comfyui_url: Url::parse(DEFAULT_COMFYUI_URL).expect("the default URL is valid"),
            comfyui_url_configured: false,
            comfy: ComfyConfig::default(),
            comfyui_dir: None,
            data_dir,
            extra_roots: Vec::new(),
            http: HttpConfig::default(),
            sessions: SessionConfig::default(),
            images: ImageBudget::default(),
            gpu_metrics: false,
            web: WebConfig::default(),
            tools: ToolSettings::default(),
            model: None,
        }
    }
}

fn comfyui_url(flag: Option<&str>, env: &Env) -> Result<Url, ConfigError> {
    if let Some(raw) = flag {
        return parse_comfyui_url("--comfyui-url", raw);
    }
    if let Some(raw) = env.get(ENV_COMFYUI_URL) {
        return parse_comfyui_url(ENV_COMFYUI_URL, raw);
    }
    let host = env.get(ENV_COMFYUI_HOST);
    let port = env.get(ENV_COMFYUI_PORT);
    if host.is_none() && port.is_none() {
        return parse_comfyui_url(ENV_COMFYUI_URL, DEFAULT_COMFYUI_URL);
    }
    let port = match port {
        None => 8188,
        Some(raw) => raw.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            ConfigError::new(
                ENV_COMFYUI_PORT,
                raw,
                "which is not a port number (1-65535)",
                "Set it to ComfyUI's port, usually 8188.",
            )
        })?,
    };
    let raw_host = host.unwrap_or("127.0.0.1");
    // Accept what people write: `gpu-box`, `gpu-box:8190`, `https://gpu-box`, `::1`, `[::1]`.
    let (scheme, rest) = match raw_host.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", raw_host),
    };
    let rest = rest.trim_end_matches('/');
    let bare_ipv6 =
        rest.contains(':') && !rest.starts_with('[') && rest.parse::<std::net::Ipv6Addr>().is_ok();
    let authority = if bare_ipv6 {
        format!("[{rest}]:{port}")
    } else if rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        rest.to_string()
    } else {
        format!("{rest}:{port}")
    };
    parse_comfyui_url(ENV_COMFYUI_HOST, &format!("{scheme}://{authority}/")).map_err(|mut error| {
        error.value = raw_host.to_string();
        error
    })
}

fn parse_comfyui_url(setting: &'static str, raw: &str) -> Result<Url, ConfigError> {
    const FIX: &str = "Set it to ComfyUI's address, like http://127.0.0.1:8188 (a base path such as https://host/comfy/ is fine).";
    let mut url = http_url(setting, raw, FIX)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            setting,
            raw,
            "which has a query or fragment",
            FIX,
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// An `http`/`https` address with a host, or an error naming `setting` and `fix`.
pub(crate) fn http_url(setting: &'static str, raw: &str, fix: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|error| {
        ConfigError::new(
            setting,
            raw,
            format!("which is not a valid address ({error})"),
            fix,
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            setting,
            raw,
            "which is not an http or https address",
            fix,
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(setting, raw, "which has no host", fix));
    }
    Ok(url)
}

fn comfy_config(env: &Env) -> Result<ComfyConfig, ConfigError> {
    let auth = match env.get(ENV_AUTH_TOKEN) {
        None => None,
        Some(token) => {
            let header = env.get(ENV_AUTH_HEADER).unwrap_or("Authorization");
            let valid_name = !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name {
                return Err(ConfigError::new(
                    ENV_AUTH_HEADER,
                    header,
                    "which is not an HTTP header name",
                    "Use a header name like Authorization or X-API-Key, or unset it for Authorization.",
                ));
            }
            if token.chars().any(char::is_control) {
                return Err(ConfigError::new(
                    ENV_AUTH_TOKEN,
                    "<hidden>",
                    "which contains control characters",
                    "Paste the token again without line breaks.",
                ));
            }
            let header = header.to_ascii_lowercase();
            // A bare token in Authorization means a bearer token; a value that already names
            // its scheme ("Basic …", "Bearer …") is sent as written.
            let value = if header == "authorization" && !token.contains(' ') {
                format!("Bearer {token}")
            } else {
                token.to_string()
            };
            Some(UpstreamAuth {
                header,
                value: Secret(value),
            })
        }
    };
    let breaker_failures = match env.get(ENV_BREAKER_FAILURES) {
        None => DEFAULT_BREAKER_FAILURES,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ConfigError::new(
                    ENV_BREAKER_FAILURES,
                    raw,
                    "which is not a count between 1 and 1000",
                    "Use a small whole number; the default is 5.",
                )
            })?,
    };
    let mut timeouts = Vec::new();
    if let Some(raw) = env.get(ENV_TIMEOUTS) {
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let parsed = entry.split_once('=').and_then(|(name, secs)| {
                let secs = secs.trim().trim_end_matches('s').parse::<f64>().ok()?;
                let name = name.trim();
                (!name.is_empty() && secs > 0.0 && secs <= 3600.0)
                    .then(|| (name.to_string(), std::time::Duration::from_secs_f64(secs)))
            });
            if let Some((name, _)) = &parsed
                && crate::comfy::Operation::from_setting(name).is_none()
            {
                let known = crate::comfy::Operation::ALL.map(crate::comfy::Operation::name);
                return Err(ConfigError::new(
                    ENV_TIMEOUTS,
                    raw,
                    format!("and {name:?} is neither an operation nor a tool that calls ComfyUI"),
                    format!(
                        "Use one of {}, or a live tool's name like get_queue_status.",
                        known.join(", ")
                    ),
                ));
            }
            match parsed {
                Some(pair) => timeouts.push(pair),
                None => {
                    return Err(ConfigError::new(
                        ENV_TIMEOUTS,
                        raw,
                        format!("and {entry:?} is not operation=seconds"),
                        "List operation=seconds pairs separated by commas, like object_info=60,history=20 (0 < seconds <= 3600).",
                    ));
                }
            }
        }
    }
    Ok(ComfyConfig {
        auth,
        breaker_failures,
        timeouts,
    })
}

/// A whole number in `range`, or the default when unset.
fn bounded(
    env: &Env,
    setting: &'static str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
    what: &str,
    fix: &str,
) -> Result<u64, ConfigError> {
    let Some(raw) = env.get(setting) else {
        return Ok(default);
    };
    raw.parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ConfigError::new(
                setting,
                raw,
                format!(
                    "which is not {what} between {} and {}",
                    range.start(),
                    range.end()
                ),
                fix,
            )
        })
}

/// An on/off setting: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`, any case.
fn switch(env: &Env, setting: &'static str, default: bool) -> Result<bool, ConfigError> {
    let Some(raw) = env.get(setting) else {
        return Ok(default);
    };
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            setting,
            raw,
            "which is neither on nor off",
            "Use 1 to turn it on or 0 to turn it off.",
        )),
    }
}

fn web_config(env: &Env) -> Result<WebConfig, ConfigError> {
    use crate::web::{Source, SourceConfig};
    let offline = switch(env, ENV_OFFLINE, false)?;
    let timeout = match env.get(ENV_WEB_TIMEOUT) {
        None => None,
        Some(_) => Some(Duration::from_secs(bounded(
            env,
            ENV_WEB_TIMEOUT,
            1..=300,
            15,
            "a number of seconds",
            "Use the seconds one request to a web source may take; the default is 15 (20 for CivitAI).",
        )?)),
    };
    let cache_minutes = bounded(
        env,
        ENV_WEB_CACHE_MINUTES,
        0..=10_080,
        DEFAULT_WEB_CACHE_MINUTES,
        "a number of minutes",
        "Use how long web answers are reused, in minutes; 0 turns the cache off. The default is 10.",
    )?;
    let mut sources = Vec::new();
    for source in Source::ALL {
        let mut config = SourceConfig::default_for(source);
        if let Some(raw) = env.get(source.url_setting()) {
            config.base_url = http_url(
                source.url_setting(),
                raw,
                &format!(
                    "Set it to the API address to use instead of {}, or unset it.",
                    source.default_base_url()
                ),
            )?;
        }
        config.key = source
            .key_settings()
            .iter()
            .find_map(|key| env.get(key))
            .map(Secret::new);
        if let Some(timeout) = timeout {
            config.timeout = timeout;
        }
        sources.push((source, config));
    }
    Ok(WebConfig {
        offline,
        sources,
        cache_ttl: Duration::from_secs(cache_minutes * 60),
        cache_max_bytes: WEB_CACHE_MAX_BYTES,
    })
}

fn session_config(env: &Env) -> Result<SessionConfig, ConfigError> {
    let undo_limit = bounded(
        env,
        ENV_UNDO_LIMIT,
        1..=10_000,
        DEFAULT_UNDO_LIMIT as u64,
        "a count",
        "Use a whole number of patches to keep for undo; the default is 50.",
    )?;
    let idle_minutes = bounded(
        env,
        ENV_SESSION_IDLE_MINUTES,
        1..=10_080,
        DEFAULT_SESSION_IDLE_MINUTES,
        "a number of minutes",
        "Use whole minutes (at most 10080, a week); the default is 60.",
    )?;
    let max_age_days = bounded(
        env,
        ENV_SESSION_MAX_AGE_DAYS,
        0..=36_500,
        DEFAULT_SESSION_MAX_AGE_DAYS,
        "a number of days",
        "Use whole days, or 0 to keep saved sessions forever; the default is 90.",
    )?;
    Ok(SessionConfig {
        undo_limit: undo_limit as usize,
        idle: Duration::from_secs(idle_minutes * 60),
        max_age: (max_age_days > 0).then(|| Duration::from_secs(max_age_days * 86_400)),
    })
}

fn image_budget(env: &Env) -> Result<ImageBudget, ConfigError> {
    let max_side = bounded(
        env,
        ENV_IMAGE_MAX_SIDE,
        64..=4096,
        u64::from(crate::images::DEFAULT_MAX_SIDE),
        "a number of pixels",
        "Use the longest side, in pixels, of images sent to the assistant; the default is 768.",
    )?;
    let max_kb = bounded(
        env,
        ENV_IMAGE_MAX_KB,
        16..=10_240,
        (crate::images::DEFAULT_MAX_BYTES / 1024) as u64,
        "a number of kilobytes",
        "Use the largest size, in KB, of each image sent to the assistant; the default is 300.",
    )?;
    let max_inline = bounded(
        env,
        ENV_IMAGE_MAX_INLINE,
        0..=16,
        crate::images::DEFAULT_MAX_INLINE as u64,
        "a count",
        "Use how many images a result may show inline, or 0 to list them by path only; the default is 4.",
    )?;
    Ok(ImageBudget {
        max_side: max_side as u32,
        max_bytes: max_kb as usize * 1024,
        max_inline: max_inline as usize,
    })
}

fn comfyui_dir(flag: Option<&Path>, env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    let (setting, raw) = match (
        flag,
        env.get(ENV_COMFYUI_DIR),
        env.get(ENV_COMFYUI_DATABASE),
    ) {
        (Some(path), _, _) => ("--comfyui-dir", path.to_path_buf()),
        (None, Some(raw), _) => (ENV_COMFYUI_DIR, PathBuf::from(raw)),
        (None, None, Some(raw)) => (ENV_COMFYUI_DATABASE, PathBuf::from(raw)),
        (None, None, None) => return Ok(None),
    };
    let path = expand_home(&raw);
    if !path.is_dir() {
        return Err(ConfigError::new(
            setting,
            raw.display().to_string(),
            "which is not an existing folder",
            "Point it at your ComfyUI folder (the one holding main.py, models/ and custom_nodes/), or unset it.",
        ));
    }
    Ok(Some(path.canonicalize().unwrap_or(path)))
}

fn data_dir(flag: Option<&Path>, env: &Env) -> Result<PathBuf, ConfigError> {
    let (setting, path) = match (flag, env.get(ENV_DATA_DIR)) {
        (Some(path), _) => ("--data-dir", expand_home(path)),
        (None, Some(raw)) => (ENV_DATA_DIR, expand_home(Path::new(raw))),
        (None, None) => {
            let base = dirs::data_local_dir()
                .or_else(dirs::home_dir)
                .unwrap_or_else(std::env::temp_dir);
            return Ok(base.join("comfyui-agent"));
        }
    };
    if path.exists() && !path.is_dir() {
        return Err(ConfigError::new(
            setting,
            path.display().to_string(),
            "which is a file, not a folder",
            "Point it at a folder (it is created if missing).",
        ));
    }
    Ok(path)
}

fn extra_roots(env: &Env) -> Result<Vec<PathBuf>, ConfigError> {
    let Some(raw) = env.get(ENV_ALLOWED_ROOTS) else {
        return Ok(Vec::new());
    };
    let mut roots = Vec::new();
    for entry in std::env::split_paths(raw) {
        if entry.as_os_str().is_empty() {
            continue;
        }
        let path = expand_home(&entry);
        if !path.is_dir() {
            return Err(ConfigError::new(
                ENV_ALLOWED_ROOTS,
                raw,
                format!("and {} is not an existing folder", entry.display()),
                "List existing folders, separated like PATH entries.",
            ));
        }
        roots.push(path.canonicalize().unwrap_or(path));
    }
    Ok(roots)
}

fn list(flag: &[String], env: &Env, key: &str) -> Vec<String> {
    let from_env = env
        .get(key)
        .into_iter()
        .flat_map(|raw| raw.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from);
    flag.iter().cloned().chain(from_env).collect()
}

/// The address `serve` listens on: the flag, else `COMFYUI_AGENT_BIND`, else the default.
/// Also what `healthcheck` probes.
pub fn serve_bind(flag: Option<SocketAddr>, env: &Env) -> Result<SocketAddr, ConfigError> {
    Ok(match (flag, env.get(ENV_BIND)) {
        (Some(bind), _) => bind,
        (None, Some(raw)) => raw.parse().map_err(|_| {
            ConfigError::new(
                ENV_BIND,
                raw,
                "which is not an address and port",
                format!("Use the form {DEFAULT_BIND} (or [::1]:8765)."),
            )
        })?,
        (None, None) => DEFAULT_BIND
            .parse()
            .expect("the default bind address is valid"),
    })
}

fn http_config(args: &ServeArgs, env: &Env) -> Result<HttpConfig, ConfigError> {
    let bind = serve_bind(args.bind, env)?;
    let token = match args.token.as_deref().or_else(|| env.get(ENV_TOKEN)) {
        None => None,
        Some(token) => {
            let setting = if args.token.is_some() {
                "--token"
            } else {
                ENV_TOKEN
            };
            if token.trim().is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::new(
                    setting,
                    "<hidden>",
                    "which is blank or contains spaces",
                    "Use a long random string without spaces, e.g. from `openssl rand -hex 32`.",
                ));
            }
            Some(Secret(token.to_string()))
        }
    };
    let allowed_hosts = list(&args.allowed_hosts, env, ENV_ALLOWED_HOSTS);
    let allowed_origins = list(&args.allowed_origins, env, ENV_ALLOWED_ORIGINS);
    for origin in &allowed_origins {
        if origin != "*" && Url::parse(origin).map_or(true, |u| u.host_str().is_none()) {
            let setting = if args.allowed_origins.contains(origin) {
                "--allowed-origin"
            } else {
                ENV_ALLOWED_ORIGINS
            };
            return Err(ConfigError::new(
                setting,
                origin.clone(),
                "which is not an origin",
                "Use scheme://host[:port], like https://app.example.com, or * for any.",
            ));
        }
    }
    let max_body_bytes = max_body_bytes(args, env)?;
    let console = !args.no_console && switch(env, ENV_CONSOLE, true)?;
    Ok(HttpConfig {
        bind,
        token,
        allowed_hosts,
        allowed_origins,
        max_body_bytes,
        console,
    })
}

fn max_body_bytes(args: &ServeArgs, env: &Env) -> Result<usize, ConfigError> {
    let (setting, value) = match (args.max_body_bytes, env.get(ENV_MAX_BODY_BYTES)) {
        (Some(n), _) => ("--max-body-bytes", n),
        (None, Some(raw)) => (
            ENV_MAX_BODY_BYTES,
            raw.parse().map_err(|_| {
                ConfigError::new(
                    ENV_MAX_BODY_BYTES,
                    raw,
                    "which is not a whole number of bytes",
                    "Use a number like 4194304 (4 MiB).",
                )
            })?,
        ),
        (None, None) => return Ok(DEFAULT_MAX_BODY_BYTES),
    };
    if value < 1024 {
        return Err(ConfigError::new(
            setting,
            value.to_string(),
            "which is too small for any MCP request",
            "Use at least 1024; the default is 4194304 (4 MiB).",
        ));
    }
    Ok(value)
}

fn require_token_off_loopback(http: &HttpConfig) -> Result<(), ConfigError> {
    if http.bind.ip().is_loopback() || http.token.is_some() {
        return Ok(());
    }
    Err(ConfigError::new(
        "COMFYUI_AGENT_BIND (or --bind)",
        http.bind.to_string(),
        "which other machines can reach, and no token is set",
        "Set COMFYUI_AGENT_TOKEN (or --token) to a long random secret, or bind to 127.0.0.1.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut argv = vec!["comfyui-agent"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("test arguments parse");
        Config::resolve(&cli, &Env::from_map(env.iter().copied()))
    }

    #[test]
    fn defaults_are_loopback_and_the_standard_comfyui_port() {
        let config = resolve(&["mcp"], &[]).expect("defaults are valid");
        assert_eq!(config.comfyui_url.as_str(), "http://127.0.0.1:8188/");
        assert_eq!(config.http.bind.to_string(), "127.0.0.1:8765");
        assert!(config.comfyui_dir.is_none());
        assert!(config.data_dir.ends_with("comfyui-agent"));
    }

    #[test]
    fn flags_beat_env_and_url_beats_host_port() {
        let config = resolve(
            &["--comfyui-url", "http://flag:1/", "mcp"],
            &[("COMFYUI_URL", "http://env:2"), ("COMFYUI_HOST", "alias")],
        )
        .expect("valid");
        assert_eq!(config.comfyui_url.as_str(), "http://flag:1/");
        let config = resolve(
            &["mcp"],
            &[("COMFYUI_URL", "http://env:2"), ("COMFYUI_HOST", "alias")],
        )
        .expect("valid");
        assert_eq!(config.comfyui_url.as_str(), "http://env:2/");
    }

    #[test]
    fn host_and_port_aliases_build_the_url() {
        let config = resolve(
            &["mcp"],
            &[("COMFYUI_HOST", "gpu-box"), ("COMFYUI_PORT", "8190")],
        )
        .expect("valid");
        assert_eq!(config.comfyui_url.as_str(), "http://gpu-box:8190/");
        let config = resolve(&["mcp"], &[("COMFYUI_HOST", "::1")]).expect("valid");
        assert_eq!(config.comfyui_url.as_str(), "http://[::1]:8188/");
        let config = resolve(&["mcp"], &[("COMFYUI_HOST", "gpu-box:8190")]).expect("valid");
        assert_eq!(config.comfyui_url.as_str(), "http://gpu-box:8190/");
        let config = resolve(&["mcp"], &[("COMFYUI_HOST", "https://gpu-box")]).expect("valid");
        assert_eq!(config.comfyui_url.as_str(), "https://gpu-box:8188/");
        let error = resolve(&["mcp"], &[("COMFYUI_HOST", "ftp://gpu box")]).expect_err("bad");
        assert_eq!(error.value, "ftp://gpu box");
    }

    #[test]
    fn discovery_applies_only_when_no_address_is_given() {
        assert!(
            !resolve(&["mcp"], &[])
                .expect("valid")
                .comfyui_url_configured
        );
        assert!(
            resolve(&["mcp"], &[("COMFYUI_PORT", "8000")])
                .expect("valid")
                .comfyui_url_configured
        );
        assert!(
            resolve(&["--comfyui-url", "http://box:1", "mcp"], &[])
                .expect("valid")
                .comfyui_url_configured
        );
    }

    #[test]
    fn upstream_auth_defaults_to_a_bearer_authorization_header() {
        let config = resolve(&["mcp"], &[("COMFYUI_AUTH_TOKEN", "abc123")]).expect("valid");
        let auth = config.comfy.auth.expect("auth set");
        assert_eq!(auth.header, "authorization");
        assert_eq!(auth.value.expose(), "Bearer abc123");
        let config =
            resolve(&["mcp"], &[("COMFYUI_AUTH_TOKEN", "Basic dXNlcjpwdw==")]).expect("valid");
        assert_eq!(
            config.comfy.auth.expect("auth").value.expose(),
            "Basic dXNlcjpwdw=="
        );
        let config = resolve(
            &["mcp"],
            &[
                ("COMFYUI_AUTH_TOKEN", "k"),
                ("COMFYUI_AUTH_HEADER", "X-API-Key"),
            ],
        )
        .expect("valid");
        let auth = config.comfy.auth.expect("auth");
        assert_eq!(
            (auth.header.as_str(), auth.value.expose()),
            ("x-api-key", "k")
        );
        assert!(
            !format!(
                "{:?}",
                resolve(&["mcp"], &[("COMFYUI_AUTH_TOKEN", "zzsecretzz")]).expect("valid")
            )
            .contains("zzsecretzz")
        );
        let error = resolve(
            &["mcp"],
            &[
                ("COMFYUI_AUTH_TOKEN", "k"),
                ("COMFYUI_AUTH_HEADER", "Bad Header"),
            ],
        )
        .expect_err("bad header");
        assert_eq!(error.setting, "COMFYUI_AUTH_HEADER");
    }

    #[test]
    fn breaker_and_timeout_settings_are_validated() {
        let config = resolve(
            &["mcp"],
            &[
                ("COMFYUI_AGENT_BREAKER_FAILURES", "3"),
                ("COMFYUI_AGENT_TIMEOUTS", "object_info=60, history=2.5s"),
            ],
        )
        .expect("valid");
        assert_eq!(config.comfy.breaker_failures, 3);
        assert_eq!(
            config.comfy.timeouts,
            [
                (
                    "object_info".to_string(),
                    std::time::Duration::from_secs(60)
                ),
                (
                    "history".to_string(),
                    std::time::Duration::from_millis(2500)
                ),
            ]
        );
        let error =
            resolve(&["mcp"], &[("COMFYUI_AGENT_BREAKER_FAILURES", "0")]).expect_err("zero");
        assert_eq!(error.setting, "COMFYUI_AGENT_BREAKER_FAILURES");
        let error = resolve(&["mcp"], &[("COMFYUI_AGENT_TIMEOUTS", "history")]).expect_err("no =");
        assert_eq!(error.setting, "COMFYUI_AGENT_TIMEOUTS");
    }

    #[test]
    fn timeouts_take_tool_names_and_refuse_unknown_ones() {
        let config = resolve(
            &["mcp"],
            &[("COMFYUI_AGENT_TIMEOUTS", "get_queue_status=12")],
        )
        .expect("a tool name is accepted");
        let client = crate::comfy::Client::new(
            config.comfyui_url.clone(),
            &config.comfy,
            crate::comfy::PortHint::Discovered,
        )
        .expect("client");
        assert_eq!(
            client.timeout(crate::comfy::Operation::Queue),
            std::time::Duration::from_secs(12)
        );
        let error = resolve(&["mcp"], &[("COMFYUI_AGENT_TIMEOUTS", "objectinfo=60")])
            .expect_err("a typo is refused, not ignored");
        assert_eq!(error.setting, "COMFYUI_AGENT_TIMEOUTS");
        let line = error.to_string();
        assert!(line.contains("\"objectinfo\""), "{line}");
        assert!(line.contains("object_info"), "lists the names: {line}");
    }

    #[test]
    fn base_paths_keep_a_trailing_slash() {
        let config =
            resolve(&["mcp"], &[("COMFYUI_URL", "https://proxy.example/comfy")]).expect("valid");
        assert_eq!(config.comfyui_url.as_str(), "https://proxy.example/comfy/");
    }

    #[test]
    fn bad_values_name_the_setting_the_value_and_the_fix() {
        let error = resolve(&["mcp"], &[("COMFYUI_URL", "ftp://host")]).expect_err("bad scheme");
        let line = error.to_string();
        assert!(
            line.starts_with("COMFYUI_URL is set to \"ftp://host\""),
            "{line}"
        );
        assert!(line.contains("http://127.0.0.1:8188"), "{line}");

        let error = resolve(&["mcp"], &[("COMFYUI_PORT", "eighty")]).expect_err("bad port");
        assert_eq!(error.setting, "COMFYUI_PORT");

        let error =
            resolve(&["mcp"], &[("COMFYUI_DIR", "/definitely/not/here")]).expect_err("no dir");
        assert_eq!(error.setting, "COMFYUI_DIR");
        assert!(error.to_string().contains("main.py"));

        let error = resolve(&["serve"], &[("COMFYUI_AGENT_BIND", "localhost")]).expect_err("bind");
        assert_eq!(error.setting, "COMFYUI_AGENT_BIND");

        let error =
            resolve(&["serve"], &[("COMFYUI_AGENT_MAX_BODY_BYTES", "-1")]).expect_err("size");
        assert_eq!(error.setting, "COMFYUI_AGENT_MAX_BODY_BYTES");

        let error = resolve(
            &["serve"],
            &[("COMFYUI_AGENT_ALLOWED_ORIGINS", "not an origin")],
        )
        .expect_err("origin");
        assert_eq!(error.setting, "COMFYUI_AGENT_ALLOWED_ORIGINS");
    }

    #[test]
    fn web_sources_take_addresses_keys_timeout_and_cache_from_the_environment() {
        use crate::web::Source;
        let config = resolve(&["mcp"], &[]).expect("defaults");
        assert!(!config.web.offline);
        assert_eq!(config.web.cache_ttl, Duration::from_secs(600));
        let civitai = &config
            .web
            .sources
            .iter()
            .find(|(s, _)| *s == Source::CivitAi)
            .expect("civitai")
            .1;
        assert_eq!(civitai.base_url.as_str(), "https://civitai.com/api/v1/");
        assert_eq!(civitai.timeout, Duration::from_secs(20));
        assert!(civitai.key.is_none());

        let config = resolve(
            &["mcp"],
            &[
                (ENV_OFFLINE, "1"),
                (ENV_GITHUB_URL, "http://127.0.0.1:9/gh/"),
                (ENV_GITHUB_API_TOKEN, "old-name"),
                (ENV_HF_TOKEN, "hf-key"),
                (ENV_WEB_TIMEOUT, "3"),
                (ENV_WEB_CACHE_MINUTES, "0"),
            ],
        )
        .expect("valid");
        assert!(config.web.offline);
        assert!(config.web.cache_ttl.is_zero());
        let source = |wanted| {
            &config
                .web
                .sources
                .iter()
                .find(|(s, _)| *s == wanted)
                .expect("source")
                .1
        };
        assert_eq!(
            source(Source::GitHub).base_url.as_str(),
            "http://127.0.0.1:9/gh/"
        );
        assert_eq!(
            source(Source::GitHub).key.as_ref().map(Secret::expose),
            Some("old-name")
        );
        assert_eq!(
            source(Source::HuggingFace).key.as_ref().map(Secret::expose),
            Some("hf-key")
        );
        assert_eq!(source(Source::CivitAi).timeout, Duration::from_secs(3));

        let both = resolve(
            &["mcp"],
            &[(ENV_GITHUB_TOKEN, "new"), (ENV_GITHUB_API_TOKEN, "old")],
        )
        .expect("valid");
        let github = &both
            .web
            .sources
            .iter()
            .find(|(s, _)| *s == Source::GitHub)
            .expect("github")
            .1;
        assert_eq!(github.key.as_ref().map(Secret::expose), Some("new"));

        for (setting, bad) in [
            (ENV_CIVITAI_URL, "ftp://civitai"),
            (ENV_WEB_TIMEOUT, "0"),
            (ENV_WEB_CACHE_MINUTES, "forever"),
            (ENV_OFFLINE, "maybe"),
        ] {
            let error = resolve(&["mcp"], &[(setting, bad)]).expect_err(bad);
            assert_eq!(error.setting, setting);
        }
    }

    #[test]
    fn gpu_metrics_are_off_unless_switched_on() {
        assert!(!resolve(&["mcp"], &[]).expect("defaults").gpu_metrics);
        assert!(!Config::for_data_dir(PathBuf::from("x")).gpu_metrics);
        for on in ["1", "true", "YES", "on"] {
            let config = resolve(&["mcp"], &[("COMFYUI_AGENT_GPU_METRICS", on)]).expect(on);
            assert!(config.gpu_metrics, "{on}");
        }
        for off in ["0", "False", "no", "off", " "] {
            let config = resolve(&["mcp"], &[("COMFYUI_AGENT_GPU_METRICS", off)]).expect(off);
            assert!(!config.gpu_metrics, "{off}");
        }
        let error =
            resolve(&["mcp"], &[("COMFYUI_AGENT_GPU_METRICS", "maybe")]).expect_err("maybe");
        assert_eq!(
            error.to_string(),
            "COMFYUI_AGENT_GPU_METRICS is set to \"maybe\", which is neither on nor off. Use 1 to turn it on or 0 to turn it off."
        );
    }

    #[test]
    fn session_settings_default_validate_and_parse() {
        let defaults = resolve(&["mcp"], &[]).expect("defaults");
        assert_eq!(defaults.sessions, SessionConfig::default());
        assert_eq!(defaults.sessions.undo_limit, 50);
        assert_eq!(defaults.sessions.idle, Duration::from_secs(3600));
        assert_eq!(
            defaults.sessions.max_age,
            Some(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(
            Config::for_data_dir(PathBuf::from("x")).sessions,
            SessionConfig::default()
        );

        let config = resolve(
            &["mcp"],
            &[
                ("COMFYUI_AGENT_UNDO_LIMIT", "200"),
                ("COMFYUI_AGENT_SESSION_IDLE_MINUTES", "5"),
                ("COMFYUI_AGENT_SESSION_MAX_AGE_DAYS", "0"),
            ],
        )
        .expect("valid");
        assert_eq!(config.sessions.undo_limit, 200);
        assert_eq!(config.sessions.idle, Duration::from_secs(300));
        assert_eq!(config.sessions.max_age, None);

        for (setting, bad) in [
            ("COMFYUI_AGENT_UNDO_LIMIT", "0"),
            ("COMFYUI_AGENT_UNDO_LIMIT", "10001"),
            ("COMFYUI_AGENT_UNDO_LIMIT", "lots"),
            ("COMFYUI_AGENT_UNDO_LIMIT", "-3"),
            ("COMFYUI_AGENT_SESSION_IDLE_MINUTES", "0"),
            ("COMFYUI_AGENT_SESSION_IDLE_MINUTES", "1.5"),
            ("COMFYUI_AGENT_SESSION_MAX_AGE_DAYS", "-1"),
            ("COMFYUI_AGENT_SESSION_MAX_AGE_DAYS", "99999"),
        ] {
            let error = resolve(&["mcp"], &[(setting, bad)]).expect_err(bad);
            assert_eq!(error.setting, setting);
            assert_eq!(error.value, bad);
            let line = error.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains("the default is"), "{line}");
        }
        let line = resolve(&["mcp"], &[("COMFYUI_AGENT_UNDO_LIMIT", "0")])
            .expect_err("zero")
            .to_string();
        assert_eq!(
            line,
            "COMFYUI_AGENT_UNDO_LIMIT is set to \"0\", which is not a count between 1 and 10000. Use a whole number of patches to keep for undo; the default is 50."
        );
    }

    #[test]
    fn image_budget_settings_default_validate_and_parse() {
        let defaults = resolve(&["mcp"], &[]).expect("defaults");
        assert_eq!(defaults.images, ImageBudget::default());
        assert_eq!(
            (
                defaults.images.max_side,
                defaults.images.max_bytes,
                defaults.images.max_inline
            ),
            (768, 300 * 1024, 4)
        );
        assert_eq!(
            Config::for_data_dir(PathBuf::from("x")).images,
            ImageBudget::default()
        );

        let config = resolve(
            &["mcp"],
            &[
                ("COMFYUI_AGENT_IMAGE_MAX_SIDE", "1024"),
                ("COMFYUI_AGENT_IMAGE_MAX_KB", "512"),
                ("COMFYUI_AGENT_IMAGE_MAX_INLINE", "0"),
            ],
        )
        .expect("valid");
        assert_eq!(
            config.images,
            ImageBudget {
                max_side: 1024,
                max_bytes: 512 * 1024,
                max_inline: 0,
            }
        );
        let edges = resolve(
            &["mcp"],
            &[
                ("COMFYUI_AGENT_IMAGE_MAX_SIDE", "64"),
                ("COMFYUI_AGENT_IMAGE_MAX_KB", "10240"),
                ("COMFYUI_AGENT_IMAGE_MAX_INLINE", "16"),
            ],
        )
        .expect("the bounds themselves are valid");
        assert_eq!(edges.images.max_side, 64);
        assert_eq!(edges.images.max_bytes, 10 * 1024 * 1024);
        assert_eq!(edges.images.max_inline, 16);

        for (setting, bad) in [
            ("COMFYUI_AGENT_IMAGE_MAX_SIDE", "63"),
            ("COMFYUI_AGENT_IMAGE_MAX_SIDE", "4097"),
            ("COMFYUI_AGENT_IMAGE_MAX_SIDE", "768px"),
            ("COMFYUI_AGENT_IMAGE_MAX_KB", "15"),
            ("COMFYUI_AGENT_IMAGE_MAX_KB", "10241"),
            ("COMFYUI_AGENT_IMAGE_MAX_KB", "0.5"),
            ("COMFYUI_AGENT_IMAGE_MAX_INLINE", "17"),
            ("COMFYUI_AGENT_IMAGE_MAX_INLINE", "-1"),
        ] {
            let error = resolve(&["mcp"], &[(setting, bad)]).expect_err(bad);
            assert_eq!(error.setting, setting);
            assert_eq!(error.value, bad);
            let line = error.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains("the default is"), "{line}");
        }
        let line = resolve(&["mcp"], &[("COMFYUI_AGENT_IMAGE_MAX_KB", "8")])
            .expect_err("too small")
            .to_string();
        assert_eq!(
            line,
            "COMFYUI_AGENT_IMAGE_MAX_KB is set to \"8\", which is not a number of kilobytes between 16 and 10240. Use the largest size, in KB, of each image sent to the assistant; the default is 300."
        );
    }

    #[test]
    fn database_alias_and_dir_validation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().to_str().expect("utf-8 temp path");
        let config = resolve(&["mcp"], &[("COMFYUI_DATABASE", raw)]).expect("valid");
        assert_eq!(
            config.comfyui_dir.as_deref(),
            Some(dir.path().canonicalize().expect("canonical").as_path())
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let error = resolve(
            &["mcp"],
            &[("COMFYUI_AGENT_DATA_DIR", file.to_str().expect("utf-8"))],
        )
        .expect_err("file as data dir");
        assert_eq!(error.setting, "COMFYUI_AGENT_DATA_DIR");
    }

    #[test]
    fn serving_off_loopback_needs_a_token() {
        let error = resolve(&["serve", "--bind", "0.0.0.0:8765"], &[]).expect_err("no token");
        assert!(error.setting.starts_with("COMFYUI_AGENT_BIND"));
        assert!(error.to_string().contains("COMFYUI_AGENT_TOKEN"));
        let config = resolve(
            &["serve", "--bind", "0.0.0.0:8765"],
            &[("COMFYUI_AGENT_TOKEN", "s3cret-token")],
        )
        .expect("token set");
        assert_eq!(
            config.http.token.as_ref().map(Secret::expose),
            Some("s3cret-token")
        );
        // The MCP stdio mode ignores HTTP-only settings, even broken ones.
        resolve(&["mcp"], &[("COMFYUI_AGENT_BIND", "0.0.0.0:1")]).expect("stdio ignores bind");
        resolve(
            &["mcp"],
            &[
                ("COMFYUI_AGENT_BIND", "nonsense"),
                ("COMFYUI_AGENT_TOKEN", "a b"),
            ],
        )
        .expect("stdio ignores HTTP settings");
        let stdio = resolve(&["mcp"], &[("COMFYUI_AGENT_MAX_BODY_BYTES", "2048")]).expect("valid");
        assert_eq!(stdio.http.max_body_bytes, 2048);
    }

    #[test]
    fn the_console_is_on_unless_turned_off() {
        assert!(resolve(&["serve"], &[]).expect("valid").http.console);
        let flag = resolve(&["serve", "--no-console"], &[]).expect("valid");
        assert!(!flag.http.console);
        let env = resolve(&["serve"], &[("COMFYUI_AGENT_CONSOLE", "0")]).expect("valid");
        assert!(!env.http.console);
        let both = resolve(
            &["serve", "--no-console"],
            &[("COMFYUI_AGENT_CONSOLE", "1")],
        );
        assert!(!both.expect("valid").http.console, "the flag wins");
        let error =
            resolve(&["serve"], &[("COMFYUI_AGENT_CONSOLE", "maybe")]).expect_err("not a switch");
        assert_eq!(error.setting, "COMFYUI_AGENT_CONSOLE");
    }

    #[test]
    fn tokens_never_print() {
        let config =
            resolve(&["serve"], &[("COMFYUI_AGENT_TOKEN", "hunter2hunter2")]).expect("valid");
        assert!(!format!("{config:?}").contains("hunter2"));
        let error = resolve(&["serve", "--token", "has space"], &[]).expect_err("space");
        assert!(!error.to_string().contains("has space"));
    }

    #[test]
    fn lists_merge_flags_and_env() {
        let config = resolve(
            &["serve", "--allowed-host", "box.local"],
            &[("COMFYUI_AGENT_ALLOWED_HOSTS", "a.example, b.example")],
        )
        .expect("valid");
        assert_eq!(
            config.http.allowed_hosts,
            ["box.local", "a.example", "b.example"]
        );
    }

    #[test]
    fn dotenv_fills_gaps_but_the_process_environment_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "COMFYUI_AGENT_TEST_ONLY_KEY=from-dotenv\nPATH=from-dotenv\n",
        )
        .expect("write");
        let env = Env::from_process_and_dotenv(&path).expect("readable");
        assert_eq!(env.get("COMFYUI_AGENT_TEST_ONLY_KEY"), Some("from-dotenv"));
        assert_ne!(env.get("PATH"), Some("from-dotenv"));
        let missing = Env::from_process_and_dotenv(&dir.path().join("absent")).expect("optional");
        assert!(missing.get("COMFYUI_AGENT_TEST_ONLY_KEY").is_none());
    }
}
