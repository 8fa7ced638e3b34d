//! The services as real processes, for the chaos suite: the workspace's own `dispatcher`,
//! `worker` and `mediaconvert-standin` binaries, configured through the environment exactly as
//! a container is (`FRAMEFLEET__…`, `AWS_ENDPOINT_URL[_MEDIACONVERT]`), against the stack's
//! moto_server, and stopped with real signals: SIGKILL (a crash, an OOM kill) or SIGTERM (a
//! scale-in or a deployment). Each process logs to `target/chaos-logs/<run>/<name>.log`.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, which `scripts/test`
//! does before the tests); they are found beside the test binary's `deps/` directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use crate::binaries::bin_dir;
use crate::stack::Stack;

/// Which binary a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `dispatcher`.
    Dispatcher,
    /// `worker`.
    Worker,
    /// `mediaconvert-standin`.
    Standin,
}

impl Service {
    fn binary(self) -> &'static str {
        match self {
            Self::Dispatcher => "dispatcher",
            Self::Worker => "worker",
            Self::Standin => "mediaconvert-standin",
        }
    }
}

/// A signal to stop a process with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Killed outright: no drain, no cleanup.
    Kill,
    /// Asked to stop: drains within its configured time.
    Term,
}

/// Services running as processes beside a [`Stack`] (which must run no services of its own).
pub struct Fleet {
    bin_dir: PathBuf,
    log_dir: PathBuf,
    standin_port: u16,
    env: Vec<(String, String)>,
    /// Resource names, for the services that read `resources` (each service's settings
    /// refuse keys it does not know, so the stand-in must not get them).
    resources: Vec<(String, String)>,
    events_queue: String,
    /// The job-events rule's pattern, which the stand-in applies.
    event_pattern: String,
    /// Each service's access key.
    keys: HashMap<Service, Vec<(String, String)>>,
    extra: HashMap<Service, Vec<(String, String)>>,
    children: HashMap<String, (Service, Child)>,
}

impl Fleet {
    /// Environment for the services of `stack`; `extra` adds (or overrides) variables per
    /// service, e.g. short reconciler thresholds for the dispatcher.
    pub fn new(
        stack: &Stack,
        extra: HashMap<Service, Vec<(String, String)>>,
    ) -> anyhow::Result<Self> {
        let bin_dir = bin_dir()?;
        for service in [Service::Dispatcher, Service::Worker, Service::Standin] {
            let path = bin_dir.join(service.binary());
            if !path.is_file() {
                bail!(
                    "{} is missing: build the services first (cargo build --workspace --bins)",
                    path.display()
                );
            }
        }
        let run = stack
            .resources
            .jobs_table
            .trim_end_matches("-jobs")
            .to_string();
        let log_dir = bin_dir.join("..").join("chaos-logs").join(run);
        std::fs::create_dir_all(&log_dir)?;
        // The stack's clients already point at this address (`StackOptions::standin` off).
        let standin_port: u16 = stack
            .standin_endpoint
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .context("the stack's stand-in endpoint has no port")?;
        let r = &stack.resources;
        let env = [
            ("AWS_ENDPOINT_URL", stack.moto.endpoint().to_string()),
            ("AWS_REGION", "us-east-1".into()),
            // moto mis-verifies signed aws-chunked bodies with checksum trailers (see
            // `crate::sdk_config_as`): checksums only where an operation requires them.
            ("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required".into()),
            (
                "AWS_ENDPOINT_URL_MEDIACONVERT",
                format!("http://127.0.0.1:{standin_port}"),
            ),
            ("FRAMEFLEET__TELEMETRY__LOG_FORMAT", "pretty".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(stack.otel_env.iter().cloned())
        .collect();
        let resources = [
            ("INGRESS_BUCKET", &r.ingress_bucket),
            ("FRAMES_BUCKET", &r.frames_bucket),
            ("PROCESSED_BUCKET", &r.processed_bucket),
            ("INGRESS_QUEUE", &r.ingress_queue),
            ("JOB_EVENTS_QUEUE", &r.job_events_queue),
            ("FRAMES_QUEUE", &r.frames_queue),
            ("JOBS_TABLE", &r.jobs_table),
        ]
        .into_iter()
        .map(|(k, v)| (format!("FRAMEFLEET__RESOURCES__{k}"), v.clone()))
        .collect();
        // By URL, as the stand-in stands in for the EventBridge rule's target (the MediaConvert
        // role has no sqs:GetQueueUrl to resolve a name with).
        let events_queue = stack.provisioned.job_events_queue_url.clone();
        let event_pattern = stack.provisioned.job_events_pattern.clone();
        // Each process signs with its own template identity, as each task has its own role.
        let ids = &stack.identities;
        let keys = HashMap::from([
            (Service::Dispatcher, &ids.dispatcher),
            (Service::Worker, &ids.worker),
            (Service::Standin, &ids.mediaconvert_standin),
        ])
        .into_iter()
        .map(|(service, key)| {
            (
                service,
                vec![
                    ("AWS_ACCESS_KEY_ID".to_string(), key.access_key_id.clone()),
                    (
                        "AWS_SECRET_ACCESS_KEY".to_string(),
                        key.secret_access_key.clone(),
                    ),
                ],
            )
        })
        .collect();
        Ok(Self {
            bin_dir,
            log_dir,
            standin_port,
            env,
            resources,
            events_queue,
            event_pattern,
            keys,
            extra,
            children: HashMap::new(),
        })
    }

    fn service_env(&self, service: Service) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(self.keys.get(&service).cloned().unwrap_or_default());
        match service {
            Service::Standin => {
                env.push((
                    "FRAMEFLEET__STANDIN__LISTEN".into(),
                    format!("127.0.0.1:{}", self.standin_port),
                ));
                env.push((
                    "FRAMEFLEET__STANDIN__EVENTS_QUEUE".into(),
                    self.events_queue.clone(),
                ));
                env.push((
                    "FRAMEFLEET__STANDIN__EVENT_PATTERN".into(),
                    self.event_pattern.clone(),
                ));
            }
            Service::Worker => {
                env.extend(self.resources.clone());
                env.push((
                    "FRAMEFLEET__WORKER__SCALE_IN_PROTECTION".into(),
                    "false".into(),
                ));
            }
            Service::Dispatcher => env.extend(self.resources.clone()),
        }
        env.extend(self.extra.get(&service).cloned().unwrap_or_default());
        env
    }

    /// Starts `service` as process `name` (a name already running is an error).
    pub async fn start(&mut self, name: &str, service: Service) -> anyhow::Result<()> {
        if self.children.contains_key(name) {
            bail!("{name} is already running");
        }
        let log_path = self.log_dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let child = Command::new(self.bin_dir.join(service.binary()))
            .envs(self.service_env(service))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        self.children.insert(name.to_string(), (service, child));
        if service == Service::Standin {
            self.wait_standin().await?;
        }
        Ok(())
    }

    async fn wait_standin(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.standin_port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the stand-in did not listen within 30 s")
    }

    /// Sends `signal` to process `name` and waits for it to exit (SIGTERM waits for its
    /// drain); returns how long it took to exit.
    pub async fn stop(&mut self, name: &str, signal: Signal) -> anyhow::Result<Duration> {
        let (_, mut child) = self
            .children
            .remove(name)
            .with_context(|| format!("{name} is not running"))?;
        let started = Instant::now();
        match signal {
            Signal::Kill => child.start_kill()?,
            Signal::Term => {
                let pid = child.id().context("the process has exited already")?;
                let status = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await?;
                if !status.success() {
                    bail!("kill -TERM {pid} failed");
                }
            }
        }
        tokio::time::timeout(Duration::from_secs(150), child.wait())
            .await
            .with_context(|| format!("{name} did not exit"))??;
        Ok(started.elapsed())
    }

    /// Stops process `name` as ECS stops a task: SIGTERM, then SIGKILL if it has not exited
    /// after `stop_timeout` (the container's `stopTimeout`). Returns how it exited: a process
    /// that stopped by itself within its budget exits with status 0, not by SIGKILL.
    pub async fn stop_as_ecs(
        &mut self,
        name: &str,
        stop_timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let (_, mut child) = self
            .children
            .remove(name)
            .with_context(|| format!("{name} is not running"))?;
        let pid = child.id().context("the process has exited already")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        match tokio::time::timeout(stop_timeout, child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                child.start_kill()?;
                Ok(child.wait().await?)
            }
        }
    }

    /// Names of the running processes of `service`.
    pub fn running(&self, service: Service) -> Vec<String> {
        let mut names: Vec<String> = self
            .children
            .iter()
            .filter(|(_, (s, _))| *s == service)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The log of process `name`, for assertions and failure messages.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Where the logs are.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }
}
