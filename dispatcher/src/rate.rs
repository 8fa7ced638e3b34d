//! The capture rate: a configured one (`5`, `30000/1001`) or the video's own, read from its
//! MP4/QuickTime or Matroska/WebM header with ranged reads (`source`), so 29.97 fps is captured as 30000/1001
//! and every frame is captured exactly once without downloading the video. The same header
//! says whether the video has a sound track, which decides whether the preview carries audio.
//!
//! The header is outside input: every length and offset in it is checked before it is added,
//! multiplied or used as an index, and one probe spends at most [`PROBE_MAX_REQUESTS`] ranged
//! reads and [`PROBE_MAX_BYTES`] bytes, failing with [`ProbeError::BudgetExhausted`] past them.

use std::fmt;
use std::future::Future;

/// Frames per second as a reduced fraction, as MediaConvert's `FramerateNumerator` and
/// `FramerateDenominator` take it. Both terms are within [`MAX_RATE_TERM`] when built by
/// [`CaptureRate::parse`] or [`CaptureRate::reduced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureRate {
    /// Numerator.
    pub numerator: u32,
    /// Denominator.
    pub denominator: u32,
}

/// Largest numerator or denominator MediaConvert accepts: `FrameCaptureSettings`
/// `framerateNumerator` and `framerateDenominator` are integers in 1..=2147483647 (MediaConvert
/// API Reference, "Jobs", FrameCaptureSettings:
/// <https://docs.aws.amazon.com/mediaconvert/latest/apireference/jobs.html>).
pub const MAX_RATE_TERM: u64 = i32::MAX as u64;

/// A rate that does not parse, or that MediaConvert cannot take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateParseError {
    /// Not a positive number or fraction of at most 1000 fps.
    #[error("`{0}` is not a frame rate: use `source`, a number like `5` or a fraction like `30000/1001` (at most 1000 fps)")]
    NotARate(String),
    /// A rate whose reduced terms exceed what MediaConvert accepts.
    #[error("`{0}` cannot be sent to MediaConvert: in lowest terms its numerator and denominator must each be 1..={MAX_RATE_TERM}")]
    OutOfRange(String),
}

impl CaptureRate {
    /// Parses `5` or `30000/1001`.
    pub fn parse(text: &str) -> Result<Self, RateParseError> {
        let err = || RateParseError::NotARate(text.to_string());
        let (num, den) = match text.trim().split_once('/') {
            Some((n, d)) => (n.trim(), d.trim()),
            None => (text.trim(), "1"),
        };
        let numerator: u64 = num.parse().map_err(|_| err())?;
        let denominator: u64 = den.parse().map_err(|_| err())?;
        Self::reduced(numerator, denominator).map_err(|e| match e {
            RateParseError::OutOfRange(_) => RateParseError::OutOfRange(text.trim().to_string()),
            RateParseError::NotARate(_) => err(),
        })
    }

    /// `numerator / denominator` in lowest terms, if it is a sane frame rate whose terms
    /// MediaConvert accepts; a fraction is reduced first, so `4294967294/2` is `2147483647/1`.
    pub fn reduced(numerator: u64, denominator: u64) -> Result<Self, RateParseError> {
        let shown = || format!("{numerator}/{denominator}");
        if numerator == 0
            || denominator == 0
            || u128::from(numerator) > 1000 * u128::from(denominator)
        {
            return Err(RateParseError::NotARate(shown()));
        }
        let g = gcd(numerator, denominator);
        let (n, d) = (numerator / g, denominator / g);
        if n > MAX_RATE_TERM || d > MAX_RATE_TERM {
            return Err(RateParseError::OutOfRange(shown()));
        }
        match (u32::try_from(n), u32::try_from(d)) {
            (Ok(numerator), Ok(denominator)) => Ok(Self {
                numerator,
                denominator,
            }),
            _ => Err(RateParseError::OutOfRange(shown())),
        }
    }

    /// The terms as MediaConvert's integers; `None` for a rate built by hand out of range.
    pub fn framerate(&self) -> Option<(i32, i32)> {
        Some((
            i32::try_from(self.numerator).ok()?,
            i32::try_from(self.denominator).ok()?,
        ))
    }
}

impl fmt::Display for CaptureRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Why the rate could not be read from the header.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError<E: std::error::Error + 'static> {
    /// The bytes are not a video container at all.
    #[error("not a video: {0}")]
    NotAVideo(String),
    /// A container we do not read (Matroska, AVI, MPEG-TS …): use the fallback rate.
    #[error("{0} container: frame rate not read from the header")]
    OtherContainer(&'static str),
    /// The MP4 ends before its structure does.
    #[error("the video is cut off: {0}")]
    Truncated(String),
    /// The MP4 structure is broken or has no video track with timing.
    #[error("unreadable MP4/QuickTime header: {0}")]
    Malformed(String),
    /// The header is readable but its frame rate cannot be sent to MediaConvert exactly.
    #[error("the video's own frame rate is unusable: {0}")]
    Unsupported(String),
    /// Reading the header would take more ranged reads or bytes than one probe may spend
    /// ([`PROBE_MAX_REQUESTS`], [`PROBE_MAX_BYTES`]): a hostile or absurd file, e.g. thousands
    /// of tiny boxes before the index, must not cost thousands of GETs. The Display text is the
    /// failed job's reason.
    #[error("reading the container header would exceed the probe's read budget ({PROBE_MAX_REQUESTS} ranged reads, {PROBE_MAX_BYTES} bytes): {wanted} after {requests} reads of {bytes} bytes")]
    BudgetExhausted {
        /// What the probe was about to read.
        wanted: String,
        /// Ranged reads made before giving up.
        requests: u32,
        /// Bytes asked for before giving up.
        bytes: u64,
    },
    /// Reading the object failed.
    #[error("reading the video failed")]
    Read(#[source] E),
}

/// Random access to an object, e.g. S3 ranged GETs.
pub trait RangeRead {
    /// The read error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Up to `len` bytes from `offset` (fewer at the end of the object).
    fn read(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send;
}

/// Most ranged reads one probe makes. A real MP4 has a handful of top-level boxes before its
/// index (`ftyp`, `free`/`wide`, `mdat`, maybe `uuid`), one read each, plus one for the index;
/// a Matroska file takes two. Each read is one S3 GET, so a file of 50,000 tiny boxes must not
/// cost 50,000 of them.
pub const PROBE_MAX_REQUESTS: u32 = 64;

/// Most bytes one probe asks for, all reads together: a long video's index (`moov`) is a few
/// MiB, a Matroska head is read as its first MiB; an index that does not fit is refused
/// rather than downloaded.
pub const PROBE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A [`RangeRead`] that refuses, before asking, any read past the probe's budget, and keeps
/// no more of an answer than was asked for (a server may ignore `Range`).
struct Budgeted<'r, R> {
    reader: &'r R,
    requests: u32,
    bytes: u64,
}

impl<'r, R: RangeRead> Budgeted<'r, R> {
    fn new(reader: &'r R) -> Self {
        Self {
            reader,
            requests: 0,
            bytes: 0,
        }
    }

    /// Up to `len` bytes from `offset`; `wanted` says what they are, for the error.
    async fn read(
        &mut self,
        offset: u64,
        len: u64,
        wanted: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, ProbeError<R::Error>> {
        let bytes = self
            .bytes
            .checked_add(len)
            .filter(|&total| total <= PROBE_MAX_BYTES);
        let (Some(bytes), true) = (bytes, self.requests < PROBE_MAX_REQUESTS) else {
            return Err(ProbeError::BudgetExhausted {
                wanted: wanted(),
                requests: self.requests,
                bytes: self.bytes,
            });
        };
        self.requests += 1;
        self.bytes = bytes;
        let mut data = self
            .reader
            .read(offset, len)
            .await
            .map_err(ProbeError::Read)?;
        data.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(data)
    }
}

/// What the container header says about the video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderProbe {
    /// The video track's frame rate.
    pub rate: CaptureRate,
    /// True when the container has a sound track (MP4 handler `soun`, Matroska TrackType 2):
    /// the preview then asks MediaConvert for audio, which it can only select if it exists.
    pub has_audio: bool,
}

/// Reads the frame rate of the video track, and whether there is a sound track, from an
/// MP4/QuickTime or Matroska/WebM object of `size` bytes.
pub async fn probe_rate<R: RangeRead>(
    reader: &R,
    size: u64,
) -> Result<HeaderProbe, ProbeError<R::Error>> {
    if size == 0 {
        return Err(ProbeError::NotAVideo("the object is empty".into()));
    }
    let mut reader = Budgeted::new(reader);
    let head = reader.read(0, 16, || "the first 16 bytes".into()).await?;
    if head.starts_with(&EBML_MAGIC) {
        return probe_matroska(&mut reader, size).await;
    }
    sniff(&head)?;
    let mut offset = 0u64;
    while offset < size {
        // offset < size, so this cannot underflow.
        let remaining = size - offset;
        let header = reader
            .read(offset, 16, || format!("the box header at byte {offset}"))
            .await?;
        let Some(kind) = header.get(4..8).map(fourcc) else {
            return Err(ProbeError::Truncated(format!(
                "box header at byte {offset} of {size} is incomplete"
            )));
        };
        let (box_size, header_len) = box_size(&header, remaining)
            .ok_or_else(|| ProbeError::Malformed(format!("bad box size at byte {offset}")))?;
        if box_size > remaining {
            return Err(ProbeError::Truncated(format!(
                "`{kind}` box at byte {offset} needs {box_size} bytes but the object has {remaining} left"
            )));
        }
        if kind == "moov" {
            let (Some(start), Some(len)) = (
                offset.checked_add(header_len),
                box_size.checked_sub(header_len),
            ) else {
                return Err(ProbeError::Malformed(format!(
                    "`moov` box at byte {offset} is smaller than its header"
                )));
            };
            let moov = reader
                .read(start, len, || {
                    format!("the {box_size}-byte `moov` box (the index)")
                })
                .await?;
            return rate_from_moov(&moov);
        }
        // box_size <= remaining = size - offset, so this stays <= size.
        offset += box_size;
    }
    Err(ProbeError::Truncated(
        "no `moov` box (the index) before the end of the object".into(),
    ))
}

fn sniff<E: std::error::Error>(head: &[u8]) -> Result<(), ProbeError<E>> {
    if let Some(kind) = head.get(4..8) {
        if [
            b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid",
        ]
        .iter()
        .any(|k| kind == *k)
        {
            return Ok(());
        }
    }
    if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"AVI ") {
        return Err(ProbeError::OtherContainer("AVI"));
    }
    if head.first() == Some(&0x47) {
        return Err(ProbeError::OtherContainer("MPEG-TS"));
    }
    if head.starts_with(&[0, 0, 1, 0xba]) {
        return Err(ProbeError::OtherContainer("MPEG-PS"));
    }
    if head.starts_with(b"FLV") {
        return Err(ProbeError::OtherContainer("FLV"));
    }
    if head.starts_with(&[0x30, 0x26, 0xb2, 0x75]) {
        return Err(ProbeError::OtherContainer("ASF/WMV"));
    }
    if head.starts_with(&[0x06, 0x0e, 0x2b, 0x34]) {
        return Err(ProbeError::OtherContainer("MXF"));
    }
    Err(ProbeError::NotAVideo(format!(
        "the first bytes {} are no known video container",
        head.iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )))
}

fn fourcc(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// Size of the box starting `header` and the length of its header; `remaining` bounds a
/// size-0 ("to the end") box.
fn box_size(header: &[u8], remaining: u64) -> Option<(u64, u64)> {
    let size32 = u64::from(u32::from_be_bytes(header.get(0..4)?.try_into().ok()?));
    match size32 {
        0 => Some((remaining, 8)),
        1 => {
            let size64 = u64::from_be_bytes(header.get(8..16)?.try_into().ok()?);
            (size64 >= 16).then_some((size64, 16))
        }
        s if s >= 8 => Some((s, 8)),
        _ => None,
    }
}

/// The children of a container box's payload, as (type, payload).
fn children(payload: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        let rest = payload.get(offset..)?;
        let (size, header) = box_size(rest, u64::try_from(rest.len()).ok()?)?;
        let size = usize::try_from(size).ok()?;
        let header = usize::try_from(header).ok()?;
        let (kind, body) = (rest.get(4..8)?, rest.get(header..size)?);
        // size >= header >= 8 > 0: the walk always advances, and stays within `payload`.
        offset = offset.checked_add(size)?;
        Some((kind, body))
    })
}

fn child<'a>(payload: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(payload).find(|(k, _)| k == kind).map(|(_, p)| p)
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn rate_from_moov<E: std::error::Error>(moov: &[u8]) -> Result<HeaderProbe, ProbeError<E>> {
    let handler = |mdia: &[u8]| child(mdia, b"hdlr").and_then(|h| h.get(8..12).map(<[u8]>::to_vec));
    let has_audio = children(moov)
        .filter(|(kind, _)| kind == b"trak")
        .filter_map(|(_, trak)| child(trak, b"mdia"))
        .any(|mdia| handler(mdia).as_deref() == Some(b"soun"));
    let rate = rate_from_video_trak(moov, handler)?;
    Ok(HeaderProbe { rate, has_audio })
}

fn rate_from_video_trak<E: std::error::Error>(
    moov: &[u8],
    handler: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<CaptureRate, ProbeError<E>> {
    for (kind, trak) in children(moov) {
        if kind != b"trak" {
            continue;
        }
        let Some(mdia) = child(trak, b"mdia") else {
            continue;
        };
        if handler(mdia).as_deref() != Some(b"vide") {
            continue;
        }
        let mdhd = child(mdia, b"mdhd")
            .ok_or_else(|| ProbeError::Malformed("video track without `mdhd`".into()))?;
        let timescale = match mdhd.first() {
            Some(1) => be32(mdhd, 20),
            _ => be32(mdhd, 12),
        }
        .filter(|&t| t > 0)
        .ok_or_else(|| ProbeError::Malformed("video track without a timescale".into()))?;
        let stts = child(mdia, b"minf")
            .and_then(|minf| child(minf, b"stbl"))
            .and_then(|stbl| child(stbl, b"stts"))
            .ok_or_else(|| ProbeError::Malformed("video track without `stts`".into()))?;
        let entries = usize::try_from(be32(stts, 4).unwrap_or(0)).unwrap_or(usize::MAX);
        let table = stts.get(8..).unwrap_or_default().chunks_exact(8);
        if table.len() < entries {
            return Err(ProbeError::Malformed(
                "`stts` is shorter than its count".into(),
            ));
        }
        // The dominant sample duration: robust to a short first or last sample.
        let mut best = (0u64, 0u32);
        for entry in table.take(entries) {
            // chunks_exact(8) yields 8 bytes: both are always there.
            let (Some(count), Some(delta)) = (be32(entry, 0), be32(entry, 4)) else {
                continue;
            };
            if delta > 0 && u64::from(count) > best.0 {
                best = (u64::from(count), delta);
            }
        }
        if best.0 == 0 {
            return Err(ProbeError::Malformed("video track has no samples".into()));
        }
        return CaptureRate::reduced(u64::from(timescale), u64::from(best.1)).map_err(
            |e| match e {
                RateParseError::OutOfRange(_) => ProbeError::Unsupported(e.to_string()),
                RateParseError::NotARate(_) => {
                    ProbeError::Malformed(format!("implausible frame rate {timescale}/{}", best.1))
                }
            },
        );
    }
    Err(ProbeError::NotAVideo(
        "the MP4/QuickTime file has no video track".into(),
    ))
}

/// The EBML header ID that starts every Matroska and WebM file.
const EBML_MAGIC: [u8; 4] = [0x1a, 0x45, 0xdf, 0xa3];
/// How much of a Matroska file is read looking for `Tracks` (muxers put it before the first
/// cluster, within the first few KiB).
const MATROSKA_HEAD: u64 = 1024 * 1024;

/// Element IDs (with their length marker, as written).
const SEGMENT: u32 = 0x1853_8067;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_TYPE: u32 = 0x83;
const DEFAULT_DURATION: u32 = 0x0023_E383;
const CLUSTER: u32 = 0x1F43_B675;

/// Rates muxers approximate in nanoseconds per frame; a duration within 0.05 % of one of them
/// means that rate (33,366,667 ns is 30000/1001, not 1e9/33,366,667).
const STANDARD_RATES: [(u64, u64); 10] = [
    (24000, 1001),
    (24, 1),
    (25, 1),
    (30000, 1001),
    (30, 1),
    (48, 1),
    (50, 1),
    (60000, 1001),
    (60, 1),
    (120, 1),
];

/// Reads a variable-length integer at `at`: (value without the length marker, length).
fn vint(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = *bytes.get(at)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let mut value = u64::from(first) & (0xff >> len);
    for i in 1..len {
        value = (value << 8) | u64::from(*bytes.get(at.checked_add(i)?)?);
    }
    Some((value, len))
}

/// An element header at `at`: (ID with marker, payload size or `None` if unknown, header length).
fn element(bytes: &[u8], at: usize) -> Option<(u32, Option<u64>, usize)> {
    let first = *bytes.get(at)?;
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return None;
    }
    let mut id = 0u32;
    for i in 0..id_len {
        id = (id << 8) | u32::from(*bytes.get(at.checked_add(i)?)?);
    }
    let (size, size_len) = vint(bytes, at.checked_add(id_len)?)?;
    let unknown = size == (1u64 << (7 * size_len)) - 1;
    Some((id, (!unknown).then_some(size), id_len + size_len))
}

/// The children of the payload `bytes[start..end]` as (ID, payload range); stops at the first
/// child that does not fit (a truncated read) or has an unknown size.
fn ebml_children(bytes: &[u8], start: usize, end: usize) -> Vec<(u32, usize, usize)> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let Some((id, size, header)) = element(bytes, at) else {
            break;
        };
        // A child whose header runs past its parent's end is cut off: its payload would start
        // after `end`.
        let Some(payload) = at.checked_add(header).filter(|&payload| payload <= end) else {
            break;
        };
        let Some(size) = size.and_then(|s| usize::try_from(s).ok()) else {
            out.push((id, payload, end));
            break;
        };
        let Some(stop) = payload.checked_add(size).filter(|&stop| stop <= end) else {
            out.push((id, payload, end));
            break;
        };
        out.push((id, payload, stop));
        at = stop;
    }
    out
}

fn ebml_uint(bytes: &[u8]) -> Option<u64> {
    (bytes.len() <= 8).then(|| bytes.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

/// The frame rate of a Matroska/WebM video track, from its `DefaultDuration`.
async fn probe_matroska<R: RangeRead>(
    reader: &mut Budgeted<'_, R>,
    size: u64,
) -> Result<HeaderProbe, ProbeError<R::Error>> {
    let head = size.min(MATROSKA_HEAD);
    let bytes = reader
        .read(0, head, || format!("the Matroska head ({head} bytes)"))
        .await?;
    let top = ebml_children(&bytes, 0, bytes.len());
    let Some(&(_, seg_start, seg_end)) = top.iter().find(|(id, _, _)| *id == SEGMENT) else {
        return Err(ProbeError::Truncated(
            "Matroska file without a Segment".into(),
        ));
    };
    for (id, start, end) in ebml_children(&bytes, seg_start, seg_end) {
        if id == CLUSTER {
            break;
        }
        if id != TRACKS {
            continue;
        }
        // (TrackType, DefaultDuration) of every track entry.
        let tracks: Vec<(Option<u64>, Option<u64>)> = ebml_children(&bytes, start, end)
            .into_iter()
            .filter(|(entry, _, _)| *entry == TRACK_ENTRY)
            .map(|(_, e_start, e_end)| {
                let fields = ebml_children(&bytes, e_start, e_end);
                let field = |wanted: u32| {
                    fields
                        .iter()
                        .find(|(id, _, _)| *id == wanted)
                        .and_then(|&(_, s, e)| ebml_uint(bytes.get(s..e)?))
                };
                (field(TRACK_TYPE), field(DEFAULT_DURATION))
            })
            .collect();
        let has_audio = tracks.iter().any(|(kind, _)| *kind == Some(2));
        if let Some(&(_, duration)) = tracks.iter().find(|(kind, _)| *kind == Some(1)) {
            let Some(duration) = duration.filter(|&d| d > 0) else {
                return Err(ProbeError::OtherContainer(
                    "Matroska/WebM without a default frame duration",
                ));
            };
            let rate = rate_from_frame_duration(duration).map_err(|e| match e {
                RateParseError::OutOfRange(_) => {
                    ProbeError::Unsupported(format!("frame duration {duration} ns: {e}"))
                }
                RateParseError::NotARate(_) => {
                    ProbeError::Malformed(format!("implausible frame duration {duration} ns"))
                }
            })?;
            return Ok(HeaderProbe { rate, has_audio });
        }
        return Err(ProbeError::NotAVideo(
            "the Matroska/WebM file has no video track".into(),
        ));
    }
    Err(ProbeError::OtherContainer(
        "Matroska/WebM with its tracks past the first MiB",
    ))
}

/// Frames per second from nanoseconds per frame, snapped to a standard rate when it is one.
fn rate_from_frame_duration(nanos: u64) -> Result<CaptureRate, RateParseError> {
    // Lossy casts on purpose: only to compare against the standard rates; the exact rate
    // comes from `CaptureRate::reduced` on the integers.
    #[allow(clippy::cast_precision_loss)]
    let fps = 1e9 / nanos as f64;
    for (num, den) in STANDARD_RATES {
        #[allow(clippy::cast_precision_loss)]
        let standard = num as f64 / den as f64;
        if ((fps - standard) / standard).abs() < 0.0005 {
            return CaptureRate::reduced(num, den);
        }
    }
    CaptureRate::reduced(1_000_000_000, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    struct Bytes(Vec<u8>);

    impl RangeRead for Bytes {
        type Error = Never;
        async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, Never> {
            let start = (offset as usize).min(self.0.len());
            let end = (offset.saturating_add(len) as usize).min(self.0.len());
            Ok(self.0[start..end].to_vec())
        }
    }

    fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(payload);
        out
    }

    fn mp4(timescale: u32, stts: &[(u32, u32)], moov_first: bool, mdat: usize) -> Vec<u8> {
        mp4_with(timescale, stts, moov_first, mdat, false)
    }

    /// An MP4 with one video track, preceded by a sound track when `sound` is set.
    fn mp4_with(
        timescale: u32,
        stts: &[(u32, u32)],
        moov_first: bool,
        mdat: usize,
        sound: bool,
    ) -> Vec<u8> {
        let handler = |kind: &[u8; 4]| {
            let mut hdlr = vec![0u8; 8];
            hdlr.extend_from_slice(kind);
            hdlr.extend_from_slice(&[0; 12]);
            bx(b"hdlr", &hdlr)
        };
        let hdlr = handler(b"vide");
        let mut mdhd = vec![0u8; 12];
        mdhd.extend_from_slice(&timescale.to_be_bytes());
        mdhd.extend_from_slice(&[0; 8]);
        let mut stts_payload = vec![0u8; 4];
        stts_payload.extend_from_slice(&(stts.len() as u32).to_be_bytes());
        for (count, delta) in stts {
            stts_payload.extend_from_slice(&count.to_be_bytes());
            stts_payload.extend_from_slice(&delta.to_be_bytes());
        }
        let stbl = bx(b"stbl", &bx(b"stts", &stts_payload));
        let minf = bx(b"minf", &stbl);
        let mdia = bx(b"mdia", &[bx(b"mdhd", &mdhd), hdlr, minf].concat());
        let mut traks = Vec::new();
        if sound {
            traks.extend(bx(b"trak", &bx(b"mdia", &handler(b"soun"))));
        }
        traks.extend(bx(b"trak", &mdia));
        let moov = bx(b"moov", &traks);
        let ftyp = bx(b"ftyp", b"isom\0\0\0\0");
        let mdat = bx(b"mdat", &vec![0u8; mdat]);
        if moov_first {
            [ftyp, moov, mdat].concat()
        } else {
            [ftyp, mdat, moov].concat()
        }
    }

    async fn probe_header(bytes: Vec<u8>) -> Result<HeaderProbe, ProbeError<Never>> {
        let size = bytes.len() as u64;
        probe_rate(&Bytes(bytes), size).await
    }

    async fn probe(bytes: Vec<u8>) -> Result<CaptureRate, ProbeError<Never>> {
        probe_header(bytes).await.map(|p| p.rate)
    }

    #[test]
    fn parses_configured_rates() {
        assert_eq!(CaptureRate::parse("5").unwrap().to_string(), "5/1");
        assert_eq!(
            CaptureRate::parse("30000/1001").unwrap().to_string(),
            "30000/1001"
        );
        assert_eq!(CaptureRate::parse("50/2").unwrap().to_string(), "25/1");
        for bad in ["", "0", "fast", "1/0", "-5", "5000"] {
            assert!(CaptureRate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_fit_mediaconvert_integers() {
        // Reduced first: only the lowest terms must fit.
        assert_eq!(
            CaptureRate::parse("4294967294/2").unwrap_err(),
            RateParseError::NotARate("4294967294/2".into()),
            "2147483647 fps is over the 1000 fps cap"
        );
        let rate = CaptureRate::parse("4294967294/4294967292").unwrap();
        assert_eq!(rate.to_string(), "2147483647/2147483646");
        assert_eq!(rate.framerate(), Some((i32::MAX, i32::MAX - 1)));
        for text in ["2147483648/2147483647", "2147483647/2147483648"] {
            let error = CaptureRate::parse(text).unwrap_err();
            assert_eq!(error, RateParseError::OutOfRange(text.into()));
            assert!(error.to_string().contains(text), "{error}");
        }
        assert_eq!(
            CaptureRate::reduced(3_000_000_000, 100_000_000).unwrap(),
            CaptureRate {
                numerator: 30,
                denominator: 1
            }
        );
        let by_hand = CaptureRate {
            numerator: u32::MAX,
            denominator: 1,
        };
        assert_eq!(by_hand.framerate(), None);
    }

    #[tokio::test]
    async fn large_timescales_reduce_or_fail_with_the_reason() {
        // 3e9 / 1e8 reduces to 30/1.
        let rate = probe(mp4(3_000_000_000, &[(30, 100_000_000)], true, 10))
            .await
            .unwrap();
        assert_eq!(rate.to_string(), "30/1");
        // 2147483659 is prime: 2147483659/71582788 (≈ 30 fps) has no smaller terms.
        let error = probe(mp4(2_147_483_659, &[(30, 71_582_788)], true, 10))
            .await
            .unwrap_err();
        assert!(matches!(error, ProbeError::Unsupported(_)), "{error}");
        assert!(error.to_string().contains("2147483659/71582788"), "{error}");
        // A Matroska frame duration of 2147483659 ns: 1e9/2147483659 is in lowest terms.
        let error = probe(mkv_with(Some(2_147_483_659), false))
            .await
            .unwrap_err();
        assert!(matches!(error, ProbeError::Unsupported(_)), "{error}");
    }

    #[tokio::test]
    async fn sound_tracks_are_reported() {
        for sound in [false, true] {
            let mp4 = probe_header(mp4_with(30000, &[(300, 1001)], false, 10, sound))
                .await
                .unwrap();
            assert_eq!(mp4.has_audio, sound, "mp4");
            assert_eq!(mp4.rate.to_string(), "30000/1001");
            let mkv = probe_header(mkv_with(Some(40_000_000), sound))
                .await
                .unwrap();
            assert_eq!(mkv.has_audio, sound, "mkv");
            assert_eq!(mkv.rate.to_string(), "25/1");
        }
    }

    #[tokio::test]
    async fn reads_ntsc_rate_with_index_at_either_end() {
        for moov_first in [true, false] {
            let rate = probe(mp4(30000, &[(300, 1001)], moov_first, 5000))
                .await
                .unwrap();
            assert_eq!(rate.to_string(), "30000/1001");
        }
        let rate = probe(mp4(12800, &[(1, 100), (250, 512)], false, 10))
            .await
            .unwrap();
        assert_eq!(rate.to_string(), "25/1");
    }

    #[tokio::test]
    async fn cut_off_video_is_truncated() {
        let mut bytes = mp4(30000, &[(300, 1001)], false, 5000);
        bytes.truncate(3000);
        assert!(matches!(probe(bytes).await, Err(ProbeError::Truncated(_))));
    }

    #[tokio::test]
    async fn other_bytes_are_not_videos() {
        assert!(matches!(
            probe(b"hello, this is a text file".to_vec()).await,
            Err(ProbeError::NotAVideo(_))
        ));
        assert!(probe(vec![0x1a, 0x45, 0xdf, 0xa3, 0, 0, 0, 0])
            .await
            .is_err());
        assert!(matches!(
            probe(Vec::new()).await,
            Err(ProbeError::NotAVideo(_))
        ));
    }

    fn ebml(id: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.extend_from_slice(&(0x0100_0000_0000_0000u64 | payload.len() as u64).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn mkv(duration_ns: Option<u32>) -> Vec<u8> {
        mkv_with(duration_ns.map(u64::from), true)
    }

    /// A Matroska file with one video track, preceded by an audio track when `sound` is set.
    fn mkv_with(duration_ns: Option<u64>, sound: bool) -> Vec<u8> {
        let mut entry = ebml(&[0x83], &[1]);
        if let Some(d) = duration_ns {
            entry.extend(ebml(&[0x23, 0xE3, 0x83], &d.to_be_bytes()));
        }
        let audio = if sound {
            ebml(&[0xAE], &ebml(&[0x83], &[2]))
        } else {
            Vec::new()
        };
        let tracks = ebml(
            &[0x16, 0x54, 0xAE, 0x6B],
            &[audio, ebml(&[0xAE], &entry)].concat(),
        );
        let info = ebml(&[0x15, 0x49, 0xA9, 0x66], &[0; 12]);
        let cluster = ebml(&[0x1F, 0x43, 0xB6, 0x75], &[0; 64]);
        let segment = ebml(&[0x18, 0x53, 0x80, 0x67], &[info, tracks, cluster].concat());
        [ebml(&EBML_MAGIC, &[0x42, 0x86, 0x81, 0x01]), segment].concat()
    }

    #[tokio::test]
    async fn reads_matroska_default_duration() {
        let rate = probe(mkv(Some(33_366_667))).await.unwrap();
        assert_eq!(rate.to_string(), "30000/1001");
        let rate = probe(mkv(Some(40_000_000))).await.unwrap();
        assert_eq!(rate.to_string(), "25/1");
        let rate = probe(mkv(Some(200_000_000))).await.unwrap();
        assert_eq!(rate.to_string(), "5/1");
        assert!(matches!(
            probe(mkv(None)).await,
            Err(ProbeError::OtherContainer(_))
        ));
        let mut cut = mkv(Some(40_000_000));
        cut.truncate(30);
        assert!(probe(cut).await.is_err());
    }

    /// A reader over `Bytes` that counts its requests and the bytes asked for.
    struct Counting {
        bytes: Vec<u8>,
        requests: std::sync::atomic::AtomicU64,
    }

    impl RangeRead for Counting {
        type Error = Never;
        async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, Never> {
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Bytes(self.bytes.clone()).read(offset, len).await
        }
    }

    #[tokio::test]
    async fn matroska_child_header_past_its_parent_is_an_error_not_a_panic() {
        // The TrackEntry's payload ends with the TrackType ID (0x83); its size byte is the
        // first byte after the entry, so the child's payload would start past the entry's end.
        let entry = [0x83];
        let tracks = ebml(
            &[0x16, 0x54, 0xAE, 0x6B],
            &[ebml(&[0xAE], &entry), ebml(&[0xAE], &ebml(&[0x83], &[1]))].concat(),
        );
        let segment = ebml(&[0x18, 0x53, 0x80, 0x67], &tracks);
        let bytes = [ebml(&EBML_MAGIC, &[0x42, 0x86, 0x81, 0x01]), segment].concat();
        assert!(probe(bytes).await.is_err());
    }

    #[tokio::test]
    async fn mp4_box_size_near_2_pow_64_is_refused() {
        let ftyp = bx(b"ftyp", b"isom\0\0\0\0");
        let offset = ftyp.len() as u64;
        // Sizes whose sum with the offset overflows, and one that wraps to exactly 0.
        for size64 in [u64::MAX, u64::MAX - offset + 1, u64::MAX / 2 + 1] {
            let mut huge = 1u32.to_be_bytes().to_vec();
            huge.extend_from_slice(b"free");
            huge.extend_from_slice(&size64.to_be_bytes());
            let bytes = [ftyp.clone(), huge, vec![0; 64]].concat();
            let reader = Counting {
                bytes,
                requests: Default::default(),
            };
            let size = reader.bytes.len() as u64;
            let error = probe_rate(&reader, size).await.unwrap_err();
            assert!(
                matches!(error, ProbeError::Truncated(_)),
                "{size64}: {error}"
            );
            assert!(reader.requests.into_inner() <= 3, "{size64}");
        }
    }

    #[tokio::test]
    async fn many_small_boxes_exhaust_the_request_budget() {
        // 50,000 8-byte `free` boxes: one ranged GET each without a budget.
        let mut bytes = bx(b"ftyp", b"isom\0\0\0\0");
        for _ in 0..50_000 {
            bytes.extend(bx(b"free", &[]));
        }
        let reader = Counting {
            bytes,
            requests: Default::default(),
        };
        let size = reader.bytes.len() as u64;
        let error = probe_rate(&reader, size).await.unwrap_err();
        assert!(
            matches!(error, ProbeError::BudgetExhausted { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("budget"), "{error}");
        assert!(reader.requests.into_inner() <= u64::from(PROBE_MAX_REQUESTS));
    }

    /// Claims an object of `size` bytes whose first box is a `moov` of `moov` bytes, without
    /// holding it; records the largest read asked for.
    struct HugeMoov {
        moov: u64,
        largest: std::sync::atomic::AtomicU64,
    }

    impl RangeRead for HugeMoov {
        type Error = Never;
        async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, Never> {
            self.largest
                .fetch_max(len, std::sync::atomic::Ordering::Relaxed);
            let mut head = 1u32.to_be_bytes().to_vec();
            head.extend_from_slice(b"moov");
            head.extend_from_slice(&self.moov.to_be_bytes());
            let start = usize::try_from(offset).unwrap().min(head.len());
            let end = usize::try_from(offset + len).unwrap().min(head.len());
            Ok(head[start..end].to_vec())
        }
    }

    #[tokio::test]
    async fn an_index_larger_than_the_byte_budget_is_not_read() {
        let moov = PROBE_MAX_BYTES + 1;
        let reader = HugeMoov {
            moov,
            largest: Default::default(),
        };
        let error = probe_rate(&reader, moov + 1000).await.unwrap_err();
        assert!(
            matches!(error, ProbeError::BudgetExhausted { .. }),
            "{error}"
        );
        assert!(reader.largest.into_inner() <= 16);
    }

    #[tokio::test]
    async fn matroska_default_duration_near_2_pow_64_is_an_error() {
        for duration in [u64::MAX / 1000 + 1, u64::MAX / 2, u64::MAX] {
            let error = probe(mkv_with(Some(duration), false)).await.unwrap_err();
            assert!(
                matches!(error, ProbeError::Unsupported(_) | ProbeError::Malformed(_)),
                "{duration}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn garbage_boxes_do_not_panic() {
        for mut bytes in [mp4(30000, &[(300, 1001)], true, 10), mkv(Some(40_000_000))] {
            for i in (5..bytes.len()).step_by(3) {
                bytes[i] ^= 0xff;
                let _ = probe(bytes.clone()).await;
            }
        }
    }
}
