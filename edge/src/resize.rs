//! Optional downscale of the luma plane (aspect kept) with `fast_image_resize`.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::EdgeError;

/// Size that fits within the optional bounds with the aspect ratio kept, never upscaling and
/// never below 1×1.
pub fn fit_within(
    width: u32,
    height: u32,
    max_width: Option<u32>,
    max_height: Option<u32>,
) -> (u32, u32) {
    let sx = max_width.map_or(1.0, |m| f64::from(m) / f64::from(width));
    let sy = max_height.map_or(1.0, |m| f64::from(m) / f64::from(height));
    let s = sx.min(sy);
    if s >= 1.0 {
        return (width, height);
    }
    let w = ((f64::from(width) * s).round() as u32).clamp(1, width);
    let h = ((f64::from(height) * s).round() as u32).clamp(1, height);
    let w = max_width.map_or(w, |m| w.min(m));
    let h = max_height.map_or(h, |m| h.min(m));
    (w, h)
}

/// Resizes a width×height luma plane into `out` (dst_w×dst_h). A bilinear convolution whose
/// support grows with the scale factor, so downscaling averages rather than aliases.
pub(crate) fn resize_luma(
    src: &[u8],
    (width, height): (u32, u32),
    (dst_w, dst_h): (u32, u32),
    resizer: &mut Resizer,
    out: &mut Vec<u8>,
) -> Result<(), EdgeError> {
    let internal = |e: String| EdgeError::Corrupt {
        reason: format!("resize failed: {e}"),
    };
    let src =
        ImageRef::new(width, height, src, PixelType::U8).map_err(|e| internal(e.to_string()))?;
    out.resize(dst_w as usize * dst_h as usize, 0);
    let mut dst = Image::from_slice_u8(dst_w, dst_h, out, PixelType::U8)
        .map_err(|e| internal(e.to_string()))?;
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    resizer
        .resize(&src, &mut dst, &options)
        .map_err(|e| internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_keeping_aspect() {
        assert_eq!(fit_within(1920, 1080, Some(1280), Some(1280)), (1280, 720));
        assert_eq!(fit_within(1920, 1080, None, Some(540)), (960, 540));
        assert_eq!(fit_within(1920, 1080, Some(4000), None), (1920, 1080));
        assert_eq!(fit_within(1000, 1, Some(10), None), (10, 1));
        assert_eq!(fit_within(1, 1000, Some(1), Some(3)), (1, 3));
    }

    #[test]
    fn downscale_averages() {
        let src: Vec<u8> = (0..64 * 64)
            .map(|i| if (i / 64 + i % 64) % 2 == 0 { 0 } else { 200 })
            .collect();
        let mut out = Vec::new();
        resize_luma(&src, (64, 64), (16, 16), &mut Resizer::new(), &mut out).unwrap();
        assert_eq!(out.len(), 256);
        assert!(out.iter().all(|&v| (90..=110).contains(&v)), "{out:?}");
    }
}
