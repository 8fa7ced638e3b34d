//! The fused kernel: separable fixed-point Gaussian blur and 3×3 Sobel magnitude, one output
//! row at a time, borders replicated.
//!
//! Each input row is widened once (u8 → u16 at 8 fractional bits) into a ring of the last
//! `2r + 1`. Per output row: a vertical FIR over that ring, a horizontal FIR over its result
//! (u16 → i16 at [`FRAC_BITS`] fractional bits) into a ring of three blurred rows, then Sobel
//! and magnitude from those three straight into the output row. Every buffer but the planes
//! is a row, so the working set stays in L1.
//!
//! The loop is written once ([`edge_map_with`]) over the row steps of [`RowOps`]. [`Portable`]
//! implements them as plain slice loops over 16-bit lanes with no data-dependent branches,
//! which the compiler vectorises (SSE2 on x86_64, NEON on aarch64); it is the definition the
//! others must match bit for bit. `avx2` implements them in intrinsics and is picked at run
//! time on x86_64 CPUs that have AVX2.
//!
//! Fixed point: taps are quantised to sum exactly 65536 and applied with a 16×16→high-16
//! multiply (`pmulhuw` / `umull`+`shrn`), so a flat area stays exactly flat. Blurred values
//! keep 5 fractional bits (max 255·32 = 8160), which lets the Sobel sums (max 4·8160 = 32640)
//! stay in i16; only the squared magnitude widens to i32 and f32 for the square root.

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Fractional bits of the blurred values fed to the Sobel operator.
const FRAC_BITS: u32 = 5;

/// 2^23: the f32 whose unit in the last place is 1.
const ROUNDING_BIAS: f32 = 8_388_608.0;

/// Symmetric Gaussian taps quantised to sum 65536, or empty for "no blur".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taps {
    /// All `2r + 1` taps.
    all: Vec<u16>,
    /// `pair[i]`: twice the tap at distance `i + 1`, applied to the rounded average of the two
    /// pixels at that distance (side taps are below 1/3, so twice one fits u16). Kept in
    /// memory rather than doubled in the loop: a multiplier the compiler can see is even gets
    /// folded into the product, which then no longer fits a 16×16→high-16 multiply.
    pair: Vec<u16>,
}

impl Taps {
    /// Taps for `sigma`, truncated at 4·sigma and with negligible outer taps dropped.
    pub(crate) fn gaussian(sigma: f32) -> Taps {
        let none = Taps {
            all: Vec::new(),
            pair: Vec::new(),
        };
        if sigma.is_nan() || sigma <= 0.0 {
            return none;
        }
        let sigma = f64::from(sigma);
        let radius = (4.0 * sigma).ceil().max(1.0) as usize;
        let weights: Vec<f64> = (0..=radius)
            .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
            .collect();
        let total = weights[0] + 2.0 * weights[1..].iter().sum::<f64>();
        let mut side: Vec<u16> = weights[1..]
            .iter()
            .map(|w| (w / total * 65536.0).round() as u16)
            .collect();
        while side.last() == Some(&0) {
            side.pop();
        }
        if side.is_empty() {
            return none;
        }
        let centre = 65536 - 2 * side.iter().map(|&t| u32::from(t)).sum::<u32>();
        let mut all: Vec<u16> = side.iter().rev().copied().collect();
        all.push(centre as u16);
        all.extend_from_slice(&side);
        let pair = side.iter().map(|&t| t * 2).collect();
        Taps { all, pair }
    }

    /// Half-width of the kernel: 0 for no blur.
    pub(crate) fn radius(&self) -> usize {
        self.pair.len()
    }

    /// The centre tap (only meaningful when the radius is not 0).
    fn centre(&self) -> u16 {
        self.all[self.radius()]
    }

    #[cfg(test)]
    pub(crate) fn as_slice(&self) -> &[u16] {
        &self.all
    }
}

/// Reusable row buffers, so a worker thread allocates them once per frame size.
#[derive(Debug, Default)]
pub(crate) struct KernelScratch {
    /// Ring of the last `2r + 1` input rows, widened to u16 with 8 fractional bits, so each
    /// input row is widened once rather than once per blurred row that reads it.
    wide: Vec<Vec<u16>>,
    /// Input row held by each slot of `wide`.
    wide_held: Vec<usize>,
    /// Vertically blurred row with `radius` replicated pixels on each side.
    vrow: Vec<u16>,
    /// Horizontal accumulator.
    hacc: Vec<u16>,
    /// Three blurred rows, each with one replicated pixel on each side.
    ring: [Vec<i16>; 3],
}

#[inline(always)]
fn mulhi(a: u16, b: u16) -> u16 {
    ((u32::from(a) * u32::from(b)) >> 16) as u16
}

/// The row steps that have hand-written SIMD versions. [`Portable`] is the reference every
/// other implementation must match bit for bit; the kernel's loop is generic over this trait
/// so that all implementations share it.
pub(crate) trait RowOps: Copy {
    /// `out[x] = src[x] << 8`: an input row at 8 fractional bits.
    fn widen(self, src: &[u8], out: &mut [u16]);

    /// Vertical FIR of radius `R` over widened rows: `acc[x]` = the blurred `centre[x]`, from
    /// the `R` rows above (`up[0]` nearest) and below. Taps: `tc` for the centre, `ts[i]` (a
    /// [`Taps::pair`] tap) for the rounded average of the pair at distance `i + 1`.
    fn vblur<const R: usize>(
        self,
        centre: &[u16],
        up: &[&[u16]; R],
        down: &[&[u16]; R],
        tc: u16,
        ts: &[u16; R],
        acc: &mut [u16],
    );

    /// Horizontal FIR of radius `R` over `vrow` (`out.len() + 2R` values, ends replicated)
    /// into `out` at [`FRAC_BITS`].
    fn hblur<const R: usize>(self, vrow: &[u16], tc: u16, ts: &[u16; R], out: &mut [i16]);

    /// Sobel magnitude of the middle row `b` (rows `a` above and `c` below, all
    /// `out.len() + 2` long with replicated ends) into `out`, rounded and clamped to 255.
    fn sobel(self, a: &[i16], b: &[i16], c: &[i16], out: &mut [u8]);
}

/// The row steps in portable Rust: plain slice loops over 16-bit lanes with no data-dependent
/// branches, which the compiler vectorises for whatever target features its caller enables
/// (SSE2 on x86_64, NEON on aarch64).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

impl RowOps for Portable {
    #[inline(always)]
    fn widen(self, src: &[u8], out: &mut [u16]) {
        for (o, &p) in out.iter_mut().zip(src) {
            *o = u16::from(p) << 8;
        }
    }

    #[inline(always)]
    fn vblur<const R: usize>(
        self,
        centre: &[u16],
        up: &[&[u16]; R],
        down: &[&[u16]; R],
        tc: u16,
        ts: &[u16; R],
        acc: &mut [u16],
    ) {
        let width = acc.len();
        let centre = &centre[..width];
        let up: [&[u16]; R] = std::array::from_fn(|i| &up[i][..width]);
        let down: [&[u16]; R] = std::array::from_fn(|i| &down[i][..width]);
        for x in 0..width {
            let mut a = mulhi(centre[x], tc);
            for i in 0..R {
                a += mulhi(avg(up[i][x], down[i][x]), ts[i]);
            }
            acc[x] = a;
        }
    }

    #[inline(always)]
    fn hblur<const R: usize>(self, vrow: &[u16], tc: u16, ts: &[u16; R], out: &mut [i16]) {
        let width = out.len();
        let mid = &vrow[R..R + width];
        let left: [&[u16]; R] = std::array::from_fn(|i| &vrow[R - 1 - i..][..width]);
        let right: [&[u16]; R] = std::array::from_fn(|i| &vrow[R + 1 + i..][..width]);
        for x in 0..width {
            let mut a = mulhi(mid[x], tc);
            for i in 0..R {
                a += mulhi(avg(left[i][x], right[i][x]), ts[i]);
            }
            out[x] = narrow(a);
        }
    }

    #[inline(always)]
    fn sobel(self, a: &[i16], b: &[i16], c: &[i16], out: &mut [u8]) {
        let w = out.len();
        let (a0, a1, a2) = (&a[..w], &a[1..w + 1], &a[2..w + 2]);
        let (b0, b2) = (&b[..w], &b[2..w + 2]);
        let (c0, c1, c2) = (&c[..w], &c[1..w + 1], &c[2..w + 2]);
        for x in 0..w {
            let gx = (a2[x] + 2 * b2[x] + c2[x]) - (a0[x] + 2 * b0[x] + c0[x]);
            let gy = (c0[x] - a0[x]) + 2 * (c1[x] - a1[x]) + (c2[x] - a2[x]);
            out[x] = magnitude(squared_magnitude(gx, gy));
        }
    }
}

/// `gx² + gy²`, exact: |g| ≤ 32640, so the sum is below 2^31 (`pmaddwd` / `smull`+`smlal`).
#[inline(always)]
fn squared_magnitude(gx: i16, gy: i16) -> i32 {
    i32::from(gx) * i32::from(gx) + i32::from(gy) * i32::from(gy)
}

/// `sqrt(sq)` at [`FRAC_BITS`] → grey level, rounded to nearest (ties to even) and clamped
/// to 255; every implementation computes it exactly this way, in f32.
#[inline(always)]
fn magnitude(sq: i32) -> u8 {
    let m = (sq as f32).sqrt() * (1.0 / (1u32 << FRAC_BITS) as f32);
    // Round without a float → int cast (Rust's saturating casts are lowered lane by lane):
    // adding 2^23 to a value in 0..=255 leaves it, rounded, in the low mantissa bits.
    (m.min(255.0) + ROUNDING_BIAS).to_bits() as u8
}

/// Computes the edge map of a width×height luma plane into `out` (same size), with the
/// fastest row steps this CPU supports: AVX2 on x86_64 CPUs that have it, [`Portable`]
/// everywhere else (on aarch64 that is NEON, part of the baseline).
pub(crate) fn edge_map(
    src: &[u8],
    width: usize,
    height: usize,
    taps: &Taps,
    out: &mut [u8],
    s: &mut KernelScratch,
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = avx2::Avx2::detect() {
        return avx2.edge_map(src, width, height, taps, out, s);
    }
    edge_map_with(Portable, src, width, height, taps, out, s)
}

/// The kernel's loop: blurs each input row once into a ring of three rows and writes one
/// Sobel row per output row. `#[inline(always)]`, with everything it calls, so that it is
/// compiled for whichever target features its caller enables.
#[inline(always)]
pub(crate) fn edge_map_with<K: RowOps>(
    k: K,
    src: &[u8],
    width: usize,
    height: usize,
    taps: &Taps,
    out: &mut [u8],
    s: &mut KernelScratch,
) {
    assert!(width > 0 && height > 0, "edge_map needs a non-empty plane");
    assert!(src.len() >= width * height && out.len() >= width * height);
    let r = taps.radius();
    let slots = if r == 0 { 0 } else { 2 * r + 1 };
    s.wide.resize_with(slots, Vec::new);
    for row in &mut s.wide {
        row.resize(width, 0);
    }
    s.wide_held.clear();
    s.wide_held.resize(slots, usize::MAX);
    s.vrow.resize(width + 2 * r, 0);
    s.hacc.resize(width, 0);
    for row in &mut s.ring {
        row.resize(width + 2, 0);
    }
    let input = Input { src, width, height };
    let mut held = [usize::MAX; 3];
    for y in 0..height {
        let need = [y.saturating_sub(1), y, (y + 1).min(height - 1)];
        for &row in &need {
            if held.contains(&row) {
                continue;
            }
            let slot = (0..3)
                .find(|&k| !need.contains(&held[k]))
                .expect("three slots for three rows");
            blur_row(k, input, row, taps, s, slot);
            held[slot] = row;
        }
        let at = |row: usize| held.iter().position(|&h| h == row).expect("row is held");
        let (a, b, c) = (
            &s.ring[at(need[0])],
            &s.ring[at(need[1])],
            &s.ring[at(need[2])],
        );
        k.sobel(a, b, c, &mut out[y * width..(y + 1) * width]);
    }
}

/// The input plane, with rows outside it replicated from its first and last row.
#[derive(Clone, Copy)]
struct Input<'a> {
    src: &'a [u8],
    width: usize,
    height: usize,
}

impl<'a> Input<'a> {
    /// Input row `y` clamped into the plane.
    fn clamp(self, y: isize) -> usize {
        y.clamp(0, self.height as isize - 1) as usize
    }

    fn row(self, y: usize) -> &'a [u8] {
        &self.src[y * self.width..(y + 1) * self.width]
    }
}

/// Rounding average of two u16 values, `(a + b + 1) >> 1`, without widening.
#[inline(always)]
fn avg(a: u16, b: u16) -> u16 {
    (a | b) - ((a ^ b) >> 1)
}

/// Blurred value at 8 fractional bits → [`FRAC_BITS`], rounded.
#[inline(always)]
fn narrow(a: u16) -> i16 {
    ((a + (1 << (7 - FRAC_BITS))) >> (8 - FRAC_BITS)) as i16
}

/// Blurs input row `row` into `s.ring[slot]` (width + 2, replicated ends) at [`FRAC_BITS`].
///
/// Rows are blurred in increasing order, so each input row enters the widened ring once.
/// Within the plane, a pair average of two rows `u·256` and `d·256` is exactly
/// `(u + d)·128`: the rounding bit of the average is always 0.
#[inline(always)]
fn blur_row<K: RowOps>(
    k: K,
    input: Input<'_>,
    row: usize,
    taps: &Taps,
    s: &mut KernelScratch,
    slot: usize,
) {
    let width = input.width;
    let r = taps.radius();
    let dst = &mut s.ring[slot];
    if r == 0 {
        for (d, &p) in dst[1..width + 1].iter_mut().zip(input.row(row)) {
            *d = i16::from(p) << FRAC_BITS;
        }
    } else {
        let slots = 2 * r + 1;
        for dy in -(r as isize)..=r as isize {
            let y = input.clamp(row as isize + dy);
            if s.wide_held[y % slots] != y {
                k.widen(input.row(y), &mut s.wide[y % slots]);
                s.wide_held[y % slots] = y;
            }
        }
        let wide = &s.wide;
        let line = |dy: isize| -> &[u16] { &wide[input.clamp(row as isize + dy) % slots] };
        let (vrow, hacc) = (&mut s.vrow, &mut s.hacc);
        match r {
            1 => blur_row_fixed::<K, 1>(k, line, width, taps, vrow, dst),
            2 => blur_row_fixed::<K, 2>(k, line, width, taps, vrow, dst),
            3 => blur_row_fixed::<K, 3>(k, line, width, taps, vrow, dst),
            4 => blur_row_fixed::<K, 4>(k, line, width, taps, vrow, dst),
            _ => blur_row_any(line, width, taps, vrow, hacc, dst),
        }
    }
    dst[0] = dst[1];
    dst[width + 1] = dst[width];
}

/// [`blur_row`] for a kernel of radius `R` known at compile time: each of the two FIR passes is
/// one loop over the row with every tap applied in registers, so a pixel is loaded and stored
/// once per pass instead of once per tap.
#[inline(always)]
fn blur_row_fixed<'a, K: RowOps, const R: usize>(
    k: K,
    line: impl Fn(isize) -> &'a [u16],
    width: usize,
    taps: &Taps,
    vrow: &mut [u16],
    dst: &mut [i16],
) {
    let tc = taps.centre();
    let ts: &[u16; R] = taps.pair[..R].try_into().expect("radius R");
    // Vertical: widened rows → u16 with 8 fractional bits, into the middle of `vrow`.
    let up: [&[u16]; R] = std::array::from_fn(|i| line(-(i as isize) - 1));
    let down: [&[u16]; R] = std::array::from_fn(|i| line(i as isize + 1));
    k.vblur::<R>(line(0), &up, &down, tc, ts, &mut vrow[R..R + width]);
    let (first, last) = (vrow[R], vrow[R + width - 1]);
    vrow[..R].fill(first);
    vrow[R + width..R + width + R].fill(last);
    // Horizontal: u16 → i16 at FRAC_BITS, pairs averaged (rounding) so the sum cannot overflow.
    k.hblur::<R>(&vrow[..width + 2 * R], tc, ts, &mut dst[1..width + 1]);
}

/// [`blur_row`] for any radius, one pass per tap.
#[inline(always)]
fn blur_row_any<'a>(
    line: impl Fn(isize) -> &'a [u16],
    width: usize,
    taps: &Taps,
    vrow: &mut [u16],
    hacc: &mut [u16],
    dst: &mut [i16],
) {
    let r = taps.radius();
    let tc = taps.centre();
    {
        let acc = &mut vrow[r..r + width];
        for (a, &c) in acc.iter_mut().zip(line(0)) {
            *a = mulhi(c, tc);
        }
        for (i, &t) in taps.pair.iter().enumerate() {
            let (up, down) = (line(-(i as isize) - 1), line(i as isize + 1));
            for ((a, &u), &d) in acc.iter_mut().zip(up).zip(down) {
                *a += mulhi(avg(u, d), t);
            }
        }
    }
    let (first, last) = (vrow[r], vrow[r + width - 1]);
    vrow[..r].fill(first);
    vrow[r + width..].fill(last);
    let vrow = &vrow[..width + 2 * r];
    for (a, &v) in hacc.iter_mut().zip(&vrow[r..r + width]) {
        *a = mulhi(v, tc);
    }
    for (i, &t) in taps.pair.iter().enumerate() {
        let d = i + 1;
        let (left, right) = (&vrow[r - d..r - d + width], &vrow[r + d..r + d + width]);
        for ((a, &l), &rt) in hacc.iter_mut().zip(left).zip(right) {
            *a += mulhi(avg(l, rt), t);
        }
    }
    for (d, &a) in dst[1..width + 1].iter_mut().zip(hacc.iter()) {
        *d = narrow(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_one_and_are_symmetric() {
        for sigma in [0.05f32, 0.25, 0.57, 1.0, 1.5, 2.5, 7.0, 50.0] {
            let taps = Taps::gaussian(sigma);
            let t = taps.as_slice();
            let sum: u32 = t.iter().map(|&x| u32::from(x)).sum();
            if t.is_empty() {
                assert!(sigma < 0.2, "sigma {sigma} lost its blur");
                continue;
            }
            assert_eq!(sum, 65536, "sigma {sigma}");
            assert!(t.iter().eq(t.iter().rev()), "sigma {sigma}");
            assert!(t.len() <= 2 * (4.0 * sigma).ceil() as usize + 1);
        }
        assert!(Taps::gaussian(0.0).as_slice().is_empty());
        assert_eq!(Taps::gaussian(2.5).as_slice().len() % 2, 1);
    }

    #[test]
    fn flat_image_has_no_edges() {
        for sigma in [0.0, 0.6, 2.0] {
            let (w, h) = (37, 23);
            let src = vec![173u8; w * h];
            let mut out = vec![1u8; w * h];
            edge_map(
                &src,
                w,
                h,
                &Taps::gaussian(sigma),
                &mut out,
                &mut KernelScratch::default(),
            );
            assert!(out.iter().all(|&v| v == 0), "sigma {sigma}");
        }
    }

    #[test]
    fn tiny_planes_work() {
        for (w, h) in [(1, 1), (1, 5), (5, 1), (2, 2)] {
            let src: Vec<u8> = (0..w * h).map(|i| (i * 97 % 256) as u8).collect();
            let mut out = vec![0u8; w * h];
            edge_map(
                &src,
                w,
                h,
                &Taps::gaussian(1.5),
                &mut out,
                &mut KernelScratch::default(),
            );
        }
    }

    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 23) as u8
            })
            .collect()
    }

    /// Taps of exactly radius `r`, from the first sigma in 0.10, 0.11, … that has it.
    fn with_radius(r: usize) -> Taps {
        (10..300)
            .map(|i| Taps::gaussian(i as f32 / 100.0))
            .find(|t| t.radius() == r)
            .expect("some sigma has this radius")
    }

    /// The dispatched kernel (AVX2 on CPUs that have it) must give exactly the portable
    /// kernel's bytes, at widths below, at and around the vector width, for every radius
    /// with its own code path and for the any-radius blur.
    #[test]
    fn dispatched_and_portable_kernels_agree_exactly() {
        for (w, h) in [
            (1, 3),
            (15, 4),
            (16, 5),
            (17, 6),
            (31, 3),
            (203, 61),
            (1280, 9),
        ] {
            let src = noise(w * h, (w * 31 + h) as u32);
            for sigma in [0.0, 0.25, 0.57, 0.9, 1.2, 2.5] {
                let taps = Taps::gaussian(sigma);
                let (mut a, mut b) = (vec![0u8; w * h], vec![0u8; w * h]);
                edge_map(&src, w, h, &taps, &mut a, &mut KernelScratch::default());
                edge_map_with(
                    Portable,
                    &src,
                    w,
                    h,
                    &taps,
                    &mut b,
                    &mut KernelScratch::default(),
                );
                assert_eq!(a, b, "{w}x{h}, sigma {sigma}");
            }
        }
    }

    /// Gradients at and near the extremes, and exact rounding ties, give the same grey level
    /// in both builds.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_sobel_matches_portable_on_extreme_rows() {
        let Some(avx2) = avx2::Avx2::detect() else {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        };
        let max = 255i16 << FRAC_BITS;
        let w = 40;
        let rows: Vec<Vec<i16>> = vec![
            vec![0; w + 2],
            vec![max; w + 2],
            (0..w + 2)
                .map(|x| if x % 2 == 0 { 0 } else { max })
                .collect(),
            (0..w + 2).map(|x| (x as i16 * 16) % (max + 1)).collect(),
            (0..w + 2)
                .map(|x| if x < w / 2 { 0 } else { max })
                .collect(),
        ];
        for a in &rows {
            for b in &rows {
                for c in &rows {
                    let (mut p, mut q) = (vec![0u8; w], vec![0u8; w]);
                    Portable.sobel(a, b, c, &mut p);
                    avx2.sobel(a, b, c, &mut q);
                    assert_eq!(p, q);
                }
            }
        }
    }

    #[test]
    fn fixed_radius_blur_matches_the_any_radius_blur() {
        fn check<const R: usize>(taps: &Taps) {
            assert_eq!(taps.radius(), R);
            let (w, h) = (67, 13);
            let src = noise(w * h, 777);
            let wide: Vec<Vec<u16>> = src
                .chunks(w)
                .map(|row| row.iter().map(|&p| u16::from(p) << 8).collect())
                .collect();
            for row in 0..h {
                let line = |k: isize| -> &[u16] {
                    &wide[(row as isize + k).clamp(0, h as isize - 1) as usize]
                };
                let (mut v1, mut v2, mut hacc) =
                    (vec![0; w + 2 * R], vec![0; w + 2 * R], vec![0; w]);
                let (mut a, mut b) = (vec![0i16; w + 2], vec![0i16; w + 2]);
                blur_row_fixed::<Portable, R>(Portable, line, w, taps, &mut v1, &mut a);
                blur_row_any(line, w, taps, &mut v2, &mut hacc, &mut b);
                assert_eq!(a, b, "radius {R}, row {row}");
            }
        }
        check::<1>(&with_radius(1));
        check::<2>(&with_radius(2));
        check::<3>(&with_radius(3));
        check::<4>(&with_radius(4));
    }

    /// The exact Sobel magnitude of `src` with no blur: `round(sqrt(gx² + gy²))` in f64,
    /// clamped to 255, borders replicated. Never a tie: `gx² + gy²` is an integer, and no
    /// integer is the square of `k + 0.5`.
    fn exact_sobel(src: &[u8], w: usize, h: usize) -> Vec<u8> {
        let at = |x: isize, y: isize| -> f64 {
            let x = x.clamp(0, w as isize - 1) as usize;
            let y = y.clamp(0, h as isize - 1) as usize;
            f64::from(src[y * w + x])
        };
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h as isize {
            for x in 0..w as isize {
                let gx = (at(x + 1, y - 1) + 2.0 * at(x + 1, y) + at(x + 1, y + 1))
                    - (at(x - 1, y - 1) + 2.0 * at(x - 1, y) + at(x - 1, y + 1));
                let gy = (at(x - 1, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1))
                    - (at(x - 1, y - 1) + 2.0 * at(x, y - 1) + at(x + 1, y - 1));
                out.push((gx * gx + gy * gy).sqrt().round().min(255.0) as u8);
            }
        }
        out
    }

    /// Planes that reach every rounding case: noise, extremes (0/255 checkerboards, steps,
    /// single bright pixels) and ramps whose magnitudes land just below and just above many
    /// half grey levels; widths below, at and above the AVX2 vector.
    fn exact_planes() -> Vec<(String, usize, usize, Vec<u8>)> {
        let mut planes = Vec::new();
        for (w, h) in [(1, 1), (3, 2), (17, 5), (40, 33), (203, 61)] {
            let plane = noise(w * h, (w * 7 + h) as u32);
            planes.push((format!("noise {w}x{h}"), w, h, plane));
        }
        let (w, h) = (37, 19);
        let checker = (0..w * h)
            .map(|i| if (i % w + i / w) % 2 == 0 { 0 } else { 255 })
            .collect();
        planes.push(("checkerboard".into(), w, h, checker));
        let step = (0..w * h)
            .map(|i| if i % w < w / 2 { 0 } else { 255 })
            .collect();
        planes.push(("step".into(), w, h, step));
        let mut dots = vec![0u8; w * h];
        for dot in dots.iter_mut().step_by(5) {
            *dot = 255;
        }
        planes.push(("dots".into(), w, h, dots));
        // A ramp of slope (a, b) has gradient (8a, 8b): magnitudes 8·sqrt(a² + b²).
        let (w, h) = (64, 32);
        for (a, b) in [(1usize, 0usize), (1, 1), (2, 1), (3, 2), (5, 3), (7, 4)] {
            let ramp = (0..w * h)
                .map(|i| ((i % w) * a + (i / w) * b) as u8)
                .collect();
            planes.push((format!("ramp {a},{b}"), w, h, ramp));
        }
        // Every horizontal difference 0..=255 against every vertical one nearby.
        let (w, h) = (256, 3);
        let pairs = (0..w * h)
            .map(|i| match i / w {
                0 => (i % w) as u8,
                1 => 0,
                _ => (255 - i % w) as u8,
            })
            .collect();
        planes.push(("pairs".into(), w, h, pairs));
        planes
    }

    fn assert_exact(name: &str, w: usize, h: usize, src: &[u8], out: &[u8]) {
        let exact = exact_sobel(src, w, h);
        let wrong: Vec<(usize, u8, u8)> = (0..w * h)
            .filter(|&i| out[i] != exact[i])
            .map(|i| (i, out[i], exact[i]))
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "{name}: (pixel, ours, exact) differ: {wrong:?}"
        );
    }

    /// With no blur, the portable row steps (what aarch64 runs) give exactly the rounded
    /// Sobel magnitude: a truncating conversion, or any off-by-one in the rounding, fails
    /// here even where it stays within the statistical accuracy bounds.
    #[test]
    fn portable_sobel_is_the_exact_rounded_magnitude() {
        for (name, w, h, src) in exact_planes() {
            let mut out = vec![0u8; w * h];
            edge_map_with(
                Portable,
                &src,
                w,
                h,
                &Taps::gaussian(0.0),
                &mut out,
                &mut KernelScratch::default(),
            );
            assert_exact(&name, w, h, &src, &out);
        }
    }

    /// The same for the AVX2 row steps, on CPUs that have AVX2 (rows narrower than one
    /// vector take the portable steps).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_sobel_is_the_exact_rounded_magnitude() {
        let Some(avx2) = avx2::Avx2::detect() else {
            eprintln!("no AVX2 on this CPU: nothing to check");
            return;
        };
        for (name, w, h, src) in exact_planes() {
            let mut out = vec![0u8; w * h];
            avx2.edge_map(
                &src,
                w,
                h,
                &Taps::gaussian(0.0),
                &mut out,
                &mut KernelScratch::default(),
            );
            assert_exact(&name, w, h, &src, &out);
        }
    }

    #[test]
    fn vertical_step_gives_a_vertical_line() {
        let (w, h) = (16, 8);
        let src: Vec<u8> = (0..w * h)
            .map(|i| if i % w < 8 { 0 } else { 255 })
            .collect();
        let mut out = vec![0u8; w * h];
        edge_map(
            &src,
            w,
            h,
            &Taps::gaussian(0.0),
            &mut out,
            &mut KernelScratch::default(),
        );
        for y in 0..h {
            let row = &out[y * w..(y + 1) * w];
            assert_eq!(row[7], 255);
            assert_eq!(row[8], 255);
            assert!(row[..7].iter().chain(&row[9..]).all(|&v| v == 0), "{row:?}");
        }
    }
}
