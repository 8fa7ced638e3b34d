//! The worker's consumer loop: long-poll the frames queue, process each batch on its own task
//! with a visibility heartbeat, delete it once counted. With the frame pipeline (the default)
//! it receives to keep [`crate::pipeline::BATCHES_AHEAD`] batches waiting for their turn, so the
//! next batch's downloads start while the current one computes, uploads and counts; with
//! per-batch scheduling (`frame_concurrency > 0`) it receives for free batch slots.
//! SIGTERM stops receiving: the receive in flight is finished and what it got is handed back;
//! in-flight batches get the drain the stop budget leaves (`worker.stop_timeout_secs` less an
//! exit margin, or `drain_timeout_secs`) to finish, and are handed back if they do not.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use framefleet_core::aws::{queue_url, AwsClients};
use framefleet_core::health::Heartbeat;
use framefleet_core::jobs::JobTable;
use framefleet_core::message::FrameBatch;
use framefleet_core::queue::{receive_count, sent_at, string_attribute, Queue, QueueError};
use framefleet_core::telemetry::propagation;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::{BatchProcessor, BatchReport};
use crate::direct_s3::DirectS3;
use crate::metrics;
use crate::pipeline::{Pipeline, Ticket};
use crate::protection::ScaleInProtection;
use crate::settings::{S3Client, WorkerSettings, RECEIVE_WAIT};

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

/// What [`Worker::run`] did, so a stop can be checked: the drain really finished what was in
/// flight, and nothing received was left invisible.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Batches processed, counted and deleted.
    pub handled: usize,
    /// Of those, the batches that were in flight when shutdown came and finished in the drain.
    pub drained: usize,
    /// Messages received as shutdown came, handed back at once instead of started.
    pub released: usize,
    /// Batches still running when the drain timed out, abandoned and handed back at once.
    pub abandoned: usize,
}

/// [`RunSummary`] as the batch tasks update it.
#[derive(Debug, Default)]
struct Counters {
    handled: AtomicUsize,
    drained: AtomicUsize,
    released: AtomicUsize,
    abandoned: AtomicUsize,
}

impl Counters {
    fn add(&self, counter: &AtomicUsize, n: usize) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn summary(&self) -> RunSummary {
        RunSummary {
            handled: self.handled.load(Ordering::Relaxed),
            drained: self.drained.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
        }
    }
}

/// The worker service.
#[derive(Debug, Clone)]
pub struct Worker {
    settings: Arc<WorkerSettings>,
    frames: Queue,
    processor: BatchProcessor,
    pipeline: Option<Arc<Pipeline>>,
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
        )
        .with_pricing(settings.pricing.clone())
        .with_signed_payloads(settings.worker.sign_s3_payloads);
        let processor = match settings.worker.s3_client {
            S3Client::Sdk => processor,
            S3Client::Direct => processor.with_direct_s3(
                DirectS3::new(&clients.config, clients.s3_endpoint.as_deref())
                    .context("worker.s3_client = \"direct\"")?,
            ),
        };
        let pipeline = settings.worker.pipeline().map(Pipeline::new);
        let processor = match &pipeline {
            Some(pipeline) => processor.with_pipeline(Arc::clone(pipeline)),
            None => processor,
        };
        let protection = ScaleInProtection::new(
            if settings.worker.scale_in_protection {
                std::env::var("ECS_AGENT_URI").ok()
            } else {
                None
            },
            settings.worker.protection_timing(),
        );
        Ok(Self {
            settings: Arc::new(settings),
            frames,
            processor,
            pipeline,
            visibility,
            protection,
            heartbeat: Heartbeat::new("worker"),
        })
    }

    /// Scale-in protection through the ECS agent at `agent_uri` instead of the one
    /// `ECS_AGENT_URI` names, so tests can put an agent stand-in on port 0 without touching the
    /// process environment; `None` turns protection off.
    pub fn with_ecs_agent(mut self, agent_uri: Option<String>) -> Self {
        self.protection =
            ScaleInProtection::new(agent_uri, self.settings.worker.protection_timing());
        self
    }

    /// Runs until `shutdown`, then drains in-flight batches and returns what it did.
    ///
    /// Shutdown never drops a receive in flight: SQS may already have handed that call messages,
    /// which would then stay invisible to every worker for the whole visibility timeout. The
    /// call is finished instead (at most one long poll, 20 s, run alongside the drain), and what
    /// it returns is handed back at once (visibility 0) rather than started: the fleet's other
    /// workers take it immediately, and work begun on a stopping worker could outlast the drain
    /// and be lost anyway. Batches in flight when shutdown came get the stop budget's drain to
    /// finish; any still running then are abandoned and handed back at once too, so a stopped
    /// worker leaves nothing invisible behind. ("ChangeMessageVisibility", Amazon SQS API
    /// Reference: a timeout of 0 makes the message visible to other consumers immediately,
    /// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html>.)
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<RunSummary> {
        let slots = Arc::new(Semaphore::new(self.settings.worker.batch_slots()));
        let tracker = TaskTracker::new();
        let abandon = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        let mut backoff = Duration::from_millis(200);
        let mut pending_receive = None;
        match &self.pipeline {
            Some(pipeline) => tracing::info!(
                kernel_threads = pipeline.config().kernel_threads,
                frames_in_flight = pipeline.frames_in_flight(),
                fixed = pipeline.config().fixed_frames.is_some(),
                max_frames_in_flight = pipeline.config().max_frames,
                "worker started; frames flow through one pipeline"
            ),
            None => tracing::info!(
                batches_in_flight = self.settings.worker.batch_slots(),
                frame_concurrency = self.settings.worker.frame_concurrency,
                "worker started; batches scheduled one by one"
            ),
        }
        loop {
            // Cancellation only between receives: wait for a free slot or the signal.
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit?,
            };
            // With the pipeline, receive only to keep its few batches waiting ahead.
            let mut free = 1 + slots.available_permits();
            if let Some(pipeline) = &self.pipeline {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    () = pipeline.wait_for_room_ahead() => {}
                }
                free = free.min(pipeline.room_ahead().max(1));
            }
            let frames = self.frames.clone();
            let mut receive =
                Box::pin(async move { frames.receive(free.min(10) as i32, RECEIVE_WAIT).await });
            let received = tokio::select! {
                _ = shutdown.cancelled() => {
                    pending_receive = Some(receive);
                    break;
                }
                received = &mut receive => received,
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
            if shutdown.is_cancelled() {
                // Received as the signal came: hand back, do not start.
                counters.add(&counters.released, self.release_all(messages).await);
                break;
            }
            tracing::debug!(received = messages.len(), "received");
            let mut first = Some(first);
            for message in messages {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => slots.clone().acquire_owned().await?,
                };
                let ticket = self.pipeline.as_ref().map(Pipeline::ticket);
                let worker = self.clone();
                let shutdown = shutdown.clone();
                let abandon = abandon.clone();
                let counters = Arc::clone(&counters);
                tracker.spawn(async move {
                    let _permit = permit;
                    let receipt = message.receipt_handle().unwrap_or_default().to_string();
                    match abandon
                        .run_until_cancelled(worker.handle_message(message, ticket))
                        .await
                    {
                        Some(Handled::Done(_)) => {
                            counters.add(&counters.handled, 1);
                            if shutdown.is_cancelled() {
                                counters.add(&counters.drained, 1);
                            }
                        }
                        Some(Handled::Retry | Handled::Rejected) => {}
                        None => {
                            counters.add(&counters.abandoned, 1);
                            worker.release(&receipt).await;
                        }
                    }
                });
            }
        }
        tracker.close();
        // Validated at start-up; a budget that does not fit cannot reach here.
        let drain = self
            .settings
            .worker
            .stop_budget()
            .map_or(Duration::from_secs(1), |budget| budget.drain);
        tracing::info!(in_flight = tracker.len(), "draining");
        let drained = async {
            if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
                tracing::warn!(
                    in_flight = tracker.len(),
                    "drain timed out; handing unfinished batches back for redelivery"
                );
                abandon.cancel();
                tracker.wait().await;
            }
        };
        let released = async {
            match pending_receive {
                Some(receive) => match receive.await {
                    Ok(messages) => self.release_all(messages).await,
                    Err(error) => {
                        tracing::warn!(%error, "the receive in flight at shutdown failed");
                        0
                    }
                },
                None => 0,
            }
        };
        let ((), released) = tokio::join!(drained, released);
        counters.add(&counters.released, released);
        let summary = counters.summary();
        tracing::info!(?summary, "worker stopped");
        Ok(summary)
    }

    /// Hands `messages` back to the queue at once; returns how many.
    async fn release_all(&self, messages: Vec<aws_sdk_sqs::types::Message>) -> usize {
        let count = messages.len();
        futures::future::join_all(
            messages
                .iter()
                .map(|m| self.release(m.receipt_handle().unwrap_or_default())),
        )
        .await;
        if count > 0 {
            tracing::info!(count, "stopping; batches handed back to the queue");
        }
        count
    }

    /// Makes one message visible to other workers now.
    async fn release(&self, receipt: &str) {
        if let Err(error) = self.frames.set_visibility(receipt, Duration::ZERO).await {
            tracing::warn!(%error, "cannot hand a batch back; it is redelivered after its visibility timeout");
        }
    }

    /// Receives once (up to `max` batches, waiting up to `wait`) and handles every batch.
    pub async fn run_once(&self, max: usize, wait: Duration) -> Result<Outcome, QueueError> {
        let messages = self.frames.receive(max.clamp(1, 10) as i32, wait).await?;
        let results =
            futures::future::join_all(messages.into_iter().map(|m| self.handle_message(m, None)))
                .await;
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

    async fn handle_message(
        &self,
        message: aws_sdk_sqs::types::Message,
        ticket: Option<Ticket>,
    ) -> Handled {
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
        if let Some(waited) = sent_at(&message).and_then(|sent| sent.elapsed().ok()) {
            metrics::queue_wait(waited);
        }
        let _in_flight = metrics::InFlight::start(batch.frame_keys.len());
        let traceparent = string_attribute(&message, propagation::TRACEPARENT);
        let work = self
            .processor
            .process_in_trace(&batch, redelivered, traceparent, ticket);
        // Heartbeat at half the queue's timeout (ChangeMessageVisibility restarts the clock).
        let result = framefleet_core::lease::hold_while(
            work,
            &self.frames,
            &receipt,
            self.visibility,
            self.visibility / 2,
        )
        .await;
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
