//! `framefleet-provision [--local-iam]`: creates the local resources as `deploy/framefleet.yaml`
//! describes them (with local names), prints their URLs, the job-events rule's pattern
//! (`job_events_pattern`, for the stand-in's `standin.event_pattern`) and any
//! `local_overrides` of the template as JSON, exits. With `--local-iam` it also creates one IAM user per service with the
//! template's policies (`deploy/framefleet.yaml`) and adds their keys to the JSON as
//! `identities`; the caller then turns IAM enforcement on in the emulator.

use std::process::ExitCode;

use framefleet_core::aws::AwsClients;
use framefleet_core::config::{self, EXIT_CONFIG};
use framefleet_provision::iam_from_template::LocalNames;
use framefleet_provision::identities::{identities_from_template, ServiceIdentities};
use framefleet_provision::{provision, ProvisionSettings, Provisioned};

#[derive(serde::Serialize)]
struct Output {
    #[serde(flatten)]
    provisioned: Provisioned,
    #[serde(skip_serializing_if = "Option::is_none")]
    identities: Option<ServiceIdentities>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut local_iam = false;
    for argument in std::env::args().skip(1) {
        match argument.as_str() {
            "--local-iam" => local_iam = true,
            other => {
                eprintln!("framefleet-provision: unknown argument `{other}` (known: --local-iam)");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
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
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let clients = AwsClients::from_env().await;
    let result = async {
        let provisioned = provision(&clients, &settings).await?;
        let identities = if local_iam {
            let region = sdk.region().map_or("us-east-1".into(), ToString::to_string);
            let names = LocalNames::new(settings.resources.clone(), &region, "framefleet");
            Some(identities_from_template(&aws_sdk_iam::Client::new(&sdk), names).await?)
        } else {
            None
        };
        anyhow::Ok(Output {
            provisioned,
            identities,
        })
    }
    .await;
    match result {
        Ok(output) => {
            println!("{}", serde_json::to_string(&output).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "provisioning failed");
            eprintln!("framefleet-provision: {error:#}");
            ExitCode::FAILURE
        }
    }
}
