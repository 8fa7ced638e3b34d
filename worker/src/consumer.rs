//! The worker's consumer loop: long-poll the frames queue for as many batches as there are free
//! slots, process each on its own task with a visibility heartbeat, delete it once counted.
//! SIGTERM stops receiving; in-flight batches get `drain_timeout_secs` to finish.

use std::sync::Arc;
use std::time::Duration;

use framefleet_core::aws::{queue_url, AwsClients};
use framefleet_core::health::Heartbeat;
use framefleet_core::jobs::JobTable;
use framefleet_core::message::FrameBatch;
use framefleet_core::queue::{receive_count, Queue, QueueError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::{BatchProcessor, BatchReport};
use crate::protection::ScaleInProtection;
use crate::settings::WorkerSettings;

/// What a receive round did, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Messages received.
    pub received: usize,
    /// Batches processed, counted and deleted.
    pub handled: usize,
    /// Batches left for redelivery after a transient error.
    pub retried: usize,
    /// Messages that are not batches, released towards the DLQ.
    pub rejected: usize,
    /// Jobs this round completed.
    pub completed_jobs: usize,
}

/// The worker service.
#[derive(Debug, Clone)]
pub struct Worker {
    settings: Arc<WorkerSettings>,
    frames: Queue,
    processor: BatchProcessor,
    visibility: Duration,
    protection: ScaleInProtection,
    heartbeat: Heartbeat,
}

impl Worker {
    /// Resolves the frames queue and builds the worker. `settings` must be validated.
    pub async fn new(settings: WorkerSettings, clients: AwsClients) -> anyhow::Result<Self> {
        let r = &settings.resources;
        let frames = Queue::new(
            clients.sqs.clone(),
            queue_url(&clients.sqs, &r.frames_queue).await?,
        );
        let visibility = frames.visibility_timeout().await?;
        let processor = BatchProcessor::new(
            clients.s3.clone(),
            JobTable::new(clients.dynamodb.clone(), &r.jobs_table),
            &r.processed_bucket,
            settings.worker.frame_concurrency,
        );
        let protection = ScaleInProtection::new(if settings.worker.scale_in_protection {
            std::env::var("ECS_AGENT_URI").ok()
        } else {
            None
        });
        Ok(Self {
            settings: Arc::new(settings),
            frames,
            processor,
            visibility,
            protection,
            heartbeat: Heartbeat::new("worker"),
        })
    }

    /// Scale-in protection through the ECS agent at `agent_uri` instead of the one
    /// `ECS_AGENT_URI` names, so tests can put an agent stand-in on port 0 without touching the
    /// process environment; `None` turns protection off.
    pub fn with_ecs_agent(mut self, agent_uri: Option<String>) -> Self {
        self.protection = ScaleInProtection::new(agent_uri);
        self
    }

    /// Runs until `shutdown`, then drains in-flight batches.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let slots = Arc::new(Semaphore::new(self.settings.worker.batches_in_flight));
        let tracker = TaskTracker::new();
        let mut backoff = Duration::from_millis(200);
        tracing::info!(
            batches_in_flight = self.settings.worker.batches_in_flight,
            "worker started"
        );
        loop {
            // Cancellation only between receives: wait for a free slot or the signal.
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit?,
            };
            let free = 1 + slots.available_permits();
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.frames.receive(free.min(10) as i32, Duration::from_secs(20)) => received,
            };
            self.heartbeat.beat();
            let messages = match received {
                Ok(messages) => {
                    backoff = Duration::from_millis(200);
                    messages
                }
                Err(error) => {
                    tracing::warn!(%error, "receive failed; backing off");
                    drop(first);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            let mut first = Some(first);
            for message in messages {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => slots.clone().acquire_owned().await?,
                };
                let worker = self.clone();
                tracker.spawn(async move {
                    let _permit = permit;
                    worker.handle_message(message).await;
                });
            }
        }
        tracker.close();
        let drain = Duration::from_secs(self.settings.worker.drain_timeout_secs);
        tracing::info!(in_flight = tracker.len(), "draining");
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::warn!(
                in_flight = tracker.len(),
                "drain timed out; unfinished batches will be redelivered"
            );
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Receives once (up to `max` batches, waiting up to `wait`) and handles every batch.
    pub async fn run_once(&self, max: usize, wait: Duration) -> Result<Outcome, QueueError> {
        let messages = self.frames.receive(max.clamp(1, 10) as i32, wait).await?;
        let results =
            futures::future::join_all(messages.into_iter().map(|m| self.handle_message(m))).await;
        let mut outcome = Outcome::default();
        for result in results {
            outcome.received += 1;
            match result {
                Handled::Done(report) => {
                    outcome.handled += 1;
                    outcome.completed_jobs += usize::from(report.completed_job);
                }
                Handled::Retry => outcome.retried += 1,
                Handled::Rejected => outcome.rejected += 1,
            }
        }
        Ok(outcome)
    }

    async fn handle_message(&self, message: aws_sdk_sqs::types::Message) -> Handled {
        let receipt = message.receipt_handle().unwrap_or_default().to_string();
        let message_id = message.message_id().unwrap_or_default().to_string();
        let batch = match FrameBatch::parse(message.body().unwrap_or_default())
            .map_err(|e| e.to_string())
            .and_then(|b| b.params.validate().map(|()| b).map_err(|e| e.to_string()))
        {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(
                    message_id,
                    receive_count = receive_count(&message),
                    error,
                    "not a frame batch; releasing it towards the DLQ"
                );
                if let Err(error) = self.frames.set_visibility(&receipt, Duration::ZERO).await {
                    tracing::warn!(message_id, %error, "cannot release message");
                }
                return Handled::Rejected;
            }
        };
        let _busy = self.protection.busy();
        let redelivered = receive_count(&message) > 1;
        let work = self.processor.process(&batch, redelivered);
        let result = with_heartbeat(work, &self.frames, &receipt, self.visibility).await;
        // A loop whose slots are all busy does not receive; finished batches prove it lives.
        self.heartbeat.beat();
        match result {
            Ok(report) => match self.frames.delete(&receipt).await {
                Ok(()) => Handled::Done(report),
                Err(error) => {
                    tracing::warn!(video_id = %batch.video_id, message_id, %error, "batch counted but not deleted; the redelivery will not count it again");
                    Handled::Retry
                }
            },
            Err(error) => {
                tracing::warn!(video_id = %batch.video_id, batch_index = batch.batch_index, message_id, %error, "batch failed; leaving it for redelivery");
                Handled::Retry
            }
        }
    }
}

enum Handled {
    Done(BatchReport),
    Retry,
    Rejected,
}

/// Runs `work` while extending the message's visibility every half timeout.
async fn with_heartbeat<F: std::future::Future>(
    work: F,
    queue: &Queue,
    receipt: &str,
    visibility: Duration,
) -> F::Output {
    let period = (visibility / 2).max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticker.tick() => {
                if let Err(error) = queue.set_visibility(receipt, visibility).await {
                    tracing::warn!(%error, "visibility heartbeat failed");
                }
            }
        }
    }
}
