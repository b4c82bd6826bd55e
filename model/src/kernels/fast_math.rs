//! Branch-free f32 `exp`, `erf` and exact GELU that a compiler turns into SIMD loops (libm's
//! `expf`/`erff` are scalar calls): the approximations of PyTorch's vectorised CPU kernels,
//! Cephes' `expf` polynomial (about 1 ulp) and Abramowitz & Stegun 7.1.26 for `erf` (absolute
//! error below 1.5e-7, 5e-7 after f32 rounding), which is what its exact GELU runs on AVX2
//! machines.
//!
//! [`simd_fn!`] compiles a loop body for AVX2 when the CPU has it (checked once at run time)
//! and for the baseline target otherwise; both use plain multiply-adds (no FMA contraction),
//! so every machine gets the same bits.

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

/// `1 / sqrt(2 pi)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
/// Adding and subtracting 1.5 * 2^23 rounds an f32 of magnitude below 2^22 to the nearest integer.
const ROUND: f32 = 12_582_912.0;

/// `e^x` for `x` in `[-87.3, 88]`; arguments outside are clamped to that range (the result
/// stays finite and positive: about 1.2e-38 below, 1.65e38 above).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.0);
    let n = (x * LOG2_E + ROUND) - ROUND;
    // ln 2 in two parts (Cephes), so `r` keeps its low bits.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let mantissa = p * r * r + r + 1.0;
    // SAFETY: `n` is a whole number in [-126, 127] after the clamp.
    let n = unsafe { n.to_int_unchecked::<i32>() };
    mantissa * f32::from_bits(((n + 127) << 23) as u32)
}

/// The error function (Abramowitz & Stegun 7.1.26).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_7) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// Exact GELU `x Φ(x) = x (1 + erf(x / sqrt 2)) / 2`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * normal_cdf(x)
}

/// `Φ(x) = (1 + erf(x / sqrt 2)) / 2`.
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// `(gelu(x), d gelu / dx)` with `d gelu / dx = Φ(x) + x φ(x)`.
#[inline(always)]
pub fn gelu_and_derivative(x: f32) -> (f32, f32) {
    let cdf = normal_cdf(x);
    (x * cdf, cdf + x * FRAC_1_SQRT_2PI * exp(-0.5 * x * x))
}

/// Defines a function whose body is compiled twice: for AVX2, taken when this CPU has it
/// (checked at run time), and for the baseline target. The body should be loops over slices
/// whose per-element work is `#[inline(always)]` functions like the ones above, so that they
/// vectorise at the width of the target.
macro_rules! simd_fn {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? $body
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU was just checked to support AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            fn baseline($($arg: $ty),*) $(-> $ret)? $body
            baseline($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 1/1000 over `[-12, 12]`, plus the edges of the clamp.
    fn grid() -> impl Iterator<Item = f32> {
        (-12_000..=12_000).map(|i| i as f32 / 1000.0)
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        for x in (-87_000..=88_000).map(|i| i as f32 / 1000.0) {
            let (got, want) = (exp(x), x.exp());
            assert!((got - want).abs() <= 2.0 * f32::EPSILON * want, "exp({x}) = {got}, libm {want}");
        }
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1.3e-38);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_and_gelu_are_within_pytorch_s_error_of_libm() {
        // 1.5e-7 of the approximation plus f32 rounding of `1 - poly exp(-x^2)`.
        for x in grid() {
            let want = libm::erf(x as f64) as f32;
            assert!((erf(x) - want).abs() < 5e-7, "erf({x}) = {}, libm {want}", erf(x));
            let gelu_want = 0.5 * x * (1.0 + libm::erf((x * FRAC_1_SQRT_2) as f64) as f32);
            assert!((gelu(x) - gelu_want).abs() < 5e-7 * x.abs().max(1.0), "gelu({x})");
        }
        assert!(erf(0.0).abs() < 1e-7 && gelu(0.0) == 0.0);
        assert_eq!(erf(-30.0), -1.0);
    }

    #[test]
    fn gelu_derivative_matches_central_differences() {
        // and gelu_and_derivative's gelu is gelu's.
        assert!(grid().all(|x| gelu_and_derivative(x).0.to_bits() == gelu(x).to_bits()));
        for x in grid().step_by(7) {
            let x = x as f64;
            let g = |x: f64| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt()));
            let h = 1e-4;
            let want = (g(x + h) - g(x - h)) / (2.0 * h);
            let got = gelu_and_derivative(x as f32).1 as f64;
            assert!((got - want).abs() < 1e-6, "gelu'({x}) = {got}, differences {want}");
        }
    }

    simd_fn! {
        fn gelu_all(out: &mut [f32], xs: &[f32]) {
            out.iter_mut().zip(xs).for_each(|(o, &x)| *o = gelu(x));
        }
    }

    #[test]
    fn simd_fn_gives_the_scalar_results() {
        let xs: Vec<f32> = grid().collect();
        let mut out = vec![0.0; xs.len()];
        gelu_all(&mut out, &xs);
        assert!(out.iter().zip(&xs).all(|(&o, &x)| o.to_bits() == gelu(x).to_bits()));
    }
}
