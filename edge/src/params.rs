//! What a caller can ask of the kernel, and the checks that keep bad requests out of it.

use serde::{Deserialize, Serialize};

use crate::EdgeError;

/// Default quality of JPEG edge maps: the original system's setting.
pub const DEFAULT_QUALITY: u8 = 90;

/// Default pixel limit: refuse images over 64 megapixels before allocating them.
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// Largest accepted blur sigma. Beyond it the Gaussian is wider than any useful edge scale and
/// the kernel's tap count (about `6·sigma + 1`) would make a frame slow enough to stall a worker.
pub const MAX_SIGMA: f32 = 50.0;

/// Parameters of one edge-map job. `Default` gives the original system's behaviour.
///
/// Missing fields deserialise to their defaults, so a job message can carry only what it
/// changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EdgeParams {
    /// How much to blur before the Sobel operator.
    pub blur: Blur,
    /// Encoding of the output edge map.
    pub format: OutputFormat,
    /// JPEG quality, 1..=100 (ignored for PNG).
    pub quality: u8,
    /// Downscale (aspect kept) so the width is at most this many pixels.
    pub max_width: Option<u32>,
    /// Downscale (aspect kept) so the height is at most this many pixels.
    pub max_height: Option<u32>,
    /// Inputs with more pixels than this are refused from their header, before any pixel
    /// buffer is allocated.
    pub max_pixels: u64,
}

impl Default for EdgeParams {
    fn default() -> Self {
        Self {
            blur: Blur::default(),
            format: OutputFormat::default(),
            quality: DEFAULT_QUALITY,
            max_width: None,
            max_height: None,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl EdgeParams {
    /// Checks every field, so a bad job is refused before any work is done on it.
    pub fn validate(&self) -> Result<(), EdgeError> {
        if !(1..=100).contains(&self.quality) {
            return Err(invalid(
                "quality",
                format!("{} is not in 1..=100", self.quality),
            ));
        }
        match self.blur {
            Blur::Modifier(m) if !m.is_finite() || m < 0.0 => {
                return Err(invalid(
                    "blur.modifier",
                    format!("{m} is not a finite number >= 0"),
                ));
            }
            Blur::Sigma(s) if !s.is_finite() || s < 0.0 => {
                return Err(invalid(
                    "blur.sigma",
                    format!("{s} is not a finite number >= 0"),
                ));
            }
            Blur::Sigma(s) if s > MAX_SIGMA => {
                return Err(invalid(
                    "blur.sigma",
                    format!("{s} is over the maximum {MAX_SIGMA}"),
                ));
            }
            _ => {}
        }
        if self.max_width == Some(0) {
            return Err(invalid("max_width", "must be at least 1".into()));
        }
        if self.max_height == Some(0) {
            return Err(invalid("max_height", "must be at least 1".into()));
        }
        if self.max_pixels == 0 {
            return Err(invalid("max_pixels", "must be at least 1".into()));
        }
        Ok(())
    }
}

fn invalid(name: &'static str, reason: String) -> EdgeError {
    EdgeError::InvalidParams { name, reason }
}

/// The Gaussian blur applied to the luma plane before the Sobel operator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blur {
    /// Edgy's rule: `sigma = width·height / 3,630,000 × modifier`, so the blur follows the
    /// frame size (about 0.25 at 720p, 0.57 at 1080p with modifier 1).
    Modifier(f32),
    /// An absolute sigma in pixels; 0 means no blur.
    Sigma(f32),
}

impl Default for Blur {
    fn default() -> Self {
        Blur::Modifier(1.0)
    }
}

/// Pixel count that Edgy's rule divides by to get sigma.
pub const EDGY_PIXELS_PER_SIGMA: f64 = 3_630_000.0;

impl Blur {
    /// The sigma this blur means for an image of the given size (after any downscale).
    /// The result is clamped to [`MAX_SIGMA`] so a huge modifier cannot stall the kernel.
    pub fn sigma(self, width: u32, height: u32) -> f32 {
        let sigma = match self {
            Blur::Modifier(m) => {
                (f64::from(width) * f64::from(height) / EDGY_PIXELS_PER_SIGMA * f64::from(m)) as f32
            }
            Blur::Sigma(s) => s,
        };
        if sigma.is_finite() {
            sigma.clamp(0.0, MAX_SIGMA)
        } else {
            0.0
        }
    }
}

/// Encoding of an edge map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Greyscale baseline JPEG (libjpeg-turbo).
    #[default]
    Jpeg,
    /// Greyscale 8-bit PNG with fast compression.
    Png,
}

impl OutputFormat {
    /// File extension without the dot, for output keys and file names.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
        }
    }

    /// MIME type, for the `Content-Type` of uploaded edge maps.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
        }
    }
}

impl std::str::FromStr for OutputFormat {
    type Err = EdgeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "jpeg" | "jpg" => Ok(OutputFormat::Jpeg),
            "png" => Ok(OutputFormat::Png),
            other => Err(invalid("format", format!("{other:?} is not jpeg or png"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_original_systems() {
        let p = EdgeParams::default();
        assert_eq!(p.blur, Blur::Modifier(1.0));
        assert_eq!(p.format, OutputFormat::Jpeg);
        assert_eq!(p.quality, 90);
        assert_eq!(p.max_pixels, 64_000_000);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn validate_refuses_bad_fields() {
        let bad = [
            EdgeParams {
                quality: 0,
                ..Default::default()
            },
            EdgeParams {
                quality: 101,
                ..Default::default()
            },
            EdgeParams {
                blur: Blur::Sigma(-1.0),
                ..Default::default()
            },
            EdgeParams {
                blur: Blur::Sigma(f32::NAN),
                ..Default::default()
            },
            EdgeParams {
                blur: Blur::Sigma(1000.0),
                ..Default::default()
            },
            EdgeParams {
                blur: Blur::Modifier(f32::INFINITY),
                ..Default::default()
            },
            EdgeParams {
                max_width: Some(0),
                ..Default::default()
            },
            EdgeParams {
                max_pixels: 0,
                ..Default::default()
            },
        ];
        for p in bad {
            assert!(
                matches!(p.validate(), Err(EdgeError::InvalidParams { .. })),
                "{p:?}"
            );
        }
    }

    #[test]
    fn edgy_sigma_follows_frame_size() {
        let s720 = Blur::Modifier(1.0).sigma(1280, 720);
        assert!((s720 - 0.2539).abs() < 1e-3, "{s720}");
        let s1080 = Blur::Modifier(2.0).sigma(1920, 1080);
        assert!((s1080 - 1.1425).abs() < 1e-3, "{s1080}");
        assert_eq!(Blur::Sigma(1.5).sigma(10, 10), 1.5);
    }

    #[test]
    fn serde_shapes() {
        let p = EdgeParams {
            blur: Blur::Sigma(2.0),
            format: OutputFormat::Png,
            ..Default::default()
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""blur":{"sigma":2.0}"#), "{json}");
        assert!(json.contains(r#""format":"png""#), "{json}");
        let back: EdgeParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let partial: EdgeParams = serde_json::from_str(r#"{"quality":75}"#).unwrap();
        assert_eq!(
            partial,
            EdgeParams {
                quality: 75,
                ..Default::default()
            }
        );
    }

    #[test]
    fn format_names() {
        assert_eq!("PNG".parse::<OutputFormat>().unwrap(), OutputFormat::Png);
        assert_eq!("jpg".parse::<OutputFormat>().unwrap(), OutputFormat::Jpeg);
        assert!("gif".parse::<OutputFormat>().is_err());
        assert_eq!(OutputFormat::Jpeg.content_type(), "image/jpeg");
        assert_eq!(OutputFormat::Png.extension(), "png");
    }
}
