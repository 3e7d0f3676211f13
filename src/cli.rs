//! Command-line definitions, and the `tools` and `gpu` commands' printers (the only stdout
//! writers outside the protocol).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::StartupError;
use crate::registry::Registry;

/// An MCP server that gives AI assistants safe, complete command of ComfyUI.
///
/// Settings come from flags, then environment variables, then a `.env` file in the working
/// directory, in that order of precedence.
#[derive(Debug, Parser)]
#[command(name = "comfyui-agent", version, about, long_about = None)]
pub struct Cli {
    /// ComfyUI's address [env: COMFYUI_URL; aliases COMFYUI_HOST/COMFYUI_PORT] [default: http://127.0.0.1:8188]
    #[arg(long, global = true, value_name = "URL")]
    pub comfyui_url: Option<String>,
    /// The ComfyUI install folder [env: COMFYUI_DIR; alias COMFYUI_DATABASE]
    #[arg(long, global = true, value_name = "DIR")]
    pub comfyui_dir: Option<PathBuf>,
    /// Where sessions and other state are kept [env: COMFYUI_AGENT_DATA_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP on stdin/stdout (what Claude Desktop, Claude Code and Cursor launch).
    Mcp,
    /// Serve MCP over HTTP: Streamable HTTP at /mcp, legacy SSE at /sse + /messages.
    Serve(ServeArgs),
    /// Print every tool this server offers.
    Tools(ToolsFormat),
    /// Probe the GPUs (NVML, or ComfyUI's report) and print the result as JSON.
    Gpu(GpuArgs),
    /// Check that a running `serve` answers /healthz (exit 0) or not (exit 1, reason on
    /// stderr): for container health checks where there is no curl.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Default, Args)]
pub struct HealthcheckArgs {
    /// Address `serve` listens on; 0.0.0.0 and [::] are probed on loopback
    /// [env: COMFYUI_AGENT_BIND] [default: 127.0.0.1:8765]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Also require /readyz: healthy and not shutting down.
    #[arg(long)]
    pub ready: bool,
}

/// How long `healthcheck` waits for each answer: Docker's own default timeout is 30 s, but
/// a server on loopback that takes more than this is not healthy.
pub const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Default, Args)]
pub struct GpuArgs {
    /// Leave out the processes using each GPU.
    #[arg(long)]
    pub no_processes: bool,
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: COMFYUI_AGENT_BIND] [default: 127.0.0.1:8765]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Bearer token clients must send; prefer the env var, flags show up in `ps`
    /// [env: COMFYUI_AGENT_TOKEN]
    #[arg(long, value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Extra Host header values to accept, besides loopback names [env: COMFYUI_AGENT_ALLOWED_HOSTS, comma-separated]
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins to accept, e.g. `https://app.example.com` [env: COMFYUI_AGENT_ALLOWED_ORIGINS, comma-separated]
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes [env: COMFYUI_AGENT_MAX_BODY_BYTES] [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Do not serve the web console at / [env: COMFYUI_AGENT_CONSOLE=0]
    #[arg(long)]
    pub no_console: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ToolsFormat {
    /// Every tool as JSON: name, title, description, schemas and annotations.
    #[arg(long)]
    pub json: bool,
    /// The tool reference in Markdown (what docs/tools.md holds).
    #[arg(long)]
    pub markdown: bool,
}

/// Writes the GPU probe's answer (what `get_gpu_status` returns) to stdout as JSON.
pub async fn print_gpu(app: &crate::AppState, args: &GpuArgs) -> Result<(), StartupError> {
    let status = app.gpu().status(app.comfy(), !args.no_processes).await;
    let text = serde_json::to_string_pretty(&status).map_err(|source| StartupError::Io {
        context: "formatting the GPU report",
        source: source.into(),
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|source| StartupError::Io {
        context: "writing the GPU report to stdout",
        source,
    })
}

/// Writes the tool list to stdout in the requested format.
pub fn print_tools(registry: &Registry, format: &ToolsFormat) -> Result<(), StartupError> {
    let text = if format.json {
        let tools: Vec<_> = registry.tools().iter().collect();
        // Tools are plain data; serialising them cannot fail short of a bug in serde_json.
        serde_json::to_string_pretty(&tools).map_err(|source| StartupError::Io {
            context: "formatting the tool list",
            source: source.into(),
        })?
    } else {
        crate::registry::markdown_reference(registry)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|source| StartupError::Io {
        context: "writing the tool list to stdout",
        source,
    })
}

/// The address to probe for a server bound to `bind`: a wildcard bind (0.0.0.0, [::]) is
/// reached on the loopback address of the same family.
pub fn probe_address(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

/// GETs `/healthz` (and `/readyz` with `--ready`) from the local `serve`. `Err` holds the one
/// line saying why the server is not healthy.
pub async fn healthcheck(args: &HealthcheckArgs, env: &crate::config::Env) -> Result<(), String> {
    let bind = crate::config::serve_bind(args.bind, env).map_err(|error| error.to_string())?;
    let addr = probe_address(bind);
    // Plain http only, but reqwest is built without a process-wide TLS provider, so it gets
    // the same explicit one as the ComfyUI client. No proxy: the server is on this machine.
    let tls = crate::comfy::tls_config()
        .map_err(|error| format!("cannot set up the HTTP client ({error})"))?;
    let client = reqwest::Client::builder()
        .user_agent(concat!(
            "comfyui-agent-healthcheck/",
            env!("CARGO_PKG_VERSION")
        ))
        .no_proxy()
        .connect_timeout(HEALTHCHECK_TIMEOUT)
        .timeout(HEALTHCHECK_TIMEOUT)
        .tls_backend_preconfigured((*tls).clone())
        .build()
        .map_err(|error| format!("cannot set up the HTTP client ({error})"))?;
    let paths: &[&str] = if args.ready {
        &["/healthz", "/readyz"]
    } else {
        &["/healthz"]
    };
    for path in paths {
        let url = format!("http://{addr}{path}");
        let response = client.get(&url).send().await.map_err(|error| {
            let why = if error.is_timeout() {
                format!("no answer within {} s", HEALTHCHECK_TIMEOUT.as_secs())
            } else {
                root_cause(&error)
            };
            format!(
                "unhealthy: GET {url} failed: {why}. Is `comfyui-agent serve` running there? \
                 Pass --bind (or set COMFYUI_AGENT_BIND) to the address it listens on."
            )
        })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body = body.trim();
            let detail = if body.is_empty() || body.len() > 200 {
                String::new()
            } else {
                format!(" ({body})")
            };
            return Err(format!(
                "unhealthy: GET {url} answered {status}{detail}. See the server's log for why."
            ));
        }
    }
    Ok(())
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather than
/// reqwest's "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        let probe = |bind: &str| probe_address(bind.parse().expect("address")).to_string();
        assert_eq!(probe("0.0.0.0:8765"), "127.0.0.1:8765");
        assert_eq!(probe("[::]:9000"), "[::1]:9000");
        assert_eq!(probe("192.168.1.5:8765"), "192.168.1.5:8765");
        assert_eq!(probe("127.0.0.1:1"), "127.0.0.1:1");
    }
}
