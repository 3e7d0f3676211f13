//! OTLP export of traces and metrics, over HTTP (protobuf, or JSON), switched on by the
//! standard `OTEL_EXPORTER_OTLP_*` variables and off by default.
//!
//! The variables are read here, from the same environment as every other setting (the
//! process over `.env`), and handed to the exporter explicitly, so `.env` works for them too.
//!
//! Threads: the SDK's batch span processor and periodic metric reader each run on their own
//! thread and wait on the export future there. Our reqwest client needs a tokio reactor, and
//! the exporters start before (and flush after) the server's runtime, so exports run on a
//! small runtime of their own ([`ExportRuntime`], one worker thread, only when OTLP is on):
//! nothing in export can block or slow the server's runtime, and a slow collector delays only
//! the exporter threads.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::SdkTracerProvider;
use url::Url;

use crate::config::Env;
use crate::error::ConfigError;

pub const ENV_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
pub const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const ENV_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const ENV_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const ENV_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
pub const ENV_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
pub const ENV_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
pub const ENV_METRICS_HEADERS: &str = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
pub const ENV_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const ENV_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
pub const ENV_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
pub const ENV_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
pub const ENV_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";

pub const DEFAULT_SERVICE_NAME: &str = "comfyui-agent";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The wire format sent to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    #[default]
    Protobuf,
    Json,
}

/// What to export where. Both endpoints `None` (the default) means no exporter, no export
/// thread and no OpenTelemetry layer.
#[derive(Debug, Clone, Default)]
pub struct OtlpSettings {
    /// Where spans go (the full URL, `…/v1/traces`).
    pub traces: Option<Url>,
    /// Where metrics go (the full URL, `…/v1/metrics`).
    pub metrics: Option<Url>,
    pub format: WireFormat,
    pub trace_headers: HashMap<String, String>,
    pub metric_headers: HashMap<String, String>,
    pub timeout: Duration,
    pub metric_interval: Duration,
    pub service_name: String,
    /// From `OTEL_RESOURCE_ATTRIBUTES`, without `service.name`.
    pub resource_attributes: Vec<(String, String)>,
    /// Warnings to log once logging is up.
    pub notes: Vec<String>,
}

impl OtlpSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let disabled = env
            .get(ENV_SDK_DISABLED)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut settings = Self {
            timeout: DEFAULT_TIMEOUT,
            metric_interval: DEFAULT_METRIC_EXPORT_INTERVAL,
            service_name: DEFAULT_SERVICE_NAME.into(),
            ..Self::default()
        };
        if disabled {
            return Ok(settings);
        }
        settings.traces = signal_endpoint(env, ENV_TRACES_EXPORTER, ENV_TRACES_ENDPOINT, "traces")?;
        settings.metrics =
            signal_endpoint(env, ENV_METRICS_EXPORTER, ENV_METRICS_ENDPOINT, "metrics")?;
        if !settings.any_enabled() {
            return Ok(settings);
        }
        settings.format = match env.get(ENV_PROTOCOL) {
            None => WireFormat::Protobuf,
            Some(p) if p.eq_ignore_ascii_case("http/protobuf") => WireFormat::Protobuf,
            Some(p) if p.eq_ignore_ascii_case("http/json") => WireFormat::Json,
            Some(p) if p.eq_ignore_ascii_case("grpc") => {
                // Telemetry is not worth refusing to start over; say what happens instead.
                settings.notes.push(format!(
                    "{ENV_PROTOCOL}=grpc is not supported; exporting with http/protobuf instead. \
                     Point the endpoint at the collector's OTLP/HTTP port (usually 4318) and set \
                     {ENV_PROTOCOL}=http/protobuf to silence this warning."
                ));
                WireFormat::Protobuf
            }
            Some(p) => {
                return Err(ConfigError::new(
                    ENV_PROTOCOL,
                    p,
                    "which is not an OTLP protocol this server speaks",
                    "Use http/protobuf (the default) or http/json.",
                ));
            }
        };
        let headers = headers_of(env, ENV_HEADERS)?;
        settings.trace_headers = headers.clone();
        settings
            .trace_headers
            .extend(headers_of(env, ENV_TRACES_HEADERS)?);
        settings.metric_headers = headers;
        settings
            .metric_headers
            .extend(headers_of(env, ENV_METRICS_HEADERS)?);
        settings.timeout = millis(env, ENV_TIMEOUT, DEFAULT_TIMEOUT)?;
        settings.metric_interval = millis(
            env,
            ENV_METRIC_EXPORT_INTERVAL,
            DEFAULT_METRIC_EXPORT_INTERVAL,
        )?;
        let mut service_name = None;
        for (key, value) in pairs(env, ENV_RESOURCE_ATTRIBUTES)? {
            if key == "service.name" {
                service_name = Some(value);
            } else {
                settings.resource_attributes.push((key, value));
            }
        }
        if let Some(name) = env.get(ENV_SERVICE_NAME).map(String::from).or(service_name) {
            settings.service_name = name;
        }
        Ok(settings)
    }

    pub fn any_enabled(&self) -> bool {
        self.traces.is_some() || self.metrics.is_some()
    }

    /// Who is reporting: `service.name`, `service.version` and `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn resource(&self) -> Resource {
        Resource::builder_empty()
            .with_service_name(self.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_attributes(
                self.resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build()
    }

    fn protocol(&self) -> Protocol {
        match self.format {
            WireFormat::Protobuf => Protocol::HttpBinary,
            WireFormat::Json => Protocol::HttpJson,
        }
    }

    /// Spans batched and sent to the traces endpoint, when there is one.
    pub fn tracer_provider(
        &self,
        runtime: &ExportRuntime,
        resource: &Resource,
    ) -> Result<Option<SdkTracerProvider>, ConfigError> {
        let Some(endpoint) = &self.traces else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(runtime.client(endpoint, self.timeout)?)
            .with_endpoint(endpoint.as_str())
            .with_protocol(self.protocol())
            .with_timeout(self.timeout)
            .with_headers(self.trace_headers.clone())
            .build()
            .map_err(|error| unusable(ENV_TRACES_ENDPOINT, endpoint, &error))?;
        Ok(Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.clone())
                .build(),
        ))
    }

    /// Metrics read every `metric_interval` and sent, cumulative, to the metrics endpoint,
    /// when there is one. The server's metrics recorder takes its meter from
    /// [`super::Telemetry::meter`].
    pub fn meter_provider(
        &self,
        runtime: &ExportRuntime,
        resource: &Resource,
    ) -> Result<Option<SdkMeterProvider>, ConfigError> {
        let Some(endpoint) = &self.metrics else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_http_client(runtime.client(endpoint, self.timeout)?)
            .with_endpoint(endpoint.as_str())
            .with_protocol(self.protocol())
            .with_timeout(self.timeout)
            .with_headers(self.metric_headers.clone())
            .with_temporality(Temporality::Cumulative)
            .build()
            .map_err(|error| unusable(ENV_METRICS_ENDPOINT, endpoint, &error))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(self.metric_interval)
            .build();
        Ok(Some(
            SdkMeterProvider::builder()
                .with_reader(reader)
                .with_resource(resource.clone())
                .build(),
        ))
    }
}

fn unusable(setting: &'static str, endpoint: &Url, error: &dyn std::fmt::Display) -> ConfigError {
    ConfigError::new(
        setting,
        endpoint.as_str(),
        format!("which the OTLP exporter cannot use ({error})"),
        "Point it at the collector's OTLP/HTTP address, like http://localhost:4318, or unset it.",
    )
}

/// A signal's endpoint: its own variable as written, else the shared one plus `/v1/{signal}`;
/// none when its exporter is `none` or neither variable is set.
fn signal_endpoint(
    env: &Env,
    exporter_var: &'static str,
    signal_var: &'static str,
    signal: &str,
) -> Result<Option<Url>, ConfigError> {
    match env.get(exporter_var) {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("otlp") => {}
        Some(v) if v.eq_ignore_ascii_case("none") => return Ok(None),
        Some(v) => {
            return Err(ConfigError::new(
                exporter_var,
                v,
                "which is not an exporter this server has",
                "Use otlp (the default) or none.",
            ));
        }
    }
    if let Some(raw) = env.get(signal_var) {
        return endpoint_url(signal_var, raw).map(Some);
    }
    let Some(raw) = env.get(ENV_ENDPOINT) else {
        return Ok(None);
    };
    let base = endpoint_url(ENV_ENDPOINT, raw)?;
    let path = format!("{}/v1/{signal}", base.path().trim_end_matches('/'));
    let mut url = base;
    url.set_path(&path);
    Ok(Some(url))
}

fn endpoint_url(setting: &'static str, raw: &str) -> Result<Url, ConfigError> {
    crate::config::http_url(
        setting,
        raw,
        "Set it to the collector's OTLP/HTTP address, like http://localhost:4318.",
    )
}

/// `key=value,key=value` (values percent-decoded), as the OTel variables write lists.
fn pairs(env: &Env, setting: &'static str) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(raw) = env.get(setting) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let pair = entry.split_once('=').and_then(|(key, value)| {
            let key = key.trim();
            let value = percent_decode(value.trim())?;
            (!key.is_empty()).then(|| (key.to_string(), value))
        });
        match pair {
            Some(pair) => out.push(pair),
            None => {
                // Header values are often credentials; don't echo them.
                let shown = if setting.contains("HEADERS") {
                    "<hidden>".to_string()
                } else {
                    raw.to_string()
                };
                return Err(ConfigError::new(
                    setting,
                    shown,
                    "which is not a list of key=value pairs",
                    "Write it as key=value pairs separated by commas, like api-key=abc123,team=art.",
                ));
            }
        }
    }
    Ok(out)
}

fn headers_of(env: &Env, setting: &'static str) -> Result<HashMap<String, String>, ConfigError> {
    let pairs = pairs(env, setting)?;
    for (name, value) in &pairs {
        let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && http::HeaderValue::from_str(value).is_ok();
        if !valid {
            return Err(ConfigError::new(
                setting,
                "<hidden>",
                format!("and {name:?} is not a usable HTTP header"),
                "Use header names like api-key and values without line breaks.",
            ));
        }
    }
    Ok(pairs.into_iter().collect())
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn millis(env: &Env, setting: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    let Some(raw) = env.get(setting) else {
        return Ok(default);
    };
    raw.parse::<u64>()
        .ok()
        .filter(|ms| (1..=3_600_000).contains(ms))
        .map(Duration::from_millis)
        .ok_or_else(|| {
            ConfigError::new(
                setting,
                raw,
                "which is not a number of milliseconds between 1 and 3600000",
                format!(
                    "Use whole milliseconds; the default is {}.",
                    default.as_millis()
                ),
            )
        })
}

/// The small runtime the exporters' HTTP requests run on (see the module comment).
#[derive(Debug)]
pub struct ExportRuntime {
    runtime: tokio::runtime::Runtime,
    /// One warning per process about a collector that can't be reached; later failures are
    /// logged at debug level.
    warned: Arc<AtomicBool>,
}

impl ExportRuntime {
    pub fn start() -> Result<Self, ConfigError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|error| {
                ConfigError::new(
                    ENV_ENDPOINT,
                    "(set)",
                    format!("but the export thread could not start ({error})"),
                    "Unset the OTEL_EXPORTER_OTLP_* variables to run without export.",
                )
            })?;
        Ok(Self {
            runtime,
            warned: Arc::default(),
        })
    }

    /// An exporter HTTP client whose requests run on this runtime.
    pub fn client(&self, endpoint: &Url, timeout: Duration) -> Result<ExportClient, ConfigError> {
        let problem = |error: &dyn std::fmt::Display| {
            ConfigError::new(
                ENV_ENDPOINT,
                endpoint.as_str(),
                format!("but no HTTP client could be set up for it ({error})"),
                "Check the system's TLS certificates, or use a plain http:// collector address.",
            )
        };
        let tls = crate::comfy::tls_config().map_err(|error| problem(&error))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("comfyui-agent/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .tls_backend_preconfigured((*tls).clone())
            .build()
            .map_err(|error| problem(&error))?;
        Ok(ExportClient {
            http,
            runtime: self.runtime.handle().clone(),
            warned: Arc::clone(&self.warned),
        })
    }

    /// Stops the runtime without waiting on requests still in flight (the providers have
    /// flushed by the time this runs).
    pub fn close(self) {
        self.runtime.shutdown_timeout(Duration::from_millis(200));
    }
}

/// `opentelemetry_http::HttpClient` over our reqwest client, on the export runtime.
#[derive(Debug, Clone)]
pub struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    warned: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let task = self.runtime.spawn(async move {
            let response = http
                .request(parts.method, &url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(error) => return Err(Box::new(error)),
        };
        match outcome {
            Ok((status, headers, body)) => {
                if !status.is_success() {
                    self.report(&format!("the collector answered {status}"));
                }
                let mut response = http::Response::new(body);
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                Ok(response)
            }
            Err(error) => {
                self.report(&error.to_string());
                Err(Box::new(error))
            }
        }
    }
}

impl ExportClient {
    fn report(&self, problem: &str) {
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(problem, "OTLP export failed");
        } else {
            tracing::warn!(
                problem,
                "OTLP export failed; telemetry is being dropped until the collector answers (check OTEL_EXPORTER_OTLP_ENDPOINT)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<OtlpSettings, ConfigError> {
        OtlpSettings::from_env(&Env::from_map(vars.iter().copied()))
    }

    #[test]
    fn off_without_endpoints() {
        let off = settings(&[("OTEL_SERVICE_NAME", "x")]).expect("ok");
        assert!(!off.any_enabled());
    }

    #[test]
    fn the_shared_endpoint_gets_signal_paths() {
        let on = settings(&[(ENV_ENDPOINT, "http://collector:4318/")]).expect("ok");
        assert_eq!(
            on.traces.as_ref().map(Url::as_str),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            on.metrics.as_ref().map(Url::as_str),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(on.service_name, DEFAULT_SERVICE_NAME);
        let own = settings(&[
            (ENV_ENDPOINT, "http://collector:4318/base"),
            (ENV_TRACES_ENDPOINT, "http://tempo:4318/custom"),
            (ENV_METRICS_EXPORTER, "none"),
        ])
        .expect("ok");
        assert_eq!(
            own.traces.as_ref().map(Url::as_str),
            Some("http://tempo:4318/custom")
        );
        assert!(own.metrics.is_none());
    }

    #[test]
    fn sdk_disabled_wins() {
        let off =
            settings(&[(ENV_ENDPOINT, "http://c:4318"), (ENV_SDK_DISABLED, "TRUE")]).expect("ok");
        assert!(!off.any_enabled());
    }

    #[test]
    fn protocol_headers_and_resource() {
        let on = settings(&[
            (ENV_ENDPOINT, "http://c:4318"),
            (ENV_PROTOCOL, "http/json"),
            (ENV_HEADERS, "api-key=a%20b, team=art"),
            (ENV_TRACES_HEADERS, "team=tracing"),
            (
                ENV_RESOURCE_ATTRIBUTES,
                "service.name=studio,deployment.environment=prod",
            ),
        ])
        .expect("ok");
        assert_eq!(on.format, WireFormat::Json);
        assert_eq!(on.trace_headers["api-key"], "a b");
        assert_eq!(on.trace_headers["team"], "tracing");
        assert_eq!(on.metric_headers["team"], "art");
        assert_eq!(on.service_name, "studio");
        assert_eq!(
            on.resource_attributes,
            [("deployment.environment".to_string(), "prod".to_string())]
        );
        let named = settings(&[
            (ENV_ENDPOINT, "http://c:4318"),
            (ENV_SERVICE_NAME, "mine"),
            (ENV_RESOURCE_ATTRIBUTES, "service.name=studio"),
        ])
        .expect("ok");
        assert_eq!(named.service_name, "mine");
        let grpc = settings(&[(ENV_ENDPOINT, "http://c:4317"), (ENV_PROTOCOL, "grpc")])
            .expect("grpc falls back");
        assert_eq!(grpc.format, WireFormat::Protobuf);
        assert_eq!(grpc.notes.len(), 1);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (vars, setting) in [
            (vec![(ENV_ENDPOINT, "collector:4318")], ENV_ENDPOINT),
            (vec![(ENV_ENDPOINT, "ftp://c")], ENV_ENDPOINT),
            (
                vec![(ENV_ENDPOINT, "http://c"), (ENV_PROTOCOL, "smoke-signals")],
                ENV_PROTOCOL,
            ),
            (
                vec![(ENV_ENDPOINT, "http://c"), (ENV_HEADERS, "secret")],
                ENV_HEADERS,
            ),
            (
                vec![
                    (ENV_ENDPOINT, "http://c"),
                    (ENV_METRIC_EXPORT_INTERVAL, "soon"),
                ],
                ENV_METRIC_EXPORT_INTERVAL,
            ),
            (vec![(ENV_TRACES_EXPORTER, "zipkin")], ENV_TRACES_EXPORTER),
        ] {
            let error = settings(&vars).expect_err(setting);
            assert_eq!(error.setting, setting);
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }
}
