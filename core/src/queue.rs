//! SQS helpers the consumers share: long-poll receive, delete, visibility heartbeat, and batched
//! sends that retry the entries SQS refused inside a 200.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;

use crate::aws::{describe, is_transient};
use crate::message::MAX_MESSAGE_BYTES;

/// Entries SQS takes in one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// The most one `SendMessageBatch` may carry, summed over its message bodies. "The maximum
/// allowed individual message size and the maximum total payload size (the sum of the
/// individual lengths of all of the batched messages) are both 256 KiB" ("SendMessageBatch",
/// Amazon SQS API Reference,
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html>).
/// AWS raised both to 1 MiB in 2025; we keep the older limit that emulators still apply.
pub const MAX_BATCH_PAYLOAD_BYTES: usize = MAX_MESSAGE_BYTES;

/// The size SQS counts for a String message attribute: "Each message attribute consists of a
/// Name, Type, and Value", and all of them count toward the message size ("Amazon SQS message
/// attributes", Amazon SQS Developer Guide,
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-message-metadata.html>).
pub fn string_attribute_bytes(name: &str, value: &str) -> usize {
    name.len() + "String".len() + value.len()
}

/// Splits `bodies` into runs SQS accepts in one call: at most [`MAX_BATCH_ENTRIES`] messages
/// whose sizes (body plus `attribute_bytes`, the message attributes every message carries) sum
/// to at most [`MAX_BATCH_PAYLOAD_BYTES`], in order. A message too large on its own gets a run
/// of its own (SQS then refuses it with a typed error rather than a whole batch).
pub fn plan_send_batches(bodies: &[String], attribute_bytes: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, body) in bodies.iter().enumerate() {
        let size = body.len() + attribute_bytes;
        let full = i - start >= MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_PAYLOAD_BYTES;
        if i > start && full {
            runs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < bodies.len() {
        runs.push(start..bodies.len());
    }
    runs
}

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
#[error("queue `{queue_url}`: {operation}: {message}")]
pub struct QueueError {
    /// The queue.
    pub queue_url: String,
    /// The operation.
    pub operation: &'static str,
    /// Code and message.
    pub message: String,
    /// True when a retry may succeed.
    pub retryable: bool,
}

impl QueueError {
    /// True when a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// One SQS queue, by URL.
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    url: String,
}

impl Queue {
    /// The queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn sdk_error<E, R>(
        &self,
        operation: &'static str,
        error: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> QueueError
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + crate::aws::HasStatus,
    {
        QueueError {
            queue_url: self.url.clone(),
            operation,
            message: describe(error),
            retryable: is_transient(error),
        }
    }

    /// Long-polls for up to `max` messages (1..=10), waiting at most `wait`.
    pub async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
            )
            // The trace a batch belongs to (see `telemetry::propagation`).
            .message_attribute_names(crate::telemetry::propagation::TRACEPARENT)
            .send()
            .await
            .map_err(|e| self.sdk_error("receive", &e))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Deletes a handled message.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.sdk_error("delete", &e))
    }

    /// Restarts the message's visibility clock at `timeout` from now (0 releases it).
    pub async fn set_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(timeout.as_secs().min(43_200) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.sdk_error("change_visibility", &e))
    }

    /// The queue's visibility timeout, for heartbeats.
    pub async fn visibility_timeout(&self) -> Result<Duration, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| self.sdk_error("get_attributes", &e))?;
        let secs = out
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout))
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        Ok(Duration::from_secs(secs))
    }

    /// Sends every body, up to ten and 256 KiB per request ([`plan_send_batches`]), retrying
    /// entries SQS refused (with backoff) until all are accepted or `attempts` run out. With a
    /// `traceparent`, every message carries it as the String attribute `traceparent`, so the
    /// consumer's spans join the sender's trace.
    pub async fn send_all(
        &self,
        bodies: &[String],
        traceparent: Option<&str>,
        attempts: u32,
    ) -> Result<(), QueueError> {
        use crate::telemetry::propagation::TRACEPARENT;
        let attribute = traceparent.map(|value| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("data type is set")
        });
        let attribute_bytes =
            traceparent.map_or(0, |value| string_attribute_bytes(TRACEPARENT, value));
        for (chunk_index, run) in plan_send_batches(bodies, attribute_bytes)
            .into_iter()
            .enumerate()
        {
            // Each request sent is progress: a long fan-out keeps its loop healthy.
            crate::health::progress();
            let chunk = &bodies[run];
            let mut pending: Vec<(String, &String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| (format!("m{chunk_index}-{i}"), body))
                .collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body.as_str())
                            .set_message_attributes(
                                attribute
                                    .clone()
                                    .map(|a| HashMap::from([(TRACEPARENT.to_string(), a)])),
                            )
                            .build()
                            .expect("id and body are set")
                    })
                    .collect();
                let result = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
                let last_error = match result {
                    Ok(out) => {
                        let refused: Vec<(String, String, bool)> = out
                            .failed()
                            .iter()
                            .map(|f| {
                                (
                                    f.id().to_string(),
                                    format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                                    f.sender_fault(),
                                )
                            })
                            .collect();
                        if let Some((_, message, true)) = refused.iter().find(|r| r.2) {
                            return Err(QueueError {
                                queue_url: self.url.clone(),
                                operation: "send_batch",
                                message: message.clone(),
                                retryable: false,
                            });
                        }
                        pending.retain(|(id, _)| refused.iter().any(|r| &r.0 == id));
                        refused.into_iter().next().map(|r| (r.1, true))
                    }
                    Err(e) => Some((describe(&e), is_transient(&e))),
                };
                if let Some((message, retryable)) = last_error {
                    if !retryable || attempt >= attempts {
                        return Err(QueueError {
                            queue_url: self.url.clone(),
                            operation: "send_batch",
                            message,
                            retryable,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                }
            }
        }
        Ok(())
    }
}

/// How many times a message has been received, from its system attributes.
pub fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The value of the String message attribute `name`, if the message has it.
pub fn string_attribute<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
}

/// When SQS accepted the message (`SentTimestamp`, epoch milliseconds), if it says.
pub fn sent_at(message: &Message) -> Option<std::time::SystemTime> {
    message
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(bodies: &[String]) -> Vec<Vec<usize>> {
        plan_send_batches(bodies, 0)
            .into_iter()
            .map(|run| bodies[run].iter().map(String::len).collect())
            .collect()
    }

    fn body(len: usize) -> String {
        "x".repeat(len)
    }

    #[test]
    fn small_bodies_go_ten_per_call() {
        let bodies: Vec<String> = (0..23).map(|_| body(100)).collect();
        let runs = plan_send_batches(&bodies, 0);
        assert_eq!(runs, [0..10, 10..20, 20..23]);
    }

    #[test]
    fn calls_stay_within_the_total_payload_limit() {
        // Ten bodies of 30 KiB are 300 KiB: one call would be refused as BatchRequestTooLong.
        let bodies: Vec<String> = (0..25).map(|i| body(30 * 1024 + i)).collect();
        let runs = plan_send_batches(&bodies, 0);
        let mut next = 0;
        for run in &runs {
            assert_eq!(run.start, next, "in order, nothing skipped");
            next = run.end;
            let total: usize = bodies[run.clone()].iter().map(String::len).sum();
            assert!(total <= MAX_BATCH_PAYLOAD_BYTES, "{run:?}: {total}");
            assert!(run.len() <= MAX_BATCH_ENTRIES);
        }
        assert_eq!(next, bodies.len());
        // Eight fit (240 KiB + a little), the ninth would not.
        assert_eq!(runs[0], 0..8);
    }

    #[test]
    fn exactly_at_the_limit_fits_and_one_byte_more_splits() {
        let half = MAX_BATCH_PAYLOAD_BYTES / 2;
        assert_eq!(sizes(&[body(half), body(half)]), [vec![half, half]]);
        assert_eq!(
            sizes(&[body(half), body(half + 1)]),
            [vec![half], vec![half + 1]]
        );
    }

    #[test]
    fn an_oversized_body_travels_alone_and_nothing_is_empty() {
        let big = MAX_BATCH_PAYLOAD_BYTES + 1;
        assert_eq!(
            sizes(&[body(10), body(big), body(10)]),
            [vec![10], vec![big], vec![10]]
        );
        assert!(plan_send_batches(&[], 0).is_empty());
    }

    #[test]
    fn message_attributes_count_toward_the_payload() {
        // Two bodies that fit exactly stop fitting once each carries a traceparent.
        let half = MAX_BATCH_PAYLOAD_BYTES / 2;
        let bodies = [body(half), body(half)];
        assert_eq!(plan_send_batches(&bodies, 0), vec![0..2]);
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let extra = string_attribute_bytes("traceparent", traceparent);
        assert_eq!(extra, 11 + 6 + 55);
        assert_eq!(plan_send_batches(&bodies, extra), [0..1, 1..2]);
    }
}
