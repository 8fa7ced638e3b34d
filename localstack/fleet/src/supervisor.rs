//! Worker processes up to the service's desired count, as ECS runs tasks for a service.
//!
//! Each period ([`Supervisor::tick`]) the supervisor reaps workers that exited, reads the
//! desired count (which the dispatcher's scaler sets), applies the queue-depth rules
//! ([`crate::rules`]) to the frames queue and writes their count when they change it, then
//! starts workers up to the desired count or stops the excess. A worker is started as a
//! container is: the `worker` binary with the environment it is given plus `ECS_AGENT_URI`,
//! the address of its own ECS agent stand-in ([`AgentHost`]), through which it takes task
//! scale-in protection while busy. Scale-in asks each candidate's agent whether the task is
//! protected (`GET $ECS_AGENT_URI/task-protection/v1/state`) and sends SIGTERM to idle ones
//! only, newest first; a protected worker is never stopped, and a later period stops it once
//! it is idle, as ECS does ("Protect your Amazon ECS tasks from being terminated by scale-in
//! events", Amazon ECS Developer Guide,
//! <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection.html>).
//! A worker that takes a batch between the check and the signal drains it within its stop
//! budget, as a task does when ECS stops it.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::rules::{Observation, QueueRules, ScalingBounds};
use crate::service::{EcsError, WorkerService};

/// A task's ECS agent stand-in: kept for the life of the task.
pub trait TaskAgent: Send + Sync {
    /// The task's `ECS_AGENT_URI`.
    fn uri(&self) -> String;
}

/// Starts an ECS agent stand-in for each task the supervisor starts.
pub trait AgentHost: Send + Sync {
    /// An agent for the task `task_arn`.
    fn start(&self, task_arn: String) -> BoxFuture<'_, anyhow::Result<Box<dyn TaskAgent>>>;
}

/// How the supervisor runs the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The scalable target's bounds and the queue rules' target.
    pub bounds: ScalingBounds,
    /// How often it looks.
    pub period: Duration,
    /// The `worker` binary.
    pub worker_program: PathBuf,
    /// The workers' environment (resources, AWS endpoint and credentials, settings).
    pub worker_env: Vec<(String, String)>,
    /// Where each worker's output goes (`<task id>.log`); inherited when `None`.
    pub log_dir: Option<PathBuf>,
    /// Task ARNs are this plus a task id, e.g. `arn:aws:ecs:<region>:<account>:task/<cluster>/`.
    pub task_arn_prefix: String,
    /// How long a stopped worker may drain before it is killed (the task definition's
    /// `StopTimeout`).
    pub stop_timeout: Duration,
}

/// Everything that can go wrong in a period; the next period tries again.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// ECS (the emulator) refused or failed a call.
    #[error(transparent)]
    Ecs(#[from] EcsError),
    /// The frames queue's attributes could not be read.
    #[error("cannot read the frames queue's depth: {0}")]
    Queue(String),
    /// A worker or its agent could not be started.
    #[error("cannot start worker {task}: {message}")]
    Start {
        /// The task id.
        task: String,
        /// Why.
        message: String,
    },
}

/// What one period saw and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tick {
    /// The desired count after this period.
    pub desired: u32,
    /// The count the queue rules set this period, if they changed it.
    pub set_by_rules: Option<u32>,
    /// Visible frame batches.
    pub visible: u64,
    /// Frame batches in flight.
    pub in_flight: u64,
    /// Workers running after this period (not counting those told to stop).
    pub running: u32,
    /// Workers started this period.
    pub started: u32,
    /// Workers sent SIGTERM this period.
    pub stopped: u32,
    /// Workers above the desired count left running because they held scale-in protection.
    pub spared: u32,
    /// Workers found exited this period.
    pub exited: u32,
}

struct Task {
    id: String,
    child: Child,
    _agent: Box<dyn TaskAgent>,
    agent_uri: String,
    stopping: bool,
}

/// Runs the worker fleet of one service.
pub struct Supervisor {
    config: FleetConfig,
    service: WorkerService,
    sqs: aws_sdk_sqs::Client,
    frames_queue_url: String,
    agents: Arc<dyn AgentHost>,
    rules: QueueRules,
    tasks: Vec<Task>,
    http: reqwest::Client,
    started_total: u64,
    peak: u32,
}

impl Supervisor {
    /// A supervisor of `service` whose rules watch `frames_queue_url`.
    pub fn new(
        config: FleetConfig,
        service: WorkerService,
        sqs: aws_sdk_sqs::Client,
        frames_queue_url: &str,
        agents: Arc<dyn AgentHost>,
    ) -> Self {
        Self {
            rules: QueueRules::new(config.bounds),
            config,
            service,
            sqs,
            frames_queue_url: frames_queue_url.to_string(),
            agents,
            tasks: Vec::new(),
            http: reqwest::Client::new(),
            started_total: 0,
            peak: 0,
        }
    }

    /// Workers running (not counting those told to stop).
    pub fn running(&self) -> u32 {
        self.tasks.iter().filter(|t| !t.stopping).count() as u32
    }

    /// The most workers that ran at once.
    pub fn peak(&self) -> u32 {
        self.peak
    }

    /// The `ECS_AGENT_URI` of each running worker, oldest first.
    pub fn agent_uris(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|t| !t.stopping)
            .map(|t| t.agent_uri.clone())
            .collect()
    }

    /// One period (see the module docs).
    pub async fn tick(&mut self) -> Result<Tick, FleetError> {
        let mut tick = Tick {
            exited: self.reap(),
            ..Tick::default()
        };
        let mut desired = self.service.desired_count().await?;
        let (visible, in_flight) = self.queue_depth().await?;
        tick.visible = visible;
        tick.in_flight = in_flight;
        let seen = Observation {
            desired,
            running: self.running(),
            visible,
            in_flight,
        };
        if let Some(set) = self.rules.apply(seen) {
            self.service.set_desired_count(set).await?;
            tracing::info!(
                from = desired,
                to = set,
                visible,
                in_flight,
                "queue rules set the desired count"
            );
            tick.set_by_rules = Some(set);
            desired = set;
        }
        tick.desired = desired;
        while self.running() < desired {
            self.start_worker().await?;
            tick.started += 1;
        }
        let mut excess = self.running().saturating_sub(desired);
        let mut candidates: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| !self.tasks[i].stopping)
            .collect();
        candidates.reverse();
        for i in candidates {
            if excess == 0 {
                break;
            }
            if self.protected(&self.tasks[i].agent_uri).await {
                tick.spared += 1;
                continue;
            }
            let task = &mut self.tasks[i];
            terminate(&task.child).await;
            task.stopping = true;
            tracing::info!(task = task.id, "idle worker stopped (SIGTERM)");
            tick.stopped += 1;
            excess -= 1;
        }
        tick.running = self.running();
        self.peak = self.peak.max(tick.running);
        Ok(tick)
    }

    /// Runs a period every `period` until `shutdown`, then stops every worker (SIGTERM, then
    /// SIGKILL after the stop timeout) and returns the peak.
    pub async fn run(mut self, shutdown: CancellationToken) -> u32 {
        let mut ticker = tokio::time::interval(self.config.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            match self.tick().await {
                Ok(tick) => {
                    let shown = (tick.desired, tick.running);
                    if last != Some(shown) {
                        tracing::info!(
                            desired = tick.desired,
                            running = tick.running,
                            visible = tick.visible,
                            in_flight = tick.in_flight,
                            "fleet"
                        );
                        last = Some(shown);
                    }
                }
                Err(error) => tracing::warn!(error = %error, "fleet period failed; next period"),
            }
        }
        self.stop_all().await;
        self.peak
    }

    /// Stops every worker: SIGTERM, then SIGKILL after the stop timeout.
    pub async fn stop_all(&mut self) {
        for task in &mut self.tasks {
            if !task.stopping {
                terminate(&task.child).await;
                task.stopping = true;
            }
        }
        let timeout = self.config.stop_timeout;
        for mut task in self.tasks.drain(..) {
            if tokio::time::timeout(timeout, task.child.wait())
                .await
                .is_err()
            {
                tracing::warn!(task = task.id, "worker did not stop in time; killed");
                let _ = task.child.kill().await;
            }
        }
    }

    /// Removes the workers that exited; returns how many.
    fn reap(&mut self) -> u32 {
        let before = self.tasks.len();
        self.tasks.retain_mut(|task| match task.child.try_wait() {
            Ok(Some(status)) => {
                if !task.stopping {
                    tracing::warn!(task = task.id, %status, "worker exited on its own");
                }
                false
            }
            _ => true,
        });
        (before - self.tasks.len()) as u32
    }

    async fn queue_depth(&self) -> Result<(u64, u64), FleetError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.frames_queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| FleetError::Queue(framefleet_core::aws::describe(&e)))?;
        let read = |name: A| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((
            read(A::ApproximateNumberOfMessages),
            read(A::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    async fn start_worker(&mut self) -> Result<(), FleetError> {
        self.started_total += 1;
        let id = format!("worker-{:04}-{}", self.started_total, std::process::id());
        let failed = |message: String| FleetError::Start {
            task: id.clone(),
            message,
        };
        let arn = format!("{}{id}", self.config.task_arn_prefix);
        let agent = self
            .agents
            .start(arn)
            .await
            .map_err(|e| failed(format!("its ECS agent stand-in: {e:#}")))?;
        let agent_uri = agent.uri();
        let (stdout, stderr) = match &self.config.log_dir {
            Some(dir) => {
                let path = dir.join(format!("{id}.log"));
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| failed(format!("{}: {e}", path.display())))?;
                let copy = log.try_clone().map_err(|e| failed(e.to_string()))?;
                (Stdio::from(log), Stdio::from(copy))
            }
            None => (Stdio::inherit(), Stdio::inherit()),
        };
        let child = Command::new(&self.config.worker_program)
            .envs(self.config.worker_env.iter().cloned())
            .env("ECS_AGENT_URI", &agent_uri)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("{}: {e}", self.config.worker_program.display())))?;
        tracing::info!(task = id, "worker started");
        self.tasks.push(Task {
            id,
            child,
            _agent: agent,
            agent_uri,
            stopping: false,
        });
        Ok(())
    }

    /// Whether the task's agent says it holds scale-in protection; when the agent cannot be
    /// asked, the task is treated as protected (a busy task must never be stopped).
    async fn protected(&self, agent_uri: &str) -> bool {
        let url = format!("{agent_uri}/task-protection/v1/state");
        let answer = async {
            let response = self.http.get(&url).send().await?.error_for_status()?;
            response.json::<serde_json::Value>().await
        };
        match answer.await {
            Ok(body) => body
                .pointer("/protection/ProtectionEnabled")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true),
            Err(error) => {
                tracing::warn!(%error, url, "cannot ask the ECS agent stand-in; treating the task as protected");
                true
            }
        }
    }
}

/// Sends SIGTERM, as ECS does to stop a task.
async fn terminate(child: &Child) {
    let Some(pid) = child.id() else { return };
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    if !sent.is_ok_and(|s| s.success()) {
        tracing::warn!(pid, "kill -TERM failed");
    }
}
