//! The `comfyui-agent` binary: parse the command line, start telemetry, run the library.

use std::process::ExitCode;

use clap::Parser;
use comfyui_agent::cli::{Cli, Command};
use comfyui_agent::{config, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Healthcheck(_) = &cli.command {
        return healthcheck(cli);
    }
    // Settings are read once; telemetry starts before the runtime so that start-up problems
    // are logged, and is flushed after it so that the last spans are sent.
    let started =
        config::Env::from_process_and_dotenv(std::path::Path::new(".env")).and_then(|env| {
            let settings = telemetry::Settings::from_env(&env)?;
            Ok((env, telemetry::init(&settings)?))
        });
    let (env, mut telemetry) = match started {
        Ok(started) => started,
        Err(error) => {
            eprintln!("comfyui-agent: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("comfyui-agent: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(comfyui_agent::run_with_env(cli, &env, telemetry.meter()));
    // A blocking stdin read never returns by itself; don't let it hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(300));
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("comfyui-agent: {error}");
            ExitCode::from(2)
        }
    }
}

/// `healthcheck`, run every few seconds by container engines: no telemetry, one thread, and
/// exit status 1 for every failure (Docker reserves 2).
fn healthcheck(cli: Cli) -> ExitCode {
    let outcome = config::Env::from_process_and_dotenv(std::path::Path::new(".env"))
        .map_err(|error| error.to_string())
        .and_then(|env| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| format!("cannot start the async runtime: {error}"))?;
            runtime
                .block_on(comfyui_agent::run_with_env(cli, &env, None))
                .map_err(|error| error.to_string())
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("comfyui-agent healthcheck: {line}");
            ExitCode::FAILURE
        }
    }
}
