//! The dispatcher: turns uploads into MediaConvert frame-capture jobs and captured frames into
//! batches for the worker fleet.
//!
//! - [`settings`]: what it reads at start-up, validated with the key named on error.
//! - [`notification`]: S3 event notifications (test events, encoded keys, several records).
//! - [`pin`]: the job's own copy of exactly the registered upload, which every later read uses.
//! - [`rate`]: the capture rate, configured or read from the MP4 header by ranged reads, and
//!   whether the video has sound; [`rate::probe_video`] also reads the frame count, frame
//!   timing, edit list and timecode track segmented capture needs.
//! - [`timecode`]: frame index ↔ MediaConvert timecode, and the segment plan of a video.
//! - [`segments`]: segmented capture: a long video as N clipped MediaConvert jobs at once,
//!   each fanned out as it lands, with a count guard and a fallback to one job.
//! - [`mediaconvert`]: the CreateJob request: the frame capture and the MP4 preview
//!   MediaConvert requires beside it.
//! - [`events`]: MediaConvert job state change events.
//! - `metrics`: the dispatcher's OpenTelemetry instruments (jobs registered and failed, batches
//!   sent).
//! - [`redrive`]: `dispatcher redrive`, dead-lettered messages back to their queue.
//! - [`reconcile`]: finds jobs that stopped moving and makes each one end.
//! - [`scaler`]: the worker service's desired count from the known work (ECS UpdateService).
//! - `send`: streaming a run of batches onto the frames queue with checkpoints, and finding a
//!   capture's frames by listing (shared by `fanout` and [`segments`]); `finish`: the manifest
//!   of a FINALIZING job, written by the reconciler or the segments' sweep.
//! - [`service`]: the two consumer loops and their `run_once`; each message is handled on a
//!   task of its own (a panic fails that message only), `ingress` and `fanout` hold what each
//!   message kind does, and `context` what the loops and handlers share.

mod context;
pub mod error;
pub mod events;
mod fanout;
mod finish;
mod ingress;
pub mod mediaconvert;
mod metrics;
pub mod notification;
pub mod pin;
pub mod rate;
pub mod reconcile;
pub mod redrive;
pub mod scaler;
pub mod segments;
mod send;
pub mod service;
pub mod settings;
pub mod source;
pub mod timecode;

pub use service::{Dispatcher, Feed, Outcome};
pub use settings::DispatcherSettings;
