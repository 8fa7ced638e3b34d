//! `dispatcher redrive <queue>`: the supported way back from a dead-letter queue (see
//! [`framefleet_core::redrive`] for why it cannot count anything twice).

use framefleet_core::aws::{queue_url, AwsClients};

use crate::settings::DispatcherSettings;

/// A framefleet queue with a DLQ (`<queue>-dlq`, as `framefleet-provision` and the template
/// name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueKind {
    /// S3 notifications of uploads.
    Ingress,
    /// MediaConvert job state changes.
    JobEvents,
    /// Frame batches.
    Frames,
}

/// Moves the DLQ's messages (at most `max`) back to the queue and prints how many moved.
pub async fn run(
    settings: &DispatcherSettings,
    clients: &AwsClients,
    queue: QueueKind,
    max: Option<usize>,
) -> anyhow::Result<()> {
    let r = &settings.resources;
    let name = match queue {
        QueueKind::Ingress => &r.ingress_queue,
        QueueKind::JobEvents => &r.job_events_queue,
        QueueKind::Frames => &r.frames_queue,
    };
    let target = queue_url(&clients.sqs, name).await?;
    let dlq = queue_url(&clients.sqs, &format!("{name}-dlq")).await?;
    let moved = framefleet_core::redrive::redrive(&clients.sqs, &dlq, &target, max).await?;
    tracing::info!(moved, from = %dlq, to = %target, "redrive done");
    println!("{moved}");
    Ok(())
}
