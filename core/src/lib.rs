//! The vocabulary every framefleet service shares.
//!
//! - [`config`]: layered settings (defaults → optional file → `FRAMEFLEET__…` environment) and the
//!   resource names every service agrees on.
//! - [`telemetry`]: one `init` for the env filter, JSON logs and OpenTelemetry over OTLP, and the
//!   traceparent that carries a video's trace across processes.
//! - [`aws`]: SDK clients built from the standard AWS environment, with emulator quirks handled.
//! - [`video`]: the deterministic, readable video id.
//! - [`frames`]: MediaConvert's frame naming contract.
//! - [`message`]: the frame batch message the dispatcher sends and the workers consume.
//! - [`jobs`]: the DynamoDB job table: registration, forward-only status, exactly-once counting.
//! - [`pack`]: the index of a pack of edge maps (the packed output layout).
//! - [`manifest`]: the document a finished job gets, assembled from its record and batch
//!   markers, and its writer (the completing worker and the reconciler both use it).
//! - [`usage`]: what a job used, in the units AWS bills; [`pricing`]: what that costs.
//! - [`queue`]: small SQS helpers shared by the consumers (receive, delete, heartbeat).
//! - [`redrive`]: moving dead-lettered messages back, which cannot count anything twice.
//! - [`health`]: heartbeat files behind the `healthcheck` subcommands, one per service loop.
//! - [`lease`]: keeping a message invisible while it is worked on (visibility heartbeats).
//! - [`shutdown`]: SIGTERM/SIGINT to a cancellation token.

pub mod aws;
pub mod config;
pub mod frames;
pub mod health;
pub mod jobs;
pub mod lease;
pub mod manifest;
pub mod message;
pub mod pack;
pub mod pricing;
pub mod queue;
pub mod redrive;
pub mod shutdown;
pub mod telemetry;
pub mod usage;
pub mod video;
