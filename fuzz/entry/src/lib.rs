//! The fuzz targets' bodies: one function per parser of outside input, each taking the raw
//! bytes an attacker controls and panicking only when the code under test breaks a promise
//! (a panic inside it, or an invariant it documents). The libFuzzer binaries in `fuzz/`
//! call these, and `tests/replay.rs` runs every file of `fuzz/regressions/<target>/` and
//! `fuzz/seeds/<target>/` through them on stable Rust, so a crash once found stays fixed.

use std::sync::atomic::{AtomicU64, Ordering};

use framefleet_dispatcher::rate::{self, RangeRead, PROBE_MAX_BYTES, PROBE_MAX_REQUESTS};
use framefleet_dispatcher::timecode;
use framefleet_edge::EdgeParams;

/// A fuzz target: its name (the folder under `fuzz/regressions`, `fuzz/seeds` and the
/// libFuzzer binary's name) and its body.
pub struct Target {
    /// The binary's and the folders' name.
    pub name: &'static str,
    /// Runs one input; panics on a bug.
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "container_probe",
        run: container_probe,
    },
    Target {
        name: "s3_notification",
        run: s3_notification,
    },
    Target {
        name: "mediaconvert_event",
        run: mediaconvert_event,
    },
    Target {
        name: "frame_batch",
        run: frame_batch,
    },
    Target {
        name: "edge_probe",
        run: edge_probe,
    },
    Target {
        name: "edge_process",
        run: edge_process,
    },
];

/// The uploaded video as an object in memory, counting what the probe asks of it.
struct Upload<'a> {
    bytes: &'a [u8],
    requests: AtomicU64,
    asked: AtomicU64,
}

/// Never returned: reading memory cannot fail.
#[derive(Debug)]
pub struct NoError;

impl std::fmt::Display for NoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reading memory cannot fail")
    }
}

impl std::error::Error for NoError {}

impl RangeRead for Upload<'_> {
    type Error = NoError;

    async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, NoError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.asked.fetch_add(len, Ordering::Relaxed);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        let end = usize::try_from(offset.saturating_add(len))
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        Ok(self.bytes[start..end].to_vec())
    }
}

/// The dispatcher's container-header probe (MP4/QuickTime and Matroska/WebM) with `data` as
/// the whole uploaded object: it must answer without panicking and within its read budget,
/// and what it reads for segmented capture must hang together (a frame count and a timing
/// verdict come together; the segment planner accepts or refuses the facts without panicking,
/// and a plan it makes partitions the counted frames).
pub fn container_probe(data: &[u8]) {
    let upload = Upload {
        bytes: data,
        requests: AtomicU64::new(0),
        asked: AtomicU64::new(0),
    };
    let size = u64::try_from(data.len()).expect("a slice length fits in u64");
    let result = futures::executor::block_on(rate::probe_video(&upload, size));
    if let Ok(video) = result {
        assert!(video.rate.framerate().is_some(), "{video:?}");
        match video.timing {
            rate::FrameTiming::Unknown => assert_eq!(video.frames, None, "{video:?}"),
            _ => assert!(video.frames.is_some_and(|f| f > 0), "{video:?}"),
        }
        let policy = timecode::SegmentPolicy {
            min_duration_ms: 0,
            segment_ms: 1,
            max_segments: 16,
            max_frames: 10_000_000,
        };
        if let Ok(plan) = timecode::plan_capture(&video, video.rate, &policy) {
            let mut next = 0;
            for segment in &plan.segments {
                assert_eq!(segment.first, next, "{plan:?}");
                assert!(segment.last >= segment.first, "{plan:?}");
                next = segment.last + 1;
            }
            assert_eq!(Some(next), video.frames, "{plan:?}");
        }
    }
    let requests = upload.requests.into_inner();
    let asked = upload.asked.into_inner();
    assert!(
        requests <= u64::from(PROBE_MAX_REQUESTS),
        "{requests} ranged reads"
    );
    assert!(asked <= PROBE_MAX_BYTES, "{asked} bytes asked for");
}

/// The ingress queue's S3 event notification parser, on any body (SQS bodies are UTF-8).
pub fn s3_notification(data: &[u8]) {
    if let Ok(body) = std::str::from_utf8(data) {
        let _ = framefleet_dispatcher::notification::parse(body);
        let _ = framefleet_dispatcher::notification::decode_key(body);
    }
}

/// The MediaConvert job state change event parser (EventBridge → SQS bodies).
pub fn mediaconvert_event(data: &[u8]) {
    if let Ok(body) = std::str::from_utf8(data) {
        let _ = framefleet_dispatcher::events::parse(body);
    }
}

/// The frame batch a worker receives: a batch that parses must survive its own round trip,
/// and its parameters are checked as the worker does before any work.
pub fn frame_batch(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(batch) = framefleet_core::message::FrameBatch::parse(body) else {
        return;
    };
    let again = framefleet_core::message::FrameBatch::parse(&batch.to_body())
        .expect("a parsed batch parses again");
    assert_eq!(again, batch);
    let _ = batch.params.validate();
}

/// The edge kernel's header probe: format and size from the first bytes, and the pixel limit.
pub fn edge_probe(data: &[u8]) {
    if let Ok(info) = framefleet_edge::probe(data) {
        let _ = info.check_limit(framefleet_edge::DEFAULT_MAX_PIXELS);
    }
}

/// Pixel limit for [`edge_process`]: small enough that one input costs milliseconds, large
/// enough for every code path (the kernel's SIMD rows, downscaling).
const FUZZ_MAX_PIXELS: u64 = 1 << 18;

/// The worker's whole frame path on `data` as an uploaded frame: JPEG/PNG decoders, the
/// kernel, the encoders. The first byte picks the output format and a downscale, so both
/// encoders and the resizer are reached.
pub fn edge_process(data: &[u8]) {
    let Some((&choice, frame)) = data.split_first() else {
        return;
    };
    let params = EdgeParams {
        format: if choice & 1 == 0 {
            framefleet_edge::OutputFormat::Jpeg
        } else {
            framefleet_edge::OutputFormat::Png
        },
        max_width: (choice & 2 != 0).then_some(u32::from(choice >> 2).max(1)),
        max_pixels: FUZZ_MAX_PIXELS,
        ..EdgeParams::default()
    };
    if let Ok(map) = framefleet_edge::process(frame, &params) {
        assert!(
            map.width > 0 && map.height > 0,
            "{}x{}",
            map.width,
            map.height
        );
        assert!(!map.bytes.is_empty());
    }
}
