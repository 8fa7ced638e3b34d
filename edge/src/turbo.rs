//! A thin, safe wrapper over libjpeg-turbo's TurboJPEG 3 API.
//!
//! The `turbojpeg` crate's safe API cannot set `TJPARAM_STOPONWARNING`, without which
//! libjpeg-turbo silently decodes a truncated or damaged JPEG into grey blocks; the kernel must
//! report those as errors. This module calls the same vendored library through its raw
//! bindings instead and keeps every `unsafe` block here.
#![allow(unsafe_code)]

use std::ffi::{c_int, CStr};
use std::ptr::NonNull;

use turbojpeg::raw;

use crate::EdgeError;

/// Most progressive scans a JPEG may have before it is refused as a decoding bomb
/// (legitimate encoders use about 10).
const SCAN_LIMIT: c_int = 500;

/// An owned TurboJPEG instance.
struct Handle(NonNull<std::ffi::c_void>);

// SAFETY: a TurboJPEG handle has no thread affinity; it only must not be used from two threads
// at once, which `&mut self` on every use guarantees.
unsafe impl Send for Handle {}

impl Handle {
    fn new(kind: raw::TJINIT) -> Result<Self, String> {
        // SAFETY: tj3Init has no preconditions; a null return is handled.
        let ptr = unsafe { raw::tj3Init(kind as c_int) };
        NonNull::new(ptr)
            .map(Handle)
            .ok_or_else(|| "tj3Init failed".to_string())
    }

    fn set(&mut self, param: raw::TJPARAM, value: c_int) -> Result<(), String> {
        // SAFETY: the handle is live; tj3Set validates param and value itself.
        let rc = unsafe { raw::tj3Set(self.0.as_ptr(), param as c_int, value) };
        if rc == 0 {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn get(&mut self, param: raw::TJPARAM) -> c_int {
        // SAFETY: the handle is live.
        unsafe { raw::tj3Get(self.0.as_ptr(), param as c_int) }
    }

    fn error(&mut self) -> String {
        // SAFETY: the handle is live; tj3GetErrorStr returns a NUL-terminated string owned by
        // the handle, which we copy before the handle is used again.
        unsafe { CStr::from_ptr(raw::tj3GetErrorStr(self.0.as_ptr())) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed exactly once.
        unsafe { raw::tj3Destroy(self.0.as_ptr()) }
    }
}

/// Decodes JPEG luma, failing on any libjpeg warning.
pub(crate) struct Decoder(Handle);

impl Decoder {
    pub(crate) fn new() -> Result<Self, EdgeError> {
        let setup = || -> Result<Handle, String> {
            let mut h = Handle::new(raw::TJINIT_TJINIT_DECOMPRESS)?;
            h.set(raw::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
            h.set(raw::TJPARAM_TJPARAM_SCANLIMIT, SCAN_LIMIT)?;
            Ok(h)
        };
        setup()
            .map(Decoder)
            .map_err(|reason| EdgeError::Corrupt { reason })
    }

    /// Decodes only the Y plane of `jpeg` into `out` (resized to width·height), returning the
    /// size. For YCbCr input libjpeg-turbo skips the chroma IDCT and upsampling entirely.
    /// `max_pixels` is checked again against libjpeg's own reading of the header.
    pub(crate) fn decode_luma(
        &mut self,
        jpeg: &[u8],
        max_pixels: u64,
        out: &mut Vec<u8>,
    ) -> Result<(u32, u32), EdgeError> {
        let h = &mut self.0;
        // SAFETY: the handle is live and `jpeg` is a valid slice of the given length.
        let rc = unsafe { raw::tj3DecompressHeader(h.0.as_ptr(), jpeg.as_ptr(), jpeg.len() as _) };
        if rc != 0 {
            return Err(classify(h.error()));
        }
        let width = h.get(raw::TJPARAM_TJPARAM_JPEGWIDTH);
        let height = h.get(raw::TJPARAM_TJPARAM_JPEGHEIGHT);
        let colorspace = h.get(raw::TJPARAM_TJPARAM_COLORSPACE);
        if colorspace == raw::TJCS_TJCS_CMYK as c_int || colorspace == raw::TJCS_TJCS_YCCK as c_int
        {
            return Err(EdgeError::UnsupportedFormat {
                what: "CMYK JPEG".into(),
            });
        }
        let (Ok(w), Ok(hgt)) = (u32::try_from(width), u32::try_from(height)) else {
            return Err(EdgeError::Corrupt {
                reason: format!("bad JPEG size {width}x{height}"),
            });
        };
        if w == 0 || hgt == 0 {
            return Err(EdgeError::ZeroSize {
                width: w,
                height: hgt,
            });
        }
        if u64::from(w) * u64::from(hgt) > max_pixels {
            return Err(EdgeError::TooLarge {
                width: w,
                height: hgt,
                limit: max_pixels,
            });
        }
        let len = w as usize * hgt as usize;
        out.resize(len, 0);
        // SAFETY: the handle is live, `jpeg` is valid for its length, and `out` holds exactly
        // width·height bytes, which is what a GRAY decode with pitch = width writes.
        let rc = unsafe {
            raw::tj3Decompress8(
                h.0.as_ptr(),
                jpeg.as_ptr(),
                jpeg.len() as _,
                out.as_mut_ptr(),
                width,
                raw::TJPF_TJPF_GRAY as c_int,
            )
        };
        if rc != 0 {
            return Err(classify(h.error()));
        }
        Ok((w, hgt))
    }
}

fn classify(reason: String) -> EdgeError {
    if reason.contains("Premature end") || reason.contains("insufficient") {
        EdgeError::Truncated { reason }
    } else if reason.contains("Unsupported") || reason.contains("not supported") {
        EdgeError::UnsupportedFormat { what: reason }
    } else {
        EdgeError::Corrupt { reason }
    }
}

/// Encodes greyscale JPEG into a reused buffer.
pub(crate) struct Encoder {
    handle: Handle,
    buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new() -> Result<Self, EdgeError> {
        let setup = || -> Result<Handle, String> {
            let mut h = Handle::new(raw::TJINIT_TJINIT_COMPRESS)?;
            h.set(
                raw::TJPARAM_TJPARAM_SUBSAMP,
                raw::TJSAMP_TJSAMP_GRAY as c_int,
            )?;
            // The caller owns the buffer and has sized it with tj3JPEGBufSize.
            h.set(raw::TJPARAM_TJPARAM_NOREALLOC, 1)?;
            Ok(h)
        };
        let handle = setup().map_err(|reason| EdgeError::Encode { reason })?;
        Ok(Encoder {
            handle,
            buf: Vec::new(),
        })
    }

    /// Encodes a width×height greyscale plane; returns the JPEG bytes (valid until the next
    /// call).
    pub(crate) fn encode_gray(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        quality: u8,
    ) -> Result<&[u8], EdgeError> {
        let err = |reason: String| EdgeError::Encode { reason };
        let (w, h) = (
            c_int::try_from(width).map_err(|_| err("width too large".into()))?,
            c_int::try_from(height).map_err(|_| err("height too large".into()))?,
        );
        if w == 0 || h == 0 {
            return Err(err(format!("bad plane for {width}x{height}")));
        }
        self.handle
            .set(raw::TJPARAM_TJPARAM_QUALITY, c_int::from(quality))
            .map_err(err)?;
        // SAFETY: pure functions of their arguments.
        let (cap, plane) = unsafe {
            let gray = raw::TJSAMP_TJSAMP_GRAY as c_int;
            (
                raw::tj3JPEGBufSize(w, h, gray),
                raw::tj3YUVBufSize(w, 1, h, gray),
            )
        };
        if cap == 0 || plane == 0 {
            return Err(err(self.handle.error()));
        }
        // For a GRAY plane with 1-aligned rows this is width·height: the one length check.
        if pixels.len() < plane as usize {
            return Err(err(format!("bad plane for {width}x{height}")));
        }
        let cap = cap as usize;
        self.buf.clear();
        self.buf.reserve(cap);
        let mut dst = self.buf.as_mut_ptr();
        let mut size = cap as raw::size_t;
        // The plane goes in as the Y plane of a TJSAMP_GRAY "YUV" image with rows 1-aligned:
        // libjpeg's raw-data input, which feeds the DCT straight from our rows, skipping the
        // colour-conversion and downsampling copies the packed-pixel path makes (same bytes
        // out, 1.02–1.10× faster in a same-process A/B on 720p and 1080p frames).
        // SAFETY: the handle is live; `pixels` holds the tj3YUVBufSize bytes a width×height
        // GRAY plane with 1-aligned rows needs (checked above); `dst` points at `cap` writable
        // bytes and NOREALLOC forbids the library from replacing it, so it writes at most
        // `cap` bytes and reports how many in `size`.
        let rc = unsafe {
            raw::tj3CompressFromYUV8(
                self.handle.0.as_ptr(),
                pixels.as_ptr(),
                w,
                1,
                h,
                &mut dst,
                &mut size,
            )
        };
        if rc != 0 {
            return Err(err(self.handle.error()));
        }
        let size = size as usize;
        if dst != self.buf.as_mut_ptr() || size > cap {
            return Err(err("encoder moved or overran its buffer".into()));
        }
        // SAFETY: the library initialised the first `size` bytes of the reserved capacity.
        unsafe { self.buf.set_len(size) };
        Ok(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed-pixel TurboJPEG encode the raw-data path replaced.
    fn packed_encode(pixels: &[u8], w: c_int, h: c_int, quality: u8) -> Vec<u8> {
        let mut handle = Handle::new(raw::TJINIT_TJINIT_COMPRESS).expect("tj3Init");
        handle
            .set(
                raw::TJPARAM_TJPARAM_SUBSAMP,
                raw::TJSAMP_TJSAMP_GRAY as c_int,
            )
            .expect("subsamp");
        handle
            .set(raw::TJPARAM_TJPARAM_QUALITY, c_int::from(quality))
            .expect("quality");
        let mut dst: *mut u8 = std::ptr::null_mut();
        let mut size: raw::size_t = 0;
        // SAFETY: the handle is live and `pixels` holds w·h bytes read with pitch w; with a
        // null destination the library allocates it, and we free it with tj3Free below.
        let rc = unsafe {
            raw::tj3Compress8(
                handle.0.as_ptr(),
                pixels.as_ptr(),
                w,
                w,
                h,
                raw::TJPF_TJPF_GRAY as c_int,
                &mut dst,
                &mut size,
            )
        };
        assert_eq!(rc, 0, "{}", handle.error());
        // SAFETY: the library wrote `size` bytes at `dst`, which it allocated.
        let out = unsafe { std::slice::from_raw_parts(dst, size as usize) }.to_vec();
        // SAFETY: `dst` came from the library's allocator and is freed once.
        unsafe { raw::tj3Free(dst.cast()) };
        out
    }

    /// The raw-data encode must give exactly the packed-pixel path's bytes, including sizes
    /// that are not a multiple of the 8×8 block (where libjpeg pads the plane itself).
    #[test]
    fn raw_data_encode_matches_the_packed_pixel_encode() {
        let mut enc = Encoder::new().expect("encoder");
        for (w, h) in [
            (1, 1),
            (7, 5),
            (8, 8),
            (17, 9),
            (33, 1),
            (1, 33),
            (1281, 7),
            (64, 48),
        ] {
            let pixels: Vec<u8> = (0..w * h)
                .map(|i| ((i % w) * 7 + (i / w) * 13 + (i * i) % 11) as u8)
                .collect();
            for quality in [50, 90, 100] {
                let ours = enc
                    .encode_gray(&pixels, w as u32, h as u32, quality)
                    .expect("encode")
                    .to_vec();
                assert_eq!(
                    ours,
                    packed_encode(&pixels, w as c_int, h as c_int, quality),
                    "{w}x{h} q{quality}"
                );
            }
        }
    }

    #[test]
    fn short_plane_is_an_error_not_a_read_past_it() {
        let mut enc = Encoder::new().expect("encoder");
        let err = enc
            .encode_gray(&[0; 15], 4, 4, 90)
            .expect_err("short plane");
        assert!(matches!(err, EdgeError::Encode { .. }), "{err:?}");
    }
}
