//! Logs, traces and the OpenTelemetry pipeline.
//!
//! `main` reads [`Settings`] from the environment (validated like every other setting: a bad
//! value stops start-up with one line naming it), then calls [`init`], which installs the one
//! global `tracing` subscriber and returns the [`Telemetry`] guard that flushes exporters at
//! exit. Without any `OTEL_*` endpoint no OpenTelemetry layer exists at all: the only cost of
//! tracing is then the log layer's own.

pub mod logs;
pub mod metrics;
pub mod names;
pub mod otlp;

use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::config::Env;
use crate::error::ConfigError;

/// The instrumentation scope (tracer and meter name) of everything this server emits.
pub const SCOPE: &str = "comfyui-agent";

/// Everything telemetry needs from the environment, checked before anything starts.
#[derive(Debug, Clone)]
pub struct Settings {
    pub logs: logs::LogSettings,
    pub otlp: otlp::OtlpSettings,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            logs: logs::LogSettings::from_env(env)?,
            otlp: otlp::OtlpSettings::from_env(env)?,
        })
    }
}

/// Owns the exporters for the life of the process; dropping it flushes what is buffered and
/// shuts them down, so spans of the last requests aren't lost at exit.
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    /// The exporters' HTTP client runs here; dropped last.
    exporter: Option<otlp::ExportRuntime>,
}

impl Telemetry {
    /// A meter for the server's metrics when OTLP metric export is on; `None` otherwise.
    pub fn meter(&self) -> Option<opentelemetry::metrics::Meter> {
        use opentelemetry::metrics::MeterProvider as _;
        self.meter_provider
            .as_ref()
            .map(|provider| provider.meter(SCOPE))
    }

    /// Whether spans are exported over OTLP.
    pub fn exports_traces(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Sends what is buffered and stops the exporters (also done on drop).
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("comfyui-agent: the last traces could not be sent ({error})");
        }
        if let Some(provider) = self.meter_provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("comfyui-agent: the last metrics could not be sent ({error})");
        }
        if let Some(runtime) = self.exporter.take() {
            runtime.close();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Installs the process-wide subscriber (logs, plus OTLP traces when configured) and starts
/// the exporters. Call once, from `main`, before the async runtime starts.
pub fn init(settings: &Settings) -> Result<Telemetry, ConfigError> {
    use tracing_subscriber::util::SubscriberInitExt;
    let log_layer = logs::layer(&settings.logs)?;
    let mut telemetry = Telemetry::default();
    if settings.otlp.any_enabled() {
        let runtime = otlp::ExportRuntime::start()?;
        let resource = settings.otlp.resource();
        telemetry.tracer_provider = settings.otlp.tracer_provider(&runtime, &resource)?;
        telemetry.meter_provider = settings.otlp.meter_provider(&runtime, &resource)?;
        telemetry.exporter = Some(runtime);
    }
    let trace_layer = telemetry.tracer_provider.as_ref().map(trace_layer);
    // Another subscriber already installed (an embedding program) keeps its place.
    let _ = tracing_subscriber::registry()
        .with(log_layer)
        .with(trace_layer)
        .try_init();
    for note in &settings.otlp.notes {
        tracing::warn!("{note}");
    }
    if let Some(endpoint) = &settings.otlp.traces {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    if let Some(endpoint) = &settings.otlp.metrics {
        tracing::info!(%endpoint, "exporting metrics over OTLP");
    }
    Ok(telemetry)
}

/// The layer that turns this server's spans into OpenTelemetry spans of `provider`. Tests
/// build it over an in-memory exporter; [`init`] over the OTLP one. It sees only this
/// crate's spans and events at INFO and above, whatever `RUST_LOG` says about the logs.
pub fn trace_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + use<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    use opentelemetry::trace::TracerProvider as _;
    let filter = Targets::new().with_target(env!("CARGO_CRATE_NAME"), LevelFilter::INFO);
    // Thread names, code locations and busy/idle times cost time on every span and tell
    // nothing a request's attributes don't.
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SCOPE))
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_filter(filter)
}
