//! Input formats the kernel accepts, outputs it writes, and every kind of bad input it must
//! refuse with a typed error instead of a panic.

use framefleet_edge::{
    decode_luma, edge_plane, encode, probe, process, transcode_precomputed, Blur, EdgeError,
    EdgeParams, InputFormat, OutputFormat,
};
use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

/// A colourful test picture with edges in every direction.
fn rgb(w: usize, h: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let inside = (x as i64 - w as i64 / 2).pow(2) + (y as i64 - h as i64 / 2).pow(2)
                < (h as i64 / 3).pow(2);
            let r = if inside { 230 } else { (x * 255 / w) as u8 };
            let g = ((x / 8 + y / 8) % 2 * 120) as u8;
            let b = (y * 255 / h) as u8;
            v.extend_from_slice(&[r, g, b]);
        }
    }
    v
}

fn jpeg(w: usize, h: usize, subsamp: Subsamp, progressive: bool) -> Vec<u8> {
    let mut c = Compressor::new().unwrap();
    c.set_quality(90).unwrap();
    c.set_subsamp(subsamp).unwrap();
    c.set_progressive(progressive).unwrap();
    let pixels = rgb(w, h);
    let (pixels, format) = if subsamp == Subsamp::Gray {
        (
            pixels.chunks(3).map(|p| p[1] / 2 + p[0] / 2).collect(),
            PixelFormat::GRAY,
        )
    } else {
        (pixels, PixelFormat::RGB)
    };
    let image = Image {
        pixels: &pixels[..],
        width: w,
        pitch: w * format.size(),
        height: h,
        format,
    };
    c.compress_to_vec(image).unwrap()
}

fn png_bytes(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(color);
    enc.set_depth(depth);
    if color == png::ColorType::Indexed {
        enc.set_palette(
            (0..=255u8)
                .flat_map(|i| [i, 255 - i, i / 2])
                .collect::<Vec<_>>(),
        );
    }
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
    out
}

fn check_output(map: &framefleet_edge::EdgeMap, w: u32, h: u32) {
    assert_eq!((map.width, map.height), (w, h));
    let info = probe(&map.bytes).unwrap();
    assert_eq!((info.width, info.height), (w, h));
    let expected = match map.format {
        OutputFormat::Jpeg => InputFormat::Jpeg,
        OutputFormat::Png => InputFormat::Png,
    };
    assert_eq!(info.format, expected);
    let luma = decode_luma(&map.bytes, &EdgeParams::default()).unwrap();
    assert!(
        luma.pixels.iter().any(|&v| v > 100),
        "edge map has no strong edges"
    );
}

#[test]
fn accepts_every_jpeg_flavour() {
    for (subsamp, progressive) in [
        (Subsamp::Sub2x2, false),
        (Subsamp::Sub2x2, true),
        (Subsamp::Sub2x1, false),
        (Subsamp::None, false),
        (Subsamp::Gray, false),
        (Subsamp::Gray, true),
    ] {
        let input = jpeg(123, 77, subsamp, progressive);
        for format in [OutputFormat::Jpeg, OutputFormat::Png] {
            let params = EdgeParams {
                format,
                ..Default::default()
            };
            let map = process(&input, &params)
                .unwrap_or_else(|e| panic!("{subsamp:?} {progressive}: {e}"));
            check_output(&map, 123, 77);
        }
    }
}

#[test]
fn jpeg_luma_is_the_y_plane() {
    // Decoding only luma must give the same plane as a full decode converted to Y.
    let input = jpeg(64, 48, Subsamp::Sub2x2, false);
    let ours = decode_luma(&input, &EdgeParams::default()).unwrap();
    let yuv = turbojpeg::decompress_to_yuv(&input).unwrap();
    assert_eq!(ours.pixels[..], yuv.pixels[..64 * 48]);
}

#[test]
fn accepts_every_png_colour_type() {
    let (w, h) = (50u32, 30u32);
    let n = (w * h) as usize;
    let rgb8 = rgb(w as usize, h as usize);
    let cases: Vec<(png::ColorType, png::BitDepth, Vec<u8>)> = vec![
        (
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            rgb8.chunks(3).map(|p| p[0]).collect(),
        ),
        (
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            rgb8.chunks(3).flat_map(|p| [p[0], 0]).collect(),
        ),
        (
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Eight,
            rgb8.chunks(3).flat_map(|p| [p[0], 255]).collect(),
        ),
        (png::ColorType::Rgb, png::BitDepth::Eight, rgb8.clone()),
        (
            png::ColorType::Rgba,
            png::BitDepth::Eight,
            rgb8.chunks(3).flat_map(|p| [p[0], p[1], p[2], 9]).collect(),
        ),
        (
            png::ColorType::Indexed,
            png::BitDepth::Eight,
            rgb8.chunks(3).map(|p| p[0]).collect(),
        ),
    ];
    for (color, depth, data) in cases {
        assert!(data.len() >= n);
        let input = png_bytes(w, h, color, depth, &data);
        let map = process(&input, &EdgeParams::default())
            .unwrap_or_else(|e| panic!("{color:?} {depth:?}: {e}"));
        check_output(&map, w, h);
    }
}

#[test]
fn downscales_keeping_aspect() {
    let input = jpeg(400, 300, Subsamp::Sub2x2, false);
    let params = EdgeParams {
        max_width: Some(200),
        max_height: Some(200),
        ..Default::default()
    };
    let map = process(&input, &params).unwrap();
    check_output(&map, 200, 150);
    let params = EdgeParams {
        max_height: Some(60),
        format: OutputFormat::Png,
        ..Default::default()
    };
    check_output(&process(&input, &params).unwrap(), 80, 60);
    // Bounds larger than the image never upscale.
    let params = EdgeParams {
        max_width: Some(4000),
        ..Default::default()
    };
    check_output(&process(&input, &params).unwrap(), 400, 300);
}

#[test]
fn quality_changes_jpeg_size_and_output_is_deterministic() {
    let input = jpeg(160, 120, Subsamp::Sub2x2, false);
    let low = process(
        &input,
        &EdgeParams {
            quality: 20,
            ..Default::default()
        },
    )
    .unwrap();
    let high = process(
        &input,
        &EdgeParams {
            quality: 98,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(low.bytes.len() < high.bytes.len());
    assert_eq!(
        process(&input, &EdgeParams::default()).unwrap(),
        process(&input, &EdgeParams::default()).unwrap()
    );
    // Same result from other threads (each has its own scratch buffers and codec instances).
    let reference = process(&input, &EdgeParams::default()).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| process(&input, &EdgeParams::default()).unwrap()))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), reference);
        }
    });
}

#[test]
fn refuses_empty_and_unknown_inputs() {
    assert!(matches!(
        process(b"", &EdgeParams::default()),
        Err(EdgeError::Empty)
    ));
    for input in [
        &b"GIF89a\x01\x00\x01\x00"[..],
        b"BM\x00\x00",
        b"<html></html>",
        &[0u8; 64],
    ] {
        let err = process(input, &EdgeParams::default()).unwrap_err();
        assert!(
            matches!(err, EdgeError::UnsupportedFormat { .. }),
            "{err:?}"
        );
        assert!(err.is_bad_input());
    }
}

#[test]
fn refuses_truncated_jpeg_and_png() {
    let input = jpeg(200, 150, Subsamp::Sub2x2, false);
    for cut in [3, 20, 200, input.len() / 2, input.len() - 2] {
        let err = process(&input[..cut], &EdgeParams::default()).unwrap_err();
        assert!(
            matches!(err, EdgeError::Truncated { .. }),
            "cut at {cut}: {err:?}"
        );
    }
    let progressive = jpeg(200, 150, Subsamp::Sub2x2, true);
    let err = process(
        &progressive[..progressive.len() * 2 / 3],
        &EdgeParams::default(),
    )
    .unwrap_err();
    assert!(matches!(err, EdgeError::Truncated { .. }), "{err:?}");

    let png = png_bytes(
        64,
        64,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &rgb(64, 64),
    );
    for cut in [5, 20, 40, png.len() / 2, png.len() - 13] {
        let err = process(&png[..cut], &EdgeParams::default()).unwrap_err();
        assert!(
            matches!(err, EdgeError::Truncated { .. }),
            "cut at {cut}: {err:?}"
        );
    }
}

#[test]
fn refuses_corrupt_data() {
    let input = jpeg(200, 150, Subsamp::Sub2x2, false);
    let mut bad = input.clone();
    let mid = bad.len() / 2;
    // An invalid marker in the middle of the entropy-coded data.
    bad[mid..mid + 8].copy_from_slice(&[0xFF, 0x12, 0xFF, 0x34, 0xFF, 0xC0, 0x00, 0x01]);
    let err = process(&bad, &EdgeParams::default()).unwrap_err();
    assert!(
        matches!(err, EdgeError::Corrupt { .. } | EdgeError::Truncated { .. }),
        "{err:?}"
    );

    let mut png = png_bytes(
        64,
        64,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &rgb(64, 64),
    );
    let mid = png.len() / 2;
    png[mid..mid + 16].fill(0xA5);
    let err = process(&png, &EdgeParams::default()).unwrap_err();
    assert!(matches!(err, EdgeError::Corrupt { .. }), "{err:?}");
}

#[test]
fn random_damage_never_panics() {
    let inputs = [
        jpeg(96, 64, Subsamp::Sub2x2, false),
        jpeg(96, 64, Subsamp::Sub2x2, true),
        png_bytes(
            40,
            30,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            &rgb(40, 30),
        ),
    ];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for input in &inputs {
        for _ in 0..300 {
            let mut damaged = input.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % damaged.len() as u64) as usize;
                damaged[at] = next() as u8;
            }
            let cut = damaged.len()
                - (next() % 3 == 0) as usize * (next() % damaged.len() as u64) as usize;
            let _ = process(&damaged[..cut], &EdgeParams::default());
        }
    }
}

#[test]
fn refuses_zero_sized_images() {
    // JPEG: patch the frame header's height to 0.
    let mut input = jpeg(32, 32, Subsamp::Sub2x2, false);
    let sof = input.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    input[sof + 5] = 0;
    input[sof + 6] = 0;
    let err = process(&input, &EdgeParams::default()).unwrap_err();
    assert!(
        matches!(
            err,
            EdgeError::ZeroSize {
                width: 32,
                height: 0
            }
        ),
        "{err:?}"
    );
    // PNG: patch IHDR's width to 0.
    let mut png = png_bytes(
        8,
        8,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[0; 64],
    );
    png[16..20].fill(0);
    let err = process(&png, &EdgeParams::default()).unwrap_err();
    assert!(
        matches!(
            err,
            EdgeError::ZeroSize {
                width: 0,
                height: 8
            }
        ),
        "{err:?}"
    );
}

#[test]
fn refuses_images_over_the_pixel_limit_from_the_header() {
    let input = jpeg(100, 80, Subsamp::Sub2x2, false);
    let params = EdgeParams {
        max_pixels: 7_999,
        ..Default::default()
    };
    let err = process(&input, &params).unwrap_err();
    assert!(
        matches!(
            err,
            EdgeError::TooLarge {
                width: 100,
                height: 80,
                limit: 7_999
            }
        ),
        "{err:?}"
    );
    assert!(process(
        &input,
        &EdgeParams {
            max_pixels: 8_000,
            ..Default::default()
        }
    )
    .is_ok());

    // Headers that claim huge images with no pixel data behind them: refused before any
    // allocation (a 65535² plane would be 4 GiB).
    let mut huge = input.clone();
    let sof = huge.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    huge[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    huge.truncate(sof + 20);
    let err = process(&huge, &EdgeParams::default()).unwrap_err();
    assert!(
        matches!(
            err,
            EdgeError::TooLarge {
                width: 65535,
                height: 65535,
                limit: 64_000_000
            }
        ),
        "{err:?}"
    );

    let mut png = png_bytes(
        8,
        8,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[0; 64],
    );
    png[16..24].copy_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0]);
    let err = process(&png, &EdgeParams::default()).unwrap_err();
    assert!(
        matches!(
            err,
            EdgeError::TooLarge {
                width: 65536,
                height: 65536,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn refuses_cmyk_jpeg() {
    let (w, h) = (16, 16);
    let pixels = vec![128u8; w * h * 4];
    let mut c = Compressor::new().unwrap();
    c.set_subsamp(Subsamp::None).unwrap();
    let image = Image {
        pixels: &pixels[..],
        width: w,
        pitch: w * 4,
        height: h,
        format: PixelFormat::CMYK,
    };
    let input = c.compress_to_vec(image).unwrap();
    let err = process(&input, &EdgeParams::default()).unwrap_err();
    assert!(
        matches!(err, EdgeError::UnsupportedFormat { .. }),
        "{err:?}"
    );
}

#[test]
fn refuses_invalid_params_before_decoding() {
    let params = EdgeParams {
        blur: Blur::Sigma(-2.0),
        ..Default::default()
    };
    let err = process(b"", &params).unwrap_err();
    assert!(
        matches!(
            err,
            EdgeError::InvalidParams {
                name: "blur.sigma",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_bad_input());
}

#[test]
fn transcode_precomputed_encodes_the_given_plane_and_checks_its_size() {
    let input = jpeg(96, 64, Subsamp::Sub2x2, false);
    let params = EdgeParams::default();
    let luma = decode_luma(&input, &params).unwrap();
    let edges = edge_plane(&luma, params.blur.sigma(luma.width, luma.height));
    // Same bytes as the kernel's own pipeline: the floor encodes exactly what process does.
    let floor = transcode_precomputed(&input, &edges, &params).unwrap();
    assert_eq!(floor, process(&input, &params).unwrap());
    assert_eq!(
        floor,
        encode(&edges, OutputFormat::Jpeg, params.quality).unwrap()
    );
    let cropped = framefleet_edge::LumaImage {
        width: 95,
        height: 64,
        pixels: vec![0; 95 * 64],
    };
    assert!(matches!(
        transcode_precomputed(&input, &cropped, &params),
        Err(EdgeError::InvalidParams { name: "plane", .. })
    ));
    assert!(transcode_precomputed(b"not an image", &edges, &params).is_err());
}
