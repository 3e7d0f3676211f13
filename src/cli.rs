//! Command-line definitions, and the `tools` and `gpu` commands' printers (the only stdout
//! writers outside the protocol).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

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
}

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
