//! Measuring what one batch uses, for the job's [`Usage`] (see `framefleet_core::usage`).
//!
//! Attribution, per counted delivery of a batch:
//! - S3: every `GetObject` of a frame and every `PutObject` of an edge map or pack this delivery
//!   sent (the SDK's own retries of a failed attempt are not seen here).
//! - SQS: the `SendMessageBatch` that queued it, the `ReceiveMessage` that delivered it and the
//!   `DeleteMessage` that will remove it, each counted as the 64 KiB chunks of its body. Sends
//!   and receives carry up to ten messages per request, so charging each batch a whole request
//!   is an upper bound; visibility heartbeats and empty long polls are the fleet's, not a job's.
//! - DynamoDB: the status read before any frame, the `is_counted` read of a redelivery, the
//!   counting transaction (added by the job table) and the `try_finalize` update that follows
//!   it, counted in advance because it is sent exactly once after a counted transaction.
//! - CPU: the thread CPU time of each frame's kernel call on the blocking pool (the thread's
//!   CPU-time clock read before and after); download, upload, pack building and async
//!   bookkeeping are not included (they are small beside the kernel).

use std::sync::atomic::{AtomicU64, Ordering};

use framefleet_core::usage::{read_units, sqs_requests, write_units, Usage};

/// Counters of one batch delivery, shared by its frames.
#[derive(Debug, Default)]
pub struct BatchMeter {
    s3_get: AtomicU64,
    s3_put: AtomicU64,
    read_units: AtomicU64,
    cpu_ns: AtomicU64,
}

impl BatchMeter {
    /// A `GetObject` was sent.
    pub fn s3_get(&self) {
        self.s3_get.fetch_add(1, Ordering::Relaxed);
    }

    /// A `PutObject` was sent.
    pub fn s3_put(&self) {
        self.s3_put.fetch_add(1, Ordering::Relaxed);
    }

    /// A strongly consistent read of an item of `item_bytes` was sent.
    pub fn dynamodb_read(&self, item_bytes: usize) {
        self.read_units
            .fetch_add(read_units(item_bytes), Ordering::Relaxed);
    }

    /// Kernel work took `nanos` of thread CPU time.
    pub fn cpu(&self, nanos: u64) {
        self.cpu_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The batch's usage, with the SQS requests of a message of `body_bytes` and the
    /// `try_finalize` update of a job item of `job_item_bytes` that follow the count.
    pub fn usage(&self, body_bytes: usize, job_item_bytes: usize) -> Usage {
        Usage {
            s3_get_requests: self.s3_get.load(Ordering::Relaxed),
            s3_put_requests: self.s3_put.load(Ordering::Relaxed),
            // send + receive + delete (a delete carries no body: one request).
            sqs_requests: 2 * sqs_requests(body_bytes) + 1,
            dynamodb_read_units: self.read_units.load(Ordering::Relaxed),
            dynamodb_write_units: write_units(job_item_bytes, false),
            worker_cpu_ms: self.cpu_ns.load(Ordering::Relaxed).div_ceil(1_000_000),
        }
    }
}

/// The job item's size for request units, estimated from the record as JSON (field names and
/// values, a little more than DynamoDB counts, so the estimate errs high).
pub fn job_item_bytes(record: &framefleet_core::jobs::JobRecord) -> usize {
    serde_json::to_vec(record).map_or(1024, |json| json.len())
}

/// CPU time this thread has run, nanoseconds: `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`
/// (POSIX; on Linux the scheduler's runtime of the thread including the slice under way, so a
/// kernel call far shorter than a scheduler tick still shows). `None` where the clock is not
/// available.
pub fn thread_cpu_ns() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Runs `work` and adds the thread CPU time it took to `meter` (nothing when unmeasurable).
pub fn metered<T>(meter: &BatchMeter, work: impl FnOnce() -> T) -> T {
    let before = thread_cpu_ns();
    let result = work();
    if let (Some(before), Some(after)) = (before, thread_cpu_ns()) {
        meter.cpu(after.saturating_sub(before));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_make_a_usage() {
        let meter = BatchMeter::default();
        meter.s3_get();
        meter.s3_get();
        meter.s3_put();
        meter.dynamodb_read(500);
        meter.dynamodb_read(5000);
        meter.cpu(1_500_000);
        let usage = meter.usage(3000, 900);
        assert_eq!(usage.s3_get_requests, 2);
        assert_eq!(usage.s3_put_requests, 1);
        assert_eq!(usage.sqs_requests, 3);
        assert_eq!(usage.dynamodb_read_units, 3);
        assert_eq!(usage.dynamodb_write_units, 1);
        assert_eq!(usage.worker_cpu_ms, 2);
        assert_eq!(meter.usage(200 * 1024, 1500).sqs_requests, 9);
    }

    #[test]
    fn busy_work_shows_as_thread_cpu_time() {
        let meter = BatchMeter::default();
        let sum = metered(&meter, || {
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < std::time::Duration::from_millis(30) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            x
        });
        std::hint::black_box(sum);
        // Spinning 30 ms of wall time is at least some CPU time (never a timing threshold
        // beyond "more than nothing": the thread may be descheduled).
        assert!(meter.usage(1, 1).worker_cpu_ms >= 1);
        let idle = BatchMeter::default();
        metered(&idle, || ());
        assert!(idle.usage(1, 1).worker_cpu_ms <= 1);
    }
}
