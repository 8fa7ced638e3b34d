//! Holding an SQS message while it is worked on. `ChangeMessageVisibility` restarts the clock
//! from the call, so extending the timeout every half period keeps a long piece of work (a
//! batch of frames, a fan-out of thousands of batches) invisible to other consumers until it
//! ends, however long it takes.
//! See <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html>.

use std::future::Future;
use std::time::Duration;

use crate::queue::Queue;

/// Runs `work` while setting the message's visibility to `visibility` from now, every `every`
/// (which must be shorter than both `visibility` and the queue's own timeout for the first
/// extension to come in time). A failed extension is logged: the work goes on, and at worst the
/// message is redelivered, which every handler tolerates.
pub async fn hold_while<F: Future>(
    work: F,
    queue: &Queue,
    receipt: &str,
    visibility: Duration,
    every: Duration,
) -> F::Output {
    let period = every.max(Duration::from_secs(1));
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
