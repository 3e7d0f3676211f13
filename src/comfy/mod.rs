//! Everything that talks to ComfyUI: the pooled HTTP client with its circuit breaker and retry
//! budget, the WebSocket event stream, install and port discovery, and ComfyUI's API types.
//! Nothing else in the crate opens a connection to ComfyUI (DESIGN rule 5).

pub mod api;
pub mod breaker;
pub mod budget;
pub mod client;
pub mod discovery;
pub mod error;
pub mod events;
pub mod nodes;
pub mod prompt;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

pub use client::{Client, ClientSetupError, Operation};
pub use error::{ComfyError, PortHint};
pub use prompt::{InputProblem, NodeProblem, Rejection, SubmitError, Submitted, Uploaded, Viewed};

use crate::config::{ComfyConfig, Config};
use crate::telemetry::metrics::ComfyMetrics;
use breaker::{BreakerSnapshot, BreakerState};
use client::CallStats;

/// The usual local ports: the standalone and portable ComfyUI, then the Desktop app.
pub const DISCOVERY_PORTS: [u16; 2] = [8188, 8000];
/// How long port discovery may take.
pub const DISCOVERY_BUDGET: Duration = Duration::from_millis(300);

/// The ComfyUI this server talks to. With an address configured, that one endpoint; without,
/// the usual local ports are probed on first use (and again, at most every 5 s, while the
/// chosen one is unreachable), so starting ComfyUI after the server just works.
#[derive(Debug)]
pub struct Comfy {
    /// One client per candidate endpoint: the configured one, or one per usual port.
    candidates: Vec<Arc<Client>>,
    discover: bool,
    active: RwLock<Option<Arc<Client>>>,
    /// When discovery last ran; also serialises discovery runs.
    last_discovery: tokio::sync::Mutex<Option<Instant>>,
}

/// Where the ComfyUI connection stands, without touching the network.
#[derive(Debug, Clone)]
pub struct ComfyStatus {
    pub url: Url,
    /// Whether the address came from port discovery rather than settings.
    pub discovered: bool,
    pub breaker: BreakerSnapshot,
    pub calls: CallStats,
}

impl Comfy {
    /// With no address configured, the usual ports are tried in order: 8188 first, or 8000
    /// first when the install found on this machine is the Desktop app's. Every client
    /// records its requests into `metrics`.
    pub fn new(
        config: &Config,
        install: Option<&discovery::Install>,
        metrics: &Arc<ComfyMetrics>,
    ) -> Result<Self, ClientSetupError> {
        if config.comfyui_url_configured {
            let url = config.comfyui_url.clone();
            let local = url.host().is_some_and(|host| match host {
                url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
                url::Host::Ipv4(ip) => ip.is_loopback(),
                url::Host::Ipv6(ip) => ip.is_loopback(),
            });
            let hint = PortHint::Configured {
                port: url.port_or_known_default().filter(|_| local),
            };
            let client =
                Arc::new(Client::new(url, &config.comfy, hint)?.with_metrics(Arc::clone(metrics)));
            return Ok(Self {
                candidates: vec![Arc::clone(&client)],
                discover: false,
                active: RwLock::new(Some(client)),
                last_discovery: tokio::sync::Mutex::new(None),
            });
        }
        let mut ports = DISCOVERY_PORTS;
        if install.is_some_and(|install| install.layout == discovery::Layout::Desktop) {
            ports.reverse();
        }
        Self::discovering(&config.comfy, &ports, metrics)
    }

    /// Looks for ComfyUI on these loopback ports, in order of preference.
    fn discovering(
        config: &ComfyConfig,
        ports: &[u16],
        metrics: &Arc<ComfyMetrics>,
    ) -> Result<Self, ClientSetupError> {
        let candidates = ports
            .iter()
            .map(|port| {
                let url = Url::parse(&format!("http://127.0.0.1:{port}/"))
                    .expect("a loopback URL with a port is valid");
                Client::new(url, config, PortHint::Discovered)
                    .map(|client| Arc::new(client.with_metrics(Arc::clone(metrics))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            candidates,
            discover: true,
            active: RwLock::new(None),
            last_discovery: tokio::sync::Mutex::new(None),
        })
    }

    fn current(&self) -> Option<Arc<Client>> {
        self.active
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The client for the ComfyUI to use now. Without a configured address this may probe
    /// the usual ports, within [`DISCOVERY_BUDGET`].
    pub async fn client(&self) -> Arc<Client> {
        let current = self.current();
        if let Some(client) = &current
            && (!self.discover || client.breaker().state != BreakerState::Open)
        {
            return Arc::clone(client);
        }
        let mut last = self.last_discovery.lock().await;
        let current = self.current();
        if let Some(client) = &current
            && last.is_some_and(|at| at.elapsed() < breaker::FIRST_RETRY)
        {
            return Arc::clone(client);
        }
        // The lock stays held while probing, so concurrent callers wait for one discovery.
        *last = Some(Instant::now());
        let found = self.probe_candidates().await;
        let chosen = match (found, current) {
            (Some(found), _) => {
                tracing::info!(url = %found.base_url(), "found ComfyUI");
                found
            }
            (None, Some(current)) => current,
            (None, None) => {
                tracing::info!(
                    ports = ?DISCOVERY_PORTS,
                    "no ComfyUI answered on the usual local ports; will look again when needed"
                );
                Arc::clone(&self.candidates[0])
            }
        };
        *self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&chosen));
        chosen
    }

    /// Probes every candidate port at once; the first (in preference order) that answers.
    async fn probe_candidates(&self) -> Option<Arc<Client>> {
        let probes = self
            .candidates
            .iter()
            .map(|client| client.probe(DISCOVERY_BUDGET));
        let answers = futures::future::join_all(probes).await;
        self.candidates
            .iter()
            .zip(answers)
            .find_map(|(client, up)| up.then(|| Arc::clone(client)))
    }

    /// Runs discovery now and switches to what it finds.
    async fn discover_now(&self) -> Option<Arc<Client>> {
        *self.last_discovery.lock().await = Some(Instant::now());
        let found = self.probe_candidates().await?;
        *self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&found));
        Some(found)
    }

    /// An explicit health check: asks the current ComfyUI now, whatever the breaker says, and
    /// without a configured address looks on the usual ports again if that one is down.
    pub async fn check(&self) -> (Arc<Client>, Result<api::SystemStats, ComfyError>) {
        let client = self.client().await;
        let outcome = client.check_now().await;
        if outcome.is_ok() || !self.discover {
            return (client, outcome);
        }
        let Some(found) = self.discover_now().await else {
            return (client, outcome);
        };
        if Arc::ptr_eq(&found, &client) {
            return (client, outcome);
        }
        let outcome = found.check_now().await;
        (found, outcome)
    }

    /// Every ComfyUI client this server may use (the configured one, or one per usual port),
    /// for the per-endpoint gauges. Touches no network.
    pub fn clients(&self) -> &[Arc<Client>] {
        &self.candidates
    }

    /// Where things stand, for `/readyz` and metrics. Touches no network.
    pub fn status(&self) -> ComfyStatus {
        let client = self
            .current()
            .unwrap_or_else(|| Arc::clone(&self.candidates[0]));
        ComfyStatus {
            url: client.base_url().clone(),
            discovered: self.discover,
            breaker: client.breaker(),
            calls: client.stats(),
        }
    }
}

/// The TLS settings for `https://` and `wss://` ComfyUI addresses (reverse proxies, remote
/// boxes): rustls with the ring provider and the operating system's certificate store. Built
/// once per client, never installed process-wide. ComfyUI speaks HTTP/1.1 only.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The WebSocket address for `base` (`http` → `ws`, `https` → `wss`, base path kept), with
/// the `clientId` that routes a prompt's events to this socket.
pub fn ws_url(base: &Url, client_id: &str) -> Url {
    let mut url = base.clone();
    let scheme = if base.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    // Only http(s) URLs reach here (config validates), and ws/wss are valid swaps for them.
    let _ = url.set_scheme(scheme);
    let path = format!("{}ws", url.path());
    url.set_path(&path);
    url.query_pairs_mut()
        .clear()
        .append_pair("clientId", client_id);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_keeps_the_base_path_and_swaps_the_scheme() {
        let base = Url::parse("https://proxy.example/comfy/").expect("url");
        assert_eq!(
            ws_url(&base, "abc").as_str(),
            "wss://proxy.example/comfy/ws?clientId=abc"
        );
        let base = Url::parse("http://127.0.0.1:8188/").expect("url");
        assert_eq!(
            ws_url(&base, "x y").as_str(),
            "ws://127.0.0.1:8188/ws?clientId=x+y"
        );
    }

    /// A loopback server that answers `/system_stats` like ComfyUI (or, with `comfy: false`,
    /// like some other program on the port).
    async fn listening(comfy: bool) -> (u16, tokio::task::JoinHandle<()>) {
        use axum::routing::get;
        let body = if comfy {
            r#"{"system": {"comfyui_version": "0.3.64"}, "devices": []}"#
        } else {
            "<html>not ComfyUI</html>"
        };
        let app = axum::Router::new().route("/system_stats", get(move || async move { body }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (port, task)
    }

    /// A port nobody listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn discovery_picks_the_first_port_where_comfyui_answers() {
        let (other, _other) = listening(false).await;
        let (comfy, _comfy) = listening(true).await;
        let ports = [closed_port(), other, comfy];
        let found =
            Comfy::discovering(&ComfyConfig::default(), &ports, &Arc::default()).expect("comfy");
        let started = Instant::now();
        let client = found.client().await;
        assert!(
            started.elapsed() < DISCOVERY_BUDGET * 3,
            "bounded by the budget"
        );
        assert_eq!(client.base_url().port(), Some(comfy));
        let status = found.status();
        assert!(status.discovered);
        assert_eq!(status.url.port(), Some(comfy));
    }

    #[tokio::test]
    async fn with_nothing_answering_the_first_port_is_used_and_errors_name_both() {
        let ports = [closed_port(), closed_port()];
        let found =
            Comfy::discovering(&ComfyConfig::default(), &ports, &Arc::default()).expect("comfy");
        let client = found.client().await;
        assert_eq!(client.base_url().port(), Some(ports[0]));
        let error = client.queue().await.expect_err("nothing listens");
        let message = error.user_message();
        assert!(message.contains("8188 and 8000"), "{message}");
    }

    #[tokio::test]
    async fn a_comfyui_started_later_is_found_by_the_health_check() {
        let late = closed_port();
        let found =
            Comfy::discovering(&ComfyConfig::default(), &[late], &Arc::default()).expect("comfy");
        let (_, outcome) = found.check().await;
        assert!(outcome.is_err());
        // ComfyUI starts on that port.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", late))
            .await
            .expect("rebind the port");
        let app = axum::Router::new().route(
            "/system_stats",
            axum::routing::get(|| async { r#"{"system": {}, "devices": []}"# }),
        );
        let _server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let (client, outcome) = found.check().await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(client.base_url().port(), Some(late));
    }

    #[test]
    fn tls_config_builds_without_a_process_wide_provider() {
        let config = tls_config().expect("tls config");
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
