//! Output encoding of an edge map: greyscale JPEG through libjpeg-turbo, or greyscale PNG with
//! the `png` crate's fast (fdeflate) compression.

use crate::turbo;
use crate::{EdgeError, OutputFormat};

/// Encodes a width×height greyscale plane, reusing `jpeg`'s instance and buffer.
pub(crate) fn encode_into(
    plane: &[u8],
    width: u32,
    height: u32,
    format: OutputFormat,
    quality: u8,
    jpeg: &mut Option<turbo::Encoder>,
) -> Result<Vec<u8>, EdgeError> {
    match format {
        OutputFormat::Jpeg => {
            let encoder = match jpeg {
                Some(e) => e,
                None => jpeg.insert(turbo::Encoder::new()?),
            };
            Ok(encoder.encode_gray(plane, width, height, quality)?.to_vec())
        }
        OutputFormat::Png => encode_png(plane, width, height),
    }
}

fn encode_png(plane: &[u8], width: u32, height: u32) -> Result<Vec<u8>, EdgeError> {
    let err = |e: png::EncodingError| EdgeError::Encode {
        reason: e.to_string(),
    };
    // Edge maps are mostly dark and compress well; a quarter of the raw size is a good first
    // guess that avoids regrowing the vector.
    let mut out = Vec::with_capacity(plane.len() / 4 + 1024);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(plane).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}
