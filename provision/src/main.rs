//! `framefleet-provision`: creates the local resources, prints their URLs as JSON, exits.

use std::process::ExitCode;

use framefleet_core::aws::AwsClients;
use framefleet_core::config::{self, EXIT_CONFIG};
use framefleet_provision::{provision, ProvisionSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match config::load::<ProvisionSettings>(None, None)
        .and_then(|s| s.validate().map(|()| s))
    {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("framefleet-provision: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _telemetry = framefleet_core::telemetry::init("provision", &settings.telemetry);
    let clients = AwsClients::from_env().await;
    match provision(&clients, &settings).await {
        Ok(provisioned) => {
            println!(
                "{}",
                serde_json::to_string(&provisioned).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "provisioning failed");
            eprintln!("framefleet-provision: {error:#}");
            ExitCode::FAILURE
        }
    }
}
