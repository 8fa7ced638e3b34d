//! Input timecodes as MediaConvert documents them, for `InputClippings` and the input's
//! `TimecodeSource`. Written apart from the dispatcher's `timecode` module on purpose: the
//! stand-in is the reference the dispatcher is tested against, so the two must not share a bug.
//!
//! - Clip timecodes match `^([01][0-9]|2[0-4]):[0-5][0-9]:[0-5][0-9][:;][0-9]{2}$` (API model,
//!   `InputClipping.StartTimecode`/`EndTimecode`; the SDKs name the shape
//!   `__stringPattern010920405090509092`), and "the frame corresponding to the Start/End
//!   timecode value is included in the clip".
//! - `Input.TimecodeStart` (SPECIFIEDSTART) matches
//!   `^((([0-1]\d)|(2[0-3]))(:[0-5]\d){2}([:;][0-5]\d))$` (shape
//!   `__stringMin11Max11Pattern01D20305D205D`; the pattern is read from the shape's name and is
//!   **unverified** beyond it).
//! - "MediaConvert uses timecodes that specify frames by frame number … HH:MM:SS:FF. For drop
//!   frame, MediaConvert uses a semicolon before the frame number: HH:MM:SS;FF." (User Guide,
//!   "Setting up timecodes"). So `:` counts nominal-rate frames (30 a second at 29.97, 24 at
//!   23.976) and `;` is SMPTE drop-frame, which exists at 30000/1001 only. What MediaConvert
//!   does with `;` at another rate, and whether a frame number at or past the rate is a
//!   CreateJob error or a job error, are **unverified**: the stand-in ends such a job in ERROR
//!   with a message, because only the input's probe tells the rate.

use std::fmt;

/// A timecode's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timecode {
    /// 00..=24.
    pub hours: u32,
    /// 00..=59.
    pub minutes: u32,
    /// 00..=59.
    pub seconds: u32,
    /// 00..=99 as written.
    pub frames: u32,
    /// Written with `;`.
    pub drop_frame: bool,
}

/// The pattern clip timecodes must match, as the API model writes it.
pub const CLIP_PATTERN: &str = "^([01][0-9]|2[0-4]):[0-5][0-9]:[0-5][0-9][:;][0-9]{2}$";
/// The pattern `timecodeStart` must match (read from the API model's shape name).
pub const START_PATTERN: &str = r"^((([0-1]\d)|(2[0-3]))(:[0-5]\d){2}([:;][0-5]\d))$";

impl Timecode {
    /// A clip timecode, or `None` when `text` does not match [`CLIP_PATTERN`].
    pub fn parse_clip(text: &str) -> Option<Self> {
        let tc = Self::parse_fields(text)?;
        (tc.hours <= 24).then_some(tc)
    }

    /// A `timecodeStart`, or `None` when `text` does not match [`START_PATTERN`].
    pub fn parse_start(text: &str) -> Option<Self> {
        let tc = Self::parse_fields(text)?;
        (tc.hours <= 23 && tc.frames <= 59).then_some(tc)
    }

    fn parse_fields(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 11 || b[2] != b':' || b[5] != b':' || !matches!(b[8], b':' | b';') {
            return None;
        }
        let pair = |at: usize| {
            let (hi, lo) = (b[at], b[at + 1]);
            (hi.is_ascii_digit() && lo.is_ascii_digit())
                .then(|| u32::from(hi - b'0') * 10 + u32::from(lo - b'0'))
        };
        let tc = Self {
            hours: pair(0)?,
            minutes: pair(3)?,
            seconds: pair(6)?,
            frames: pair(9)?,
            drop_frame: b[8] == b';',
        };
        (tc.minutes <= 59 && tc.seconds <= 59).then_some(tc)
    }

    /// (hours, minutes, seconds, frames): the order labels sort in at any rate.
    pub fn sort_key(&self) -> (u32, u32, u32, u32) {
        (self.hours, self.minutes, self.seconds, self.frames)
    }

    /// The frame number this label names at `numerator/denominator` fps, counted from
    /// 00:00:00:00; the error says why the label does not exist at that rate.
    pub fn frame_number(&self, numerator: u32, denominator: u32) -> Result<u64, String> {
        if numerator == 0 || denominator == 0 {
            return Err(format!("no timecode at {numerator}/{denominator} fps"));
        }
        // Labels per second: the rate rounded up (30 at 30000/1001, 24 at 24000/1001).
        let nominal = numerator.div_ceil(denominator);
        if self.frames >= nominal {
            return Err(format!(
                "timecode {self} has frame {} but the input runs at {numerator}/{denominator} fps ({nominal} frames a second)",
                self.frames
            ));
        }
        let minutes = u64::from(self.hours) * 60 + u64::from(self.minutes);
        let label =
            (minutes * 60 + u64::from(self.seconds)) * u64::from(nominal) + u64::from(self.frames);
        if !self.drop_frame {
            return Ok(label);
        }
        if (numerator, denominator) != (30000, 1001) {
            return Err(format!(
                "timecode {self} is drop-frame, which exists only at 29.97 (30000/1001) fps, not at {numerator}/{denominator}"
            ));
        }
        if self.seconds == 0 && self.frames < 2 && self.minutes % 10 != 0 {
            return Err(format!(
                "timecode {self} does not exist in drop-frame counting"
            ));
        }
        // Two labels skipped at every minute not divisible by 10.
        Ok(label - 2 * (minutes - minutes / 10))
    }
}

impl fmt::Display for Timecode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.drop_frame { ';' } else { ':' };
        write!(
            f,
            "{:02}:{:02}:{:02}{sep}{:02}",
            self.hours, self.minutes, self.seconds, self.frames
        )
    }
}

/// How the input's frames are labelled (`Input.TimecodeSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimecodeSource {
    /// `EMBEDDED` (the default): the input's own start timecode (a QuickTime `tmcd` track or
    /// the stream's timecode tag, as ffprobe reports it), 00:00:00:00 when it has none. The
    /// User Guide warns not to choose it without embedded timecodes; what MediaConvert then
    /// does is **unverified**, and the stand-in starts at zero, as the job-level
    /// `TimecodeConfig` documents for its own EMBEDDED.
    Embedded,
    /// `ZEROBASED`: the first frame is 00:00:00:00.
    ZeroBased,
    /// `SPECIFIEDSTART`: the first frame is `timecodeStart`.
    Specified(Timecode),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_pattern() {
        for good in ["00:00:00:00", "24:59:59:99", "01:02:03;04"] {
            assert!(Timecode::parse_clip(good).is_some(), "{good}");
        }
        for bad in [
            "25:00:00:00",
            "00:60:00:00",
            "00:00:60:00",
            "0:00:00:00",
            "00:00:00.00",
            "00;00:00:00",
            "",
            "00:00:00:000",
            "00:00:00:0a",
        ] {
            assert!(Timecode::parse_clip(bad).is_none(), "{bad}");
        }
        assert!(Timecode::parse_start("23:59:59:59").is_some());
        assert!(Timecode::parse_start("24:00:00:00").is_none());
        assert!(Timecode::parse_start("00:00:00:60").is_none());
    }

    #[test]
    fn frame_numbers_per_rate() {
        let tc = |text: &str| Timecode::parse_clip(text).unwrap();
        assert_eq!(tc("00:00:01:00").frame_number(25, 1), Ok(25));
        assert_eq!(tc("00:01:00:00").frame_number(30000, 1001), Ok(1800));
        assert_eq!(tc("00:01:00;02").frame_number(30000, 1001), Ok(1800));
        assert_eq!(tc("00:10:00;00").frame_number(30000, 1001), Ok(17_982));
        assert_eq!(tc("01:00:00:00").frame_number(24000, 1001), Ok(86_400));
        assert!(tc("00:00:00:25").frame_number(25, 1).is_err());
        assert!(tc("00:00:00:29").frame_number(30000, 1001).is_ok());
        assert!(tc("00:00:00;05").frame_number(25, 1).is_err());
        assert!(tc("00:00:00;05").frame_number(24000, 1001).is_err());
        assert!(tc("00:01:00;01").frame_number(30000, 1001).is_err());
    }
}
