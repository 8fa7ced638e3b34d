//! The dispatcher service: two long-poll loops, one on the ingress queue and one on the
//! job-events queue. Each message ends in one of three ways: handled (deleted), left for
//! redelivery (a transient error), or released at once so the redrive policy moves it to the
//! DLQ after a few receives (a message that can never be handled).
//!
//! Every message is handled on a task of its own, holding one of `dispatcher.concurrency`
//! slots: a handler that panics fails its message only (released towards the DLQ), a handler
//! that runs past `dispatcher.handler_timeout_secs` is stopped and its message handed back, and
//! the loop keeps receiving for the free slots meanwhile. While a handler runs, its message's
//! visibility is extended ([`framefleet_core::lease`]), so a long fan-out is never picked up by a
//! second dispatcher. On shutdown a loop finishes the receive call under way (SQS may already
//! have handed it messages, which would otherwise stay invisible for the whole visibility
//! timeout), stops receiving, and gives in-flight handlers the drain its stop budget leaves
//! ([`DispatcherSettings::stop_budget`]: `dispatcher.stop_timeout_secs`, the container's stop
//! timeout, less the long poll and an exit margin), so it exits before ECS sends SIGKILL.
//!
//! Each loop beats its heartbeat after every receive, and its handlers beat it at every step of
//! their work ([`framefleet_core::health::progress`]): a loop whose slots are all taken by long
//! handlers (a multi-gigabyte pin, a fan-out of thousands of batches) stays healthy while they
//! progress, and turns unhealthy when they stall.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use framefleet_core::aws::{queue_url, AwsClients};
use framefleet_core::health::Heartbeat;
use framefleet_core::jobs::JobTable;
use framefleet_core::queue::{receive_count, Queue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::Inner;
use crate::error::DispatchError;
use crate::settings::DispatcherSettings;

/// What one receive-and-handle round did, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Messages received.
    pub received: usize,
    /// Messages handled and deleted.
    pub handled: usize,
    /// Messages left for redelivery after a transient error or a handler timeout.
    pub retried: usize,
    /// Messages released towards the DLQ (cannot be handled, or their handler panicked).
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

impl Feed {
    /// The name of this loop's heartbeat, which `dispatcher healthcheck` checks.
    pub fn heartbeat_name(self) -> &'static str {
        match self {
            Self::Ingress => "dispatcher-ingress",
            Self::JobEvents => "dispatcher-job-events",
        }
    }
}

/// Every loop's heartbeat, for the healthcheck.
pub const HEARTBEATS: [&str; 4] = [
    "dispatcher-ingress",
    "dispatcher-job-events",
    "dispatcher-reconciler",
    crate::scaler::HEARTBEAT,
];

/// The dispatcher. Cheap to clone; clones share clients.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub(crate) inner: Arc<Inner>,
    /// Where the loops' heartbeat files are (the temporary directory, which `dispatcher
    /// healthcheck` reads).
    heartbeat_dir: Arc<std::path::Path>,
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
            }),
            heartbeat_dir: std::env::temp_dir().into(),
        })
    }

    /// The same dispatcher writing its heartbeats in `dir`, so a test can check them without
    /// sharing the temporary directory with other tests.
    pub fn with_heartbeat_dir(mut self, dir: &std::path::Path) -> Self {
        self.heartbeat_dir = dir.into();
        self
    }

    /// The heartbeat of the loop named `name` (one of [`HEARTBEATS`]).
    pub(crate) fn heartbeat(&self, name: &str) -> Heartbeat {
        Heartbeat::in_dir(
            &self.heartbeat_dir,
            name,
            Duration::from_secs(self.inner.settings.dispatcher.heartbeat_max_age_secs),
        )
    }

    /// The handlers' grace after shutdown (validated at start-up).
    fn drain(&self) -> Duration {
        self.inner
            .settings
            .stop_budget()
            .map_or(Duration::from_secs(1), |budget| budget.drain)
    }

    /// Runs both loops until `shutdown`, then drains in-flight messages.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!("dispatcher started");
        let ingress = self.clone().run_loop(Feed::Ingress, shutdown.clone());
        let events = self.clone().run_loop(Feed::JobEvents, shutdown.clone());
        let reconciler = self.clone().run_reconciler(shutdown.clone());
        let scaler = self.clone().run_scaler(shutdown.clone());
        tokio::join!(ingress, events, reconciler, scaler);
        tracing::info!("dispatcher stopped");
        Ok(())
    }

    fn queue(&self, feed: Feed) -> &Queue {
        match feed {
            Feed::Ingress => &self.inner.ingress,
            Feed::JobEvents => &self.inner.job_events,
        }
    }

    async fn run_loop(self, feed: Feed, shutdown: CancellationToken) {
        let config = &self.inner.settings.dispatcher;
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let mut handlers = JoinSet::new();
        let heartbeat = self.heartbeat(feed.heartbeat_name());
        let mut backoff = Duration::from_millis(200);
        loop {
            // Wait for a free slot; cancellation only between receives.
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let free = (1 + slots.available_permits()).min(10);
            // Not raced against shutdown: see the module docs.
            let received = self
                .queue(feed)
                .receive(free as i32, Duration::from_secs(config.poll_wait_secs))
                .await;
            heartbeat.beat();
            let messages = match received {
                Ok(messages) => {
                    backoff = Duration::from_millis(200);
                    messages
                }
                Err(error) => {
                    drop(first);
                    tracing::warn!(?feed, %error, "receive failed; backing off");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            // Reap finished handlers so the set does not grow with the service's age.
            while handlers.try_join_next().is_some() {}
            let mut first = Some(first);
            for message in messages {
                let permit = match first.take() {
                    Some(permit) => permit,
                    // Received no more than the free slots, so this does not wait long.
                    None => match slots.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                let this = self.clone();
                handlers.spawn(async move {
                    let _permit: OwnedSemaphorePermit = permit;
                    this.handle_message(feed, message).await;
                });
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        let drain = self.drain();
        if !handlers.is_empty() {
            tracing::info!(?feed, in_flight = handlers.len(), "draining");
        }
        let drained = tokio::time::timeout(drain, async {
            while handlers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?feed,
                in_flight = handlers.len(),
                "drain timed out; stopping the handlers left, their messages will be redelivered"
            );
            handlers.shutdown().await;
        }
    }

    async fn run_reconciler(self, shutdown: CancellationToken) {
        let config = &self.inner.settings.reconcile;
        let heartbeat = self.heartbeat(HEARTBEATS[2]);
        let mut ticker = tokio::time::interval(Duration::from_secs(config.interval_secs));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if !config.enabled {
                heartbeat.beat();
                continue;
            }
            // Every action of a pass is safe to cut off and repeat: a pass under way at
            // shutdown gets the drain, like a handler, and is dropped after it. Each job it
            // reconciles beats the heartbeat, so a long pass keeps the loop healthy.
            let pass = heartbeat.scope(Box::pin(self.reconcile_once()));
            let cut_off = async {
                shutdown.cancelled().await;
                tokio::time::sleep(self.drain()).await;
            };
            let result = tokio::select! {
                result = pass => result,
                () = cut_off => {
                    tracing::warn!("reconciler pass cut off by the drain; the next dispatcher repeats it");
                    break;
                }
            };
            match result {
                Ok(report) if !report.actions.is_empty() => {
                    tracing::info!(
                        examined = report.examined,
                        acted = report.actions.len(),
                        "reconciler pass"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reconciler pass failed; next interval"),
            }
            heartbeat.beat();
        }
    }

    /// One reconciler pass: acts on every job that stopped moving (see [`crate::reconcile`]).
    pub async fn reconcile_once(&self) -> Result<crate::reconcile::ReconcileReport, DispatchError> {
        crate::reconcile::reconcile_once(&self.inner).await
    }

    /// Receives once from `feed` (waiting up to `wait`) and handles what arrived, each message
    /// on its own task as the loop does, waiting for all of them.
    pub async fn run_once(
        &self,
        feed: Feed,
        wait: Duration,
    ) -> Result<Outcome, framefleet_core::queue::QueueError> {
        let messages = self.queue(feed).receive(10, wait).await?;
        let handlers: Vec<_> = messages
            .into_iter()
            .map(|message| {
                let this = self.clone();
                tokio::spawn(async move { this.handle_message(feed, message).await })
            })
            .collect();
        let mut total = Outcome::default();
        for handler in handlers {
            // handle_message catches the handler's own panics; this one cannot panic.
            total.add(handler.await.unwrap_or_default());
        }
        Ok(total)
    }

    /// Handles one message on a task of its own and settles it: deleted, left, or released.
    async fn handle_message(&self, feed: Feed, message: Message) -> Outcome {
        let mut outcome = Outcome {
            received: 1,
            ..Outcome::default()
        };
        let queue = self.queue(feed).clone();
        let receipt = message.receipt_handle().unwrap_or_default().to_string();
        let message_id = message.message_id().unwrap_or_default().to_string();
        let receives = receive_count(&message);
        let body = message.body().unwrap_or_default().to_string();
        let this = self.clone();
        let lease_queue = queue.clone();
        let lease_receipt = receipt.clone();
        let (lease, lease_every) = self.inner.settings.dispatcher.lease();
        let heartbeat = self.heartbeat(feed.heartbeat_name());
        let work = async move {
            // Held from the start, so the queue's own visibility timeout (however short) never
            // runs out under a running handler.
            if let Err(error) = lease_queue.set_visibility(&lease_receipt, lease).await {
                tracing::warn!(%error, "cannot extend the message's visibility");
            }
            let handling = async {
                match feed {
                    Feed::Ingress => this.handle_ingress(&body).await,
                    Feed::JobEvents => this.handle_job_event(&body).await,
                }
            };
            framefleet_core::lease::hold_while(
                handling,
                &lease_queue,
                &lease_receipt,
                lease,
                lease_every,
            )
            .await
        };
        // The handler's steps beat its loop's heartbeat.
        // Boxed: the handler's future is large, and polling it inline under the scope's
        // future overflows a worker thread's stack in debug builds.
        let work = async move { heartbeat.scope(Box::pin(work)).await };
        let limit = Duration::from_secs(self.inner.settings.dispatcher.handler_timeout_secs);
        let result = supervise(work, limit).await;
        match result {
            Handling::Done(Ok(())) => match queue.delete(&receipt).await {
                Ok(()) => outcome.handled = 1,
                Err(error) => {
                    tracing::warn!(message_id, %error, "handled but not deleted; it will be redelivered");
                    outcome.retried = 1;
                }
            },
            Handling::Done(Err(error)) if error.is_retryable() => {
                tracing::warn!(message_id, ?feed, error = %error, "transient failure; leaving the message for redelivery");
                outcome.retried = 1;
            }
            Handling::Done(Err(error)) => {
                tracing::error!(message_id, ?feed, receive_count = receives, error = %error, "message cannot be handled; releasing it towards the DLQ");
                release(&queue, &receipt, &message_id).await;
                outcome.rejected = 1;
            }
            Handling::Panicked(panic) => {
                tracing::error!(
                    message_id,
                    ?feed,
                    receive_count = receives,
                    panic,
                    "handler panicked (a bug); releasing the message towards the DLQ"
                );
                release(&queue, &receipt, &message_id).await;
                outcome.rejected = 1;
            }
            Handling::TimedOut => {
                tracing::error!(message_id, ?feed, receive_count = receives, limit_secs = limit.as_secs(), "handler ran past dispatcher.handler_timeout_secs; stopped it and handed the message back");
                release(&queue, &receipt, &message_id).await;
                outcome.retried = 1;
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

/// How a supervised handler ended.
#[derive(Debug)]
enum Handling<T> {
    /// It returned.
    Done(T),
    /// It panicked (the panic's message).
    Panicked(String),
    /// It ran past its limit and was stopped.
    TimedOut,
}

/// Runs `work` on a task of its own, so that a panic ends that task only, and stops it after
/// `limit`.
async fn supervise<F>(work: F, limit: Duration) -> Handling<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = tokio::spawn(work);
    let abort = task.abort_handle();
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(output)) => Handling::Done(output),
        Ok(Err(join)) => Handling::Panicked(match join.try_into_panic() {
            Ok(payload) => payload
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into()),
            Err(join) => join.to_string(),
        }),
        Err(_) => {
            abort.abort();
            Handling::TimedOut
        }
    }
}

/// Makes the message visible again at once, so redelivery (and after `maxReceiveCount`
/// receives, the redrive to the DLQ) comes without waiting out the visibility timeout.
async fn release(queue: &Queue, receipt: &str, message_id: &str) {
    if let Err(error) = queue.set_visibility(receipt, Duration::ZERO).await {
        tracing::warn!(message_id, %error, "cannot release message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_fails_alone() {
        let panicking = supervise(
            async {
                let bytes: &[u8] = &[1, 2, 3];
                let end = bytes.len() + usize::from(bytes[0]);
                bytes[..end].len()
            },
            Duration::from_secs(5),
        );
        let healthy = supervise(async { 7 }, Duration::from_secs(5));
        let (panicking, healthy) = tokio::join!(panicking, healthy);
        match panicking {
            Handling::Panicked(message) => assert!(message.contains("out of range"), "{message}"),
            other => panic!("expected a panic, got {other:?}"),
        }
        assert!(matches!(healthy, Handling::Done(7)));
    }

    #[tokio::test]
    async fn a_stuck_handler_is_stopped() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stuck = supervise(
            async move {
                let _dropped_on_abort = tx;
                std::future::pending::<()>().await
            },
            Duration::from_millis(50),
        )
        .await;
        assert!(matches!(stuck, Handling::TimedOut));
        // The task was aborted, not left running: its captured sender is gone.
        assert!(rx.await.is_err());
    }
}
