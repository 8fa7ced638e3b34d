//! What a job used, in the units AWS bills: requests and request units, and worker CPU time.
//!
//! Workers measure each batch and ADD it to the job item in the batch's counting transaction
//! (see [`crate::jobs`]), so a redelivered batch that was already counted adds nothing: usage is
//! exactly once like the frame counters. It is what the counted delivery of each batch used; a
//! delivery that failed before counting, or a redelivery that found its batch counted, is not
//! attributed (a lower bound under faults, exact on a clean run).

use serde::{Deserialize, Serialize};

/// Counts in billing units. Integers, so DynamoDB's `ADD` sums them exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// S3 GET requests (`GetObject`, ranged or not), priced per 1,000.
    pub s3_get_requests: u64,
    /// S3 PUT requests (`PutObject`), priced per 1,000.
    pub s3_put_requests: u64,
    /// SQS requests, each 64 KiB chunk of a payload counted as one, priced per million.
    pub sqs_requests: u64,
    /// DynamoDB read request units (a strongly consistent read of up to 4 KB is one).
    pub dynamodb_read_units: u64,
    /// DynamoDB write request units (a write of up to 1 KB is one; in a transaction, two).
    pub dynamodb_write_units: u64,
    /// Worker CPU time spent in the edge kernel, milliseconds of thread CPU time.
    pub worker_cpu_ms: u64,
}

impl Usage {
    /// Each count with the name of the job item attribute it is summed in.
    pub fn attributes(&self) -> [(&'static str, u64); 6] {
        [
            ("usage_s3_get_requests", self.s3_get_requests),
            ("usage_s3_put_requests", self.s3_put_requests),
            ("usage_sqs_requests", self.sqs_requests),
            ("usage_dynamodb_read_units", self.dynamodb_read_units),
            ("usage_dynamodb_write_units", self.dynamodb_write_units),
            ("usage_worker_cpu_ms", self.worker_cpu_ms),
        ]
    }

    /// Reads the counts back from attributes named as in [`Usage::attributes`] (missing = 0).
    pub fn from_attributes(get: impl Fn(&str) -> Option<u64>) -> Self {
        let read = |name: &str| get(name).unwrap_or_default();
        Self {
            s3_get_requests: read("usage_s3_get_requests"),
            s3_put_requests: read("usage_s3_put_requests"),
            sqs_requests: read("usage_sqs_requests"),
            dynamodb_read_units: read("usage_dynamodb_read_units"),
            dynamodb_write_units: read("usage_dynamodb_write_units"),
            worker_cpu_ms: read("usage_worker_cpu_ms"),
        }
    }

    /// The sum of two usages.
    #[must_use]
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            s3_get_requests: self.s3_get_requests + other.s3_get_requests,
            s3_put_requests: self.s3_put_requests + other.s3_put_requests,
            sqs_requests: self.sqs_requests + other.sqs_requests,
            dynamodb_read_units: self.dynamodb_read_units + other.dynamodb_read_units,
            dynamodb_write_units: self.dynamodb_write_units + other.dynamodb_write_units,
            worker_cpu_ms: self.worker_cpu_ms + other.worker_cpu_ms,
        }
    }
}

/// SQS bills "each 64 KB chunk of a payload" as one request ("Amazon SQS pricing",
/// <https://aws.amazon.com/sqs/pricing/>): the requests one call carrying `payload_bytes` costs.
pub fn sqs_requests(payload_bytes: usize) -> u64 {
    (payload_bytes.max(1)).div_ceil(64 * 1024) as u64
}

/// DynamoDB write units of writing an item of `item_bytes`: one per KB, rounded up, doubled in a
/// transaction ("Read/write capacity mode", DynamoDB Developer Guide,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadWriteCapacityMode.html>:
/// "transactional write requests require 2 write request units to perform one write for items
/// up to 1 KB").
pub fn write_units(item_bytes: usize, transactional: bool) -> u64 {
    let units = (item_bytes.max(1)).div_ceil(1024) as u64;
    if transactional {
        2 * units
    } else {
        units
    }
}

/// DynamoDB read units of a strongly consistent read of `item_bytes`: one per 4 KB, rounded up
/// (same page as [`write_units`]).
pub fn read_units(item_bytes: usize) -> u64 {
    (item_bytes.max(1)).div_ceil(4 * 1024) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_units_round_up() {
        assert_eq!(sqs_requests(0), 1);
        assert_eq!(sqs_requests(64 * 1024), 1);
        assert_eq!(sqs_requests(64 * 1024 + 1), 2);
        assert_eq!(sqs_requests(256 * 1024), 4);
        assert_eq!(write_units(200, false), 1);
        assert_eq!(write_units(1025, false), 2);
        assert_eq!(write_units(1024, true), 2);
        assert_eq!(write_units(1500, true), 4);
        assert_eq!(read_units(4096), 1);
        assert_eq!(read_units(4097), 2);
    }

    #[test]
    fn attributes_round_trip_and_add() {
        let usage = Usage {
            s3_get_requests: 1,
            s3_put_requests: 2,
            sqs_requests: 3,
            dynamodb_read_units: 4,
            dynamodb_write_units: 5,
            worker_cpu_ms: 6,
        };
        let stored: std::collections::HashMap<&str, u64> = usage.attributes().into_iter().collect();
        let back = Usage::from_attributes(|name| stored.get(name).copied());
        assert_eq!(back, usage);
        assert_eq!(usage.plus(usage).worker_cpu_ms, 12);
        assert_eq!(usage.plus(usage).s3_put_requests, 4);
        assert_eq!(Usage::from_attributes(|_| None), Usage::default());
    }
}
