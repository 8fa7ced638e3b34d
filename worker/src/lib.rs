//! The worker: consumes frame batches from SQS, turns each frame into an edge map with the
//! `framefleet-edge` kernel, writes it to S3, and counts the batch exactly once.
//!
//! - [`settings`]: what it reads at start-up.
//! - [`consumer`]: the long-poll loop, slots, visibility heartbeats, drain on SIGTERM.
//! - [`batch`]: one batch: download, kernel on the blocking pool, upload, count, complete.
//! - [`pipeline`]: the frame budget shared by all batches (Little's law), batch admission in
//!   turn, and the kernel slots that keep CPU work to the cores.
//! - [`error`]: why a batch is left for redelivery.
//! - [`output`]: output naming, per-frame objects or one tar pack per batch; [`tar`]: the
//!   pack writer. The batch drives the output; the output knows nothing of the batch.
//! - The manifest the completing worker writes is `framefleet_core::manifest`, shared with
//!   the dispatcher's reconciler.
//! - [`usage`]: what one batch uses (requests, CPU time), summed exactly once per batch.
//! - `metrics`: the worker's OpenTelemetry instruments (frames, batches, kernel and S3 time,
//!   queue wait, in flight, jobs completed and their duration).
//! - [`protection`]: ECS task scale-in protection while busy.
//! - [`offline`]: the `edges` and `bench` subcommands, no AWS involved.

pub mod batch;
pub mod consumer;
pub mod direct_s3;
pub mod error;
mod metrics;
pub mod offline;
pub mod output;
pub mod pipeline;
pub mod protection;
pub mod settings;
pub mod tar;
pub mod usage;

pub use consumer::{Outcome, RunSummary, Worker};
pub use settings::WorkerSettings;
