//! diffusers `DDIMScheduler`, step for step (epsilon, sample and v prediction; eta; spacings).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::schedule::{BetaSchedule, NoiseSchedule};
use crate::error::ConfigError;

/// How the inference timesteps are spread over the training range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `round(linspace(0, T-1, N))`, descending.
    Linspace,
    /// `arange(N) * (T // N) + steps_offset`, descending.
    Leading,
    /// `round(arange(T, 0, -T/N)) - 1`.
    Trailing,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    #[default]
    Epsilon,
    Sample,
    VPrediction,
}

impl PredictionType {
    /// What the model should output for `x_t = alpha x0 + sigma noise` (`alpha`, `sigma`
    /// broadcast against `x0`): `noise`, `x0`, or `v = alpha noise - sigma x0`.
    pub fn target<const D: usize>(
        self,
        x0: Tensor<D>,
        noise: Tensor<D>,
        alpha: Tensor<D>,
        sigma: Tensor<D>,
    ) -> Tensor<D> {
        match self {
            PredictionType::Epsilon => noise,
            PredictionType::Sample => x0,
            PredictionType::VPrediction => noise * alpha - x0 * sigma,
        }
    }

    /// `(x0, eps)` from the model's `output` at `x_t = sample` with scales `alpha`, `sigma`:
    /// numbers (one timestep) or tensors broadcasting against the sample (one per sample).
    pub fn x0_and_eps<const D: usize, S>(
        self,
        output: Tensor<D>,
        sample: Tensor<D>,
        alpha: S,
        sigma: S,
    ) -> (Tensor<D>, Tensor<D>)
    where
        S: Clone,
        Tensor<D>: std::ops::Mul<S, Output = Tensor<D>> + std::ops::Div<S, Output = Tensor<D>>,
    {
        match self {
            PredictionType::Epsilon => ((sample - output.clone() * sigma) / alpha, output),
            PredictionType::Sample => (output.clone(), (sample - output * alpha) / sigma),
            PredictionType::VPrediction => {
                (sample.clone() * alpha.clone() - output.clone() * sigma.clone(), output * alpha + sample * sigma)
            }
        }
    }
}

/// diffusers `DDIMScheduler` config (`scheduler/scheduler_config.json`), with its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DdimConfig {
    #[serde(default = "default_train_timesteps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    #[serde(default = "default_beta_schedule")]
    pub beta_schedule: BetaSchedule,
    #[serde(default = "default_true")]
    pub clip_sample: bool,
    #[serde(default = "default_one")]
    pub clip_sample_range: f64,
    #[serde(default = "default_true")]
    pub set_alpha_to_one: bool,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default = "default_prediction")]
    pub prediction_type: PredictionType,
    #[serde(default = "default_spacing")]
    pub timestep_spacing: TimestepSpacing,
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
}

fn default_train_timesteps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_beta_schedule() -> BetaSchedule {
    BetaSchedule::Linear
}
fn default_true() -> bool {
    true
}
fn default_one() -> f64 {
    1.0
}
fn default_prediction() -> PredictionType {
    PredictionType::Epsilon
}
fn default_spacing() -> TimestepSpacing {
    TimestepSpacing::Leading
}

impl DdimConfig {
    /// Parses `scheduler_config.json` text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|source| ConfigError::Json { kind: "DDIMScheduler", source })
    }

    /// The scheduler diffusers recommends for AnimateDiff: linear betas 0.00085..0.012,
    /// `linspace` spacing, `steps_offset 1`, no clipping.
    pub fn animatediff() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::Linear,
            clip_sample: false,
            clip_sample_range: 1.0,
            set_alpha_to_one: false,
            steps_offset: 1,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: TimestepSpacing::Linspace,
            thresholding: false,
            rescale_betas_zero_snr: false,
        }
    }
}

/// One DDIM update's results.
#[derive(Debug, Clone)]
pub struct DdimStep<const D: usize> {
    /// `x_{t-1}`.
    pub prev_sample: Tensor<D>,
    /// The model's estimate of `x_0`.
    pub pred_original_sample: Tensor<D>,
}

/// The DDIM sampler over a [`NoiseSchedule`].
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    pub config: DdimConfig,
    pub schedule: NoiseSchedule,
    /// `ᾱ` after the last step: 1 with `set_alpha_to_one`, else `ᾱ_0`.
    pub final_alpha_cumprod: f32,
    /// Inference timesteps, descending; set by [`DdimScheduler::set_timesteps`].
    pub timesteps: Vec<usize>,
}

impl DdimScheduler {
    pub fn new(config: DdimConfig) -> Result<Self, ConfigError> {
        if config.thresholding {
            return Err(ConfigError::invalid("thresholding", "dynamic thresholding is not supported"));
        }
        if config.rescale_betas_zero_snr {
            return Err(ConfigError::invalid("rescale_betas_zero_snr", "is not supported"));
        }
        let schedule =
            NoiseSchedule::new(config.beta_schedule, config.beta_start, config.beta_end, config.num_train_timesteps)?;
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { schedule.alphas_cumprod[0] };
        let timesteps = (0..config.num_train_timesteps).rev().collect();
        Ok(Self { config, schedule, final_alpha_cumprod, timesteps })
    }

    /// Chooses `steps` inference timesteps by the configured spacing.
    pub fn set_timesteps(&mut self, steps: usize) -> Result<(), ConfigError> {
        let t = self.config.num_train_timesteps;
        if steps == 0 || steps > t {
            return Err(ConfigError::invalid("num_inference_steps", format!("{steps} is not in 1..={t}")));
        }
        let timesteps: Vec<i64> = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => (0..steps)
                .rev()
                .map(|i| {
                    let x = if steps == 1 { 0.0 } else { i as f64 * (t - 1) as f64 / (steps - 1) as f64 };
                    x.round_ties_even() as i64
                })
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = t / steps;
                (0..steps).rev().map(|i| (i * ratio + self.config.steps_offset) as i64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = t as f64 / steps as f64;
                let mut out = Vec::with_capacity(steps);
                let mut x = t as f64;
                let mut k = 0;
                while x > 0.0 {
                    out.push(x.round_ties_even() as i64 - 1);
                    k += 1;
                    x = t as f64 - k as f64 * ratio;
                }
                out
            }
        };
        if let Some(bad) = timesteps.iter().find(|&&x| x < 0 || x >= t as i64) {
            return Err(ConfigError::invalid(
                "steps_offset",
                format!("timestep {bad} falls outside 0..{t} with {steps} steps"),
            ));
        }
        self.timesteps = timesteps.into_iter().map(|x| x as usize).collect();
        Ok(())
    }

    /// `ᾱ` at `t`, or the final value for `t < 0`.
    fn alpha_cumprod(&self, t: i64) -> f32 {
        if t >= 0 { self.schedule.alphas_cumprod[t as usize] } else { self.final_alpha_cumprod }
    }

    /// One deterministic DDIM step (eta = 0) from `sample = x_t` with the model's
    /// `model_output` at timestep `t`. The previous timestep is `t - T / N` whatever the
    /// spacing (as in diffusers).
    pub fn step<const D: usize>(&self, model_output: Tensor<D>, t: usize, sample: Tensor<D>) -> DdimStep<D> {
        self.step_with_noise(model_output, t, sample, None)
    }

    /// One DDIM step with `eta_noise = Some((eta, noise))` adding `eta`-scaled fresh noise
    /// (`noise` shaped like `sample`); `None` is the deterministic step.
    pub fn step_with_noise<const D: usize>(
        &self,
        model_output: Tensor<D>,
        t: usize,
        sample: Tensor<D>,
        eta_noise: Option<(f32, Tensor<D>)>,
    ) -> DdimStep<D> {
        let steps = self.timesteps.len();
        let prev_t = t as i64 - (self.config.num_train_timesteps / steps) as i64;
        let alpha_t = self.schedule.alphas_cumprod[t];
        let alpha_prev = self.alpha_cumprod(prev_t);
        let beta_t = 1.0 - alpha_t;
        let beta_prev = 1.0 - alpha_prev;
        let (sqrt_a, sqrt_b) = (alpha_t.sqrt(), beta_t.sqrt());

        let (mut x0, eps) = self.config.prediction_type.x0_and_eps(model_output, sample, sqrt_a, sqrt_b);
        if self.config.clip_sample {
            let r = self.config.clip_sample_range as f32;
            x0 = x0.clamp(-r, r);
        }
        let variance = (beta_prev / beta_t) * (1.0 - alpha_t / alpha_prev);
        let eta = eta_noise.as_ref().map_or(0.0, |(eta, _)| *eta);
        let std_dev = eta * variance.sqrt();
        let direction = eps * (1.0 - alpha_prev - std_dev * std_dev).sqrt();
        let mut prev = x0.clone() * alpha_prev.sqrt() + direction;
        if let Some((_, noise)) = eta_noise {
            prev = prev + noise * std_dev;
        }
        DdimStep { prev_sample: prev, pred_original_sample: x0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each parameterisation's training target, read back by `x0_and_eps`, gives the clean
    /// sample and the noise it was made from.
    #[test]
    fn targets_invert_to_x0_and_noise() {
        let device = Device::flex();
        let x0 = Tensor::<2>::from_floats([[0.5, -1.0, 0.25]], &device);
        let noise = Tensor::<2>::from_floats([[1.5, 0.3, -0.7]], &device);
        let (alpha, sigma) = NoiseSchedule::animatediff().scales(700);
        let scale = |v: f32| Tensor::<2>::full([1, 3], v, &device);
        let sample = x0.clone() * alpha + noise.clone() * sigma;
        for kind in [PredictionType::Epsilon, PredictionType::Sample, PredictionType::VPrediction] {
            let target = kind.target(x0.clone(), noise.clone(), scale(alpha), scale(sigma));
            let (x0_back, eps_back) = kind.x0_and_eps(target, sample.clone(), alpha, sigma);
            let err = |a: Tensor<2>, b: &Tensor<2>| (a - b.clone()).abs().max().into_scalar::<f32>();
            assert!(err(x0_back, &x0) < 1e-5 && err(eps_back, &noise) < 1e-5, "{kind:?}");
        }
    }
}
