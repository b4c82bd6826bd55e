//! Discrete-time noise schedules: `x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε`.
//!
//! AnimateDiff's motion modules were trained with `linear` betas, SD1.5 image models with
//! `scaled_linear` betas over the same range: every model is queried with its own schedule.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// How betas run from `beta_start` to `beta_end` (diffusers' `beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end, T)` (AnimateDiff).
    Linear,
    /// `linspace(sqrt(beta_start), sqrt(beta_end), T)^2` (Stable Diffusion).
    ScaledLinear,
}

/// `betas` and `ᾱ = cumprod(1 - betas)` over the `T` training timesteps, in f32 like diffusers.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    pub betas: Vec<f32>,
    pub alphas_cumprod: Vec<f32>,
}

/// `torch.linspace(start, end, steps, dtype=float32)`: torch fills the first half from the
/// start and the second half from the end.
fn linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start as f32];
    }
    let step = ((end - start) / (steps - 1) as f64) as f32;
    let (start, end) = (start as f32, end as f32);
    let half = steps / 2;
    (0..steps).map(|i| if i < half { start + step * i as f32 } else { end - step * (steps - i - 1) as f32 }).collect()
}

impl NoiseSchedule {
    pub fn new(
        kind: BetaSchedule,
        beta_start: f64,
        beta_end: f64,
        train_timesteps: usize,
    ) -> Result<Self, ConfigError> {
        if train_timesteps == 0 {
            return Err(ConfigError::invalid("num_train_timesteps", "must be positive"));
        }
        if !(0.0 < beta_start && beta_start <= beta_end && beta_end < 1.0) {
            return Err(ConfigError::invalid(
                "beta_start",
                format!("need 0 < beta_start ({beta_start}) <= beta_end ({beta_end}) < 1"),
            ));
        }
        let betas = match kind {
            BetaSchedule::Linear => linspace_f32(beta_start, beta_end, train_timesteps),
            BetaSchedule::ScaledLinear => {
                linspace_f32(beta_start.sqrt(), beta_end.sqrt(), train_timesteps).into_iter().map(|b| b * b).collect()
            }
        };
        // torch's CPU cumprod accumulates float32 in double.
        let mut acc = 1f64;
        let alphas_cumprod = betas
            .iter()
            .map(|&b| {
                acc *= (1.0 - b) as f64;
                acc as f32
            })
            .collect();
        Ok(Self { betas, alphas_cumprod })
    }

    /// AnimateDiff's schedule: `linear`, 0.00085 .. 0.012, 1000 steps.
    pub fn animatediff() -> Self {
        Self::new(BetaSchedule::Linear, 0.00085, 0.012, 1000).expect("valid constants")
    }

    /// Stable Diffusion 1.5's schedule: `scaled_linear`, 0.00085 .. 0.012, 1000 steps.
    pub fn stable_diffusion() -> Self {
        Self::new(BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000).expect("valid constants")
    }

    /// Number of training timesteps `T`.
    pub fn train_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// `(sqrt(ᾱ_t), sqrt(1 - ᾱ_t))`, the signal and noise scales at timestep `t`.
    pub fn scales(&self, t: usize) -> (f32, f32) {
        let a = self.alphas_cumprod[t];
        (a.sqrt(), (1.0 - a).sqrt())
    }

    /// Noises a batch, each sample at its own timestep: `x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t)
    /// noise` for `x0`, `noise` of shape `(B, ...)` and `timesteps` of length `B`. Returns `x_t`
    /// and the two scales as `(B, 1, ..., 1)` columns.
    pub fn noise_batch<const D: usize>(&self, x0: Tensor<D>, noise: Tensor<D>, timesteps: &[usize]) -> NoisedBatch<D> {
        let (signal, sigma) = self.scale_columns::<D>(timesteps, &x0.device());
        let x_t = x0 * signal.clone() + noise * sigma.clone();
        NoisedBatch { x_t, signal, sigma }
    }

    /// `(sqrt(ᾱ_t), sqrt(1 - ᾱ_t))` of each of a batch's timesteps, as `(B, 1, ..., 1)` columns.
    pub fn scale_columns<const D: usize>(&self, timesteps: &[usize], device: &Device) -> (Tensor<D>, Tensor<D>) {
        let mut shape = [1; D];
        shape[0] = timesteps.len();
        let (signal, sigma): (Vec<f32>, Vec<f32>) = timesteps.iter().map(|&t| self.scales(t)).unzip();
        let column = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), device).reshape(shape);
        (column(signal), column(sigma))
    }
}

/// A batch noised by [`NoiseSchedule::noise_batch`].
#[derive(Debug, Clone)]
pub struct NoisedBatch<const D: usize> {
    pub x_t: Tensor<D>,
    /// `sqrt(ᾱ_t)` per sample, `(B, 1, ..., 1)`.
    pub signal: Tensor<D>,
    /// `sqrt(1 - ᾱ_t)` per sample, `(B, 1, ..., 1)`.
    pub sigma: Tensor<D>,
}
