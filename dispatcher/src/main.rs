//! `dispatcher`: the service binary. `dispatcher healthcheck` reports whether the service in
//! this container is alive.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use framefleet_core::aws::AwsClients;
use framefleet_core::config::{self, EXIT_CONFIG};
use framefleet_dispatcher::{Dispatcher, DispatcherSettings};

#[derive(Parser)]
#[command(
    version,
    about = "framefleet dispatcher: uploads → MediaConvert → frame batches"
)]
struct Cli {
    /// Optional TOML settings file (environment variables override it).
    #[arg(long, env = "FRAMEFLEET_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 if the dispatcher in this container polled recently.
    Healthcheck,
    /// Move the messages of a dead-letter queue back to its queue (run with credentials that
    /// may read the DLQ and send to the queue); prints how many moved.
    Redrive {
        /// Which queue's DLQ.
        #[arg(value_enum)]
        queue: framefleet_dispatcher::redrive::QueueKind,
        /// Move at most this many.
        #[arg(long)]
        max: Option<usize>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck) = cli.command {
        return framefleet_core::health::check_all(&framefleet_dispatcher::service::HEARTBEATS);
    }
    let settings = match config::load::<DispatcherSettings>(cli.config.as_deref(), None)
        .and_then(|s| s.validate().map(|()| s))
    {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("dispatcher: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _telemetry = framefleet_core::telemetry::init("dispatcher", &settings.telemetry);
    let shutdown = framefleet_core::shutdown::on_signal();
    let clients = AwsClients::from_env().await;
    let result = match cli.command {
        Some(Command::Redrive { queue, max }) => {
            framefleet_dispatcher::redrive::run(&settings, &clients, queue, max).await
        }
        _ => match Dispatcher::new(settings, clients).await {
            Ok(dispatcher) => dispatcher.run(shutdown).await,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "dispatcher failed");
            ExitCode::FAILURE
        }
    }
}
