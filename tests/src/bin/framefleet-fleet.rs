//! `framefleet-fleet`: the local fleet supervisor as a process, for `scripts/demo`. It plays
//! ECS and Application Auto Scaling for the worker service in the AWS emulator
//! (`AWS_ENDPOINT_URL`): creates the service, follows the desired count the dispatcher sets,
//! applies the template's queue-depth rules to the frames queue, and runs `worker` processes
//! with its own environment (minus its keys: the workers sign with
//! `FRAMEFLEET_FLEET_WORKER_ACCESS_KEY_ID` / `…_SECRET_ACCESS_KEY`), each with an ECS agent
//! stand-in that grants scale-in protection as the template's worker role allows. On SIGTERM or
//! SIGINT it stops its workers and prints `{"peak_workers": N}`.
//!
//! Lives beside the agent stand-in (`framefleet_e2e::ecs_agent`) rather than in
//! `localstack/fleet`, which holds the supervisor itself.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use framefleet_e2e::local_fleet::TemplateAgents;
use framefleet_fleet::{FleetConfig, ScalingBounds, Supervisor, WorkerService};
use framefleet_provision::iam_from_template::{LocalNames, Template, TEMPLATE, WORKER_SERVICE};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: cannot parse `{value}`")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = framefleet_core::telemetry::init(
        "framefleet-fleet",
        &framefleet_core::config::TelemetrySettings::default(),
    );
    let resources: framefleet_core::config::Resources =
        framefleet_core::config::load::<framefleet_fleet_settings::Settings>(None, None)?.resources;
    let prefix = env("FRAMEFLEET_FLEET_PREFIX")?;
    let names = LocalNames::new(resources.clone(), "us-east-1", &prefix);
    let policies = Template::parse(TEMPLATE, names.clone())?.service_policies()?;
    let bounds = ScalingBounds {
        min_tasks: env_or("FRAMEFLEET_FLEET_MIN_TASKS", 0)?,
        max_tasks: env_or("FRAMEFLEET_FLEET_MAX_TASKS", 3)?,
        backlog_per_task: env_or("FRAMEFLEET_FLEET_BACKLOG_PER_TASK", 4.0)?,
        idle_periods: env_or("FRAMEFLEET_FLEET_IDLE_PERIODS", 3)?,
    };
    let worker_key = env("FRAMEFLEET_FLEET_WORKER_ACCESS_KEY_ID")?;
    let worker_secret = env("FRAMEFLEET_FLEET_WORKER_SECRET_ACCESS_KEY")?;
    let mut worker_env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            !k.starts_with("FRAMEFLEET_FLEET_")
                && !k.starts_with("AWS_ACCESS_KEY_ID")
                && !k.starts_with("AWS_SECRET_ACCESS_KEY")
        })
        .collect();
    worker_env.push(("AWS_ACCESS_KEY_ID".into(), worker_key));
    worker_env.push(("AWS_SECRET_ACCESS_KEY".into(), worker_secret));
    worker_env.push((
        "FRAMEFLEET__WORKER__SCALE_IN_PROTECTION".into(),
        "true".into(),
    ));

    let clients = framefleet_core::aws::AwsClients::from_env().await;
    let service = WorkerService::new(
        aws_sdk_ecs::Client::new(&clients.config),
        &names.cluster,
        WORKER_SERVICE,
    );
    service.ensure(bounds.min_tasks).await?;
    let frames_queue =
        framefleet_core::aws::queue_url(&clients.sqs, &resources.frames_queue).await?;
    let config = FleetConfig {
        bounds,
        period: Duration::from_millis(env_or("FRAMEFLEET_FLEET_PERIOD_MS", 1000)?),
        worker_program: env("FRAMEFLEET_FLEET_WORKER_PROGRAM")?.into(),
        worker_env,
        log_dir: std::env::var("FRAMEFLEET_FLEET_LOG_DIR")
            .ok()
            .map(Into::into),
        task_arn_prefix: names.task_arn(""),
        stop_timeout: Duration::from_secs(30),
    };
    let agents = TemplateAgents {
        role_arn: format!("arn:aws:iam::{}:role/{prefix}-worker", names.account_id),
        task_role: policies.worker.iter().map(|p| p.document.clone()).collect(),
    };
    let supervisor = Supervisor::new(
        config,
        service,
        clients.sqs.clone(),
        &frames_queue,
        Arc::new(agents),
    );
    let shutdown = framefleet_core::shutdown::on_signal();
    let peak = supervisor.run(shutdown).await;
    println!("{}", serde_json::json!({"peak_workers": peak}));
    Ok(())
}

/// The resource names, read as every service reads them (`FRAMEFLEET__RESOURCES__*`); the
/// rest of the environment is the workers'.
mod framefleet_fleet_settings {
    use serde::Deserialize;

    /// Only `[resources]`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Settings {
        /// Buckets, queues and table.
        pub resources: framefleet_core::config::Resources,
    }
}
