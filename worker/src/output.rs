//! Where a batch's edge maps go, by the job's [`OutputLayout`]:
//!
//! - `objects`: each edge map is PUT as `<video id>/<frame name>.<ext>` as soon as it is made.
//!   A segment's batch (one with a `first_index`) names the edge map of its `i`-th key by the
//!   frame's global index instead: `<video id>/<base>.<first_index + i, 7 digits>.<ext>`, so a
//!   segmented capture's edge maps are named exactly as an unsegmented capture's
//!   ([`edge_map_stem`]).
//! - `packed`: the batch's edge maps are held and, once every frame is done, written as one
//!   uncompressed ustar archive `<video id>/packs/<batch index>.tar` (members named like the
//!   per-frame objects, in frame order; failed frames are not in it). Its [`Pack`] index (each
//!   member's data offset and length) is stored in the batch marker by the counting
//!   transaction and listed in the manifest, so one frame is one ranged GET
//!   (`Range: bytes=offset-(offset+length-1)`), and `tar -xf` opens the whole pack.
//!
//! A packed batch holds its edge maps in memory until the pack is written: `batch_size` edge maps
//! per batch in flight (50 JPEGs of a 720p frame are about 25 MB).
//!
//! Either way the outputs are written before the counting transaction, with keys and bytes that
//! depend only on the batch: a redelivery rewrites the same objects.

use std::borrow::Cow;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use framefleet_core::aws::describe;
use framefleet_core::frames::frame_name;
use framefleet_core::message::{FrameBatch, OutputLayout};
use framefleet_core::pack::{pack_key, Pack, PackedFrame};
use framefleet_edge::EdgeMap;
use tracing::Instrument;

use crate::direct_s3::DirectS3;
use crate::error::BatchError;
use crate::metrics;
use crate::tar::Tar;
use crate::usage::BatchMeter;

/// `<video id>/<frame name>`, with the extension of the output format.
pub fn output_key(video_id: &str, frame_key: &str, extension: &str) -> String {
    edge_map_key(video_id, frame_key, None, extension)
}

/// The key of a frame's edge map: `<video id>/<stem>.<extension>` with the stem
/// [`edge_map_stem`] gives.
pub fn edge_map_key(
    video_id: &str,
    frame_key: &str,
    global_index: Option<u64>,
    extension: &str,
) -> String {
    let stem = edge_map_stem(frame_key, global_index);
    format!("{video_id}/{stem}.{extension}")
}

/// The name of a frame's edge map without its extension (also a pack member's name without
/// its extension).
///
/// Without `global_index` (an unsegmented batch) it is the frame's own name without `.jpg`:
/// `v/clip.0000003.jpg` → `clip.0000003`. With it (a segment's batch, `first_index +
/// position`) the frame's number is replaced by the global index, 7 digits at least:
/// `v/s0001/clip.0000003.jpg` with 503 → `clip.0000503`. A name that does not end in
/// `.<digits>.jpg` (not MediaConvert's naming) keeps its whole stem as the base:
/// `v/s0001/odd.jpg` with 503 → `odd.0000503`.
pub fn edge_map_stem(frame_key: &str, global_index: Option<u64>) -> Cow<'_, str> {
    let stem = member_stem(frame_key);
    let Some(global) = global_index else {
        return Cow::Borrowed(stem);
    };
    let base = match stem.rsplit_once('.') {
        Some((base, digits)) if digits.len() >= 7 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            base
        }
        _ => stem,
    };
    Cow::Owned(format!("{base}.{global:07}"))
}

/// Where edge maps and packs are written.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// The S3 client.
    pub s3: &'a aws_sdk_s3::Client,
    /// The processed bucket.
    pub bucket: &'a str,
    /// SigV4-sign each body (a SHA-256 of it) instead of sending `UNSIGNED-PAYLOAD`.
    pub sign_payloads: bool,
    /// PUT through the direct S3 client instead of the SDK, when the worker has one.
    pub direct: Option<&'a DirectS3>,
}

/// An edge map held for the batch's pack.
#[derive(Debug)]
pub struct Held {
    name: String,
    bytes: Vec<u8>,
}

/// What became of one edge map.
#[derive(Debug)]
pub enum Emitted {
    /// Written as its own object.
    Written,
    /// Held for the pack, written by [`finish_batch`].
    Held(Held),
}

/// Writes the edge map of frame `frame_key`, the key at `position` in the batch, now
/// (per-frame objects) or holds it for the pack; named by [`edge_map_key`] with the batch's
/// global index of the position, if it has one.
pub async fn emit(
    to: &Destination<'_>,
    batch: &FrameBatch,
    position: usize,
    frame_key: &str,
    edge_map: EdgeMap,
    meter: &BatchMeter,
) -> Result<Emitted, BatchError> {
    let key = edge_map_key(
        &batch.video_id.to_string(),
        frame_key,
        batch.frame_index(position),
        edge_map.format.extension(),
    );
    match batch.layout {
        OutputLayout::Objects => {
            put(
                to,
                &key,
                edge_map.bytes,
                edge_map.format.content_type(),
                meter,
            )
            .await?;
            Ok(Emitted::Written)
        }
        OutputLayout::Packed => {
            let name = key.rsplit_once('/').map_or(key.as_str(), |(_, n)| n);
            Ok(Emitted::Held(Held {
                name: name.to_string(),
                bytes: edge_map.bytes,
            }))
        }
    }
}

/// Builds the pack of `held` (in frame order), or `None` when there is nothing to pack.
pub fn build_pack(video_id: &str, batch_index: u32, held: &[Held]) -> Option<(Vec<u8>, Pack)> {
    if held.is_empty() {
        return None;
    }
    let mut tar = Tar::new();
    for frame in held {
        // Names come from frame keys (non-empty, no NUL: S3 keys are UTF-8 and the name ends in
        // the extension) and edge maps are far below 8 GiB; a refusal would be a bug.
        if let Err(error) = tar.append(&frame.name, &frame.bytes) {
            tracing::error!(%error, "edge map left out of the pack");
        }
    }
    let (bytes, spans) = tar.finish();
    let pack = Pack {
        key: pack_key(video_id, batch_index),
        frames: spans
            .into_iter()
            .map(|span| PackedFrame {
                name: span.name,
                offset: span.offset,
                length: span.length,
            })
            .collect(),
    };
    Some((bytes, pack))
}

/// What ending a batch's output came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackOutcome {
    /// Nothing to write: per-frame objects, or no frame made an edge map.
    None,
    /// This delivery wrote the pack; its index, to store in the batch marker.
    Written(Pack),
    /// A pack was already stored under the key (an earlier delivery of the batch wrote it):
    /// left as it is. The batch counts that pack, if it counts at all.
    Exists(String),
}

/// Ends the batch's output: for packed batches, writes the pack unless one is stored already
/// (`If-None-Match: *`), so a pack is written once and never rewritten: the index a counted
/// marker stores always describes the bytes under the key, whatever a later delivery (a
/// changed frame, a changed kernel) would have made. Per-frame batches have nothing left to
/// write.
pub async fn finish_batch(
    to: &Destination<'_>,
    batch: &FrameBatch,
    held: Vec<Held>,
    meter: &BatchMeter,
) -> Result<PackOutcome, BatchError> {
    let Some((bytes, pack)) = build_pack(&batch.video_id.to_string(), batch.batch_index, &held)
    else {
        return Ok(PackOutcome::None);
    };
    if put_if_absent(to, &pack.key, bytes, "application/x-tar", meter).await? {
        tracing::info!(key = %pack.key, frames = pack.frames.len(), "pack written");
        Ok(PackOutcome::Written(pack))
    } else {
        tracing::info!(key = %pack.key, "a pack is stored already; not rewriting it");
        Ok(PackOutcome::Exists(pack.key))
    }
}

/// The index of the pack stored under `key`, read from its bytes (one GET of the pack).
pub async fn stored_pack(
    to: &Destination<'_>,
    key: &str,
    meter: &BatchMeter,
) -> Result<Pack, BatchError> {
    meter.s3_get();
    let started = Instant::now();
    let fetched = get(to, key)
        .instrument(tracing::info_span!("download", key))
        .await;
    metrics::s3_request("GetObject", fetched.is_ok(), started.elapsed());
    let storage = |message| BatchError::Storage {
        bucket: to.bucket.to_string(),
        key: key.to_string(),
        message,
    };
    let bytes = fetched.map_err(storage)?;
    let spans = crate::tar::read_index(&bytes).map_err(|error| storage(error.to_string()))?;
    Ok(Pack {
        key: key.to_string(),
        frames: spans
            .into_iter()
            .map(|span| PackedFrame {
                name: span.name,
                offset: span.offset,
                length: span.length,
            })
            .collect(),
    })
}

/// The member name frame `frame_key` of an unsegmented batch has in a pack, whatever the edge
/// map's extension: its output name without the extension (a segment's batch:
/// [`edge_map_stem`]).
pub fn member_stem(frame_key: &str) -> &str {
    let name = frame_name(frame_key);
    name.strip_suffix(".jpg").unwrap_or(name)
}

/// PUTs one object. Unless `to.sign_payloads`, the body is sent as `UNSIGNED-PAYLOAD`: SigV4 then
/// signs the headers only, which S3 accepts ("Signature calculations for the Authorization
/// header: Transferring payload in a single chunk", Amazon S3 API Reference,
/// <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>), and the
/// worker does not hash every edge map with SHA-256. The body's integrity then rests on TLS (the
/// template's bucket policies refuse plain HTTP) and on the checksum the SDK sends with it.
pub(crate) async fn put(
    to: &Destination<'_>,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    meter: &BatchMeter,
) -> Result<(), BatchError> {
    meter.s3_put();
    let started = Instant::now();
    let result = send(to, key, body, content_type)
        .instrument(tracing::info_span!("upload", key))
        .await;
    metrics::s3_request("PutObject", result.is_ok(), started.elapsed());
    result.map_err(|message| BatchError::Storage {
        bucket: to.bucket.to_string(),
        key: key.to_string(),
        message,
    })
}

/// The PutObject itself, through the direct client when the worker has one, else the SDK;
/// the error as its message.
async fn send(
    to: &Destination<'_>,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<(), String> {
    if let Some(direct) = to.direct {
        return direct
            .put(to.bucket, key, body.into(), content_type)
            .await
            .map_err(|error| error.to_string());
    }
    sdk_put(to, key, body, content_type, false)
        .await
        .map(|_| ())
        .map_err(|error| describe(&error))
}

/// The SDK's PutObject of `body`, its payload signed or not as the worker is configured, and
/// with `If-None-Match: *` when `if_absent`.
async fn sdk_put(
    to: &Destination<'_>,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    if_absent: bool,
) -> Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>,
> {
    let request = to
        .s3
        .put_object()
        .bucket(to.bucket)
        .key(key)
        .content_type(content_type)
        .set_if_none_match(if_absent.then(|| "*".to_string()))
        .body(ByteStream::from(body));
    if to.sign_payloads {
        request.send().await
    } else {
        request.customize().disable_payload_signing().send().await
    }
}

/// PUTs `body` unless an object has `key` already: true when written, false when one was
/// there (412, "Add preconditions to S3 operations with conditional requests", Amazon S3 User
/// Guide, <https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html>).
/// The body is signed or not as [`put`] says.
async fn put_if_absent(
    to: &Destination<'_>,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    meter: &BatchMeter,
) -> Result<bool, BatchError> {
    meter.s3_put();
    let started = Instant::now();
    let result = async {
        if let Some(direct) = to.direct {
            return direct
                .put_if_absent(to.bucket, key, body.into(), content_type)
                .await
                .map_err(|error| error.to_string());
        }
        match sdk_put(to, key, body, content_type, true).await {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 412) =>
            {
                Ok(false)
            }
            Err(error) => Err(describe(&error)),
        }
    }
    .instrument(tracing::info_span!("upload", key))
    .await;
    metrics::s3_request("PutObject", result.is_ok(), started.elapsed());
    result.map_err(|message| BatchError::Storage {
        bucket: to.bucket.to_string(),
        key: key.to_string(),
        message,
    })
}

/// GetObject of a whole object we wrote, through the direct client when the worker has one.
async fn get(to: &Destination<'_>, key: &str) -> Result<bytes::Bytes, String> {
    if let Some(direct) = to.direct {
        return direct
            .get(to.bucket, key)
            .await
            .map_err(|error| error.to_string());
    }
    let out = to
        .s3
        .get_object()
        .bucket(to.bucket)
        .key(key)
        .send()
        .await
        .map_err(|error| describe(&error))?;
    out.body
        .collect()
        .await
        .map(|data| data.into_bytes())
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(name: &str, bytes: &[u8]) -> Held {
        Held {
            name: name.into(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn output_keeps_the_frame_name() {
        assert_eq!(
            output_key("v-1", "v-1/my clip.0000003.jpg", "jpg"),
            "v-1/my clip.0000003.jpg"
        );
        assert_eq!(
            output_key("v-1", "v-1/clip.0000003.jpg", "png"),
            "v-1/clip.0000003.png"
        );
    }

    #[test]
    fn a_segments_edge_maps_are_named_by_global_index() {
        // Unsegmented: the frame's own name.
        assert_eq!(edge_map_stem("v-1/clip.0000003.jpg", None), "clip.0000003");
        assert_eq!(
            edge_map_key("v-1", "v-1/clip.0000003.jpg", None, "png"),
            output_key("v-1", "v-1/clip.0000003.jpg", "png")
        );
        // A segment's frame 3 with first_index 500 at position 3: frame 503, under the job's
        // prefix, not the segment's.
        assert_eq!(
            edge_map_key("v-1", "v-1/s0001/my clip.0000003.jpg", Some(503), "jpg"),
            "v-1/my clip.0000503.jpg"
        );
        assert_eq!(
            edge_map_key("v-1", "v-1/s0001/a.b.0000000.jpg", Some(12), "png"),
            "v-1/a.b.0000012.png"
        );
        // Beyond seven digits, the number grows as MediaConvert's does.
        assert_eq!(
            edge_map_stem("v-1/s0007/c.0000001.jpg", Some(12_345_678)),
            "c.12345678"
        );
        // A name outside MediaConvert's contract keeps its stem as the base.
        assert_eq!(edge_map_stem("v-1/s0001/odd.jpg", Some(5)), "odd.0000005");
        assert_eq!(
            edge_map_stem("v-1/s0001/odd.12.jpg", Some(5)),
            "odd.12.0000005"
        );
        assert_eq!(
            edge_map_stem("bare", Some(u64::MAX)),
            "bare.18446744073709551615"
        );
    }

    #[test]
    fn pack_index_points_at_each_edge_map() {
        let frames = [
            held("c.0000000.jpg", b"first"),
            held("c.0000001.jpg", &[2; 700]),
        ];
        let (bytes, pack) = build_pack("v-1", 3, &frames).unwrap();
        assert_eq!(pack.key, "v-1/packs/000003.tar");
        assert_eq!(pack.frames.len(), 2);
        for (frame, packed) in frames.iter().zip(&pack.frames) {
            assert_eq!(packed.name, frame.name);
            let start = packed.offset as usize;
            assert_eq!(
                &bytes[start..start + packed.length as usize],
                &frame.bytes[..]
            );
        }
        assert_eq!(pack.frames[0].range(), "bytes=512-516");
        let json = serde_json::to_string(&pack).unwrap();
        assert_eq!(serde_json::from_str::<Pack>(&json).unwrap(), pack);
        assert!(build_pack("v-1", 0, &[]).is_none());
    }
}
