//! The `comfyui-agent` binary: parse the command line, start telemetry, run the library.

use std::process::ExitCode;

use clap::Parser;
use comfyui_agent::cli::Cli;
use comfyui_agent::{config, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
