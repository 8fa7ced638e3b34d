//! Reads an image's format and size from its first bytes, so limits are enforced before a
//! decoder allocates anything.

use crate::EdgeError;

const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];
const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Input encodings the kernel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// JPEG: baseline, extended, progressive, lossless 8-bit; YCbCr or greyscale.
    Jpeg,
    /// PNG of any colour type and bit depth.
    Png,
}

/// Format and declared size of an input, read from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Detected encoding.
    pub format: InputFormat,
    /// Declared width in pixels.
    pub width: u32,
    /// Declared height in pixels.
    pub height: u32,
}

impl ImageInfo {
    /// Refuses the image if its header declares more than `limit` pixels.
    pub fn check_limit(&self, limit: u64) -> Result<(), EdgeError> {
        if u64::from(self.width) * u64::from(self.height) > limit {
            return Err(EdgeError::TooLarge {
                width: self.width,
                height: self.height,
                limit,
            });
        }
        Ok(())
    }
}

/// Detects the format and reads the declared size without decoding any pixels.
///
/// Errors: [`EdgeError::Empty`], [`EdgeError::Truncated`] when the header is cut short,
/// [`EdgeError::UnsupportedFormat`], [`EdgeError::Corrupt`], [`EdgeError::ZeroSize`].
pub fn probe(input: &[u8]) -> Result<ImageInfo, EdgeError> {
    if input.is_empty() {
        return Err(EdgeError::Empty);
    }
    if input.starts_with(&JPEG_MAGIC) {
        return probe_jpeg(input);
    }
    if input.starts_with(&PNG_MAGIC) {
        return probe_png(input);
    }
    if JPEG_MAGIC.starts_with(input) || PNG_MAGIC.starts_with(input) {
        return Err(truncated("input ends inside the file signature"));
    }
    Err(EdgeError::UnsupportedFormat {
        what: describe_unknown(input).into(),
    })
}

fn describe_unknown(input: &[u8]) -> &'static str {
    let starts = |m: &[u8]| input.starts_with(m);
    if starts(b"GIF8") {
        "GIF"
    } else if starts(b"BM") {
        "BMP"
    } else if starts(b"RIFF") && input.get(8..12) == Some(b"WEBP") {
        "WebP"
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        "TIFF"
    } else if input.get(4..8) == Some(b"ftyp") {
        "ISO-BMFF (HEIF/AVIF/MP4)"
    } else {
        "unrecognised signature (expected JPEG or PNG)"
    }
}

fn truncated(reason: &str) -> EdgeError {
    EdgeError::Truncated {
        reason: reason.into(),
    }
}

fn corrupt(reason: String) -> EdgeError {
    EdgeError::Corrupt { reason }
}

fn sized(format: InputFormat, width: u32, height: u32) -> Result<ImageInfo, EdgeError> {
    if width == 0 || height == 0 {
        return Err(EdgeError::ZeroSize { width, height });
    }
    Ok(ImageInfo {
        format,
        width,
        height,
    })
}

fn probe_png(input: &[u8]) -> Result<ImageInfo, EdgeError> {
    // Signature, then the IHDR chunk: length (4), type (4), width (4), height (4).
    let Some(ihdr) = input.get(8..24) else {
        return Err(truncated("input ends inside the PNG header"));
    };
    if &ihdr[4..8] != b"IHDR" {
        return Err(corrupt("PNG does not start with an IHDR chunk".into()));
    }
    let width = u32::from_be_bytes([ihdr[8], ihdr[9], ihdr[10], ihdr[11]]);
    let height = u32::from_be_bytes([ihdr[12], ihdr[13], ihdr[14], ihdr[15]]);
    sized(InputFormat::Png, width, height)
}

fn probe_jpeg(input: &[u8]) -> Result<ImageInfo, EdgeError> {
    let mut pos = 2;
    loop {
        // Markers may be padded with any number of 0xFF fill bytes.
        match input.get(pos) {
            None => return Err(truncated("input ends before the JPEG frame header")),
            Some(0xFF) => {}
            Some(b) => {
                return Err(corrupt(format!(
                    "expected a JPEG marker at byte {pos}, found {b:#04x}"
                )))
            }
        }
        while input.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = input.get(pos) else {
            return Err(truncated("input ends inside a JPEG marker"));
        };
        pos += 1;
        match marker {
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD7 => continue,
            0x00 => return Err(corrupt(format!("invalid JPEG marker 0xFF00 at byte {pos}"))),
            0xD8 => {
                return Err(corrupt(
                    "second start-of-image marker before the frame header".into(),
                ))
            }
            0xD9 => {
                return Err(corrupt(
                    "end-of-image marker before the frame header".into(),
                ))
            }
            0xDA => return Err(corrupt("scan data before the frame header".into())),
            _ => {}
        }
        let Some(len) = input.get(pos..pos + 2) else {
            return Err(truncated("input ends inside a JPEG segment length"));
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 {
            return Err(corrupt(format!(
                "JPEG segment {marker:#04x} has length {len}"
            )));
        }
        if is_sof(marker) {
            // Length (2), precision (1), height (2), width (2), components (1).
            let Some(sof) = input.get(pos..pos + 8) else {
                return Err(truncated("input ends inside the JPEG frame header"));
            };
            if !matches!(marker, 0xC0..=0xC3 | 0xC9..=0xCB) {
                return Err(EdgeError::UnsupportedFormat {
                    what: format!("hierarchical JPEG (SOF {marker:#04x})"),
                });
            }
            if sof[2] != 8 {
                return Err(EdgeError::UnsupportedFormat {
                    what: format!("{}-bit JPEG", sof[2]),
                });
            }
            let height = u32::from(u16::from_be_bytes([sof[3], sof[4]]));
            let width = u32::from(u16::from_be_bytes([sof[5], sof[6]]));
            return sized(InputFormat::Jpeg, width, height);
        }
        pos += len;
    }
}

fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_with_sof(width: u16, height: u16, precision: u8) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00];
        v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, precision]);
        v.extend_from_slice(&height.to_be_bytes());
        v.extend_from_slice(&width.to_be_bytes());
        v.extend_from_slice(&[1, 1, 0x11, 0]);
        v
    }

    #[test]
    fn reads_jpeg_size_from_sof() {
        let info = probe(&jpeg_with_sof(1920, 1080, 8)).unwrap();
        assert_eq!(
            info,
            ImageInfo {
                format: InputFormat::Jpeg,
                width: 1920,
                height: 1080
            }
        );
    }

    #[test]
    fn refuses_zero_and_odd_jpegs() {
        assert!(matches!(
            probe(&jpeg_with_sof(0, 10, 8)),
            Err(EdgeError::ZeroSize { .. })
        ));
        assert!(matches!(
            probe(&jpeg_with_sof(10, 0, 8)),
            Err(EdgeError::ZeroSize { .. })
        ));
        assert!(matches!(
            probe(&jpeg_with_sof(10, 10, 12)),
            Err(EdgeError::UnsupportedFormat { .. })
        ));
        let header = jpeg_with_sof(10, 10, 8);
        for cut in 1..header.len() - 4 {
            let err = probe(&header[..cut]).unwrap_err();
            assert!(
                matches!(err, EdgeError::Truncated { .. }),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn classifies_other_inputs() {
        assert!(matches!(probe(b""), Err(EdgeError::Empty)));
        assert!(matches!(
            probe(b"GIF89a...."),
            Err(EdgeError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            probe(b"hello world"),
            Err(EdgeError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            probe(&[0xFF, 0xD8, 0xFF, 0x00]),
            Err(EdgeError::Corrupt { .. })
        ));
        assert!(matches!(
            probe(&PNG_MAGIC[..5]),
            Err(EdgeError::Truncated { .. })
        ));
        assert!(matches!(
            probe(&PNG_MAGIC),
            Err(EdgeError::Truncated { .. })
        ));
    }

    #[test]
    fn limit_is_checked_on_declared_size() {
        let info = probe(&jpeg_with_sof(65535, 65535, 8)).unwrap();
        assert!(matches!(
            info.check_limit(64_000_000),
            Err(EdgeError::TooLarge { width: 65535, .. })
        ));
        assert!(info.check_limit(u64::MAX).is_ok());
    }
}
