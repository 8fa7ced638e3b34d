//! Input decoding to a luma plane: libjpeg-turbo for JPEG (Y plane only), the `png` crate for
//! PNG (converted with BT.601 weights, the same luma a JPEG stores).

use std::io::Cursor;

use crate::probe::{probe, InputFormat};
use crate::turbo;
use crate::EdgeError;

/// Decodes `input` into `out` (width·height bytes, row-major), returning its size.
/// The pixel limit is enforced from the header before `out` is grown.
pub(crate) fn decode_luma_into(
    input: &[u8],
    max_pixels: u64,
    jpeg: &mut Option<turbo::Decoder>,
    out: &mut Vec<u8>,
    tmp: &mut Vec<u8>,
) -> Result<(u32, u32), EdgeError> {
    let info = probe(input)?;
    info.check_limit(max_pixels)?;
    match info.format {
        InputFormat::Jpeg => {
            let decoder = match jpeg {
                Some(d) => d,
                None => jpeg.insert(turbo::Decoder::new()?),
            };
            decoder
                .decode_luma(input, max_pixels, out)
                .map_err(|e| blame_truncation(e, input, has_jpeg_end))
        }
        InputFormat::Png => decode_png(input, max_pixels, out, tmp)
            .map_err(|e| blame_truncation(e, input, has_png_end)),
    }
}

/// Decoders describe a cut-off stream in many ways ("premature end", "bogus Huffman table",
/// "corrupt deflate stream"...). When the file does not end the way a complete file must,
/// truncation is the real cause, so say so.
fn blame_truncation(err: EdgeError, input: &[u8], complete: fn(&[u8]) -> bool) -> EdgeError {
    match err {
        EdgeError::Corrupt { reason } if !complete(input) => EdgeError::Truncated {
            reason: format!("no end-of-image marker ({reason})"),
        },
        other => other,
    }
}

/// Whether an end-of-image marker is near the end. 0xFF 0xD9 cannot occur inside
/// entropy-coded data (0xFF is always stuffed there), so finding it means the stream ends.
fn has_jpeg_end(input: &[u8]) -> bool {
    input[input.len().saturating_sub(64)..]
        .windows(2)
        .any(|w| w == [0xFF, 0xD9])
}

/// Whether the file ends with an IEND chunk (empty, fixed CRC).
fn has_png_end(input: &[u8]) -> bool {
    input.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82])
}

fn png_error(e: png::DecodingError) -> EdgeError {
    match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            EdgeError::Truncated {
                reason: io.to_string(),
            }
        }
        png::DecodingError::LimitsExceeded => EdgeError::Corrupt {
            reason: "PNG decoder memory limit exceeded".into(),
        },
        other => EdgeError::Corrupt {
            reason: other.to_string(),
        },
    }
}

fn decode_png(
    input: &[u8],
    max_pixels: u64,
    out: &mut Vec<u8>,
    tmp: &mut Vec<u8>,
) -> Result<(u32, u32), EdgeError> {
    // Room for the largest allowed frame as 16-bit RGBA plus the decoder's own buffers.
    let budget = usize::try_from(max_pixels.saturating_mul(8)).unwrap_or(usize::MAX);
    let limits = png::Limits {
        bytes: budget.saturating_add(1 << 24),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(input), limits);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(png_error)?;
    let (width, height) = (reader.info().width, reader.info().height);
    if width == 0 || height == 0 {
        return Err(EdgeError::ZeroSize { width, height });
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(EdgeError::TooLarge {
            width,
            height,
            limit: max_pixels,
        });
    }
    let (color, depth) = reader.output_color_type();
    if depth != png::BitDepth::Eight {
        return Err(EdgeError::UnsupportedFormat {
            what: format!("PNG output depth {depth:?}"),
        });
    }
    let pixels = width as usize * height as usize;
    let channels = match color {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(EdgeError::UnsupportedFormat {
                what: "unexpanded indexed PNG".into(),
            })
        }
    };
    let size = reader.output_buffer_size().ok_or(EdgeError::TooLarge {
        width,
        height,
        limit: max_pixels,
    })?;
    if size != pixels * channels {
        return Err(EdgeError::Corrupt {
            reason: format!("unexpected PNG row layout ({size} bytes)"),
        });
    }
    if channels == 1 {
        out.resize(pixels, 0);
        reader.next_frame(out).map_err(png_error)?;
        return Ok((width, height));
    }
    tmp.resize(size, 0);
    reader.next_frame(tmp).map_err(png_error)?;
    out.resize(pixels, 0);
    match channels {
        // Alpha is ignored: edges are taken from the colour as stored.
        2 => out
            .iter_mut()
            .zip(tmp.chunks_exact(2))
            .for_each(|(y, p)| *y = p[0]),
        3 => out
            .iter_mut()
            .zip(tmp.chunks_exact(3))
            .for_each(|(y, p)| *y = bt601(p)),
        _ => out
            .iter_mut()
            .zip(tmp.chunks_exact(4))
            .for_each(|(y, p)| *y = bt601(p)),
    }
    Ok((width, height))
}

/// BT.601 luma with the same fixed-point weights libjpeg uses for RGB → Y (16-bit scale).
#[inline]
fn bt601(p: &[u8]) -> u8 {
    let (r, g, b) = (u32::from(p[0]), u32::from(p[1]), u32::from(p[2]));
    ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt601_matches_reference_weights() {
        for &(r, g, b) in &[
            (0u8, 0u8, 0u8),
            (255, 255, 255),
            (255, 0, 0),
            (10, 200, 30),
            (1, 2, 3),
        ] {
            let exact = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
            let got = f64::from(bt601(&[r, g, b]));
            assert!(
                (got - exact).abs() <= 0.5 + 1e-9,
                "{r},{g},{b}: {got} vs {exact}"
            );
        }
    }
}
