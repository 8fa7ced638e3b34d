//! What every subcommand needs: SDK clients from the usual AWS configuration and the resource
//! names (flags, else `FRAMEFLEET__RESOURCES__*`, else the project's defaults).

use std::io::IsTerminal;

use aws_config::{BehaviorVersion, Region};
use framefleet_core::aws::AwsClients;
use framefleet_core::config::Resources;
use framefleet_core::jobs::JobTable;

use crate::GlobalArgs;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A terminal: live progress bars and aligned text.
    Terminal,
    /// Not a terminal: plain text lines, no bars.
    Plain,
    /// `--json`: one JSON object per line.
    Json,
}

/// Clients, resource names and the output mode of one invocation.
#[derive(Debug, Clone)]
pub struct Context {
    /// SDK clients; S3 path-style when an endpoint is overridden (as the services do).
    pub clients: AwsClients,
    /// Resource names (only the ingress and processed buckets and the table are used).
    pub resources: Resources,
    /// The job table.
    pub jobs: JobTable,
    /// How to print.
    pub output: Output,
    /// The worker service, when `--cluster` and `--worker-service` name it.
    pub fleet: Option<WorkerFleet>,
}

/// The worker service whose task counts `status` and `watch` show.
#[derive(Debug, Clone)]
pub struct WorkerFleet {
    ecs: aws_sdk_ecs::Client,
    cluster: String,
    service: String,
}

/// The worker service's task counts (`DescribeServices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WorkerCounts {
    /// Tasks the service wants.
    pub desired: i32,
    /// Tasks running.
    pub running: i32,
}

impl WorkerFleet {
    /// The counts now; `None` when they cannot be read (no permission, no such service): the
    /// job's progress is shown without them.
    pub async fn counts(&self) -> Option<WorkerCounts> {
        let out = self
            .ecs
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.service)
            .send()
            .await
            .ok()?;
        let service = out.services().first()?;
        Some(WorkerCounts {
            desired: service.desired_count(),
            running: service.running_count(),
        })
    }
}

impl Context {
    /// Loads the AWS configuration chain (`--profile`/`--region` first) and the names.
    pub async fn load(args: &GlobalArgs) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &args.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &args.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        // `AWS_ENDPOINT_URL_MEDIACONVERT` is read by the SDK itself.
        let s3_overridden = sdk.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty());
        let clients = AwsClients::from_config(&sdk, s3_overridden, None);
        let resources = Resources {
            ingress_bucket: args.ingress_bucket.clone(),
            processed_bucket: args.processed_bucket.clone(),
            jobs_table: args.jobs_table.clone(),
            ..Resources::default()
        };
        let output = if args.json {
            Output::Json
        } else if std::io::stderr().is_terminal() && std::io::stdout().is_terminal() {
            Output::Terminal
        } else {
            Output::Plain
        };
        let fleet = match (&args.cluster, &args.worker_service) {
            (Some(cluster), Some(service)) if !cluster.is_empty() && !service.is_empty() => {
                Some(WorkerFleet {
                    ecs: aws_sdk_ecs::Client::new(&sdk),
                    cluster: cluster.clone(),
                    service: service.clone(),
                })
            }
            _ => None,
        };
        Self {
            fleet,
            jobs: JobTable::new(clients.dynamodb.clone(), &resources.jobs_table),
            clients,
            resources,
            output,
        }
    }

    /// A progress target: drawn on a terminal, hidden otherwise.
    pub fn draw_target(&self) -> indicatif::ProgressDrawTarget {
        match self.output {
            Output::Terminal => indicatif::ProgressDrawTarget::stderr(),
            _ => indicatif::ProgressDrawTarget::hidden(),
        }
    }
}
