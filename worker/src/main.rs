//! `worker`: the batch consumer service, plus the offline `edges` and `bench` subcommands and
//! `healthcheck` for containers.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use framefleet_core::aws::AwsClients;
use framefleet_core::config::{self, EXIT_CONFIG};
use framefleet_worker::offline::{self, BenchArgs, EdgesArgs};
use framefleet_worker::{Worker, WorkerSettings};

#[derive(Parser)]
#[command(version, about = "framefleet worker: frame batches → Sobel edge maps")]
struct Cli {
    /// Optional TOML settings file (environment variables override it).
    #[arg(long, env = "FRAMEFLEET_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write edge maps of local images (no AWS).
    Edges(EdgesArgs),
    /// Time the kernel against its baselines on a folder of JPEG frames.
    Bench(BenchArgs),
    /// Exit 0 if the worker in this container polled recently.
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck) => framefleet_core::health::check("worker"),
        Some(Command::Edges(args)) => report(offline::run_edges(args)),
        Some(Command::Bench(args)) => report(offline::run_bench(args).map(|()| ExitCode::SUCCESS)),
        None => serve(cli.config.as_deref()),
    }
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|error| {
        eprintln!("worker: {error:#}");
        ExitCode::FAILURE
    })
}

#[tokio::main]
async fn serve(config_file: Option<&std::path::Path>) -> ExitCode {
    let settings = match config::load::<WorkerSettings>(config_file, None)
        .and_then(|s| s.validate().map(|()| s))
    {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("worker: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _telemetry = framefleet_core::telemetry::init("worker", &settings.telemetry);
    let shutdown = framefleet_core::shutdown::on_signal();
    let clients = AwsClients::from_env().await;
    let result = match Worker::new(settings, clients).await {
        Ok(worker) => worker.run(shutdown).await.map(|_summary| ()),
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "worker failed");
            ExitCode::FAILURE
        }
    }
}
