//! The dispatcher service: two long-poll loops, one on the ingress queue and one on the
//! job-events queue. Each message ends in one of three ways: handled (deleted), left for
//! redelivery (a transient error), or released at once so the redrive policy moves it to the
//! DLQ after a few receives (a message that can never be handled).

use std::sync::Arc;
use std::time::Duration;

use framefleet_core::aws::{queue_url, AwsClients};
use framefleet_core::health::Heartbeat;
use framefleet_core::jobs::JobTable;
use framefleet_core::queue::{receive_count, Queue};
use framefleet_edge::EdgeParams;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::error::DispatchError;
use crate::settings::DispatcherSettings;

/// What one receive-and-handle round did, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Messages received.
    pub received: usize,
    /// Messages handled and deleted.
    pub handled: usize,
    /// Messages left for redelivery after a transient error.
    pub retried: usize,
    /// Messages released towards the DLQ.
    pub rejected: usize,
}

impl Outcome {
    fn add(&mut self, other: Outcome) {
        self.received += other.received;
        self.handled += other.handled;
        self.retried += other.retried;
        self.rejected += other.rejected;
    }
}

/// Which queue a loop consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// S3 notifications of uploads.
    Ingress,
    /// MediaConvert job state changes.
    JobEvents,
}

/// The dispatcher. Cheap to clone; clones share clients.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) settings: DispatcherSettings,
    pub(crate) clients: AwsClients,
    pub(crate) jobs: JobTable,
    pub(crate) ingress: Queue,
    pub(crate) job_events: Queue,
    pub(crate) frames: Queue,
    pub(crate) params: EdgeParams,
    heartbeat: Heartbeat,
}

impl Dispatcher {
    /// Resolves the queues and builds the dispatcher. `settings` must be validated.
    pub async fn new(settings: DispatcherSettings, clients: AwsClients) -> anyhow::Result<Self> {
        let r = &settings.resources;
        let ingress = Queue::new(
            clients.sqs.clone(),
            queue_url(&clients.sqs, &r.ingress_queue).await?,
        );
        let job_events = Queue::new(
            clients.sqs.clone(),
            queue_url(&clients.sqs, &r.job_events_queue).await?,
        );
        let frames = Queue::new(
            clients.sqs.clone(),
            queue_url(&clients.sqs, &r.frames_queue).await?,
        );
        let jobs = JobTable::new(clients.dynamodb.clone(), &r.jobs_table);
        let params = settings.kernel.params();
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                clients,
                jobs,
                ingress,
                job_events,
                frames,
                params,
                heartbeat: Heartbeat::new("dispatcher"),
            }),
        })
    }

    /// Runs both loops until `shutdown`; in-flight messages finish first.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!("dispatcher started");
        let ingress = self.clone().run_loop(Feed::Ingress, shutdown.clone());
        let events = self.clone().run_loop(Feed::JobEvents, shutdown.clone());
        tokio::join!(ingress, events);
        tracing::info!("dispatcher stopped");
        Ok(())
    }

    async fn run_loop(self, feed: Feed, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let round = tokio::select! {
                _ = shutdown.cancelled() => break,
                round = self.run_once(feed, Duration::from_secs(20)) => round,
            };
            self.inner.heartbeat.beat();
            match round {
                Ok(_) => backoff = Duration::from_millis(200),
                Err(error) => {
                    tracing::warn!(?feed, error = %error, "receive failed; backing off");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Receives once from `feed` (waiting up to `wait`) and handles what arrived.
    pub async fn run_once(
        &self,
        feed: Feed,
        wait: Duration,
    ) -> Result<Outcome, framefleet_core::queue::QueueError> {
        let queue = match feed {
            Feed::Ingress => &self.inner.ingress,
            Feed::JobEvents => &self.inner.job_events,
        };
        let messages = queue.receive(10, wait).await?;
        let concurrency = self.inner.settings.dispatcher.concurrency;
        let handlers: Vec<_> = messages
            .into_iter()
            .map(|message| self.handle_message(feed, queue, message))
            .collect();
        let outcomes: Vec<Outcome> = futures::stream::iter(handlers)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut total = Outcome::default();
        for outcome in outcomes {
            total.add(outcome);
        }
        Ok(total)
    }

    async fn handle_message(
        &self,
        feed: Feed,
        queue: &Queue,
        message: aws_sdk_sqs::types::Message,
    ) -> Outcome {
        let mut outcome = Outcome {
            received: 1,
            ..Outcome::default()
        };
        let body = message.body().unwrap_or_default();
        let receipt = message.receipt_handle().unwrap_or_default();
        let message_id = message.message_id().unwrap_or_default();
        let result = match feed {
            Feed::Ingress => self.handle_ingress(body).await,
            Feed::JobEvents => self.handle_job_event(body).await,
        };
        match result {
            Ok(()) => match queue.delete(receipt).await {
                Ok(()) => outcome.handled = 1,
                Err(error) => {
                    tracing::warn!(message_id, %error, "handled but not deleted; it will be redelivered");
                    outcome.retried = 1;
                }
            },
            Err(error) if error.is_retryable() => {
                tracing::warn!(message_id, ?feed, error = %error, "transient failure; leaving the message for redelivery");
                outcome.retried = 1;
            }
            Err(error) => {
                tracing::error!(
                    message_id,
                    ?feed,
                    receive_count = receive_count(&message),
                    error = %error,
                    "message cannot be handled; releasing it towards the DLQ"
                );
                if let Err(release) = queue.set_visibility(receipt, Duration::ZERO).await {
                    tracing::warn!(message_id, error = %release, "cannot release message");
                }
                outcome.rejected = 1;
            }
        }
        outcome
    }

    /// Handles one ingress message body.
    pub async fn handle_ingress(&self, body: &str) -> Result<(), DispatchError> {
        crate::ingress::handle(&self.inner, body).await
    }

    /// Handles one job-events message body.
    pub async fn handle_job_event(&self, body: &str) -> Result<(), DispatchError> {
        crate::fanout::handle(&self.inner, body).await
    }
}
