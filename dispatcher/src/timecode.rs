//! Frame indices as MediaConvert timecodes, and the plan that cuts one video into segments a
//! MediaConvert job each (`InputClippings`), for segmented capture (issue 21). Pure arithmetic:
//! no AWS, no I/O.
//!
//! # What MediaConvert documents, and what we decided
//!
//! - An input clip's `StartTimecode` and `EndTimecode` are read on the input's timeline, and
//!   "the frame corresponding to the Start/End timecode value is included in the clip"; either
//!   may be left blank, "but not both" (API Reference, `InputClipping`,
//!   <https://docs.aws.amazon.com/mediaconvert/latest/apireference/jobs.html#jobs-prop-inputclipping-endtimecode>).
//!   The API model's pattern for both is `^([01][0-9]|2[0-4]):[0-5][0-9]:[0-5][0-9][:;][0-9]{2}$`
//!   (the SDKs name the shape `__stringPattern010920405090509092`). All clips are "included in
//!   every output of the job", the MP4 preview too.
//! - The input's `TimecodeSource` decides that timeline: EMBEDDED (the default) uses the
//!   input's own timecode (a camera's `tmcd` track starting at 01:00:00:00 would shift every
//!   label), ZEROBASED "sets the timecode of the first frame of the input to 00:00:00:00",
//!   SPECIFIEDSTART to `TimecodeStart` (User Guide, "Adjusting the input timeline with the input
//!   timecode source", <https://docs.aws.amazon.com/mediaconvert/latest/ug/timecode-input.html>).
//!   Segments use **ZEROBASED**, so a label is a function of the frame index alone.
//! - "To provide frame accuracy for video inputs, MediaConvert uses timecodes that specify
//!   frames by frame number, not by millisecond. All timecodes are in the following 24-hour
//!   format with a frame number: HH:MM:SS:FF. For drop frame, MediaConvert uses a semicolon
//!   before the frame number: HH:MM:SS;FF." (User Guide, "Setting up timecodes",
//!   <https://docs.aws.amazon.com/mediaconvert/latest/ug/setting-up-timecode.html>). So `:` is
//!   non-drop-frame: a pure frame counter, `FF` running 0..nominal−1 where the nominal rate is
//!   the rate rounded up (30 for 30000/1001, 24 for 24000/1001), and `;` is SMPTE drop-frame.
//!
//! **Decision:** segment boundaries are written in non-drop-frame (`HH:MM:SS:FF`) at every
//! rate, 29.97 included: with frames counted by number, index i is label
//! `i = ((HH·60 + MM)·60 + SS)·nominal + FF` with no skipped labels and no rule to get wrong.
//! Drop-frame (`;`) is implemented for 30000/1001 only (labels `MM:00;00` and `MM:00;01` do not
//! exist unless MM is a multiple of 10), because that is the only rate the SMPTE rule and
//! MediaConvert's `DropFrameTimecode` ("Applies only to 29.97 fps outputs") name. 23.976 has no
//! drop-frame rule at all: 24000/1001 counts 24 labels a second, so its timecode runs 0.1 %
//! slow against the clock and reaches 00:59:56:10 after one hour of real time; what MediaConvert
//! does with a `;` at 23.976 is not documented (**unverified**), so [`Timebase::parse`] refuses
//! it and the planner never writes one.
//!
//! **Unverified on the service** (no AWS account is reachable from here): that ZEROBASED at
//! 30000/1001 reads `:` labels as the frame counter above and not as a wall-clock time at a
//! nominal 30 fps. Wrong, the error would grow to about 3.6 frames a minute; the segmented flow
//! guards it by requiring each segment's captured count to equal its plan (`MaxCaptures` =
//! planned + 1) and falling back to one unsegmented job on a mismatch. The stand-in
//! implements the same documented reading.
//!
//! # Segments
//!
//! [`plan_segments`] cuts frames `0..F` into N segments `[s_k, e_k]` with `s_k = ⌊k·F/N⌋` and
//! `e_k = s_{k+1} − 1`: contiguous and disjoint by construction. [`plan_capture`] decides
//! whether a probed video may be segmented at all and says why not when it may not.

use std::fmt;

use crate::rate::{CaptureRate, EditList, FrameTiming, VideoHeader};

/// How the frame field is separated, which says how labels count frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Notation {
    /// `HH:MM:SS:FF`: every label exists; index = seconds label × nominal rate + FF.
    NonDrop,
    /// `HH:MM:SS;FF`: SMPTE drop-frame at 30000/1001 (labels ;00 and ;01 skipped at the start
    /// of every minute not divisible by 10).
    DropFrame,
}

/// Why a timecode cannot be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimecodeError {
    /// The text does not match MediaConvert's pattern
    /// `^([01][0-9]|2[0-4]):[0-5][0-9]:[0-5][0-9][:;][0-9]{2}$`.
    #[error("`{0}` is not a timecode: use HH:MM:SS:FF or HH:MM:SS;FF (hours 00-24)")]
    Malformed(String),
    /// FF is not below the nominal rate.
    #[error("`{text}`: frame {frame} does not exist at {nominal} frames per second")]
    FrameOutOfRange {
        /// The timecode as given.
        text: String,
        /// Its FF.
        frame: u32,
        /// Labels per second.
        nominal: u32,
    },
    /// A drop-frame label at a rate that has no drop-frame rule.
    #[error("`{text}`: drop-frame timecode (`;`) exists only at 30000/1001, not at {rate}")]
    DropFrameUnsupported {
        /// The timecode as given.
        text: String,
        /// The rate.
        rate: CaptureRate,
    },
    /// A drop-frame label that the rule skips (MM:00;00 and MM:00;01, MM not a multiple of 10).
    #[error("`{0}` is skipped by drop-frame counting")]
    DroppedLabel(String),
    /// A frame index past the last label the pattern can write (24:59:59:FF).
    #[error(
        "frame {index} is past the last timecode MediaConvert accepts (24:59:59 and its frames)"
    )]
    IndexTooLarge {
        /// The index.
        index: u64,
    },
    /// A rate whose timecode rule is not implemented.
    #[error("no timecode rule for {0} fps: integer rates 1..=60, 24000/1001 and 30000/1001 are supported")]
    UnsupportedRate(CaptureRate),
}

/// The timecode rule of one frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timebase {
    rate: CaptureRate,
    nominal: u32,
    drop_frame: bool,
}

/// Frames per 10 minutes in 30000/1001 drop-frame (10·60·30 − 9·2).
const DF_FRAMES_PER_10_MIN: u64 = 17_982;
/// Frames per dropped minute in 30000/1001 drop-frame (60·30 − 2).
const DF_FRAMES_PER_MIN: u64 = 1_798;
/// Highest hour the pattern accepts.
const MAX_HOURS: u64 = 24;

impl Timebase {
    /// The rule for `rate`: integer rates 1..=60, 24000/1001 (24 labels a second, no drop-frame)
    /// and 30000/1001 (30 labels a second, drop-frame available).
    pub fn new(rate: CaptureRate) -> Result<Self, TimecodeError> {
        let (nominal, drop_frame) = match (rate.numerator, rate.denominator) {
            (n, 1) if (1..=60).contains(&n) => (n, false),
            (24000, 1001) => (24, false),
            (30000, 1001) => (30, true),
            _ => return Err(TimecodeError::UnsupportedRate(rate)),
        };
        Ok(Self {
            rate,
            nominal,
            drop_frame,
        })
    }

    /// The frame rate.
    pub fn rate(&self) -> CaptureRate {
        self.rate
    }

    /// Labels per second (FF runs `0..nominal`).
    pub fn nominal(&self) -> u32 {
        self.nominal
    }

    /// True when drop-frame (`;`) labels exist at this rate.
    pub fn has_drop_frame(&self) -> bool {
        self.drop_frame
    }

    /// Number of labels from 00:00:00:00 through 24:59:59 and its last frame, before
    /// drop-frame removes any.
    fn label_count(&self) -> u64 {
        (MAX_HOURS * 3600 + 59 * 60 + 60) * u64::from(self.nominal)
    }

    /// The largest frame index that has a label in `notation`.
    pub fn max_index(&self, notation: Notation) -> u64 {
        let labels = self.label_count();
        match notation {
            Notation::NonDrop => labels - 1,
            // Every minute label not divisible by 10 loses 2: 25 hours = 1500 minutes, of
            // which 150 are divisible by 10.
            Notation::DropFrame => labels - 1 - 2 * (1500 - 150),
        }
    }

    /// The timecode of frame `index` (0-based, as ZEROBASED counts).
    pub fn format(&self, index: u64, notation: Notation) -> Result<String, TimecodeError> {
        self.fields(index, notation)
            .map(|fields| fields.to_string())
    }

    /// The frame index of `text`, checked against MediaConvert's pattern and this rate.
    pub fn parse(&self, text: &str) -> Result<u64, TimecodeError> {
        self.index(&TimecodeFields::parse(text)?)
    }

    /// The label of frame `index` as fields.
    pub fn fields(&self, index: u64, notation: Notation) -> Result<TimecodeFields, TimecodeError> {
        if notation == Notation::DropFrame && !self.drop_frame {
            return Err(TimecodeError::DropFrameUnsupported {
                text: format!("frame {index}"),
                rate: self.rate,
            });
        }
        if index > self.max_index(notation) {
            return Err(TimecodeError::IndexTooLarge { index });
        }
        let label = match notation {
            Notation::NonDrop => index,
            Notation::DropFrame => {
                let tens = index / DF_FRAMES_PER_10_MIN;
                let rest = index % DF_FRAMES_PER_10_MIN;
                // The first minute of each ten keeps all its labels; each later one starts 2
                // labels late.
                let skipped = if rest < 2 {
                    0
                } else {
                    2 * ((rest - 2) / DF_FRAMES_PER_MIN)
                };
                index + 18 * tens + skipped
            }
        };
        let nominal = u64::from(self.nominal);
        let seconds = label / nominal;
        // index ≤ max_index keeps hours ≤ 24: every field fits in u32.
        let field = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Ok(TimecodeFields {
            hours: field(seconds / 3600),
            minutes: field(seconds / 60 % 60),
            seconds: field(seconds % 60),
            frames: field(label % nominal),
            notation,
        })
    }

    /// The frame index `fields` name at this rate.
    pub fn index(&self, fields: &TimecodeFields) -> Result<u64, TimecodeError> {
        if fields.frames >= self.nominal {
            return Err(TimecodeError::FrameOutOfRange {
                text: fields.to_string(),
                frame: fields.frames,
                nominal: self.nominal,
            });
        }
        let nominal = u64::from(self.nominal);
        let minutes = u64::from(fields.hours) * 60 + u64::from(fields.minutes);
        let label = (minutes * 60 + u64::from(fields.seconds)) * nominal + u64::from(fields.frames);
        match fields.notation {
            Notation::NonDrop => Ok(label),
            Notation::DropFrame => {
                if !self.drop_frame {
                    return Err(TimecodeError::DropFrameUnsupported {
                        text: fields.to_string(),
                        rate: self.rate,
                    });
                }
                if fields.seconds == 0 && fields.frames < 2 && !fields.minutes.is_multiple_of(10) {
                    return Err(TimecodeError::DroppedLabel(fields.to_string()));
                }
                Ok(label - 2 * (minutes - minutes / 10))
            }
        }
    }
}

/// A timecode's fields, as MediaConvert's pattern accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimecodeFields {
    /// 00..=24.
    pub hours: u32,
    /// 00..=59.
    pub minutes: u32,
    /// 00..=59.
    pub seconds: u32,
    /// 00..=99 by the pattern; below the nominal rate to exist.
    pub frames: u32,
    /// `:` or `;`.
    pub notation: Notation,
}

impl TimecodeFields {
    /// Checks `text` against `^([01][0-9]|2[0-4]):[0-5][0-9]:[0-5][0-9][:;][0-9]{2}$`.
    pub fn parse(text: &str) -> Result<Self, TimecodeError> {
        let bad = || TimecodeError::Malformed(text.to_string());
        let b = text.as_bytes();
        if b.len() != 11 || b[2] != b':' || b[5] != b':' {
            return Err(bad());
        }
        let two = |at: usize| -> Option<u32> {
            let (t, u) = (b[at], b[at + 1]);
            (t.is_ascii_digit() && u.is_ascii_digit())
                .then(|| u32::from(t - b'0') * 10 + u32::from(u - b'0'))
        };
        let notation = match b[8] {
            b':' => Notation::NonDrop,
            b';' => Notation::DropFrame,
            _ => return Err(bad()),
        };
        let (Some(hours), Some(minutes), Some(seconds), Some(frames)) =
            (two(0), two(3), two(6), two(9))
        else {
            return Err(bad());
        };
        if hours > 24 || minutes > 59 || seconds > 59 {
            return Err(bad());
        }
        Ok(Self {
            hours,
            minutes,
            seconds,
            frames,
            notation,
        })
    }
}

/// One segment: source frames `first..=last`, and the clip that selects them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// 0-based position in the plan.
    pub index: u32,
    /// First source frame (global index).
    pub first: u64,
    /// Last source frame, inclusive.
    pub last: u64,
    /// `InputClipping.StartTimecode`; `None` for the first segment (the clip starts at the
    /// input's first frame).
    pub start_timecode: Option<String>,
    /// `InputClipping.EndTimecode`; `None` for the last segment (the clip runs to the input's
    /// end, so a last frame the header counts but the decoder drops cannot shift anything).
    pub end_timecode: Option<String>,
}

impl Segment {
    /// Frames in the segment: what its capture must count.
    pub fn frames(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// `[s_k, e_k]` for k in 0..n: `s_k = ⌊k·F/N⌋`, `e_k = s_{k+1} − 1`. Empty when `frames` or
/// `n` is 0; `n` is lowered to `frames` so no segment is empty.
pub fn plan_segments(frames: u64, n: u32) -> Vec<(u64, u64)> {
    let n = u64::from(n).min(frames);
    let start = |k: u64| -> u64 {
        // k ≤ n ≤ frames, so k·frames/n ≤ frames: the quotient fits in u64.
        u64::try_from(u128::from(k) * u128::from(frames) / u128::from(n)).unwrap_or(frames)
    };
    (0..n).map(|k| (start(k), start(k + 1) - 1)).collect()
}

/// When a video is segmented, and into how many parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentPolicy {
    /// Shortest video (ms) that is segmented at all: a burst of short uploads split into
    /// segments would starve MediaConvert's concurrent job slots.
    pub min_duration_ms: u64,
    /// Each segment covers at least this much video (ms); N = ⌊duration / this⌋.
    pub segment_ms: u64,
    /// Most segments per video.
    pub max_segments: u32,
    /// Most frames one capture may count (`MaxCaptures`' limit).
    pub max_frames: u64,
}

/// Why a video is captured as one job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSegmented {
    /// Only a header with a frame count (MP4/QuickTime `stts`) lets segments be exact.
    #[error("the container header gives no frame count (Matroska/WebM, a fragmented MP4, or a container the probe does not read)")]
    NoFrameCount,
    /// Frame timestamps are not evenly spaced, so timecodes do not name frames.
    #[error("variable frame rate")]
    VariableFrameRate,
    /// An edit list that hides, delays or retimes frames.
    #[error("an edit list that shifts the timeline ({0})")]
    ShiftingEditList(String),
    /// Segments capture every frame; a configured capture rate samples instead.
    #[error("capture rate {capture} is not the video's own rate {source_rate}")]
    NotEveryFrame {
        /// The configured capture rate.
        capture: CaptureRate,
        /// The video's rate.
        source_rate: CaptureRate,
    },
    /// No timecode rule, or one the segmented flow does not use.
    #[error("{0}")]
    UnsupportedRate(TimecodeError),
    /// Below the policy's minimum.
    #[error("{duration_ms} ms is shorter than the {min_ms} ms worth segmenting")]
    TooShort {
        /// The video's duration.
        duration_ms: u64,
        /// The policy's minimum.
        min_ms: u64,
    },
    /// More frames than one capture may count: today's single job truncates at
    /// `MaxCaptures` as well, so segmenting would change what is captured.
    #[error("{frames} frames is more than {max} captures")]
    TooManyFrames {
        /// Frames in the video.
        frames: u64,
        /// The limit.
        max: u64,
    },
    /// A boundary past the last label the timecode pattern can write.
    #[error("{0}")]
    Unlabelled(TimecodeError),
}

/// The segments of one video, and the facts they were planned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPlan {
    /// Frames in the video (F).
    pub frames: u64,
    /// The frame rate the timecodes count.
    pub rate: CaptureRate,
    /// The notation every boundary is written in.
    pub notation: Notation,
    /// The segments, in order; at least 2.
    pub segments: Vec<Segment>,
}

/// Segments `header` when it may be, capturing at `capture`; otherwise the reason it stays one
/// job. Eligible: a frame count, constant frame rate, no edit list that shifts the timeline,
/// `capture` equal to the video's rate, a timecode rule for it, and a duration of at least
/// `policy.min_duration_ms` that makes at least 2 segments of `policy.segment_ms`.
pub fn plan_capture(
    header: &VideoHeader,
    capture: CaptureRate,
    policy: &SegmentPolicy,
) -> Result<SegmentPlan, NotSegmented> {
    let (Some(frames), Some(duration_ms)) = (header.frames, header.duration_ms) else {
        return Err(NotSegmented::NoFrameCount);
    };
    match header.timing {
        FrameTiming::Constant => {}
        FrameTiming::Variable => return Err(NotSegmented::VariableFrameRate),
        FrameTiming::Unknown => return Err(NotSegmented::NoFrameCount),
    }
    if let EditList::Shifting(shift) = header.edit_list {
        return Err(NotSegmented::ShiftingEditList(shift.to_string()));
    }
    if capture != header.rate {
        return Err(NotSegmented::NotEveryFrame {
            capture,
            source_rate: header.rate,
        });
    }
    let timebase = Timebase::new(header.rate).map_err(NotSegmented::UnsupportedRate)?;
    if frames > policy.max_frames {
        return Err(NotSegmented::TooManyFrames {
            frames,
            max: policy.max_frames,
        });
    }
    let n = duration_ms
        .checked_div(policy.segment_ms)
        .unwrap_or(0)
        .min(u64::from(policy.max_segments))
        .min(frames);
    if duration_ms < policy.min_duration_ms || n < 2 {
        return Err(NotSegmented::TooShort {
            duration_ms,
            min_ms: policy
                .min_duration_ms
                .max(policy.segment_ms.saturating_mul(2)),
        });
    }
    let n = u32::try_from(n).unwrap_or(policy.max_segments);
    let bounds = plan_segments(frames, n);
    let count = bounds.len();
    let label = |index: u64| {
        timebase
            .format(index, Notation::NonDrop)
            .map_err(NotSegmented::Unlabelled)
    };
    let mut segments = Vec::with_capacity(count);
    for (k, &(first, last)) in bounds.iter().enumerate() {
        segments.push(Segment {
            index: u32::try_from(k).unwrap_or(u32::MAX),
            first,
            last,
            start_timecode: if k == 0 { None } else { Some(label(first)?) },
            end_timecode: if k + 1 == count {
                None
            } else {
                Some(label(last)?)
            },
        });
    }
    Ok(SegmentPlan {
        frames,
        rate: header.rate,
        notation: Notation::NonDrop,
        segments,
    })
}

impl fmt::Display for TimecodeFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = match self.notation {
            Notation::NonDrop => ':',
            Notation::DropFrame => ';',
        };
        write!(
            f,
            "{:02}:{:02}:{:02}{sep}{:02}",
            self.hours, self.minutes, self.seconds, self.frames
        )
    }
}

impl fmt::Display for Notation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NonDrop => "non-drop-frame (HH:MM:SS:FF)",
            Self::DropFrame => "drop-frame (HH:MM:SS;FF)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::EditShift;

    fn rate(text: &str) -> CaptureRate {
        CaptureRate::parse(text).unwrap()
    }

    fn timebase(text: &str) -> Timebase {
        Timebase::new(rate(text)).unwrap()
    }

    #[test]
    fn integer_rates_count_frames_by_number() {
        let tb = timebase("25");
        assert_eq!(tb.format(0, Notation::NonDrop).unwrap(), "00:00:00:00");
        assert_eq!(tb.format(24, Notation::NonDrop).unwrap(), "00:00:00:24");
        assert_eq!(tb.format(25, Notation::NonDrop).unwrap(), "00:00:01:00");
        assert_eq!(tb.format(90_000, Notation::NonDrop).unwrap(), "01:00:00:00");
        assert_eq!(tb.parse("00:01:00:00").unwrap(), 1500);
        assert!(matches!(
            tb.parse("00:00:00:25"),
            Err(TimecodeError::FrameOutOfRange {
                frame: 25,
                nominal: 25,
                ..
            })
        ));
        assert!(matches!(
            tb.parse("00:00:00;05"),
            Err(TimecodeError::DropFrameUnsupported { .. })
        ));
        assert!(matches!(
            tb.format(5, Notation::DropFrame),
            Err(TimecodeError::DropFrameUnsupported { .. })
        ));
        let tb = timebase("30");
        assert_eq!(tb.format(1800, Notation::NonDrop).unwrap(), "00:01:00:00");
    }

    #[test]
    fn ntsc_rates_have_nominal_labels() {
        let ntsc = timebase("30000/1001");
        assert_eq!(ntsc.nominal(), 30);
        assert!(ntsc.has_drop_frame());
        // The design note's examples.
        assert_eq!(
            ntsc.format(64_999, Notation::NonDrop).unwrap(),
            "00:36:06:19"
        );
        assert_eq!(
            ntsc.format(64_999, Notation::DropFrame).unwrap(),
            "00:36:08;25"
        );
        assert_eq!(ntsc.format(1800, Notation::NonDrop).unwrap(), "00:01:00:00");
        assert_eq!(
            ntsc.format(1800, Notation::DropFrame).unwrap(),
            "00:01:00;02"
        );
        assert_eq!(
            ntsc.format(1799, Notation::DropFrame).unwrap(),
            "00:00:59;29"
        );
        assert_eq!(
            ntsc.format(17_982, Notation::DropFrame).unwrap(),
            "00:10:00;00"
        );
        assert_eq!(
            ntsc.format(17_981, Notation::DropFrame).unwrap(),
            "00:09:59;29"
        );
        // One hour of real time is 107,892 frames: 01:00:00;00 in drop-frame.
        assert_eq!(
            ntsc.format(107_892, Notation::DropFrame).unwrap(),
            "01:00:00;00"
        );
        assert!(matches!(
            ntsc.parse("00:01:00;00"),
            Err(TimecodeError::DroppedLabel(_))
        ));
        assert!(matches!(
            ntsc.parse("00:01:00;01"),
            Err(TimecodeError::DroppedLabel(_))
        ));
        assert_eq!(ntsc.parse("00:10:00;00").unwrap(), 17_982);
        assert_eq!(ntsc.parse("00:10:00;01").unwrap(), 17_983);
        // 23.976: 24 labels a second and no drop-frame.
        let film = timebase("24000/1001");
        assert_eq!(film.nominal(), 24);
        assert!(!film.has_drop_frame());
        assert_eq!(
            film.format(86_400, Notation::NonDrop).unwrap(),
            "01:00:00:00"
        );
        assert!(matches!(
            film.parse("00:00:01;00"),
            Err(TimecodeError::DropFrameUnsupported { .. })
        ));
        for unsupported in ["60000/1001", "61", "5000/1001"] {
            assert!(Timebase::new(rate(unsupported)).is_err(), "{unsupported}");
        }
    }

    #[test]
    fn the_pattern_is_mediaconverts() {
        for good in ["00:00:00:00", "24:59:59:99", "19:00:00;00", "23:59:59:29"] {
            TimecodeFields::parse(good).unwrap();
        }
        for bad in [
            "",
            "0:00:00:00",
            "25:00:00:00",
            "00:60:00:00",
            "00:00:60:00",
            "00:00:00.00",
            "00;00:00:00",
            "00:00:00:0",
            "00:00:00:000",
            "aa:00:00:00",
            "00:00:00:0x",
            "+0:00:00:00",
            "00:00:00:00\n",
        ] {
            assert!(
                matches!(TimecodeFields::parse(bad), Err(TimecodeError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    /// Every frame index below 10M at 30000/1001, both notations: the label and back, checked
    /// against an enumeration of the labels that shares no arithmetic with the rule (walk every
    /// label in order, skip the ones drop-frame skips, number the rest). The pattern's hours
    /// stop at 24, so labels end near index 2.7M (25 hours); every index after that is refused
    /// rather than wrapped.
    #[test]
    fn every_index_below_ten_million_round_trips_at_29_97() {
        let ntsc = timebase("30000/1001");
        for notation in [Notation::NonDrop, Notation::DropFrame] {
            let last = ntsc.max_index(notation);
            assert!((2_690_000..2_700_000).contains(&last), "{last}");
            let mut expected = TimecodeFields {
                hours: 0,
                minutes: 0,
                seconds: 0,
                frames: 0,
                notation,
            };
            for index in 0..10_000_000u64 {
                if index > last {
                    assert_eq!(
                        ntsc.fields(index, notation),
                        Err(TimecodeError::IndexTooLarge { index })
                    );
                    continue;
                }
                let fields = ntsc.fields(index, notation).unwrap();
                assert_eq!(fields, expected, "{index}");
                assert_eq!(ntsc.index(&fields).unwrap(), index, "{fields}");
                // The next label that exists.
                loop {
                    expected.frames += 1;
                    if expected.frames == 30 {
                        expected.frames = 0;
                        expected.seconds += 1;
                    }
                    if expected.seconds == 60 {
                        expected.seconds = 0;
                        expected.minutes += 1;
                    }
                    if expected.minutes == 60 {
                        expected.minutes = 0;
                        expected.hours += 1;
                    }
                    let dropped = notation == Notation::DropFrame
                        && expected.seconds == 0
                        && expected.frames < 2
                        && !expected.minutes.is_multiple_of(10);
                    if !dropped {
                        break;
                    }
                }
            }
        }
        // The text layer, on a sample.
        for index in (0..2_690_000u64).step_by(997) {
            for notation in [Notation::NonDrop, Notation::DropFrame] {
                let text = ntsc.format(index, notation).unwrap();
                assert_eq!(ntsc.parse(&text).unwrap(), index, "{text}");
            }
        }
    }

    #[test]
    fn the_last_labels_round_trip_and_later_indices_fail() {
        for (text, notation) in [
            ("30000/1001", Notation::NonDrop),
            ("30000/1001", Notation::DropFrame),
            ("25", Notation::NonDrop),
            ("24000/1001", Notation::NonDrop),
        ] {
            let tb = timebase(text);
            let last = tb.max_index(notation);
            let label = tb.format(last, notation).unwrap();
            assert!(label.starts_with("24:59:59"), "{text}: {label}");
            assert_eq!(tb.parse(&label).unwrap(), last);
            assert!(matches!(
                tb.format(last + 1, notation),
                Err(TimecodeError::IndexTooLarge { .. })
            ));
        }
    }

    #[test]
    fn segments_partition_the_frames() {
        for frames in [1u64, 2, 7, 99, 100, 101, 65_000, 10_000_000] {
            for n in [1u32, 2, 3, 7, 9, 16, 200] {
                let bounds = plan_segments(frames, n);
                assert_eq!(bounds.len() as u64, u64::from(n).min(frames));
                assert_eq!(bounds.first().unwrap().0, 0);
                assert_eq!(bounds.last().unwrap().1, frames - 1);
                for pair in bounds.windows(2) {
                    assert_eq!(pair[0].1 + 1, pair[1].0, "{frames}/{n}: contiguous");
                }
                let sizes: Vec<u64> = bounds.iter().map(|(s, e)| e - s + 1).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{frames}/{n}: balanced {sizes:?}");
                assert_eq!(sizes.iter().sum::<u64>(), frames);
            }
        }
        assert!(plan_segments(0, 4).is_empty());
        assert!(plan_segments(10, 0).is_empty());
    }

    fn header(frames: u64, rate_text: &str) -> VideoHeader {
        let rate = rate(rate_text);
        VideoHeader {
            rate,
            has_audio: false,
            frames: Some(frames),
            timing: FrameTiming::Constant,
            edit_list: EditList::Whole { media_time: 1024 },
            has_timecode_track: true,
            duration_ms: Some(
                u64::try_from(
                    u128::from(frames) * 1000 * u128::from(rate.denominator)
                        / u128::from(rate.numerator),
                )
                .unwrap(),
            ),
        }
    }

    const POLICY: SegmentPolicy = SegmentPolicy {
        min_duration_ms: 480_000,
        segment_ms: 240_000,
        max_segments: 16,
        max_frames: 10_000_000,
    };

    #[test]
    fn a_long_constant_rate_video_is_planned_with_labelled_boundaries() {
        // 65,000 frames at 29.97: 2168.8 s, 9 segments of at least 240 s.
        let plan =
            plan_capture(&header(65_000, "30000/1001"), rate("30000/1001"), &POLICY).unwrap();
        assert_eq!(plan.segments.len(), 9);
        assert_eq!(plan.notation, Notation::NonDrop);
        let ntsc = timebase("30000/1001");
        let first = &plan.segments[0];
        assert_eq!(first.start_timecode, None);
        assert_eq!(first.first, 0);
        let last = plan.segments.last().unwrap();
        assert_eq!(last.end_timecode, None);
        assert_eq!(last.last, 64_999);
        for pair in plan.segments.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert_eq!(a.last + 1, b.first);
            assert_eq!(
                ntsc.parse(a.end_timecode.as_ref().unwrap()).unwrap(),
                a.last
            );
            assert_eq!(
                ntsc.parse(b.start_timecode.as_ref().unwrap()).unwrap(),
                b.first
            );
        }
        assert_eq!(
            plan.segments.iter().map(Segment::frames).sum::<u64>(),
            65_000
        );
        // Capped at max_segments.
        let plan = plan_capture(&header(2_000_000, "25"), rate("25"), &POLICY).unwrap();
        assert_eq!(plan.segments.len(), 16);
    }

    #[test]
    fn ineligible_videos_say_why() {
        let ntsc = rate("30000/1001");
        let long = header(65_000, "30000/1001");
        let reason = |header: VideoHeader, capture: CaptureRate| {
            plan_capture(&header, capture, &POLICY).unwrap_err()
        };
        assert_eq!(
            reason(
                VideoHeader {
                    timing: FrameTiming::Variable,
                    ..long
                },
                ntsc
            ),
            NotSegmented::VariableFrameRate
        );
        assert_eq!(
            reason(
                VideoHeader {
                    frames: None,
                    timing: FrameTiming::Unknown,
                    ..long
                },
                ntsc
            ),
            NotSegmented::NoFrameCount
        );
        let shifted = reason(
            VideoHeader {
                edit_list: EditList::Shifting(EditShift::StartsLate),
                ..long
            },
            ntsc,
        );
        assert!(
            matches!(shifted, NotSegmented::ShiftingEditList(_)),
            "{shifted}"
        );
        assert!(shifted.to_string().contains("skips frames"), "{shifted}");
        assert!(matches!(
            reason(long, rate("5")),
            NotSegmented::NotEveryFrame { .. }
        ));
        assert!(matches!(
            reason(header(200_000, "60000/1001"), rate("60000/1001")),
            NotSegmented::UnsupportedRate(_)
        ));
        // 7 minutes: under the 8-minute minimum.
        assert!(matches!(
            reason(header(12_600, "30"), rate("30")),
            NotSegmented::TooShort { .. }
        ));
        assert!(matches!(
            reason(header(10_000_001, "30"), rate("30")),
            NotSegmented::TooManyFrames { .. }
        ));
        // 100 hours at 30 fps: boundaries past 24:59:59 have no label.
        assert!(matches!(
            reason(header(10_000_000, "30"), rate("30")),
            NotSegmented::Unlabelled(TimecodeError::IndexTooLarge { .. })
        ));
        // No edit list at all is as good as a whole one.
        plan_capture(
            &VideoHeader {
                edit_list: EditList::None,
                ..long
            },
            ntsc,
            &POLICY,
        )
        .unwrap();
    }
}
