//! comfyui-agent: an MCP server that gives AI assistants safe, complete command of ComfyUI.
//!
//! The binary in `main.rs` only parses the command line and calls [`run`]; everything else
//! lives here so that tests, benchmarks and the conformance fixture server share one code path.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod comfy;
pub mod config;
pub mod demo;
pub mod error;
pub mod events;
pub mod exec;
pub mod fsutil;
pub mod git;
pub mod gpu;
pub mod httpbody;
pub mod images;
pub mod install;
pub mod mcp;
pub mod models;
pub mod optimize;
pub mod outcomes;
pub mod paths;
pub mod pipeline;
pub mod planning;
pub mod provenance;
pub mod refine;
pub mod registry;
pub mod session;
pub mod subtask;
pub mod telemetry;
pub mod tools;
pub mod transport;
pub mod vision;
pub mod web;
pub mod workflow;

pub use app::AppState;
pub use config::Config;

use cli::{Cli, Command};
use error::StartupError;
use tokio_util::sync::CancellationToken;

/// Runs the command the user asked for until it finishes or a shutdown signal arrives.
pub async fn run(cli: Cli) -> Result<(), StartupError> {
    let env = config::Env::from_process_and_dotenv(std::path::Path::new(".env"))?;
    run_with_env(cli, &env, None).await
}

/// [`run`] with settings already read (`main` reads them once, for telemetry too) and the
/// OTLP meter, when metrics are exported.
pub async fn run_with_env(
    cli: Cli,
    env: &config::Env,
    meter: Option<opentelemetry::metrics::Meter>,
) -> Result<(), StartupError> {
    // The probe needs only the listen address: no ComfyUI, no state, no telemetry.
    if let Command::Healthcheck(args) = &cli.command {
        return cli::healthcheck(args, env)
            .await
            .map_err(StartupError::Unhealthy);
    }
    let config = Config::resolve(&cli, env)?;
    let app = AppState::with_meter(config, meter)?;
    if matches!(cli.command, Command::Mcp | Command::Serve(_)) {
        reload_tool_settings_on_hangup(app.clone());
    }
    match cli.command {
        Command::Mcp => transport::stdio::serve(app, shutdown_on_signal()).await,
        Command::Serve(_) => {
            let listener = transport::http::bind(&app.config().http).await?;
            transport::http::serve_app(app, listener, shutdown_on_signal()).await
        }
        Command::Tools(format) => cli::print_tools(app.registry(), &format),
        Command::Gpu(args) => cli::print_gpu(&app, &args).await,
        Command::Healthcheck(_) => Ok(()),
    }
}

/// On SIGHUP, re-reads the tool settings (`COMFYUI_AGENT_DISABLED_TOOLS`,
/// `COMFYUI_AGENT_PRE_APPROVE`) from the environment and `.env`, and tells connected clients
/// when the tool set changed. A bad list is logged and the old settings stay.
#[cfg(unix)]
fn reload_tool_settings_on_hangup(app: AppState) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; tool settings apply at start-up only");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let env = match config::Env::from_process_and_dotenv(std::path::Path::new(".env")) {
                Ok(env) => env,
                Err(error) => {
                    tracing::warn!(%error, "SIGHUP: could not read the settings; nothing changed");
                    continue;
                }
            };
            match app.apply_tool_settings(config::ToolSettings::from_env(&env)) {
                Ok(changed) => tracing::info!(
                    tools_changed = changed,
                    offered = app.tool_view().listed().len(),
                    "SIGHUP: tool settings reloaded"
                ),
                Err(error) => {
                    tracing::warn!(%error, "SIGHUP: tool settings refused; nothing changed")
                }
            }
        }
    });
}

#[cfg(not(unix))]
fn reload_tool_settings_on_hangup(_app: AppState) {}

/// A token cancelled on SIGTERM or Ctrl-C (Ctrl-Break and console close on Windows). A
/// second signal exits at once.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing in-flight calls (signal again to force)");
        trigger.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(windows)]
async fn wait_for_signal() {
    use tokio::signal::windows::{ctrl_break, ctrl_close};
    let (Ok(mut brk), Ok(mut close)) = (ctrl_break(), ctrl_close()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = brk.recv() => {}
        _ = close.recv() => {}
    }
}
