//! The baseline: a faithful port of the original system's per-frame code, kept only so
//! `worker bench` can show what the kernel replaced. Do not use it for real work.
//!
//! It decodes to RGB, blurs all three channels with the `image` crate's Gaussian, converts to
//! luma, runs a 3×3 Sobel through `get_pixel` with an f64 square root, drops the one-pixel
//! border (so the map is (w−2)×(h−2) and no longer lines up with its frame) and encodes with
//! the `image` crate's JPEG encoder at quality 90.

use anyhow::Context as _;
use image::codecs::jpeg::JpegEncoder;
use image::{GenericImageView as _, GrayImage, ImageFormat, Luma};

/// Edgy's blur rule with its default modifier, as the original computed it.
fn edgy_sigma(width: u32, height: u32) -> f32 {
    (f64::from(width) * f64::from(height) / 3_630_000.0 * 1.0) as f32
}

/// One frame through the original pipeline; returns the encoded JPEG.
pub fn edges(jpeg: &[u8]) -> anyhow::Result<Vec<u8>> {
    let image = image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg).context("decoding")?;
    let (width, height) = image.dimensions();
    anyhow::ensure!(
        width >= 3 && height >= 3,
        "frame {width}x{height} is too small"
    );
    let blurred = image.blur(edgy_sigma(width, height));
    let luma = blurred.to_luma8();
    let mut out = GrayImage::new(width - 2, height - 2);
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let p = |dx: i32, dy: i32| -> f64 {
                f64::from(luma.get_pixel((x as i32 + dx) as u32, (y as i32 + dy) as u32)[0])
            };
            let gx = -p(-1, -1) - 2.0 * p(-1, 0) - p(-1, 1) + p(1, -1) + 2.0 * p(1, 0) + p(1, 1);
            let gy = -p(-1, -1) - 2.0 * p(0, -1) - p(1, -1) + p(-1, 1) + 2.0 * p(0, 1) + p(1, 1);
            let magnitude = (gx * gx + gy * gy).sqrt().min(255.0);
            out.put_pixel(x - 1, y - 1, Luma([magnitude as u8]));
        }
    }
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&out)
        .context("encoding")?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_drops_the_border() {
        let mut rgb = image::RgbImage::new(40, 30);
        for (x, _, p) in rgb.enumerate_pixels_mut() {
            *p = image::Rgb(if x < 20 {
                [10, 10, 10]
            } else {
                [240, 240, 240]
            });
        }
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&rgb)
            .unwrap();
        let map = image::load_from_memory(&edges(&jpeg).unwrap())
            .unwrap()
            .to_luma8();
        assert_eq!(map.dimensions(), (38, 28));
        let row: Vec<u8> = (0..38).map(|x| map.get_pixel(x, 14)[0]).collect();
        assert!(
            row[18..=20].iter().any(|&v| v > 200),
            "the step is an edge: {row:?}"
        );
        assert!(map.get_pixel(5, 14)[0] < 30, "flat areas are not");
        assert!(edges(b"not a jpeg").is_err());
    }
}
