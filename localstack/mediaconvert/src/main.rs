//! `mediaconvert-standin`: serves the MediaConvert stand-in, or checks that one is healthy.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use framefleet_core::config::{self, ConfigError, EXIT_CONFIG};
use mediaconvert_standin::{Standin, StandinSettings};

/// A local stand-in for AWS Elemental MediaConvert frame capture. Settings come from
/// `FRAMEFLEET__STANDIN__*` and `FRAMEFLEET__TELEMETRY__*`; AWS from the standard environment.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the MediaConvert API (the default).
    Serve,
    /// Exit 0 when the stand-in at the configured `listen` address answers `/health`.
    Healthcheck,
}

fn load_settings() -> Result<StandinSettings, ConfigError> {
    let settings: StandinSettings = config::load(None, None)?;
    settings.standin.validate()?;
    Ok(settings)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match load_settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("mediaconvert-standin: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Healthcheck => mediaconvert_standin::healthcheck(&settings.standin.listen).await,
        Command::Serve => serve(settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mediaconvert-standin: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: StandinSettings) -> anyhow::Result<()> {
    let _telemetry = framefleet_core::telemetry::init("mediaconvert-standin", &settings.telemetry);
    let clients = framefleet_core::aws::AwsClients::from_env().await;
    let shutdown = framefleet_core::shutdown::on_signal();
    let standin = Standin::bind(settings.standin, clients.s3, clients.sqs).await?;
    standin.run(shutdown).await
}
