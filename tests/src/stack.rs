//! `spawn_stack`: a whole framefleet on loopback for one test. A fresh moto_server, resources
//! with random names provisioned by the real provisioner, the MediaConvert stand-in on port 0,
//! and (unless asked not to) one dispatcher and some workers running as tasks.
//!
//! IAM is enforced as on AWS: after provisioning, each service gets an IAM user with its role's
//! policies from `deploy/framefleet.yaml` and moto starts refusing anything those policies do
//! not allow. The dispatcher, the workers and the stand-in sign with their own keys; the test's
//! own client ([`Stack::clients`]) is an admin. Each service's S3 client answers a missing key
//! as AWS would for its policy ([`crate::strict_s3`]), and each worker has its own ECS agent
//! stand-in ([`crate::ecs_agent`]) judging scale-in protection by the worker's policy.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use framefleet_core::aws::AwsClients;
use framefleet_core::config::Resources;
use framefleet_core::jobs::{JobRecord, JobStatus, JobTable};
use framefleet_core::video::VideoId;
use framefleet_dispatcher::settings::{DispatcherConfig, KernelConfig};
use framefleet_dispatcher::{Dispatcher, DispatcherSettings};
use framefleet_provision::iam_from_template::{LocalNames, NamedPolicy, ServicePolicies, Template};
use framefleet_provision::identities::{create_identity, AccessKey, ServiceIdentities};
use framefleet_provision::{ProvisionSettings, Provisioned, QueueSettings};
use framefleet_worker::settings::WorkerConfig;
use framefleet_worker::{Worker, WorkerSettings};
use mediaconvert_standin::{Standin, StandinConfig};
use tokio_util::sync::CancellationToken;

use crate::ecs_agent::{AgentOptions, EcsAgent};
use crate::fault_proxy::{FaultPlan, FaultProxy};
use crate::moto::MotoServer;
use crate::strict_s3::MissingKeyAsOnAws;

/// How to build the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Start the dispatcher loops.
    pub dispatcher: bool,
    /// Worker services to start.
    pub workers: usize,
    /// Dispatcher settings (resources are filled in).
    pub dispatcher_config: DispatcherConfig,
    /// Kernel parameters.
    pub kernel: KernelConfig,
    /// Queue settings for the provisioner.
    pub queues: QueueSettings,
    /// Run the MediaConvert stand-in in-process (off when the chaos suite runs it as a process).
    pub standin: bool,
    /// Settings of the in-process stand-in (its speed, start-up delay, concurrent jobs and
    /// injected faults); its listen address, events queue and event pattern are the stack's.
    pub standin_config: StandinConfig,
    /// When set, the dispatcher and workers reach moto through a [`FaultProxy`] running this
    /// plan (the test's own clients and the stand-in still talk to moto directly).
    pub faults: Option<FaultPlan>,
    /// Have moto enforce the template's IAM policies (on by default; `tests/moto_server.py`
    /// makes moto verify signatures of percent-encoded keys and query values as AWS does).
    pub enforce_iam: bool,
    /// `OTEL_*` variables for the services (e.g. [`crate::otlp::OtlpReceiver::env`]): the
    /// processes of a [`crate::processes::Fleet`] get them in their environment; in-process
    /// services share this test process's one global tracer and meter provider, which the
    /// stack installs from them (service name `tests`).
    pub otel_env: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            dispatcher: true,
            workers: 2,
            dispatcher_config: DispatcherConfig {
                batch_size: 4,
                ..DispatcherConfig::default()
            },
            kernel: KernelConfig::default(),
            queues: QueueSettings {
                max_receive_count: 5,
                frames_visibility_timeout_secs: 30,
                control_visibility_timeout_secs: 30,
            },
            standin: true,
            standin_config: StandinConfig::default(),
            faults: None,
            enforce_iam: true,
            otel_env: Vec::new(),
        }
    }
}

impl StackOptions {
    /// The dispatcher and the stand-in running, no worker yet: fanned-out batches wait on the
    /// frames queue until the test starts one ([`Stack::start_worker`], [`Stack::worker`]).
    pub fn without_workers() -> Self {
        Self {
            workers: 0,
            ..Self::default()
        }
    }

    /// Nothing running but the MediaConvert stand-in: the test drives the dispatcher and the
    /// workers itself (`run_once`, [`Stack::worker`], a `BatchProcessor`) or plays their part.
    pub fn idle() -> Self {
        Self {
            dispatcher: false,
            workers: 0,
            ..Self::default()
        }
    }

    /// No service in process, not even the stand-in: the processes of a
    /// [`crate::processes::Fleet`] run them all.
    pub fn fleet() -> Self {
        Self {
            standin: false,
            ..Self::idle()
        }
    }
}

/// A dispatcher started by [`Stack::start_dispatcher_with`]; aborted when dropped.
pub struct RunningDispatcher {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningDispatcher {
    /// Stops the dispatcher as SIGTERM would (it drains its handlers) and waits (up to a
    /// minute) for it to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), &mut self.task)
            .await
            .context("the dispatcher did not stop within a minute")?
            .context("the dispatcher task failed")?;
        Ok(())
    }
}

impl Drop for RunningDispatcher {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// A running stack; everything stops when it is dropped.
pub struct Stack {
    /// The emulator.
    pub moto: MotoServer,
    /// Clients against the emulator (and the stand-in for MediaConvert).
    pub clients: AwsClients,
    /// Random resource names.
    pub resources: Resources,
    /// Queue URLs.
    pub provisioned: Provisioned,
    /// The job table.
    pub jobs: JobTable,
    /// Dispatcher settings in use.
    pub dispatcher_settings: DispatcherSettings,
    /// Worker settings in use.
    pub worker_settings: WorkerSettings,
    /// Where the stand-in listens.
    pub standin_endpoint: String,
    /// The fault proxy, when the options asked for one: its counts say what it injected.
    pub fault_proxy: Option<FaultProxy>,
    /// The AWS endpoint the dispatcher and workers use: the fault proxy's when there is one.
    pub services_endpoint: String,
    /// Local names of the template's resources (ARNs, cluster, roles).
    pub names: LocalNames,
    /// Each service's policies, resolved from the template.
    pub policies: ServicePolicies,
    /// Each service's IAM user and key.
    pub identities: ServiceIdentities,
    /// The ECS agent stand-ins of the workers started so far, in start order.
    pub ecs_agents: Vec<EcsAgent>,
    /// The `OTEL_*` variables the options gave, for the processes of a fleet.
    pub otel_env: Vec<(String, String)>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn random_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("ff{:08x}{:04x}", nanos, std::process::id() & 0xffff)
}

/// Spawns the default stack: dispatcher and two workers running.
pub async fn spawn_stack() -> anyhow::Result<Stack> {
    spawn_stack_with(StackOptions::default()).await
}

/// Spawns a stack as `options` say.
pub async fn spawn_stack_with(options: StackOptions) -> anyhow::Result<Stack> {
    // Logs go to the test's captured stderr: shown when a test fails. The process's own
    // environment is not read for OTEL_*: only what the options say.
    let otel_env = options.otel_env.clone();
    // Kept for the life of the test process (the providers are process-wide).
    std::mem::forget(framefleet_core::telemetry::init_with_env(
        "tests",
        &framefleet_core::config::TelemetrySettings {
            log_format: framefleet_core::config::LogFormat::Pretty,
        },
        &move |name| {
            otel_env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        },
    ));
    let moto = MotoServer::start().await?;
    let sdk = crate::sdk_config(moto.endpoint());
    let plain = AwsClients::from_config(&sdk, true, None);
    let prefix = random_prefix();
    let resources = crate::resources_named(&prefix);
    let provision_settings = ProvisionSettings {
        resources: resources.clone(),
        provision: options.queues.clone(),
        ..ProvisionSettings::default()
    };
    provision_settings.validate()?;
    let provisioned = framefleet_provision::provision(&plain, &provision_settings)
        .await
        .context("provisioning")?;
    // Identities from the template, then enforcement: from here on nothing unsigned or
    // unallowed gets through.
    let names = LocalNames::new(resources.clone(), "us-east-1", &prefix);
    let policies = Template::parse(
        framefleet_provision::iam_from_template::TEMPLATE,
        names.clone(),
    )?
    .service_policies()
    .context("resolving the template's IAM policies")?;
    let identities = framefleet_provision::identities::create_service_identities(
        &aws_sdk_iam::Client::new(&sdk),
        &prefix,
        &policies,
    )
    .await
    .context("creating the services' IAM users")?;
    if options.enforce_iam {
        moto.enforce_iam().await?;
    }
    let standin_clients = clients_as(
        moto.endpoint(),
        &identities.mediaconvert_standin,
        &policies.mediaconvert_standin,
        None,
    );
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();

    let standin_endpoint = if options.standin {
        let standin = Standin::bind(
            StandinConfig {
                listen: "127.0.0.1:0".into(),
                events_queue: provisioned.job_events_queue_url.clone(),
                event_pattern: Some(provisioned.job_events_pattern.clone()),
                ..options.standin_config.clone()
            },
            standin_clients.s3,
            standin_clients.sqs,
        )
        .await
        .context("starting the MediaConvert stand-in")?;
        let standin_endpoint = format!("http://{}", standin.local_addr());
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = standin.run(token).await {
                tracing::error!(error = format!("{error:#}"), "stand-in failed");
            }
        }));
        standin_endpoint
    } else {
        // Set by the caller's own stand-in process; nothing answers here until then.
        format!("http://127.0.0.1:{}", crate::moto::free_port()?)
    };
    let admin = crate::sdk_config_as(
        moto.endpoint(),
        &identities.admin.access_key_id,
        &identities.admin.secret_access_key,
    );
    let clients = AwsClients::from_config(&admin, true, Some(&standin_endpoint));
    let fault_proxy = match options.faults {
        Some(plan) => Some(
            FaultProxy::start(moto.endpoint(), plan)
                .await
                .context("starting the fault proxy")?,
        ),
        None => None,
    };
    let services_endpoint = match &fault_proxy {
        Some(proxy) => proxy.endpoint(),
        None => moto.endpoint().to_string(),
    };

    let dispatcher_settings = DispatcherSettings {
        resources: resources.clone(),
        dispatcher: options.dispatcher_config.clone(),
        kernel: options.kernel.clone(),
        ..DispatcherSettings::default()
    };
    dispatcher_settings.validate()?;
    let worker_settings = WorkerSettings {
        resources: resources.clone(),
        worker: WorkerConfig {
            drain_timeout_secs: 5,
            scale_in_protection: false,
            ..WorkerConfig::default()
        },
        ..WorkerSettings::default()
    };
    worker_settings.validate()?;

    let mut stack = Stack {
        jobs: JobTable::new(clients.dynamodb.clone(), &resources.jobs_table),
        moto,
        clients,
        resources,
        provisioned,
        dispatcher_settings,
        worker_settings,
        standin_endpoint,
        fault_proxy,
        services_endpoint,
        names,
        policies,
        identities,
        ecs_agents: Vec::new(),
        otel_env: options.otel_env.clone(),
        shutdown,
        tasks,
    };
    if options.dispatcher {
        stack.start_dispatcher().await?;
    }
    for _ in 0..options.workers {
        stack.start_worker().await?;
    }
    Ok(stack)
}

/// Clients signing with `key`, whose S3 client answers missing keys as AWS would for
/// `policies`; MediaConvert at `mediaconvert_endpoint`.
fn clients_as(
    endpoint: &str,
    key: &AccessKey,
    policies: &[NamedPolicy],
    mediaconvert_endpoint: Option<&str>,
) -> AwsClients {
    let sdk = crate::sdk_config_as(endpoint, &key.access_key_id, &key.secret_access_key);
    let mut clients = AwsClients::from_config(&sdk, true, mediaconvert_endpoint);
    let documents = policies.iter().map(|p| p.document.clone()).collect();
    clients.s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .interceptor(MissingKeyAsOnAws::new(documents))
            .build(),
    );
    clients
}

impl Stack {
    /// Clients of a service signing with `key`, held to `policies` where moto does not hold
    /// them (S3 missing keys).
    pub fn clients_as(&self, key: &AccessKey, policies: &[NamedPolicy]) -> AwsClients {
        clients_as(
            &self.services_endpoint,
            key,
            policies,
            Some(&self.standin_endpoint),
        )
    }

    /// Creates another IAM user `<prefix>-<name>` with `policies`, e.g. a worker's template
    /// policy with one action taken away.
    pub async fn create_identity(
        &self,
        name: &str,
        policies: &[NamedPolicy],
    ) -> anyhow::Result<AccessKey> {
        let admin = crate::sdk_config_as(
            self.moto.endpoint(),
            &self.identities.admin.access_key_id,
            &self.identities.admin.secret_access_key,
        );
        let prefix = &self.names.prefix;
        Ok(create_identity(
            &aws_sdk_iam::Client::new(&admin),
            &format!("{prefix}-{name}"),
            policies,
        )
        .await?)
    }

    /// A dispatcher on this stack with the dispatcher's identity (not started).
    pub async fn dispatcher(&self) -> anyhow::Result<Dispatcher> {
        let clients = self.clients_as(&self.identities.dispatcher, &self.policies.dispatcher);
        Dispatcher::new(self.dispatcher_settings.clone(), clients).await
    }

    /// A worker on this stack with the worker's identity (not started, no ECS agent).
    pub async fn worker(&self) -> anyhow::Result<Worker> {
        self.worker_as(&self.identities.worker, &self.policies.worker)
            .await
    }

    /// A worker signing with `key`, whose template policies are `policies` (not started).
    pub async fn worker_as(
        &self,
        key: &AccessKey,
        policies: &[NamedPolicy],
    ) -> anyhow::Result<Worker> {
        Worker::new(self.worker_settings.clone(), self.clients_as(key, policies)).await
    }

    /// Starts a dispatcher service task with `settings` (e.g. [`Stack::dispatcher_settings`]
    /// with other segment settings) that the returned handle stops on its own, so a test can
    /// run the same uploads through differently configured dispatchers one after the other.
    pub async fn start_dispatcher_with(
        &self,
        settings: DispatcherSettings,
    ) -> anyhow::Result<RunningDispatcher> {
        settings.validate()?;
        let clients = self.clients_as(&self.identities.dispatcher, &self.policies.dispatcher);
        let dispatcher = Dispatcher::new(settings, clients).await?;
        let token = self.shutdown.child_token();
        let stop = token.clone();
        let task = tokio::spawn(async move {
            let _ = dispatcher.run(token).await;
        });
        Ok(RunningDispatcher { stop, task })
    }

    /// Starts a dispatcher service task.
    pub async fn start_dispatcher(&mut self) -> anyhow::Result<()> {
        let dispatcher = self.dispatcher().await?;
        let token = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ = dispatcher.run(token).await;
        }));
        Ok(())
    }

    /// Starts a worker service task with its own ECS agent stand-in (the next entry of
    /// [`Stack::ecs_agents`]), which grants scale-in protection as the worker's template
    /// policy allows.
    pub async fn start_worker(&mut self) -> anyhow::Result<()> {
        self.start_worker_with(AgentOptions::default()).await
    }

    /// Like [`Stack::start_worker`], with an ECS agent stand-in keeping time and answering as
    /// `agent_options` say (e.g. a short minute, so protection lapses in seconds).
    pub async fn start_worker_with(&mut self, agent_options: AgentOptions) -> anyhow::Result<()> {
        let task_id = format!("{:032x}", self.ecs_agents.len() + 1);
        let agent = EcsAgent::start_with(
            &self.names.task_arn(&task_id),
            &format!(
                "arn:aws:iam::{}:role/{}-worker",
                self.names.account_id, self.names.prefix
            ),
            self.policies
                .worker
                .iter()
                .map(|p| p.document.clone())
                .collect(),
            agent_options,
        )
        .await?;
        let worker = self
            .worker()
            .await?
            .with_ecs_agent(Some(agent.uri().to_string()));
        self.ecs_agents.push(agent);
        let token = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ = worker.run(token).await;
        }));
        Ok(())
    }

    /// Holds the MediaConvert stand-in's one job slot with a capture of `long` (a long video)
    /// outside the pipeline, so the next jobs wait in SUBMITTED as on a busy MediaConvert
    /// queue; returns the blocking job's id. The input goes under `sources/`, the only prefix
    /// of the frames bucket the MediaConvert role may read.
    pub async fn occupy_mediaconvert(&self, long: Vec<u8>) -> anyhow::Result<String> {
        use framefleet_dispatcher::mediaconvert::{create_capture_job, CaptureRequest};
        use framefleet_dispatcher::rate::CaptureRate;
        let frames_bucket = &self.resources.frames_bucket;
        self.clients
            .s3
            .put_object()
            .bucket(frames_bucket)
            .key("sources/blocker/long.mp4")
            .body(ByteStream::from(long))
            .send()
            .await
            .context("upload the blocking video")?;
        let job = create_capture_job(
            &self.clients.mediaconvert,
            &self.dispatcher_settings.dispatcher,
            &CaptureRequest {
                video_id: &VideoId::from_raw("blocker"),
                input_url: format!("s3://{frames_bucket}/sources/blocker/long.mp4"),
                destination: format!("s3://{frames_bucket}/blocker-frames/"),
                preview_destination: format!("s3://{frames_bucket}/blocker-preview/preview"),
                rate: CaptureRate::parse("30")?,
                attempt: 0,
                source_has_audio: false,
                traceparent: None,
                part: None,
            },
        )
        .await?;
        Ok(job)
    }

    /// Uploads `body` to the ingress bucket and returns the video id it will get: from the new
    /// version's id, since the template versions the ingress bucket (the eTag only where a
    /// bucket is unversioned), as the dispatcher derives it from the notification.
    pub async fn upload(&self, key: &str, body: Vec<u8>) -> anyhow::Result<VideoId> {
        let out = self
            .clients
            .s3
            .put_object()
            .bucket(&self.resources.ingress_bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .with_context(|| format!("upload {key}"))?;
        Ok(VideoId::of_upload(
            &self.resources.ingress_bucket,
            key,
            out.e_tag().unwrap_or_default(),
            out.version_id(),
        ))
    }

    /// Waits until the job reaches one of `statuses`.
    pub async fn wait_for(
        &self,
        video_id: &VideoId,
        statuses: &[JobStatus],
        timeout: Duration,
    ) -> anyhow::Result<JobRecord> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(record) = self.jobs.get(video_id).await? {
                if statuses.contains(&record.status) {
                    return Ok(record);
                }
                last = Some(record);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        bail!("job {video_id} did not reach {statuses:?} within {timeout:?}; last seen: {last:#?}")
    }

    /// Waits (up to a minute) until the job is fanned out (PROCESSING: every frame captured,
    /// every batch on the frames queue) and returns its record.
    pub async fn wait_processing(&self, video_id: &VideoId) -> anyhow::Result<JobRecord> {
        self.wait_for(video_id, &[JobStatus::Processing], Duration::from_secs(60))
            .await
    }

    /// The keys of the frames MediaConvert captured for the job, in frame order.
    pub async fn captured_frames(
        &self,
        video_id: impl std::fmt::Display,
    ) -> anyhow::Result<Vec<String>> {
        self.list(&self.resources.frames_bucket, &format!("{video_id}/"))
            .await
    }

    /// Waits until the job is COMPLETE or FAILED.
    pub async fn wait_final(&self, video_id: &VideoId) -> anyhow::Result<JobRecord> {
        self.wait_for(
            video_id,
            &[JobStatus::Complete, JobStatus::Failed],
            Duration::from_secs(120),
        )
        .await
    }

    /// Keys under `prefix` in `bucket`.
    pub async fn list(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        // moto verifies the signature of a query value against its decoded form, so a prefix
        // with a character the SDK percent-encodes (`/` included) fails with
        // SignatureDoesNotMatch while IAM is enforced: ask for the longest prefix without
        // one and filter here.
        let safe = prefix
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.~".contains(c)))
            .map_or(prefix, |end| &prefix[..end]);
        let mut keys = Vec::new();
        let mut pages = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(safe)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page?.contents() {
                keys.extend(
                    object
                        .key()
                        .filter(|k| k.starts_with(prefix))
                        .map(ToString::to_string),
                );
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The bytes of an object.
    pub async fn get(&self, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let out = self
            .clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("get s3://{bucket}/{key}"))?;
        Ok(out.body.collect().await?.into_bytes().to_vec())
    }

    /// Runs the user's command, `framefleet args…` (built by `cargo build --workspace --bins`),
    /// against this stack with only the environment a user would set: the endpoints, a region
    /// and the admin identity's keys (a user's own credentials, not a task role: IAM is
    /// enforced).
    pub async fn framefleet(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let binary = crate::binaries::bin_dir()?.join("framefleet");
        if !binary.is_file() {
            bail!(
                "{} is missing: build it first (cargo build --workspace --bins)",
                binary.display()
            );
        }
        let r = &self.resources;
        tokio::process::Command::new(&binary)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_ENDPOINT_URL_MEDIACONVERT", &self.standin_endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", &self.identities.admin.access_key_id)
            .env(
                "AWS_SECRET_ACCESS_KEY",
                &self.identities.admin.secret_access_key,
            )
            // moto mis-verifies signed bodies with checksum trailers (see `sdk_config_as`).
            .env("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("FRAMEFLEET__RESOURCES__INGRESS_BUCKET", &r.ingress_bucket)
            .env(
                "FRAMEFLEET__RESOURCES__PROCESSED_BUCKET",
                &r.processed_bucket,
            )
            .env("FRAMEFLEET__RESOURCES__JOBS_TABLE", &r.jobs_table)
            .output()
            .await
            .with_context(|| format!("running {}", binary.display()))
    }

    /// The job's `manifest.json`, parsed.
    pub async fn manifest(&self, video_id: &str) -> anyhow::Result<serde_json::Value> {
        let key = format!("{video_id}/manifest.json");
        let bytes = self.get(&self.resources.processed_bucket, &key).await?;
        serde_json::from_slice(&bytes).with_context(|| format!("parse {key}"))
    }

    /// Turns on versioning on the ingress bucket, as the template does
    /// (`VersioningConfiguration: Enabled`): every upload then has a version id, which every
    /// ObjectCreated notification carries and the video id is derived from.
    pub async fn version_ingress_bucket(&self) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.clients
            .s3
            .put_bucket_versioning()
            .bucket(&self.resources.ingress_bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .context("versioning the ingress bucket")?;
        Ok(())
    }

    /// Turns on versioning on the processed bucket, so every write of a key leaves a version:
    /// "Retaining multiple versions of objects with S3 Versioning",
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/Versioning.html>.
    pub async fn version_processed_bucket(&self) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.clients
            .s3
            .put_bucket_versioning()
            .bucket(&self.resources.processed_bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .context("versioning the processed bucket")?;
        Ok(())
    }

    /// ETags of every version of `key` in the processed bucket (versioned by
    /// [`Stack::version_processed_bucket`]), newest first: one per write of the key, and equal
    /// ETags are equal bytes (the MD5 of a single-part PUT).
    pub async fn processed_versions(&self, key: &str) -> anyhow::Result<Vec<String>> {
        let out = self
            .clients
            .s3
            .list_object_versions()
            .bucket(&self.resources.processed_bucket)
            .prefix(key)
            .send()
            .await
            .with_context(|| format!("list the versions of {key}"))?;
        Ok(out
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key))
            .map(|v| v.e_tag().unwrap_or_default().to_string())
            .collect())
    }

    /// Waits (up to a minute) until the queue at `url` has no message left, visible or not.
    pub async fn wait_until_empty(&self, url: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.queue_depth(url).await? == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("queue {url} did not drain")
    }

    /// Deletes the captured frame `key`, as if capture had lost it: the worker reads a missing
    /// key.
    pub async fn delete_frame(&self, key: &str) -> anyhow::Result<()> {
        let bucket = &self.resources.frames_bucket;
        self.clients
            .s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("delete s3://{bucket}/{key}"))?;
        Ok(())
    }

    /// Breaks the captured frame `key`: keeps its first third and appends bytes no JPEG decoder
    /// accepts, so the worker must record it as failed and finish the job.
    pub async fn corrupt_frame(&self, key: &str) -> anyhow::Result<()> {
        let bucket = &self.resources.frames_bucket;
        let mut bytes = self.get(bucket, key).await?;
        bytes.truncate(bytes.len() / 3);
        bytes.extend_from_slice(&[0x13; 64]);
        self.clients
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .with_context(|| format!("put s3://{bucket}/{key}"))?;
        Ok(())
    }

    /// Messages waiting in a queue (approximate, as SQS reports it).
    pub async fn queue_depth(&self, url: &str) -> anyhow::Result<u64> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let out = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let attributes = out.attributes().cloned().unwrap_or_default();
        let read = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(read(QueueAttributeName::ApproximateNumberOfMessages)
            + read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }

    /// Messages in the queue at `url` received and neither deleted nor handed back yet
    /// (exact on moto).
    pub async fn not_visible(&self, url: &str) -> anyhow::Result<u64> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let out = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .with_context(|| format!("attributes of {url}"))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// The DLQ URL of a main queue.
    pub fn dlq_url(&self, queue_name: &str) -> &str {
        &self.provisioned.dead_letter_queue_urls[queue_name]
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}
