//! The frame batch: the unit of work the dispatcher fans out and a worker counts once.

use framefleet_edge::EdgeParams;
use serde::{Deserialize, Serialize};

use crate::frames::FrameSeries;
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
    /// The global frame index of `frame_keys[0]` when the keys are a segment's (numbered from
    /// 0 under `<video id>/s<k>/`): the keys are consecutive frames, and the worker names the
    /// edge map of the `i`-th key by frame `first_index + i` (see [`FrameBatch::frame_index`]).
    /// Absent for an unsegmented batch, whose body then reads exactly as before the field
    /// existed (and whose edge maps keep their frames' names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_index: Option<u64>,
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

    /// The global frame index of the key at `position` in `frame_keys`: `first_index +
    /// position`, or `None` for an unsegmented batch (its keys carry their own index). Saturates
    /// rather than wrap on a (malformed) `first_index` near `u64::MAX`.
    pub fn frame_index(&self, position: usize) -> Option<u64> {
        self.first_index
            .map(|first| first.saturating_add(position as u64))
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
        first_index: None,
    };
    // Room for the envelope plus slack for the batch index digits and a `first_index`.
    let overhead = envelope_bytes(video_id, frames_bucket, params, layout);
    let mut batches = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut bytes = overhead;
    for key in keys {
        // Quotes, comma and JSON escapes: bounded by twice the key plus three.
        let cost = key_cost(&key);
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

/// The longest `first_index` a body can carry, with its name and comma: what every envelope keeps
/// free for it, so a segment's batches (which carry it) and a whole capture's (which do not) are
/// cut by the same rule and no body exceeds [`MAX_MESSAGE_BYTES`].
const FIRST_INDEX_RESERVE: &str = r#""first_index":18446744073709551615,"#;

/// The fixed-size part of a batch body, and slack for the batch index's digits and for a
/// `first_index`: what [`plan_batches`] and [`frames_per_batch`] keep free beside the keys.
fn envelope_bytes(
    video_id: &VideoId,
    frames_bucket: &str,
    params: &EdgeParams,
    layout: OutputLayout,
) -> usize {
    let empty = BatchBody {
        version: FRAME_BATCH_VERSION,
        video_id,
        batch_index: 0,
        frames_bucket,
        frame_keys: SeriesKeys {
            series: None,
            start: 0,
            len: 0,
        },
        params,
        layout,
        first_index: None,
    };
    serde_json::to_vec(&empty).map_or(0, |body| body.len()) + 16 + FIRST_INDEX_RESERVE.len()
}

/// How many frames of `series` one batch holds: `batch_size`, or fewer when that many keys
/// would not fit [`MAX_MESSAGE_BYTES`]. Every key of a series costs the same once serialised
/// (one prefix, one base, zero-padded numbers; the last key is the longest), so this is the
/// length [`plan_batches`] gives every batch but the last of the same keys.
pub fn frames_per_batch(
    video_id: &VideoId,
    frames_bucket: &str,
    series: &FrameSeries,
    batch_size: usize,
    params: &EdgeParams,
    layout: OutputLayout,
) -> u64 {
    let overhead = envelope_bytes(video_id, frames_bucket, params, layout);
    let cost = series.last_key().map_or(1, |key| key_cost(&key)).max(1);
    let fit = MAX_MESSAGE_BYTES.saturating_sub(overhead) / cost;
    fit.clamp(1, batch_size.max(1)) as u64
}

/// A key's share of a body: quoted and escaped, plus its comma.
fn key_cost(key: &str) -> usize {
    serde_json::to_string(key).map_or(key.len() * 6, |s| s.len()) + 1
}

/// A job's batches (or a segment's), named without being built: batch `j` holds frames
/// `j·n .. min((j+1)·n, count)` of `series` (n = `frames_per_batch`) and is numbered
/// `batch_base + j`. Any batch's body is written in O(its own size), so a fan-out streams
/// bodies in memory that does not grow with the frame count, and a re-send of a few batches
/// regenerates only those.
///
/// Everything here comes from the plan stored with the job when its fan-out started, never
/// from the dispatcher's settings of the moment: `batch#N` must name the same frames however
/// often, and by whichever dispatcher, it is sent.
#[derive(Debug, Clone)]
pub struct BatchSeries<'a> {
    /// The job.
    pub video_id: &'a VideoId,
    /// Bucket holding the captured frames.
    pub frames_bucket: &'a str,
    /// The frames, in index order.
    pub series: &'a FrameSeries,
    /// Frames per batch (the last batch may hold fewer); at least 1.
    pub frames_per_batch: u64,
    /// Index of the first batch (0 for a whole capture).
    pub batch_base: u32,
    /// Kernel parameters of every batch.
    pub params: &'a EdgeParams,
    /// Output layout of every batch.
    pub layout: OutputLayout,
    /// The global index of the series' first frame, for a segment's batches: batch `j`'s body
    /// then carries `first_index = f + j · frames_per_batch`. `None` for a whole capture, whose
    /// bodies carry no `first_index` and stay byte-identical to those before the field existed.
    pub first_index: Option<u64>,
}

impl BatchSeries<'_> {
    /// How many batches the series holds.
    pub fn len(&self) -> u64 {
        self.series.count.div_ceil(self.frames_per_batch.max(1))
    }

    /// True when there is no frame at all.
    pub fn is_empty(&self) -> bool {
        self.series.count == 0
    }

    fn keys(&self, j: u64) -> SeriesKeys<'_> {
        let per = self.frames_per_batch.max(1);
        let start = j.saturating_mul(per).min(self.series.count);
        let end = start.saturating_add(per).min(self.series.count);
        SeriesKeys {
            series: Some(self.series),
            start,
            len: end - start,
        }
    }

    /// The global index of batch `j`'s first frame, when the series is a segment's.
    fn first_index_of(&self, j: u64) -> Option<u64> {
        let per = self.frames_per_batch.max(1);
        self.first_index
            .map(|first| first.saturating_add(j.saturating_mul(per)))
    }

    fn body_of(&self, j: u64) -> BatchBody<'_> {
        BatchBody {
            version: FRAME_BATCH_VERSION,
            video_id: self.video_id,
            batch_index: self.batch_base + j as u32,
            frames_bucket: self.frames_bucket,
            frame_keys: self.keys(j),
            params: self.params,
            layout: self.layout,
            first_index: self.first_index_of(j),
        }
    }

    /// The message body of batch `j` (`0..len()`), byte for byte what [`FrameBatch::to_body`]
    /// gives for the same batch.
    pub fn body(&self, j: u64) -> String {
        let mut out = Vec::new();
        self.write_body(j, &mut out);
        // serde_json writes UTF-8 only.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes batch `j`'s body into `out` (cleared first), so a caller can reuse one buffer.
    pub fn write_body(&self, j: u64, out: &mut Vec<u8>) {
        out.clear();
        serde_json::to_writer(&mut *out, &self.body_of(j))
            .expect("a frame batch always serialises");
    }

    /// Batch `j` as a worker reads it (tests, tools).
    pub fn batch(&self, j: u64) -> FrameBatch {
        let keys = self.keys(j);
        FrameBatch {
            version: FRAME_BATCH_VERSION,
            video_id: self.video_id.clone(),
            batch_index: self.batch_base + j as u32,
            frames_bucket: self.frames_bucket.to_string(),
            frame_keys: (keys.start..keys.start + keys.len)
                .map(|i| self.series.key(i))
                .collect(),
            params: self.params.clone(),
            layout: self.layout,
            first_index: self.first_index_of(j),
        }
    }

    /// Batch `j`'s number of frames.
    pub fn frames_in(&self, j: u64) -> u64 {
        self.keys(j).len
    }
}

/// [`FrameBatch`]'s wire form, borrowing everything and writing its keys on the fly: the same
/// fields in the same order with the same attributes, so bodies are byte-identical.
#[derive(Serialize)]
struct BatchBody<'a> {
    version: u32,
    video_id: &'a VideoId,
    batch_index: u32,
    frames_bucket: &'a str,
    frame_keys: SeriesKeys<'a>,
    params: &'a EdgeParams,
    #[serde(skip_serializing_if = "OutputLayout::is_objects")]
    layout: OutputLayout,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_index: Option<u64>,
}

struct SeriesKeys<'a> {
    series: Option<&'a FrameSeries>,
    start: u64,
    len: u64,
}

impl Serialize for SeriesKeys<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        struct Key<'k>(crate::frames::FrameName<'k>);
        impl Serialize for Key<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // Escaped as it is written: no String per key.
                serializer.collect_str(&self.0)
            }
        }
        let mut seq = serializer.serialize_seq(Some(self.len as usize))?;
        if let Some(series) = self.series {
            for i in self.start..self.start + self.len {
                seq.serialize_element(&Key(series.name(i)))?;
            }
        }
        seq.end()
    }
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
            // Full: the next key would not have fitted (within the slack kept for the index
            // digits and a first_index).
            if let Some(next) = batches.get(i + 1) {
                let next_cost = serde_json::to_string(&next.frame_keys[0]).unwrap().len() + 1;
                assert!(
                    body.len() + next_cost > MAX_MESSAGE_BYTES - 32 - FIRST_INDEX_RESERVE.len(),
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

    fn series_of(count: u64, base_len: usize) -> FrameSeries {
        FrameSeries {
            prefix: "v-1/".into(),
            base: "k".repeat(base_len),
            first_name: 0,
            count,
        }
    }

    #[test]
    fn streamed_bodies_are_byte_identical_to_planned_ones() {
        // Short keys, keys long enough to shrink batches, keys needing JSON escapes, both
        // layouts: batch j streamed equals batch j of the old eager plan, byte for byte.
        let id = VideoId::from_raw("v-1");
        for (count, base_len, batch_size, layout) in [
            (105, 4, 50, OutputLayout::Objects),
            (7, 3, 1, OutputLayout::Packed),
            (300, 950, 1000, OutputLayout::Objects),
            (1, 950, 50, OutputLayout::Packed),
        ] {
            let mut series = series_of(count, base_len);
            if base_len == 3 {
                series.base = "a\"b\u{1}".into();
            }
            let keys: Vec<String> = (0..count).map(|i| series.key(i)).collect();
            let params = EdgeParams::default();
            let planned = plan_batches(&id, "f", keys, batch_size, &params, layout);
            let per = frames_per_batch(&id, "f", &series, batch_size, &params, layout);
            let streamed = BatchSeries {
                video_id: &id,
                frames_bucket: "f",
                series: &series,
                frames_per_batch: per,
                batch_base: 0,
                params: &params,
                layout,
                first_index: None,
            };
            assert_eq!(streamed.len(), planned.len() as u64, "{count} x {base_len}");
            for (j, batch) in planned.iter().enumerate() {
                assert_eq!(streamed.body(j as u64), batch.to_body(), "batch {j}");
                assert_eq!(streamed.batch(j as u64), *batch);
                assert!(batch.to_body().len() <= MAX_MESSAGE_BYTES);
            }
        }
    }

    #[test]
    fn bodies_without_first_index_read_as_before() {
        // The body as every dispatcher before `first_index` wrote it, field by field.
        let id = VideoId::from_raw("v-1");
        let params = EdgeParams::default();
        let params_json = serde_json::to_string(&params).unwrap();
        let series = FrameSeries {
            prefix: "v-1/".into(),
            base: "k".into(),
            first_name: 0,
            count: 5,
        };
        for (layout, tail) in [
            (OutputLayout::Objects, ""),
            (OutputLayout::Packed, r#","layout":"packed""#),
        ] {
            let batches = BatchSeries {
                video_id: &id,
                frames_bucket: "f",
                series: &series,
                frames_per_batch: 2,
                batch_base: 1,
                params: &params,
                layout,
                first_index: None,
            };
            let before = format!(
                r#"{{"version":1,"video_id":"v-1","batch_index":3,"frames_bucket":"f","frame_keys":["v-1/k.0000004.jpg"],"params":{params_json}{tail}}}"#
            );
            assert_eq!(batches.body(2), before);
            assert_eq!(batches.batch(2).to_body(), before);
            assert_eq!(batches.batch(2).first_index, None);
            assert_eq!(FrameBatch::parse(&before).unwrap(), batches.batch(2));
            assert_eq!(batches.batch(2).frame_index(0), None);
        }
    }

    #[test]
    fn a_segments_batches_carry_their_global_first_index() {
        // Segment 2: 10 frames named from 0 under `v-1/s0002/`, global frames 500..510,
        // batches of 3 numbered from 7.
        let id = VideoId::from_raw("v-1");
        let params = EdgeParams::default();
        let series = FrameSeries {
            prefix: "v-1/s0002/".into(),
            base: "k".into(),
            first_name: 0,
            count: 10,
        };
        let batches = BatchSeries {
            video_id: &id,
            frames_bucket: "f",
            series: &series,
            frames_per_batch: 3,
            batch_base: 7,
            params: &params,
            layout: OutputLayout::Objects,
            first_index: Some(500),
        };
        assert_eq!(batches.len(), 4);
        for j in 0..batches.len() {
            let body = batches.body(j);
            let batch = FrameBatch::parse(&body).unwrap();
            assert_eq!(batch, batches.batch(j));
            assert_eq!(batch.to_body(), body, "streamed and built bodies agree");
            assert_eq!(batch.batch_index, 7 + j as u32);
            assert_eq!(batch.first_index, Some(500 + 3 * j), "batch {j}: {body}");
            assert!(body.contains(&format!(r#""first_index":{}"#, 500 + 3 * j)));
            // Key i of the batch is local frame 3j + i, global frame 500 + 3j + i.
            for (i, key) in batch.frame_keys.iter().enumerate() {
                let local = 3 * j + i as u64;
                assert_eq!(*key, format!("v-1/s0002/k.{local:07}.jpg"));
                assert_eq!(batch.frame_index(i), Some(500 + local));
            }
        }
        assert_eq!(batches.batch(3).frame_keys.len(), 1);
        // A saturating index, not a panic, on a malformed first_index.
        let edge = FrameBatch {
            first_index: Some(u64::MAX - 1),
            ..batches.batch(0)
        };
        assert_eq!(edge.frame_index(2), Some(u64::MAX));
        let parsed = FrameBatch::parse(&edge.to_body()).unwrap();
        assert_eq!(parsed.first_index, Some(u64::MAX - 1));
    }

    #[test]
    fn the_limit_holds_with_long_keys_and_the_largest_first_index() {
        // 950-byte names (and ones around it, so some batch fills its body to the last byte the
        // rule allows), the longest batch index and the longest first_index: no body is over.
        let id = VideoId::from_raw("v-1");
        let params = EdgeParams::default();
        for base_len in 900..=1000 {
            let series = FrameSeries {
                prefix: format!("{id}/s0098/"),
                base: "k".repeat(base_len),
                first_name: 0,
                count: 2_000,
            };
            for layout in [OutputLayout::Objects, OutputLayout::Packed] {
                let per = frames_per_batch(&id, "f", &series, 1000, &params, layout);
                let batches = BatchSeries {
                    video_id: &id,
                    frames_bucket: "f",
                    series: &series,
                    frames_per_batch: per,
                    batch_base: u32::MAX - 10,
                    params: &params,
                    layout,
                    first_index: Some(u64::MAX - per),
                };
                let body = batches.body(0);
                assert_eq!(
                    FrameBatch::parse(&body).unwrap().first_index,
                    Some(u64::MAX - per)
                );
                for j in [0, 1] {
                    let body = batches.body(j);
                    assert!(
                        body.len() <= MAX_MESSAGE_BYTES,
                        "{base_len}-byte names, {layout:?}: {} bytes with {per} frames",
                        body.len()
                    );
                }
                // The eager planner cuts the same batches, and they stay under with the field.
                if base_len % 25 != 0 {
                    continue;
                }
                let keys: Vec<String> = (0..per * 2).map(|i| series.key(i)).collect();
                for mut batch in plan_batches(&id, "f", keys, 1000, &params, layout) {
                    batch.batch_index = u32::MAX;
                    batch.first_index = Some(u64::MAX);
                    assert_eq!(batch.frame_keys.len() as u64, per);
                    assert!(batch.to_body().len() <= MAX_MESSAGE_BYTES);
                }
            }
        }
    }

    #[test]
    fn any_batch_is_regenerated_alone_with_its_base() {
        let id = VideoId::from_raw("v-1");
        let series = series_of(3_000_000, 40);
        let params = EdgeParams::default();
        let batches = BatchSeries {
            video_id: &id,
            frames_bucket: "f",
            series: &series,
            frames_per_batch: 50,
            batch_base: 7,
            params: &params,
            layout: OutputLayout::Objects,
            first_index: None,
        };
        assert_eq!(batches.len(), 60_000);
        let last = batches.batch(59_999);
        assert_eq!(last.batch_index, 60_006);
        assert_eq!(last.frame_keys.len(), 50);
        assert_eq!(last.frame_keys[49], series.key(2_999_999));
        assert_eq!(batches.frames_in(60_000), 0, "past the end is empty");
        let short = BatchSeries {
            series: &series_of(101, 4),
            ..batches.clone()
        };
        assert_eq!((short.len(), short.frames_in(2)), (3, 1));
    }
}
