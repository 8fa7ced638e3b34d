//! The fused fixed-point kernel against a straightforward f64 reference of blur + Sobel:
//! max |difference| ≤ 3 and mean ≤ 0.5 grey levels, on synthetic planes and on frames that
//! ffmpeg extracts from a test video.

use std::path::Path;
use std::process::Command;

use framefleet_edge::{
    decode_luma, edge_plane, process, Blur, EdgeParams, LumaImage, OutputFormat,
};

/// The reference: Gaussian (truncated at 4·sigma, normalised) separable blur in f64 with
/// replicated borders, then 3×3 Sobel in f64 with replicated borders, magnitude clamped to 255.
fn reference(luma: &LumaImage, sigma: f64) -> Vec<f64> {
    let (w, h) = (luma.width as usize, luma.height as usize);
    let px = |x: isize, y: isize, plane: &[f64]| -> f64 {
        plane[y.clamp(0, h as isize - 1) as usize * w + x.clamp(0, w as isize - 1) as usize]
    };
    let src: Vec<f64> = luma.pixels.iter().map(|&p| f64::from(p)).collect();
    let blurred = if sigma > 0.0 {
        let r = (4.0 * sigma).ceil() as isize;
        let k: Vec<f64> = (-r..=r)
            .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
            .collect();
        let total: f64 = k.iter().sum();
        let k: Vec<f64> = k.iter().map(|v| v / total).collect();
        let mut tmp = vec![0.0; w * h];
        for y in 0..h as isize {
            for x in 0..w as isize {
                tmp[y as usize * w + x as usize] = (-r..=r)
                    .map(|i| k[(i + r) as usize] * px(x + i, y, &src))
                    .sum();
            }
        }
        let mut out = vec![0.0; w * h];
        for y in 0..h as isize {
            for x in 0..w as isize {
                out[y as usize * w + x as usize] = (-r..=r)
                    .map(|i| k[(i + r) as usize] * px(x, y + i, &tmp))
                    .sum();
            }
        }
        out
    } else {
        src
    };
    let mut edges = vec![0.0; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let p = |dx: isize, dy: isize| px(x + dx, y + dy, &blurred);
            let gx = p(1, -1) + 2.0 * p(1, 0) + p(1, 1) - p(-1, -1) - 2.0 * p(-1, 0) - p(-1, 1);
            let gy = p(-1, 1) + 2.0 * p(0, 1) + p(1, 1) - p(-1, -1) - 2.0 * p(0, -1) - p(1, -1);
            edges[y as usize * w + x as usize] = (gx * gx + gy * gy).sqrt().min(255.0);
        }
    }
    edges
}

/// (max, mean) absolute difference between our u8 output and the f64 reference.
fn compare(ours: &[u8], reference: &[f64]) -> (f64, f64) {
    assert_eq!(ours.len(), reference.len());
    let mut max = 0.0f64;
    let mut sum = 0.0;
    for (&o, &r) in ours.iter().zip(reference) {
        let d = (f64::from(o) - r).abs();
        max = max.max(d);
        sum += d;
    }
    (max, sum / ours.len() as f64)
}

fn assert_accurate(name: &str, luma: &LumaImage, sigma: f32) {
    let ours = edge_plane(luma, sigma);
    let (max, mean) = compare(&ours.pixels, &reference(luma, f64::from(sigma)));
    eprintln!("{name} sigma {sigma}: max {max:.3} mean {mean:.4}");
    assert!(
        max <= 3.0 && mean <= 0.5,
        "{name} sigma {sigma}: max {max:.3} mean {mean:.4}"
    );
}

/// Deterministic xorshift noise, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u8
    }
}

fn synthetic(kind: &str, w: u32, h: u32) -> LumaImage {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let pixels = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            let (fx, fy) = (f64::from(x), f64::from(y));
            match kind {
                "noise" => rng.next(),
                "steps" => {
                    if (x / 13 + y / 7) % 2 == 0 {
                        0
                    } else {
                        255
                    }
                }
                "rings" => {
                    let d = ((fx - 60.0).powi(2) + (fy - 40.0).powi(2)).sqrt();
                    (127.5 + 127.5 * (d / 3.0).sin()) as u8
                }
                "scene" => {
                    // Smooth shading, a hard-edged object and sensor noise: a crude camera frame.
                    let base = 60.0 + 0.8 * fx + 0.3 * fy;
                    let object = if (fx - 90.0).abs() < 25.0 && (fy - 50.0).abs() < 18.0 {
                        90.0
                    } else {
                        0.0
                    };
                    let noise = f64::from(rng.next()) / 255.0 * 12.0 - 6.0;
                    (base + object + noise).clamp(0.0, 255.0) as u8
                }
                _ => unreachable!(),
            }
        })
        .collect();
    LumaImage {
        width: w,
        height: h,
        pixels,
    }
}

#[test]
fn synthetic_planes_match_the_reference() {
    for kind in ["noise", "steps", "rings", "scene"] {
        let luma = synthetic(kind, 161, 97);
        for sigma in [0.0, 0.2539, 0.5713, 1.0, 1.5, 2.5, 4.0] {
            assert_accurate(kind, &luma, sigma);
        }
    }
}

#[test]
fn odd_shapes_match_the_reference() {
    for (w, h) in [(1, 1), (1, 9), (9, 1), (2, 3), (17, 5)] {
        let luma = synthetic("noise", w, h);
        for sigma in [0.0, 0.57, 2.5] {
            assert_accurate(&format!("noise {w}x{h}"), &luma, sigma);
        }
    }
}

#[test]
fn process_png_output_matches_the_reference_end_to_end() {
    let luma = synthetic("scene", 200, 120);
    let png = encode_png_gray(&luma);
    for blur in [
        Blur::Modifier(1.0),
        Blur::Modifier(40.0),
        Blur::Sigma(0.0),
        Blur::Sigma(1.3),
    ] {
        let params = EdgeParams {
            blur,
            format: OutputFormat::Png,
            ..Default::default()
        };
        let map = process(&png, &params).unwrap();
        assert_eq!((map.width, map.height), (200, 120));
        let decoded = decode_luma(&map.bytes, &EdgeParams::default()).unwrap();
        let sigma = blur.sigma(200, 120);
        let (max, mean) = compare(&decoded.pixels, &reference(&luma, f64::from(sigma)));
        assert!(max <= 3.0 && mean <= 0.5, "{blur:?}: max {max} mean {mean}");
    }
}

fn encode_png_gray(luma: &LumaImage) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, luma.width, luma.height);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(&luma.pixels).unwrap();
    writer.finish().unwrap();
    out
}

fn ffmpeg(args: &[&str]) -> bool {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Frames from a short H.264 clip with texture, motion and noise, extracted by ffmpeg as
/// 4:2:0 JPEG the way MediaConvert frame captures are.
fn video_frames(dir: &Path) -> Option<Vec<Vec<u8>>> {
    let clip = dir.join("clip.mp4");
    let source = "mandelbrot=size=640x360:rate=10,format=yuv420p,noise=alls=12:allf=t";
    if !ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        source,
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        clip.to_str()?,
    ]) {
        return None;
    }
    let pattern = dir.join("frame%02d.jpg");
    if !ffmpeg(&[
        "-i",
        clip.to_str()?,
        "-vf",
        "select=not(mod(n\\,3))",
        "-vsync",
        "vfr",
        "-q:v",
        "3",
        pattern.to_str()?,
    ]) {
        return None;
    }
    let mut frames: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    frames.sort();
    frames.iter().map(|p| std::fs::read(p).ok()).collect()
}

#[test]
fn ffmpeg_frames_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    // scripts/setup installs ffmpeg: a machine without it must fail, not skip.
    let frames = video_frames(dir.path())
        .expect("ffmpeg with libx264 must be installed (scripts/setup installs it)");
    assert!(frames.len() >= 3, "ffmpeg produced {} frames", frames.len());
    for (i, jpeg) in frames.iter().enumerate() {
        let luma = decode_luma(jpeg, &EdgeParams::default()).unwrap();
        assert_eq!((luma.width, luma.height), (640, 360));
        for sigma in [Blur::Modifier(1.0).sigma(640, 360), 0.5713, 1.5, 2.5] {
            assert_accurate(&format!("frame {i}"), &luma, sigma);
        }
        let map = process(jpeg, &EdgeParams::default()).unwrap();
        assert_eq!((map.width, map.height), (640, 360));
    }
}
