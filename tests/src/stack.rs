//! `spawn_stack`: a whole framefleet on loopback for one test. A fresh moto_server, resources
//! with random names provisioned by the real provisioner, the MediaConvert stand-in on port 0,
//! and (unless asked not to) one dispatcher and some workers running as tasks.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use framefleet_core::aws::AwsClients;
use framefleet_core::config::Resources;
use framefleet_core::jobs::{JobRecord, JobStatus, JobTable};
use framefleet_core::video::VideoId;
use framefleet_dispatcher::settings::{DispatcherConfig, KernelConfig};
use framefleet_dispatcher::{Dispatcher, DispatcherSettings};
use framefleet_provision::{ProvisionSettings, Provisioned, QueueSettings};
use framefleet_worker::settings::WorkerConfig;
use framefleet_worker::{Worker, WorkerSettings};
use mediaconvert_standin::{Standin, StandinConfig};
use tokio_util::sync::CancellationToken;

use crate::fault_proxy::{FaultPlan, FaultProxy};
use crate::moto::MotoServer;

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
    /// When set, the dispatcher and workers reach moto through a [`FaultProxy`] running this
    /// plan (the test's own clients and the stand-in still talk to moto directly).
    pub faults: Option<FaultPlan>,
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
            faults: None,
        }
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
    /// Clients the dispatcher and workers use: through the fault proxy when there is one.
    pub service_clients: AwsClients,
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
    // Logs go to the test's captured stderr: shown when a test fails.
    let _ = framefleet_core::telemetry::init(
        "tests",
        &framefleet_core::config::TelemetrySettings {
            log_format: framefleet_core::config::LogFormat::Pretty,
        },
    );
    let moto = MotoServer::start().await?;
    let sdk = crate::sdk_config(moto.endpoint());
    let plain = AwsClients::from_config(&sdk, true, None);
    let prefix = random_prefix();
    let resources = Resources {
        ingress_bucket: format!("{prefix}-ingress"),
        frames_bucket: format!("{prefix}-frames"),
        processed_bucket: format!("{prefix}-processed"),
        ingress_queue: format!("{prefix}-ingress"),
        job_events_queue: format!("{prefix}-job-events"),
        frames_queue: format!("{prefix}-frames"),
        jobs_table: format!("{prefix}-jobs"),
    };
    let provision_settings = ProvisionSettings {
        resources: resources.clone(),
        provision: options.queues.clone(),
        ..ProvisionSettings::default()
    };
    provision_settings.validate()?;
    let provisioned = framefleet_provision::provision(&plain, &provision_settings)
        .await
        .context("provisioning")?;
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();

    let standin_endpoint = if options.standin {
        let standin = Standin::bind(
            StandinConfig {
                listen: "127.0.0.1:0".into(),
                events_queue: provisioned.job_events_queue_url.clone(),
                ..StandinConfig::default()
            },
            plain.s3.clone(),
            plain.sqs.clone(),
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
    let clients = AwsClients::from_config(&sdk, true, Some(&standin_endpoint));
    let fault_proxy = match options.faults {
        Some(plan) => Some(
            FaultProxy::start(moto.endpoint(), plan)
                .await
                .context("starting the fault proxy")?,
        ),
        None => None,
    };
    let service_clients = match &fault_proxy {
        Some(proxy) => AwsClients::from_config(
            &crate::sdk_config(&proxy.endpoint()),
            true,
            Some(&standin_endpoint),
        ),
        None => clients.clone(),
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
        service_clients,
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

impl Stack {
    /// A dispatcher on this stack (not started).
    pub async fn dispatcher(&self) -> anyhow::Result<Dispatcher> {
        Dispatcher::new(
            self.dispatcher_settings.clone(),
            self.service_clients.clone(),
        )
        .await
    }

    /// A worker on this stack (not started).
    pub async fn worker(&self) -> anyhow::Result<Worker> {
        Worker::new(self.worker_settings.clone(), self.service_clients.clone()).await
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

    /// Starts a worker service task.
    pub async fn start_worker(&mut self) -> anyhow::Result<()> {
        let worker = self.worker().await?;
        let token = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ = worker.run(token).await;
        }));
        Ok(())
    }

    /// Uploads `body` to the ingress bucket and returns the video id it will get.
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
        Ok(VideoId::derive(
            &self.resources.ingress_bucket,
            key,
            out.e_tag().unwrap_or_default(),
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
        let mut keys = Vec::new();
        let mut pages = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page?.contents() {
                keys.extend(object.key().map(ToString::to_string));
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
