//! The few-step student sampler: at each of its timesteps the model's noise prediction gives an
//! estimate of `x_0`, which is re-noised with fresh noise to the next (lower) timestep
//! (consistency-style multistep sampling, as DMD2 and AnimateDiff-Lightning students use).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::ddim::{DdimConfig, PredictionType};
use super::schedule::{BetaSchedule, NoiseSchedule};
use crate::error::ConfigError;

/// Which timesteps the student visits: `steps` "trailing" timesteps of the training range
/// (`[999, 749, 499, 249]` for 4 of 1000), or an explicit descending list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentConfig {
    pub steps: usize,
    /// Explicit timesteps, descending; overrides `steps` when given.
    #[serde(default)]
    pub timesteps: Option<Vec<usize>>,
    /// What the model outputs (its scheduler config's `prediction_type`).
    #[serde(default)]
    pub prediction_type: PredictionType,
    /// The betas the student was trained on (a distillation records its video schedule here);
    /// `None`: its folder's scheduler config says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_schedule: Option<BetaSchedule>,
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self { steps: 4, timesteps: None, prediction_type: PredictionType::Epsilon, beta_schedule: None }
    }
}

impl StudentConfig {
    /// The scheduler config the student samples on: `folder` (its video schedule) with the betas
    /// it was trained on, when its `student.json` records them.
    pub fn scheduler(&self, folder: &DdimConfig) -> DdimConfig {
        DdimConfig { beta_schedule: self.beta_schedule.unwrap_or(folder.beta_schedule), ..folder.clone() }
    }

    /// The number of sampling steps: the explicit timesteps' count when given.
    pub fn steps(&self) -> usize {
        self.timesteps.as_ref().map_or(self.steps, Vec::len)
    }

    /// The sampler to run a student with: the one it was trained for (`trained`, from its
    /// folder's `student.json`) unless `steps` asks for another count, then that many trailing
    /// steps (4 when neither says).
    pub fn for_steps(trained: Option<StudentConfig>, steps: Option<usize>) -> StudentConfig {
        match (trained, steps) {
            (Some(trained), steps) if steps.is_none_or(|n| n == trained.steps()) => trained,
            (_, steps) => StudentConfig { steps: steps.unwrap_or(4), timesteps: None, ..StudentConfig::default() },
        }
    }
}

/// `steps` timesteps spread "trailing" over `0..train`: `round(train - k * train / steps) - 1`.
pub fn trailing_timesteps(train: usize, steps: usize) -> Vec<usize> {
    let ratio = train as f64 / steps as f64;
    (0..steps).map(|k| (train as f64 - k as f64 * ratio).round_ties_even() as usize - 1).collect()
}

/// The student sampler over its model's noise schedule.
#[derive(Debug, Clone)]
pub struct StudentSampler {
    pub schedule: NoiseSchedule,
    /// Descending timesteps; the first receives pure noise.
    pub timesteps: Vec<usize>,
    pub prediction_type: PredictionType,
}

impl StudentSampler {
    /// Resolves `config` against `schedule`: the timesteps must be strictly descending and
    /// inside the training range.
    pub fn new(schedule: NoiseSchedule, config: &StudentConfig) -> Result<Self, ConfigError> {
        let train = schedule.train_timesteps();
        let timesteps = match &config.timesteps {
            Some(list) => list.clone(),
            None => {
                if config.steps == 0 || config.steps > train {
                    return Err(ConfigError::invalid("steps", format!("{} is not in 1..={train}", config.steps)));
                }
                trailing_timesteps(train, config.steps)
            }
        };
        if timesteps.is_empty() {
            return Err(ConfigError::invalid("timesteps", "the list is empty"));
        }
        if let Some(&bad) = timesteps.iter().find(|&&t| t >= train) {
            return Err(ConfigError::invalid("timesteps", format!("{bad} is outside 0..{train}")));
        }
        if timesteps.windows(2).any(|w| w[0] <= w[1]) {
            return Err(ConfigError::invalid("timesteps", format!("{timesteps:?} is not strictly descending")));
        }
        Ok(Self { schedule, timesteps, prediction_type: config.prediction_type })
    }

    /// `x_0` from the model's output at `x_t` (for an ε model:
    /// `x_0 = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t)`), any shape.
    pub fn predict_x0<const D: usize>(&self, x_t: Tensor<D>, output: Tensor<D>, t: usize) -> Tensor<D> {
        let (signal, noise) = self.schedule.scales(t);
        self.prediction_type.x0_and_eps(output, x_t, signal, noise).0
    }

    /// `x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε`, any shape.
    pub fn add_noise<const D: usize>(&self, x0: Tensor<D>, noise: Tensor<D>, t: usize) -> Tensor<D> {
        let (signal, scale) = self.schedule.scales(t);
        x0 * signal + noise * scale
    }

    /// Runs the sampler from pure noise `x_T` (shape of the output) and returns `x_0`.
    ///
    /// `eps_model(x_t, t)` predicts the noise; `fresh_noise()` draws the noise each re-noising
    /// uses (a new draw per step). The model runs once per timestep.
    pub fn sample<const D: usize, E>(
        &self,
        x_t: Tensor<D>,
        mut eps_model: impl FnMut(Tensor<D>, usize) -> Result<Tensor<D>, E>,
        mut fresh_noise: impl FnMut() -> Tensor<D>,
    ) -> Result<Tensor<D>, E> {
        let mut x = x_t;
        for (i, &t) in self.timesteps.iter().enumerate() {
            let output = eps_model(x.clone(), t)?;
            let x0 = self.predict_x0(x, output, t);
            x = match self.timesteps.get(i + 1) {
                Some(&next) => self.add_noise(x0, fresh_noise(), next),
                None => x0,
            };
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(config: &StudentConfig) -> Result<StudentSampler, ConfigError> {
        StudentSampler::new(NoiseSchedule::animatediff(), config)
    }

    #[test]
    fn four_trailing_steps_by_default() {
        assert_eq!(sampler(&StudentConfig::default()).unwrap().timesteps, vec![999, 749, 499, 249]);
        assert_eq!(trailing_timesteps(1000, 1), vec![999]);
        assert_eq!(trailing_timesteps(1000, 3), vec![999, 666, 332]);
        let explicit = StudentConfig { steps: 4, timesteps: Some(vec![999, 500]), ..StudentConfig::default() };
        assert_eq!(sampler(&explicit).unwrap().timesteps, vec![999, 500]);
    }

    #[test]
    fn bad_timesteps_are_rejected() {
        let err = |c: StudentConfig| sampler(&c).unwrap_err().to_string();
        assert!(err(StudentConfig { steps: 0, timesteps: None, ..StudentConfig::default() }).contains("steps"));
        assert!(
            err(StudentConfig { steps: 4, timesteps: Some(vec![1000, 10]), ..StudentConfig::default() })
                .contains("outside")
        );
        assert!(
            err(StudentConfig { steps: 4, timesteps: Some(vec![10, 500]), ..StudentConfig::default() })
                .contains("descending")
        );
        assert!(err(StudentConfig { steps: 4, timesteps: Some(vec![]), ..StudentConfig::default() }).contains("empty"));
    }

    /// A model that knows the clean sample exactly lands on it from any start, and each step
    /// re-noises to the next timestep with the fresh noise it is given.
    #[test]
    fn sampling_predicts_x0_and_renoises_with_fresh_noise() {
        let device = Device::flex();
        let s = sampler(&StudentConfig::default()).unwrap();
        let x0 = Tensor::<1>::from_floats([0.5, -0.25, 1.0], &device);
        let start = Tensor::<1>::from_floats([1.5, 0.3, -2.0], &device);
        let mut seen = Vec::new();
        let mut draws = 0;
        let out = s
            .sample::<1, ()>(
                start.clone(),
                |x_t, t| {
                    seen.push((t, x_t.clone()));
                    let (signal, noise) = s.schedule.scales(t);
                    Ok((x_t - x0.clone() * signal) / noise)
                },
                || {
                    draws += 1;
                    Tensor::from_floats([draws as f32; 3], &device)
                },
            )
            .unwrap();
        assert_eq!(draws, 3, "one fresh draw per re-noising");
        assert_eq!(seen.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![999, 749, 499, 249]);
        assert!((seen[0].1.clone() - start).abs().max().into_scalar::<f32>() == 0.0, "pure noise enters first");
        // Step 2 sees x0 re-noised to t=749 with the first draw (all ones).
        let (signal, noise) = s.schedule.scales(749);
        let expected = x0.clone() * signal + noise;
        assert!((seen[1].1.clone() - expected).abs().max().into_scalar::<f32>() < 1e-5);
        assert!((out - x0).abs().max().into_scalar::<f32>() < 1e-4);
    }
}
