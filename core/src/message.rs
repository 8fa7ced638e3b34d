//! The frame batch: the unit of work the dispatcher fans out and a worker counts once.

use framefleet_edge::EdgeParams;
use serde::{Deserialize, Serialize};

use crate::video::VideoId;

/// SQS limit on emulators and older accounts; AWS allows 1 MiB now, we stay under the older one.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Version of the message schema, so a worker can refuse a message it does not understand.
pub const FRAME_BATCH_VERSION: u32 = 1;

/// A batch of captured frames of one video, to be turned into edge maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameBatch {
    /// Schema version, [`FRAME_BATCH_VERSION`].
    pub version: u32,
    /// The job the frames belong to.
    pub video_id: VideoId,
    /// Position of this batch in the fan-out; with the video id it names the batch marker.
    pub batch_index: u32,
    /// Bucket holding the captured frames.
    pub frames_bucket: String,
    /// Keys of the frames, in index order.
    pub frame_keys: Vec<String>,
    /// How to turn each frame into an edge map (the same for the whole video).
    pub params: EdgeParams,
    /// How the edge maps are stored (the same for the whole video). Left out of per-frame
    /// messages, so they read exactly as before the field existed, and absent means per-frame.
    #[serde(default, skip_serializing_if = "OutputLayout::is_objects")]
    pub layout: OutputLayout,
}

/// How a job's edge maps are stored in the processed bucket, chosen per job by the dispatcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputLayout {
    /// One object per frame, `<video id>/<frame name>.<ext>`: one S3 PUT per frame.
    #[default]
    Objects,
    /// One uncompressed POSIX tar (ustar) per batch, `<video id>/packs/<batch index>.tar`, its
    /// index (each member's data offset and length) in the manifest so one frame is read with
    /// a ranged GET: one S3 PUT per batch.
    Packed,
}

impl OutputLayout {
    /// True for the default, per-frame objects.
    pub fn is_objects(&self) -> bool {
        *self == Self::Objects
    }
}

/// A message body that is not a frame batch this worker understands.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or not shaped like a frame batch.
    #[error("not a frame batch: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A newer schema than this worker knows.
    #[error("frame batch version {0} is not supported (this worker knows {FRAME_BATCH_VERSION})")]
    Version(u32),
    /// A batch with nothing in it.
    #[error("frame batch {0} names no frames")]
    Empty(u32),
}

impl FrameBatch {
    /// Parses and checks a message body.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let batch: Self = serde_json::from_str(body)?;
        if batch.version != FRAME_BATCH_VERSION {
            return Err(MessageError::Version(batch.version));
        }
        if batch.frame_keys.is_empty() {
            return Err(MessageError::Empty(batch.batch_index));
        }
        Ok(batch)
    }

    /// The message body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a frame batch always serialises")
    }
}

/// Splits `keys` into batches of at most `batch_size` frames whose bodies stay under
/// [`MAX_MESSAGE_BYTES`] (long keys shrink a batch rather than break the limit), every batch
/// carrying `params` and `layout`.
pub fn plan_batches(
    video_id: &VideoId,
    frames_bucket: &str,
    keys: Vec<String>,
    batch_size: usize,
    params: &EdgeParams,
    layout: OutputLayout,
) -> Vec<FrameBatch> {
    let batch_size = batch_size.max(1);
    let empty = FrameBatch {
        version: FRAME_BATCH_VERSION,
        video_id: video_id.clone(),
        batch_index: 0,
        frames_bucket: frames_bucket.to_string(),
        frame_keys: Vec::new(),
        params: params.clone(),
        layout,
    };
    // Room for the envelope plus slack for the batch index digits.
    let overhead = empty.to_body().len() + 16;
    let mut batches = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut bytes = overhead;
    for key in keys {
        // Quotes, comma and JSON escapes: bounded by twice the key plus three.
        let cost = serde_json::to_string(&key).map_or(key.len() * 6, |s| s.len()) + 1;
        if !current.is_empty() && (current.len() >= batch_size || bytes + cost > MAX_MESSAGE_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            bytes = overhead;
        }
        bytes += cost;
        current.push(key);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
        .into_iter()
        .enumerate()
        .map(|(index, frame_keys)| FrameBatch {
            batch_index: index as u32,
            frame_keys,
            ..empty.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize, len: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{}.{i:07}.jpg", "k".repeat(len)))
            .collect()
    }

    #[test]
    fn layout_travels_and_defaults_to_objects() {
        let id = VideoId::from_raw("v-1");
        let packed = plan_batches(
            &id,
            "f",
            keys(3, 4),
            10,
            &EdgeParams::default(),
            OutputLayout::Packed,
        )
        .remove(0);
        let body = packed.to_body();
        assert!(body.contains(r#""layout":"packed""#), "{body}");
        assert_eq!(
            FrameBatch::parse(&body).unwrap().layout,
            OutputLayout::Packed
        );
        // A per-frame batch reads as it did before the field existed, and such a message
        // (from a dispatcher before this field) means per-frame objects.
        let objects = FrameBatch {
            layout: OutputLayout::Objects,
            ..packed
        };
        let body = objects.to_body();
        assert!(!body.contains("layout"), "{body}");
        assert_eq!(
            FrameBatch::parse(&body).unwrap().layout,
            OutputLayout::Objects
        );
        let unknown = format!(r#"{},"layout":"tarball"}}"#, &body[..body.len() - 1]);
        assert!(FrameBatch::parse(&unknown).is_err());
    }

    #[test]
    fn batches_respect_size_and_order() {
        let id = VideoId::from_raw("v-1");
        let batches = plan_batches(
            &id,
            "f",
            keys(105, 4),
            50,
            &EdgeParams::default(),
            OutputLayout::Objects,
        );
        assert_eq!(
            batches
                .iter()
                .map(|b| b.frame_keys.len())
                .collect::<Vec<_>>(),
            [50, 50, 5]
        );
        assert_eq!(batches[2].batch_index, 2);
        assert_eq!(batches[2].frame_keys[0], keys(105, 4)[100]);
    }

    #[test]
    fn long_keys_shrink_batches_under_the_limit() {
        let id = VideoId::from_raw("v-1");
        let batches = plan_batches(
            &id,
            "f",
            keys(300, 1000),
            1000,
            &EdgeParams::default(),
            OutputLayout::Objects,
        );
        assert!(batches.len() > 1);
        assert_eq!(
            batches.iter().map(|b| b.frame_keys.len()).sum::<usize>(),
            300
        );
        for batch in &batches {
            assert!(batch.to_body().len() <= MAX_MESSAGE_BYTES);
        }
    }

    #[test]
    fn escaped_keys_are_costed_as_serialised_and_batches_stay_full() {
        // Quotes, backslashes and control characters grow when serialised (`\u0001` is six
        // bytes for one): costing a key by its raw length would overfill a body several times.
        let keys: Vec<String> = (0..800)
            .map(|i| {
                let noise = "\"\\\u{1}\t\u{1f}".repeat(100 + i % 7);
                format!("v-1/{noise}.{i:07}.jpg")
            })
            .collect();
        let id = VideoId::from_raw("v-1");
        let batches = plan_batches(
            &id,
            "f",
            keys.clone(),
            1000,
            &EdgeParams::default(),
            OutputLayout::Objects,
        );
        assert!(batches.len() > 3, "{} batches", batches.len());
        let flat: Vec<&String> = batches.iter().flat_map(|b| &b.frame_keys).collect();
        assert_eq!(flat, keys.iter().collect::<Vec<_>>(), "every key, in order");
        for (i, batch) in batches.iter().enumerate() {
            let body = batch.to_body();
            assert!(body.len() <= MAX_MESSAGE_BYTES, "batch {i}: {}", body.len());
            assert_eq!(FrameBatch::parse(&body).unwrap(), *batch);
            // Full: the next key would not have fitted (within the index-digit slack).
            if let Some(next) = batches.get(i + 1) {
                let next_cost = serde_json::to_string(&next.frame_keys[0]).unwrap().len() + 1;
                assert!(
                    body.len() + next_cost > MAX_MESSAGE_BYTES - 32,
                    "batch {i} is {} bytes; the next key costs {next_cost}",
                    body.len()
                );
            }
        }
    }

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let id = VideoId::from_raw("v-1");
        let batch = plan_batches(
            &id,
            "f",
            keys(3, 4),
            10,
            &EdgeParams::default(),
            OutputLayout::Objects,
        )
        .remove(0);
        assert_eq!(FrameBatch::parse(&batch.to_body()).unwrap(), batch);
        assert!(matches!(
            FrameBatch::parse("{not json"),
            Err(MessageError::Malformed(_))
        ));
        let mut newer = batch.clone();
        newer.version = 99;
        assert!(matches!(
            FrameBatch::parse(&newer.to_body()),
            Err(MessageError::Version(99))
        ));
    }
}
