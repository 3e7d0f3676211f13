//! The `comfyui-agent` binary: parse the command line, start logging, run the library.

use std::process::ExitCode;

use clap::Parser;
use comfyui_agent::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
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
    let outcome = runtime.block_on(comfyui_agent::run(cli));
    // A blocking stdin read never returns by itself; don't let it hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(300));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("comfyui-agent: {error}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr only: in stdio mode stdout belongs to the protocol. Without RUST_LOG a
/// fixed filter is used: parsing RUST_LOG's full syntax costs start-up time.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            let filter = tracing_subscriber::EnvFilter::try_new(&directives)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
            tracing_subscriber::registry().with(fmt).with(filter).init();
        }
        _ => {
            let filter = Targets::new()
                .with_default(LevelFilter::INFO)
                .with_target("rmcp", LevelFilter::WARN);
            tracing_subscriber::registry().with(fmt).with(filter).init();
        }
    }
}
