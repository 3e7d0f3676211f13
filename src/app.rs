//! `AppState`: the one shared, cheaply cloned handle. No other shared state exists.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio_util::task::TaskTracker;

use crate::catalog::Catalog;
use crate::comfy::Comfy;
use crate::comfy::discovery::{Host, Install, discover_install};
use crate::config::{Config, ENV_DISABLED_TOOLS, ENV_PRE_APPROVE, ToolSettings};
use crate::error::ConfigError;
use crate::error::StartupError;
use crate::events::ChangeFeed;
use crate::gpu::{GpuProbe, HardwareProfile};
use crate::install::InstallIndex;
use crate::outcomes::store::OutcomeStore;
use crate::paths::PathPolicy;
use crate::registry::Registry;
use crate::session::NamedSessions;
use crate::session::docs::SessionDocs;
use crate::session::store::SessionStore;
use crate::telemetry::metrics::{EndpointGauges, GaugeSource, Gauges, Metrics};
use crate::web::Web;

#[derive(Debug, Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

/// Read-only after start-up, except for the few things an operator or a run changes while
/// the server runs (the tool settings, the change feed, the tasks); each has its own lock.
#[derive(Debug)]
struct Shared {
    config: Config,
    paths: PathPolicy,
    /// The ComfyUI folder: the configured one, or the one found on this machine.
    install: Option<Install>,
    /// What is installed there (models, custom node packs), with the model scan cache.
    install_index: InstallIndex,
    /// Sessions addressed by name (a tool's `session` argument, stateless clients).
    named_sessions: NamedSessions,
    /// Named sessions saved on disk.
    store: SessionStore,
    /// Each session's plan, intent, iterations, demo and pipeline, on disk.
    docs: SessionDocs,
    /// The outcomes every session recorded (SQLite, opened on first use).
    outcomes: OutcomeStore,
    /// The ComfyUI client(s), shared by every session.
    comfy: Comfy,
    /// NVML (loaded once, on first use) and the hardware profile.
    gpu: GpuProbe,
    /// The public web sources (registry, CivitAI, Hugging Face, GitHub) and their cache.
    web: Web,
    /// ComfyUI-Manager's parsed lists (re-read when their files change).
    catalog: Catalog,
    registry: Registry,
    /// What the server measures about itself (`/metrics`, OTLP, `get_server_health`).
    metrics: Metrics,
    /// Every running tool call, so a shutdown can wait for them.
    in_flight: TaskTracker,
    /// New outputs and tool-set changes, for clients' notifications.
    changes: ChangeFeed,
    /// Every session's background sub-tasks.
    subtasks: crate::subtask::SubTasks,
    /// The tools on offer and the pre-approved ones; replaced on SIGHUP.
    tool_view: std::sync::RwLock<Arc<ToolView>>,
    /// Tool calls run as tasks (MCP tasks extension), shared by every connection.
    tasks: crate::mcp::tasks::ToolTasks,
    /// Numbers sessions for logs.
    sessions_started: AtomicU64,
    /// Whether the validators' background compile has been started.
    warm_up_started: AtomicBool,
}

impl AppState {
    /// Builds the state with every tool this product offers, metrics for `/metrics` only.
    pub fn new(config: Config) -> Result<Self, StartupError> {
        Self::with_meter(config, None)
    }

    /// Builds the state with every tool, its metrics also recorded into `meter` (the
    /// OpenTelemetry meter of the OTLP pipeline, when `OTEL_EXPORTER_OTLP_ENDPOINT` set one up).
    pub fn with_meter(
        config: Config,
        meter: Option<opentelemetry::metrics::Meter>,
    ) -> Result<Self, StartupError> {
        Self::build(config, Registry::new(crate::tools::all())?, meter)
    }

    /// Compiles the argument validators on a background thread, once per process. Started
    /// when the first client initializes, so it competes with neither start-up nor the
    /// handshake, and the first call finds them ready. Old saved sessions are cleaned up there too.
    pub fn warm_up_in_background(&self) {
        if self.shared.warm_up_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let app = self.clone();
        let spawned = std::thread::Builder::new()
            .name("registry-warm-up".into())
            .spawn(move || {
                app.registry().warm_up();
                app.collect_old_sessions();
            });
        if let Err(error) = spawned {
            tracing::debug!(%error, "validators will compile on first use instead");
        }
        // Loading NVML takes from microseconds (absent) to a second (present): off the
        // handshake's path too, so the first GPU question finds it ready.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let app = self.clone();
            runtime.spawn(async move { app.gpu().warm_up().await });
        }
    }

    /// Deletes saved sessions older than the configured age (`COMFYUI_AGENT_SESSION_MAX_AGE_DAYS`).
    fn collect_old_sessions(&self) {
        let Some(max_age) = self.shared.config.sessions.max_age else {
            return;
        };
        match self.shared.store.collect_garbage(max_age) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(count = removed.len(), sessions = ?removed, "removed old saved sessions");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not clean up old saved sessions"),
        }
        let removed = self.shared.docs.collect_garbage(max_age);
        if removed > 0 {
            tracing::info!(
                count = removed,
                "removed old session documents (plans, intents, iterations)"
            );
        }
    }

    /// Builds the state around a given registry (tests and fixture servers).
    pub fn with_registry(config: Config, registry: Registry) -> Result<Self, StartupError> {
        Self::build(config, registry, None)
    }

    fn build(
        config: Config,
        registry: Registry,
        meter: Option<opentelemetry::metrics::Meter>,
    ) -> Result<Self, StartupError> {
        let metrics = Metrics::new(meter, registry.tools().iter().map(|t| t.name.as_ref()));
        let install = find_install(&config);
        let paths = PathPolicy::from_config(&config, install.as_ref());
        let comfy = Comfy::new(&config, install.as_ref(), metrics.comfy())?;
        let named_sessions = NamedSessions::new(config.sessions.idle);
        let store = SessionStore::in_data_dir(&config.data_dir);
        let docs = SessionDocs::in_data_dir(&config.data_dir);
        let outcomes = OutcomeStore::in_data_dir(&config.data_dir);
        let gpu = GpuProbe::new(config.gpu_metrics);
        let install_index = InstallIndex::new(install.clone(), Host::current());
        let web = Web::new(&config.web).map_err(StartupError::WebSetup)?;
        let tool_view = ToolView::new(&registry, config.tools.clone())?;
        let shared = Arc::new(Shared {
            config,
            paths,
            install,
            install_index,
            named_sessions,
            store,
            docs,
            outcomes,
            comfy,
            gpu,
            web,
            catalog: Catalog::default(),
            registry,
            metrics,
            in_flight: TaskTracker::new(),
            changes: ChangeFeed::default(),
            subtasks: crate::subtask::SubTasks::default(),
            tool_view: std::sync::RwLock::new(Arc::new(tool_view)),
            tasks: crate::mcp::tasks::ToolTasks::default(),
            sessions_started: AtomicU64::new(0),
            warm_up_started: AtomicBool::new(false),
        });
        let source: Weak<dyn GaugeSource> = Arc::downgrade(&shared) as Weak<Shared>;
        shared.metrics.observe(source);
        Ok(Self { shared })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn paths(&self) -> &PathPolicy {
        &self.shared.paths
    }

    /// The ComfyUI folder on this machine, when one is configured or was found.
    pub fn install(&self) -> Option<&Install> {
        self.shared.install.as_ref()
    }

    /// What is installed in that folder: the model inventory (cached) and the custom node
    /// packs. Its methods read the disk; call them from `spawn_blocking`.
    pub fn install_index(&self) -> &InstallIndex {
        &self.shared.install_index
    }

    pub fn named_sessions(&self) -> &NamedSessions {
        &self.shared.named_sessions
    }

    pub fn store(&self) -> &SessionStore {
        &self.shared.store
    }

    /// Per-session documents (plan, intent, iterations, demo, pipeline).
    pub fn docs(&self) -> &SessionDocs {
        &self.shared.docs
    }

    /// The outcome memory (`record_outcome`, `get_learned_patterns`, …).
    pub fn outcomes(&self) -> &OutcomeStore {
        &self.shared.outcomes
    }

    pub fn comfy(&self) -> &Comfy {
        &self.shared.comfy
    }

    pub fn gpu(&self) -> &GpuProbe {
        &self.shared.gpu
    }

    /// The machine ComfyUI generates on (GPU models, VRAM, compute capability, CPU cores,
    /// RAM), detected once; for tools that size work to the hardware.
    pub async fn hardware(&self) -> Arc<HardwareProfile> {
        self.shared.gpu.hardware(&self.shared.comfy).await
    }

    /// The public web sources (registry, CivitAI, Hugging Face, GitHub).
    pub fn web(&self) -> &Web {
        &self.shared.web
    }

    /// ComfyUI-Manager's node and model lists, parsed once per change of their files.
    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The values metrics read at scrape time: breakers, sessions, caches, memory. Touches
    /// no network.
    pub fn gauges(&self) -> Gauges {
        self.shared.gauges()
    }

    /// New outputs and tool-set changes (see [`crate::events`]).
    pub fn changes(&self) -> &ChangeFeed {
        &self.shared.changes
    }

    /// The tools on offer now and the operator's approvals.
    pub fn tool_view(&self) -> Arc<ToolView> {
        Arc::clone(
            &self
                .shared
                .tool_view
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// A tool on offer (a disabled one is not).
    pub fn tool(&self, name: &str) -> Option<&crate::registry::ToolSpec> {
        let spec = self.registry().get(name)?;
        (!self.tool_view().is_disabled(name)).then_some(spec)
    }

    /// Applies new tool settings (SIGHUP re-reads them); clients hear of a changed tool
    /// set. Unknown tool names are refused and nothing changes.
    pub fn apply_tool_settings(&self, settings: ToolSettings) -> Result<bool, ConfigError> {
        let view = ToolView::new(self.registry(), settings)?;
        let mut current = self
            .shared
            .tool_view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tools_changed = current.settings.disabled != view.settings.disabled;
        *current = Arc::new(view);
        drop(current);
        if tools_changed {
            self.changes().publish(crate::events::Change::ToolsChanged);
        }
        Ok(tools_changed)
    }

    /// Every session's background sub-tasks (spawn_subtask).
    pub fn subtasks(&self) -> &crate::subtask::SubTasks {
        &self.shared.subtasks
    }

    /// Tool calls running as tasks, which a client polls or cancels.
    pub fn tasks(&self) -> &crate::mcp::tasks::ToolTasks {
        &self.shared.tasks
    }

    pub fn in_flight(&self) -> &TaskTracker {
        &self.shared.in_flight
    }

    /// A short, unique label for a new session's logs, like `http-12`.
    pub fn next_session_id(&self, transport: &str) -> String {
        let n = self.shared.sessions_started.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{transport}-{n}")
    }
}

impl GaugeSource for Shared {
    fn gauges(&self) -> Gauges {
        let mut gauges = Gauges {
            named_sessions: self.named_sessions.len() as u64,
            resident_bytes: crate::telemetry::metrics::resident_bytes(),
            ..Gauges::default()
        };
        for client in self.comfy.clients() {
            gauges.endpoints.push(EndpointGauges {
                url: client.base_url().to_string(),
                breaker: client.breaker(),
            });
            if let Some((entries, bytes)) = client.node_cache() {
                gauges.node_cache_entries += entries as u64;
                gauges.node_cache_bytes += bytes as u64;
            }
        }
        gauges
    }
}

/// Finds the ComfyUI folder once at start-up, logging how (or why not) to stderr.
fn find_install(config: &Config) -> Option<Install> {
    let discovery = discover_install(&Host::current(), config.comfyui_dir.as_deref());
    for note in &discovery.notes {
        tracing::warn!("{}", note.user_message());
    }
    match &discovery.install {
        Some(install) => tracing::info!(
            folder = %install.base_dir.display(),
            found_by = %install.found_by,
            "ComfyUI folder"
        ),
        None => tracing::debug!(
            looked_in = discovery.searched.len(),
            "no ComfyUI folder found on this machine; set COMFYUI_DIR to use one"
        ),
    }
    discovery.install
}

/// The tools on offer (the registry less the disabled ones) and the operator's settings.
#[derive(Debug)]
pub struct ToolView {
    pub settings: ToolSettings,
    listed: Arc<[rmcp::model::Tool]>,
}

impl ToolView {
    fn new(registry: &Registry, settings: ToolSettings) -> Result<Self, ConfigError> {
        for (setting, names) in [
            (ENV_DISABLED_TOOLS, &settings.disabled),
            (ENV_PRE_APPROVE, &settings.pre_approved),
        ] {
            if let Some(unknown) = names
                .iter()
                .find(|name| name.as_str() != "*" && registry.get(name).is_none())
            {
                let suggestion = registry
                    .tools()
                    .iter()
                    .map(|tool| tool.name.as_ref())
                    .min_by_key(|known| {
                        crate::comfy::nodes::bounded_distance(unknown, known, 64).unwrap_or(64)
                    })
                    .unwrap_or_default();
                return Err(ConfigError::new(
                    setting,
                    names.join(","),
                    format!("and {unknown} is not one of this server's tools"),
                    format!(
                        "List tool names separated by commas (did you mean {suggestion}?); `comfyui-agent tools` lists them."
                    ),
                ));
            }
        }
        let listed: Arc<[rmcp::model::Tool]> = if settings.disabled.is_empty() {
            Arc::clone(registry.tools())
        } else {
            registry
                .tools()
                .iter()
                .filter(|tool| {
                    !settings
                        .disabled
                        .iter()
                        .any(|name| name == tool.name.as_ref())
                })
                .cloned()
                .collect()
        };
        Ok(Self { settings, listed })
    }

    /// The tools `tools/list` shows.
    pub fn listed(&self) -> &Arc<[rmcp::model::Tool]> {
        &self.listed
    }

    pub fn is_disabled(&self, tool: &str) -> bool {
        self.settings.disabled.iter().any(|name| name == tool)
    }

    pub fn is_pre_approved(&self, tool: &str) -> bool {
        self.settings.is_pre_approved(tool)
    }
}
