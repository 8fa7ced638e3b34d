//! Moving messages from a dead-letter queue back to the queue they came from, after the cause
//! is fixed. Safe to run at any time: every message framefleet handles is idempotent (a batch is
//! counted once by its marker, a registration is a conditional put, job status only moves
//! forward), so a message that is moved back and handled again cannot count anything twice.
//!
//! SQS's own redrive (`StartMessageMoveTask`) does the same on AWS; this works against any SQS
//! API, emulators included, and reports what it moved. Each message is sent to the source queue
//! before it is deleted from the DLQ, so a crash in between leaves a duplicate, never a loss.

use std::time::Duration;

use aws_sdk_sqs::Client;

use crate::aws::{describe, is_transient};
use crate::queue::QueueError;

/// Moves up to `max` messages (all, when `None`) from `dlq_url` to `queue_url`, keeping their
/// bodies and message attributes; returns how many were moved.
pub async fn redrive(
    sqs: &Client,
    dlq_url: &str,
    queue_url: &str,
    max: Option<usize>,
) -> Result<usize, QueueError> {
    let error = |operation: &'static str, url: &str, message: String, retryable: bool| QueueError {
        queue_url: url.to_string(),
        operation,
        message,
        retryable,
    };
    let mut moved = 0;
    while max.is_none_or(|max| moved < max) {
        let out = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            // Long enough to send and delete; a crash returns them to the DLQ.
            .visibility_timeout(60)
            .send()
            .await
            .map_err(|e| error("receive", dlq_url, describe(&e), is_transient(&e)))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            if max.is_some_and(|max| moved >= max) {
                // Hand it back at once rather than leave it invisible.
                let _ = sqs
                    .change_message_visibility()
                    .queue_url(dlq_url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .visibility_timeout(0)
                    .send()
                    .await;
                continue;
            }
            sqs.send_message()
                .queue_url(queue_url)
                .message_body(message.body().unwrap_or_default())
                .set_message_attributes(message.message_attributes().cloned())
                .send()
                .await
                .map_err(|e| error("send", queue_url, describe(&e), is_transient(&e)))?;
            sqs.delete_message()
                .queue_url(dlq_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| error("delete", dlq_url, describe(&e), is_transient(&e)))?;
            moved += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(moved)
}
