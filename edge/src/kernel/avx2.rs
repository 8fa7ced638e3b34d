//! The kernel's row steps in AVX2 intrinsics, bit for bit the same as
//! [`Portable`](super::Portable).
//!
//! Why by hand: compiled with AVX2, the portable loops widen each 16×16→high-16 multiply to
//! 32-bit lanes and back, and square the gradients lane by lane. Here every step stays in 16
//! lanes of 16 bits until the squared magnitude, which one `vpmaddwd` computes exactly from
//! the interleaved gradients. Rows narrower than one vector take the portable code; the last
//! vector of a row overlaps the one before it instead of a scalar tail (each step is pure per
//! pixel, so a pixel written twice gets the same value twice).

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{edge_map_with, KernelScratch, Portable, RowOps, Taps, FRAC_BITS};

/// Pixels per vector: 16 lanes of 16 bits.
const LANES: usize = 16;

/// Proof that this CPU has AVX2: only [`Avx2::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// `Some` on CPUs with AVX2.
    pub(crate) fn detect() -> Option<Avx2> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }

    /// [`edge_map_with`] these row steps, the loop compiled with AVX2 enabled.
    pub(crate) fn edge_map(
        self,
        src: &[u8],
        width: usize,
        height: usize,
        taps: &Taps,
        out: &mut [u8],
        s: &mut KernelScratch,
    ) {
        // SAFETY: an `Avx2` exists only on a CPU with AVX2.
        unsafe { edge_map(self, src, width, height, taps, out, s) }
    }
}

#[target_feature(enable = "avx2")]
fn edge_map(
    k: Avx2,
    src: &[u8],
    width: usize,
    height: usize,
    taps: &Taps,
    out: &mut [u8],
    s: &mut KernelScratch,
) {
    edge_map_with(k, src, width, height, taps, out, s)
}

impl RowOps for Avx2 {
    #[inline(always)]
    fn widen(self, src: &[u8], out: &mut [u16]) {
        if out.len() < LANES {
            return Portable.widen(src, out);
        }
        // SAFETY: an `Avx2` exists only on a CPU with AVX2.
        unsafe { widen(src, out) }
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
        if acc.len() < LANES {
            return Portable.vblur(centre, up, down, tc, ts, acc);
        }
        // SAFETY: an `Avx2` exists only on a CPU with AVX2.
        unsafe { vblur(centre, up, down, tc, ts, acc) }
    }

    #[inline(always)]
    fn hblur<const R: usize>(self, vrow: &[u16], tc: u16, ts: &[u16; R], out: &mut [i16]) {
        if out.len() < LANES {
            return Portable.hblur(vrow, tc, ts, out);
        }
        // SAFETY: an `Avx2` exists only on a CPU with AVX2.
        unsafe { hblur(vrow, tc, ts, out) }
    }

    #[inline(always)]
    fn sobel(self, a: &[i16], b: &[i16], c: &[i16], out: &mut [u8]) {
        if out.len() < LANES {
            return Portable.sobel(a, b, c, out);
        }
        // SAFETY: an `Avx2` exists only on a CPU with AVX2.
        unsafe { sobel(a, b, c, out) }
    }
}

/// Start of each vector of a row of `width` ≥ [`LANES`] pixels; the last one overlaps.
fn starts(width: usize) -> impl Iterator<Item = usize> {
    (0..width).step_by(LANES).map(move |x| x.min(width - LANES))
}

/// 16 bytes of `row` from `at`, widened to u16.
///
/// # Safety
/// `at + 16 <= row.len()`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_u8(row: &[u8], at: usize) -> __m256i {
    debug_assert!(at + LANES <= row.len());
    // SAFETY: the caller keeps the 16 bytes inside `row`.
    _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(row.as_ptr().add(at).cast()) })
}

/// 16 values of `row` from `at`.
///
/// # Safety
/// `at + 16 <= row.len()`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_16<T>(row: &[T], at: usize) -> __m256i {
    debug_assert!(size_of::<T>() == 2 && at + LANES <= row.len());
    // SAFETY: the caller keeps the 16 values inside `row`.
    unsafe { _mm256_loadu_si256(row.as_ptr().add(at).cast()) }
}

/// `vpmulhuw`: the high 16 bits of each unsigned 16×16 product.
///
/// Written as `asm!` because the intrinsic is lowered to a generic widening multiply, which
/// LLVM here compiles in 32-bit lanes (`vpmovzxwd`, two `vpmulhuw`, `vpackusdw`, `vpermq`),
/// several times the work of the one instruction.
#[inline]
#[target_feature(enable = "avx2")]
fn mulhi(a: __m256i, b: __m256i) -> __m256i {
    let high;
    // SAFETY: one AVX2 register-to-register instruction (AVX2 is enabled on this function);
    // it touches no memory, stack or flags.
    unsafe {
        std::arch::asm!(
            "vpmulhuw {high}, {a}, {b}",
            high = lateout(ymm_reg) high,
            a = in(ymm_reg) a,
            b = in(ymm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    high
}

#[target_feature(enable = "avx2")]
fn widen(src: &[u8], out: &mut [u16]) {
    let w = out.len();
    assert!(w >= LANES && src.len() >= w);
    for at in starts(w) {
        // SAFETY: `at + LANES <= w <= src.len()`, and `out` is `w` long.
        unsafe {
            let v = _mm256_slli_epi16::<8>(load_u8(src, at));
            _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), v);
        }
    }
}

#[target_feature(enable = "avx2")]
fn vblur<const R: usize>(
    centre: &[u16],
    up: &[&[u16]; R],
    down: &[&[u16]; R],
    tc: u16,
    ts: &[u16; R],
    acc: &mut [u16],
) {
    let w = acc.len();
    assert!(w >= LANES && centre.len() >= w);
    assert!(up.iter().chain(down).all(|row| row.len() >= w));
    let tc = _mm256_set1_epi16(tc as i16);
    let mut tv = [_mm256_setzero_si256(); R];
    for (v, &t) in tv.iter_mut().zip(ts) {
        *v = _mm256_set1_epi16(t as i16);
    }
    for at in starts(w) {
        // SAFETY: `at + LANES <= w`, and every row (and `acc`) is at least `w` long.
        unsafe {
            let mut a = mulhi(load_16(centre, at), tc);
            for (i, &t) in tv.iter().enumerate() {
                let pair = _mm256_avg_epu16(load_16(up[i], at), load_16(down[i], at));
                a = _mm256_add_epi16(a, mulhi(pair, t));
            }
            _mm256_storeu_si256(acc.as_mut_ptr().add(at).cast(), a);
        }
    }
}

#[target_feature(enable = "avx2")]
fn hblur<const R: usize>(vrow: &[u16], tc: u16, ts: &[u16; R], out: &mut [i16]) {
    let w = out.len();
    assert!(w >= LANES && vrow.len() >= w + 2 * R);
    let tc = _mm256_set1_epi16(tc as i16);
    let mut tv = [_mm256_setzero_si256(); R];
    for (v, &t) in tv.iter_mut().zip(ts) {
        *v = _mm256_set1_epi16(t as i16);
    }
    let round = _mm256_set1_epi16(1 << (7 - FRAC_BITS));
    for at in starts(w) {
        // SAFETY: `at + LANES <= w`; the loads reach at most `at + 2R + LANES <= vrow.len()`.
        unsafe {
            let mut a = mulhi(load_16(vrow, at + R), tc);
            for (i, &t) in tv.iter().enumerate() {
                let pair =
                    _mm256_avg_epu16(load_16(vrow, at + R - 1 - i), load_16(vrow, at + R + 1 + i));
                a = _mm256_add_epi16(a, mulhi(pair, t));
            }
            let a = _mm256_srli_epi16::<{ (8 - FRAC_BITS) as i32 }>(_mm256_add_epi16(a, round));
            _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), a);
        }
    }
}

#[target_feature(enable = "avx2")]
fn sobel(a: &[i16], b: &[i16], c: &[i16], out: &mut [u8]) {
    let w = out.len();
    assert!(w >= LANES && a.len() >= w + 2 && b.len() >= w + 2 && c.len() >= w + 2);
    let scale = _mm256_set1_ps(1.0 / (1u32 << FRAC_BITS) as f32);
    let max = _mm256_set1_ps(255.0);
    // Squared magnitude (i32) → grey level (i32), as `super::magnitude` computes it: the
    // conversion rounds to nearest even, like the portable code's 2^23 trick.
    let grey = |sq: __m256i| {
        let m = _mm256_mul_ps(_mm256_sqrt_ps(_mm256_cvtepi32_ps(sq)), scale);
        _mm256_cvtps_epi32(_mm256_min_ps(m, max))
    };
    for at in starts(w) {
        // SAFETY: `at + LANES <= w`; the loads reach at most `at + 2 + LANES <= w + 2`.
        unsafe {
            let (a0, a1, a2) = (load_16(a, at), load_16(a, at + 1), load_16(a, at + 2));
            let (b0, b2) = (load_16(b, at), load_16(b, at + 2));
            let (c0, c1, c2) = (load_16(c, at), load_16(c, at + 1), load_16(c, at + 2));
            let right = _mm256_add_epi16(_mm256_add_epi16(a2, c2), _mm256_add_epi16(b2, b2));
            let left = _mm256_add_epi16(_mm256_add_epi16(a0, c0), _mm256_add_epi16(b0, b0));
            let gx = _mm256_sub_epi16(right, left);
            let below = _mm256_add_epi16(_mm256_add_epi16(c0, c2), _mm256_add_epi16(c1, c1));
            let above = _mm256_add_epi16(_mm256_add_epi16(a0, a2), _mm256_add_epi16(a1, a1));
            let gy = _mm256_sub_epi16(below, above);
            // Interleave gx and gy so that vpmaddwd gives gx² + gy² per pixel; within each
            // 128-bit lane, `lo` holds pixels 0–3 and `hi` pixels 4–7, which the signed pack
            // puts back in order.
            let lo = _mm256_unpacklo_epi16(gx, gy);
            let hi = _mm256_unpackhi_epi16(gx, gy);
            let g = _mm256_packs_epi32(
                grey(_mm256_madd_epi16(lo, lo)),
                grey(_mm256_madd_epi16(hi, hi)),
            );
            // Bytes: lane 0 holds pixels 0–7 twice, lane 1 pixels 8–15 twice; gather the low
            // halves of both lanes.
            let bytes = _mm256_permute4x64_epi64::<0b00_00_10_00>(_mm256_packus_epi16(g, g));
            _mm_storeu_si128(
                out.as_mut_ptr().add(at).cast(),
                _mm256_castsi256_si128(bytes),
            );
        }
    }
}
