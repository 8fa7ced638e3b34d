//! The worker's OpenTelemetry instruments. Attributes stay small-cardinality (an S3 operation
//! and its outcome, never a video id), so a fleet's series stay few.
//!
//! Frames are counted when the batch is counted and only then: a redelivery of a batch that was
//! already counted adds to `framefleet.batches.redelivered` and to nothing else, so the frame
//! counters of a job add up exactly to its record's `processed_frames` and `failed_frames`.
//!
//! Instruments come from the global meter provider the first time they are used (after
//! `telemetry::init`); without one they are no-ops.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use opentelemetry::KeyValue;

/// Bucket bounds in seconds, from a fast S3 request to a slow job stage.
const SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Bucket bounds in seconds for waits and whole jobs, up to an hour.
const LONG_SECONDS: [f64; 13] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

struct Instruments {
    frames_processed: Counter<u64>,
    frames_failed: Counter<u64>,
    batches_counted: Counter<u64>,
    batches_redelivered: Counter<u64>,
    kernel_duration: Histogram<f64>,
    s3_duration: Histogram<f64>,
    queue_wait: Histogram<f64>,
    batches_in_flight: UpDownCounter<i64>,
    frames_in_flight: UpDownCounter<i64>,
    jobs_completed: Counter<u64>,
    job_duration: Histogram<f64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("framefleet-worker");
        Instruments {
            frames_processed: meter
                .u64_counter("framefleet.frames.processed")
                .with_unit("{frame}")
                .with_description("Frames turned into edge maps, counted with their batch")
                .build(),
            frames_failed: meter
                .u64_counter("framefleet.frames.failed")
                .with_unit("{frame}")
                .with_description("Frames that could not be processed, counted with their batch")
                .build(),
            batches_counted: meter
                .u64_counter("framefleet.batches.counted")
                .with_unit("{batch}")
                .with_description("Batches this delivery counted")
                .build(),
            batches_redelivered: meter
                .u64_counter("framefleet.batches.redelivered")
                .with_unit("{batch}")
                .with_description("Deliveries of batches found already counted")
                .build(),
            kernel_duration: meter
                .f64_histogram("framefleet.kernel.duration")
                .with_unit("s")
                .with_description("Decode, edge kernel and encode time of one frame")
                .with_boundaries(SECONDS.to_vec())
                .build(),
            s3_duration: meter
                .f64_histogram("framefleet.s3.request.duration")
                .with_unit("s")
                .with_description("S3 request latency, by operation and outcome")
                .with_boundaries(SECONDS.to_vec())
                .build(),
            queue_wait: meter
                .f64_histogram("framefleet.batch.queue_wait")
                .with_unit("s")
                .with_description("Time from sending a batch to this receive (SentTimestamp)")
                .with_boundaries(LONG_SECONDS.to_vec())
                .build(),
            batches_in_flight: meter
                .i64_up_down_counter("framefleet.batches.in_flight")
                .with_unit("{batch}")
                .with_description("Batches being processed")
                .build(),
            frames_in_flight: meter
                .i64_up_down_counter("framefleet.frames.in_flight")
                .with_unit("{frame}")
                .with_description("Frames of the batches being processed")
                .build(),
            jobs_completed: meter
                .u64_counter("framefleet.jobs.completed")
                .with_unit("{job}")
                .with_description("Jobs that reached COMPLETE")
                .build(),
            job_duration: meter
                .f64_histogram("framefleet.job.duration")
                .with_unit("s")
                .with_description("From registration of the upload to COMPLETE")
                .with_boundaries(LONG_SECONDS.to_vec())
                .build(),
        }
    })
}

/// A batch this delivery counted, with its frames.
pub(crate) fn batch_counted(processed: u64, failed: u64) {
    let m = instruments();
    m.batches_counted.add(1, &[]);
    m.frames_processed.add(processed, &[]);
    m.frames_failed.add(failed, &[]);
}

/// A delivery of a batch some earlier delivery counted.
pub(crate) fn batch_redelivered() {
    instruments().batches_redelivered.add(1, &[]);
}

/// One frame's kernel time.
pub(crate) fn kernel_time(elapsed: Duration) {
    instruments()
        .kernel_duration
        .record(elapsed.as_secs_f64(), &[]);
}

/// One S3 request: `operation` as the API names it, and whether it succeeded.
pub(crate) fn s3_request(operation: &'static str, ok: bool, elapsed: Duration) {
    instruments().s3_duration.record(
        elapsed.as_secs_f64(),
        &[
            KeyValue::new("operation", operation),
            KeyValue::new("outcome", if ok { "ok" } else { "error" }),
        ],
    );
}

/// How long a batch waited in the queue before this receive.
pub(crate) fn queue_wait(waited: Duration) {
    instruments().queue_wait.record(waited.as_secs_f64(), &[]);
}

/// A job completed `duration` after its registration (when known).
pub(crate) fn job_completed(duration: Option<Duration>) {
    let m = instruments();
    m.jobs_completed.add(1, &[]);
    if let Some(duration) = duration {
        m.job_duration.record(duration.as_secs_f64(), &[]);
    }
}

/// Counts a batch (and its frames) as in flight until dropped.
pub(crate) struct InFlight {
    frames: i64,
}

impl InFlight {
    /// A batch of `frames` frames starts.
    pub(crate) fn start(frames: usize) -> Self {
        let frames = frames as i64;
        let m = instruments();
        m.batches_in_flight.add(1, &[]);
        m.frames_in_flight.add(frames, &[]);
        Self { frames }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let m = instruments();
        m.batches_in_flight.add(-1, &[]);
        m.frames_in_flight.add(-self.frames, &[]);
    }
}
