//! The reference for `benches/compare.sh`: a minimal MCP server written the plain rmcp way
//! (`#[tool_router]` / `#[tool]` / `#[tool_handler]`, rmcp's own stdio transport, and
//! `StreamableHttpService` + `LocalSessionManager` nested at `/mcp` in an axum router). It
//! offers one tool, `identify_model_family`, over the same domain logic as the product
//! (`comfyui_agent::models::family::identify`), so that the comparison measures the server
//! plumbing and nothing else.
//!
//! ```text
//! bare-rmcp stdio
//! bare-rmcp http --bind 127.0.0.1:PORT
//! ```
//!
//! With no arguments (as `cargo bench` runs it) it prints its usage to stderr and exits 0.
//! Logs go to stderr only.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use comfyui_agent::tools::model_compat::{ModelFamilyReport, family_report};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

const USAGE: &str = "usage: bare-rmcp stdio | bare-rmcp http --bind 127.0.0.1:PORT\n\
    A minimal plain-rmcp MCP server with one tool (identify_model_family), the reference \
    for benches/compare.sh.";

#[derive(Debug, Deserialize, JsonSchema)]
struct IdentifyParams {
    /// A model file name, optionally with its folder, e.g. `sdxl_base.safetensors`.
    model_name: String,
}

#[derive(Debug, Clone)]
struct Bare {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Bare {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Tell which model family a model file belongs to from its name, \
                          with its native resolution and the families it can't be mixed with."
    )]
    async fn identify_model_family(
        &self,
        Parameters(IdentifyParams { model_name }): Parameters<IdentifyParams>,
    ) -> Json<ModelFamilyReport> {
        // The same domain work as the product's tool, so only the server around it differs.
        Json(family_report(model_name))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Bare {}

enum Mode {
    Stdio,
    Http(SocketAddr),
}

fn parse_args() -> Result<Option<Mode>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; treat that like no arguments.
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["--bench", ..] => Ok(None),
        ["stdio"] => Ok(Some(Mode::Stdio)),
        ["http", "--bind", addr] => addr
            .parse()
            .map(|a| Some(Mode::Http(a)))
            .map_err(|e| format!("bad --bind address {addr:?}: {e}")),
        other => Err(format!("unexpected arguments {other:?}")),
    }
}

async fn serve_stdio() -> Result<(), Box<dyn std::error::Error>> {
    let running = Bare::new().serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

async fn serve_http(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let service = StreamableHttpService::new(
        || Ok(Bare::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "bare rmcp serving Streamable HTTP at /mcp");
    // TCP_NODELAY, as any HTTP server serving small streamed responses should (the product
    // does the same); without it SSE responses can stall ~40 ms on delayed ACKs.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let mode = match parse_args() {
        Ok(Some(mode)) => mode,
        Ok(None) => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("bare-rmcp: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let result = match mode {
        Mode::Stdio => serve_stdio().await,
        Mode::Http(addr) => serve_http(addr).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bare-rmcp: {error}");
            ExitCode::FAILURE
        }
    }
}
