//! The frame kernel: one input image in, one encoded edge map out.
//!
//! Every worker spends almost all of its CPU in [`process`], so this crate is only that path,
//! kept free of async and AWS so it can be measured and tested on its own:
//!
//! 1. [`probe`](probe::probe) reads format and size from the header and enforces
//!    [`EdgeParams::max_pixels`] before anything is allocated;
//! 2. `decode` produces a luma plane: libjpeg-turbo decodes only the Y plane of a JPEG, PNGs are
//!    converted with BT.601 weights;
//! 3. `resize` optionally downscales it (`fast_image_resize`), aspect kept;
//! 4. `kernel` blurs (separable fixed-point Gaussian) and applies a 3×3 Sobel in one fused
//!    pass, borders replicated, so the edge map has the frame's size;
//! 5. `encode` writes greyscale JPEG (libjpeg-turbo) or PNG (`png`, fast compression).
//!
//! Two modules use `unsafe`: `turbo`, a small FFI wrapper over TurboJPEG 3, and
//! `kernel::avx2`, the kernel's row steps in AVX2 intrinsics (x86_64 only, checked byte for
//! byte against the portable code).
//! [`process`] keeps its codec instances and buffers in thread-local scratch, so a worker
//! thread reuses them frame after frame; the step functions ([`decode_luma`], [`edge_plane`],
//! [`encode`]) are public for benchmarks and tools.

mod decode;
mod encode;
mod error;
mod kernel;
mod params;
pub mod probe;
mod resize;
mod turbo;

use std::cell::RefCell;

pub use error::EdgeError;
pub use params::{
    Blur, EdgeParams, OutputFormat, DEFAULT_MAX_PIXELS, DEFAULT_QUALITY, EDGY_PIXELS_PER_SIGMA,
    MAX_SIGMA,
};
pub use probe::{probe, ImageInfo, InputFormat};
pub use resize::fit_within;

/// An encoded edge map, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeMap {
    /// Width in pixels: the input's, or the downscaled width.
    pub width: u32,
    /// Height in pixels: the input's, or the downscaled height.
    pub height: u32,
    /// Encoding of `bytes`.
    pub format: OutputFormat,
    /// The encoded image.
    pub bytes: Vec<u8>,
}

/// An 8-bit single-channel plane, row-major with no padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LumaImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// width·height bytes.
    pub pixels: Vec<u8>,
}

/// Per-thread codec instances and buffers, reused across frames.
#[derive(Default)]
struct Scratch {
    jpeg_decoder: Option<turbo::Decoder>,
    jpeg_encoder: Option<turbo::Encoder>,
    resizer: Option<fast_image_resize::Resizer>,
    luma: Vec<u8>,
    resized: Vec<u8>,
    decode_tmp: Vec<u8>,
    edges: Vec<u8>,
    kernel: kernel::KernelScratch,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        // Only reachable if a caller re-enters from inside the kernel; use fresh buffers.
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Turns one encoded image into an encoded edge map (see the crate docs for the steps).
///
/// Runs on the calling thread; call it from several threads to use several cores. Never
/// panics on bad input: every failure is an [`EdgeError`].
pub fn process(input: &[u8], params: &EdgeParams) -> Result<EdgeMap, EdgeError> {
    run(input, params, Encoded::Edges)
}

/// What [`run`] encodes after decoding.
#[derive(Clone, Copy)]
enum Encoded<'a> {
    /// The edge map, computed by the kernel: [`process`].
    Edges,
    /// The decoded luma plane itself: [`transcode_luma`].
    Luma,
    /// A plane computed beforehand: [`transcode_precomputed`].
    Precomputed(&'a LumaImage),
}

/// Decode, then encode what `encoded` says, through the thread-local codecs.
fn run(input: &[u8], params: &EdgeParams, encoded: Encoded<'_>) -> Result<EdgeMap, EdgeError> {
    params.validate()?;
    with_scratch(|s| {
        let (width, height) = decode_scaled(input, params, s)?;
        let plane: &[u8] = match encoded {
            Encoded::Edges => {
                let taps = kernel::Taps::gaussian(params.blur.sigma(width, height));
                s.edges.resize(width as usize * height as usize, 0);
                kernel::edge_map(
                    &s.luma,
                    width as usize,
                    height as usize,
                    &taps,
                    &mut s.edges,
                    &mut s.kernel,
                );
                &s.edges
            }
            Encoded::Luma => &s.luma,
            Encoded::Precomputed(plane) => {
                if (plane.width, plane.height) != (width, height)
                    || plane.pixels.len() != width as usize * height as usize
                {
                    return Err(EdgeError::InvalidParams {
                        name: "plane",
                        reason: format!(
                            "{}x{} with {} pixels does not match the decoded {width}x{height}",
                            plane.width,
                            plane.height,
                            plane.pixels.len()
                        ),
                    });
                }
                &plane.pixels
            }
        };
        let bytes = encode::encode_into(
            plane,
            width,
            height,
            params.format,
            params.quality,
            &mut s.jpeg_encoder,
        )?;
        Ok(EdgeMap {
            width,
            height,
            format: params.format,
            bytes,
        })
    })
}

/// Decodes into `s.luma` and applies the optional downscale; returns the final size.
fn decode_scaled(
    input: &[u8],
    params: &EdgeParams,
    s: &mut Scratch,
) -> Result<(u32, u32), EdgeError> {
    let (w, h) = decode::decode_luma_into(
        input,
        params.max_pixels,
        &mut s.jpeg_decoder,
        &mut s.luma,
        &mut s.decode_tmp,
    )?;
    let (dw, dh) = fit_within(w, h, params.max_width, params.max_height);
    if (dw, dh) != (w, h) {
        let resizer = s
            .resizer
            .get_or_insert_with(fast_image_resize::Resizer::new);
        resize::resize_luma(&s.luma, (w, h), (dw, dh), resizer, &mut s.resized)?;
        std::mem::swap(&mut s.luma, &mut s.resized);
    }
    s.luma.truncate(dw as usize * dh as usize);
    Ok((dw, dh))
}

/// Steps 1–2 alone: decode to luma (honouring `max_pixels`) and apply the optional downscale.
pub fn decode_luma(input: &[u8], params: &EdgeParams) -> Result<LumaImage, EdgeError> {
    params.validate()?;
    with_scratch(|s| {
        let (width, height) = decode_scaled(input, params, s)?;
        Ok(LumaImage {
            width,
            height,
            pixels: s.luma.clone(),
        })
    })
}

/// Steps 3–4 alone: blur with `sigma` (0 = none) and Sobel magnitude, same size as `luma`.
///
/// Panics if `luma.pixels` is shorter than width·height or the image is empty.
pub fn edge_plane(luma: &LumaImage, sigma: f32) -> LumaImage {
    let (w, h) = (luma.width as usize, luma.height as usize);
    let mut pixels = vec![0u8; w * h];
    with_scratch(|s| {
        kernel::edge_map(
            &luma.pixels,
            w,
            h,
            &kernel::Taps::gaussian(sigma),
            &mut pixels,
            &mut s.kernel,
        )
    });
    LumaImage {
        width: luma.width,
        height: luma.height,
        pixels,
    }
}

/// Step 5 alone: encode a greyscale plane as JPEG (`quality` 1..=100) or PNG.
pub fn encode(plane: &LumaImage, format: OutputFormat, quality: u8) -> Result<EdgeMap, EdgeError> {
    if !(1..=100).contains(&quality) {
        return Err(EdgeError::InvalidParams {
            name: "quality",
            reason: format!("{quality} is not in 1..=100"),
        });
    }
    let bytes = with_scratch(|s| {
        encode::encode_into(
            &plane.pixels,
            plane.width,
            plane.height,
            format,
            quality,
            &mut s.jpeg_encoder,
        )
    })?;
    Ok(EdgeMap {
        width: plane.width,
        height: plane.height,
        format,
        bytes,
    })
}

/// The codec floor: decode to luma (with the optional downscale) and encode that plane, with
/// no blur or Sobel, through the same thread-local codecs as [`process`]. Benchmarks compare
/// [`process`] against it to show how much the kernel itself costs.
pub fn transcode_luma(input: &[u8], params: &EdgeParams) -> Result<EdgeMap, EdgeError> {
    run(input, params, Encoded::Luma)
}

/// The codec floor of [`process`] itself: decode `input` as [`process`] does, then encode
/// `plane`, computed beforehand (normally `input`'s edge map from [`edge_plane`]), in place
/// of running the kernel. How fast JPEG encodes depends on the content (an edge map of a
/// grainy frame has more detail than the frame), so this is [`process`]'s exact cost with a
/// free kernel, where [`transcode_luma`] is the cost of re-encoding the frame.
///
/// Fails with [`EdgeError::InvalidParams`] if `plane` is not the size `input` decodes to.
pub fn transcode_precomputed(
    input: &[u8],
    plane: &LumaImage,
    params: &EdgeParams,
) -> Result<EdgeMap, EdgeError> {
    run(input, params, Encoded::Precomputed(plane))
}
