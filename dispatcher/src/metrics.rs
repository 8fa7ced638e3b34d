//! The dispatcher's OpenTelemetry instruments: jobs registered and failed, batches sent.
//! Attributes stay small-cardinality (the stage a job failed in, never a video id).
//!
//! Instruments come from the global meter provider the first time they are used (after
//! `telemetry::init`); without one they are no-ops.

use std::sync::OnceLock;

use opentelemetry::metrics::Counter;
use opentelemetry::KeyValue;

struct Instruments {
    jobs_registered: Counter<u64>,
    jobs_failed: Counter<u64>,
    batches_sent: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("framefleet-dispatcher");
        Instruments {
            jobs_registered: meter
                .u64_counter("framefleet.jobs.registered")
                .with_unit("{job}")
                .with_description("Uploads registered as new jobs")
                .build(),
            jobs_failed: meter
                .u64_counter("framefleet.jobs.failed")
                .with_unit("{job}")
                .with_description("Jobs moved to FAILED, by the stage that failed them")
                .build(),
            batches_sent: meter
                .u64_counter("framefleet.batches.sent")
                .with_unit("{batch}")
                .with_description("Frame batches put on the frames queue (re-sends included)")
                .build(),
        }
    })
}

/// A new job.
pub(crate) fn jobs_registered() {
    instruments().jobs_registered.add(1, &[]);
}

/// A job this dispatcher moved to FAILED; `stage` is `register`, `capture` or `reconcile`.
pub(crate) fn job_failed(stage: &'static str) {
    instruments()
        .jobs_failed
        .add(1, &[KeyValue::new("stage", stage)]);
}

/// Batches put on the frames queue.
pub(crate) fn batches_sent(count: usize) {
    instruments().batches_sent.add(count as u64, &[]);
}
