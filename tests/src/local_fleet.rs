//! The local fleet supervisor ([`framefleet_fleet`]) on a [`Stack`]: worker processes with the
//! worker's template identity, each with an [`EcsAgent`] that grants scale-in protection as the
//! worker's task role allows. The agent stand-in lives here, with the rest of the test
//! support, so the supervisor talks to it as a worker does: over HTTP at `ECS_AGENT_URI`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use framefleet_fleet::{
    AgentHost, FleetConfig, ScalingBounds, Supervisor, TaskAgent, WorkerService,
};
use framefleet_provision::iam_from_template::WORKER_SERVICE;
use framefleet_provision::policy::PolicyDocument;
use futures::future::BoxFuture;

use crate::ecs_agent::EcsAgent;
use crate::stack::Stack;

impl TaskAgent for EcsAgent {
    fn uri(&self) -> String {
        EcsAgent::uri(self).to_string()
    }
}

/// Starts an [`EcsAgent`] per task with the worker's template role.
pub struct TemplateAgents {
    /// The worker task role's ARN.
    pub role_arn: String,
    /// Its policies.
    pub task_role: Vec<PolicyDocument>,
}

impl AgentHost for TemplateAgents {
    fn start(&self, task_arn: String) -> BoxFuture<'_, anyhow::Result<Box<dyn TaskAgent>>> {
        Box::pin(async move {
            let agent = EcsAgent::start(&task_arn, &self.role_arn, self.task_role.clone()).await?;
            Ok(Box::new(agent) as Box<dyn TaskAgent>)
        })
    }
}

/// The worker processes' environment on `stack`: the AWS emulator, the resources, the worker's
/// own access key, scale-in protection on (as in the template).
pub fn worker_env(stack: &Stack) -> Vec<(String, String)> {
    let r = &stack.resources;
    let key = &stack.identities.worker;
    let mut env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", stack.moto.endpoint().to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required".into()),
        ("AWS_ACCESS_KEY_ID", key.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", key.secret_access_key.clone()),
        ("FRAMEFLEET__TELEMETRY__LOG_FORMAT", "pretty".into()),
        ("FRAMEFLEET__WORKER__SCALE_IN_PROTECTION", "true".into()),
        ("FRAMEFLEET__WORKER__DRAIN_TIMEOUT_SECS", "5".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (name, value) in [
        ("INGRESS_BUCKET", &r.ingress_bucket),
        ("FRAMES_BUCKET", &r.frames_bucket),
        ("PROCESSED_BUCKET", &r.processed_bucket),
        ("INGRESS_QUEUE", &r.ingress_queue),
        ("JOB_EVENTS_QUEUE", &r.job_events_queue),
        ("FRAMES_QUEUE", &r.frames_queue),
        ("JOBS_TABLE", &r.jobs_table),
    ] {
        env.push((format!("FRAMEFLEET__RESOURCES__{name}"), value.clone()));
    }
    env
}

/// A supervisor of `stack`'s worker service (created in moto with `bounds.min_tasks`), whose
/// workers log to `target/fleet-logs/<run>/`. The `worker` binary must be built.
pub async fn supervisor(stack: &Stack, bounds: ScalingBounds) -> anyhow::Result<Supervisor> {
    let bin_dir = crate::binaries::bin_dir()?;
    let worker_program = bin_dir.join("worker");
    anyhow::ensure!(
        worker_program.is_file(),
        "{} is missing: build the services first (cargo build --workspace --bins)",
        worker_program.display()
    );
    let run = stack.resources.jobs_table.trim_end_matches("-jobs");
    let log_dir: PathBuf = bin_dir.join("..").join("fleet-logs").join(run);
    std::fs::create_dir_all(&log_dir)?;
    let service = WorkerService::new(
        aws_sdk_ecs::Client::new(&stack.clients.config),
        &stack.names.cluster,
        WORKER_SERVICE,
    );
    service.ensure(bounds.min_tasks).await?;
    let config = FleetConfig {
        bounds,
        period: Duration::from_millis(500),
        worker_program,
        worker_env: worker_env(stack),
        log_dir: Some(log_dir),
        task_arn_prefix: stack.names.task_arn(""),
        stop_timeout: Duration::from_secs(30),
    };
    let agents = TemplateAgents {
        role_arn: format!(
            "arn:aws:iam::{}:role/{}-worker",
            stack.names.account_id, stack.names.prefix
        ),
        task_role: stack
            .policies
            .worker
            .iter()
            .map(|p| p.document.clone())
            .collect(),
    };
    Ok(Supervisor::new(
        config,
        service,
        stack.clients.sqs.clone(),
        &stack.provisioned.frames_queue_url,
        Arc::new(agents),
    ))
}
