//! Sending a job's batches and finding its frames: what the fan-out of a single capture
//! (`fanout`) and of a segment or a fallback capture (`segments`) share.

use framefleet_core::frames::{frame_index, FrameSeries};
use framefleet_core::jobs::{JobStatus, Transition};
use framefleet_core::message::BatchSeries;
use framefleet_core::video::VideoId;

use crate::context::Inner;
use crate::error::DispatchError;

/// Where a streamed fan-out records how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checkpoint {
    /// The job item's `fanout_next` (a single capture's fan-out).
    Job,
    /// Segment `k`'s item (`fanout_next` of `segment#k`).
    Segment(u32),
    /// Nowhere: a fallback capture's fan-out, sent whole again if cut short.
    None,
}

/// How a streamed fan-out ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Every batch from the starting one is on the queue.
    All,
    /// The job left PROCESSING (canceled or failed) while its batches were being sent: the
    /// rest were not sent.
    Stopped,
}

/// Streams batches `from..` of `batches` onto the frames queue: each body is written when a
/// SendMessageBatch call has room for it, at most `dispatcher.fanout_in_flight` calls are under
/// way, and every `dispatcher.fanout_checkpoint_batches` batches the job records how far the
/// queue has them all (`fanout_next`), so a dispatcher killed mid-way is resumed there. Memory
/// is bounded by the calls in flight (each at most 256 KiB of bodies), whatever the number of
/// frames or the length of their keys.
///
/// A function of the batches (stored plan, frames, batch base) rather than of a whole job, so
/// the part of a job that is ready (a segment of a segmented capture) can be sent alone.
pub(crate) async fn send_batches(
    inner: &Inner,
    video_id: &VideoId,
    batches: &BatchSeries<'_>,
    from: u64,
    traceparent: Option<&str>,
    checkpoint: Checkpoint,
) -> Result<Sent, DispatchError> {
    use futures::StreamExt;
    let config = &inner.settings.dispatcher;
    let total = batches.len();
    let every = config.fanout_checkpoint_batches.max(1);
    let bodies = (from..total).map(|j| batches.body(j));
    let sends = inner
        .frames
        .send_stream(bodies, traceparent, 8, config.fanout_in_flight);
    futures::pin_mut!(sends);
    let mut next = from;
    let mut recorded = from;
    while let Some(sent) = sends.next().await {
        let sent = sent?;
        crate::metrics::batches_sent(sent);
        next += sent as u64;
        if next - recorded >= every && next < total && checkpoint != Checkpoint::None {
            recorded = next;
            let noted = match checkpoint {
                Checkpoint::Segment(k) => {
                    inner
                        .jobs
                        .record_segment_fanout_progress(video_id, k, next)
                        .await?
                }
                _ => inner.jobs.record_fanout_progress(video_id, next).await?,
            };
            if noted == Transition::NotApplicable {
                let status = inner.jobs.get(video_id).await?.map(|r| r.status);
                if status.is_none_or(JobStatus::is_final) {
                    tracing::info!(
                        ?status,
                        sent = next,
                        "job ended during its fan-out; stopping"
                    );
                    return Ok(Sent::Stopped);
                }
            }
        }
    }
    Ok(Sent::All)
}

/// The frames under `prefix`, found by listing: the one with the highest number names them
/// all (MediaConvert numbers from 0 without gaps; a frame missing from the listing is then
/// sent anyway and counted as failed by the worker, as when the event names the last frame).
/// Only that key is kept, so a listing of millions of frames takes no memory.
pub(crate) async fn list_frames(
    inner: &Inner,
    bucket: &str,
    prefix: &str,
) -> Result<Option<FrameSeries>, DispatchError> {
    let mut last: Option<(u64, String)> = None;
    let mut listed = 0u64;
    let mut pages = inner
        .clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| DispatchError::s3(bucket, prefix, &e))?;
        for object in page.contents() {
            if let Some(key) = object.key() {
                if let Some(index) = frame_index(key) {
                    listed += 1;
                    if last.as_ref().is_none_or(|(highest, _)| index > *highest) {
                        last = Some((index, key.to_string()));
                    }
                }
            }
        }
    }
    let Some((highest, key)) = last else {
        return Ok(None);
    };
    if listed != highest + 1 {
        tracing::warn!(
            listed,
            highest,
            "listed frames are not exactly 0..=highest; sending 0..=highest"
        );
    }
    Ok(FrameSeries::through(&key))
}
