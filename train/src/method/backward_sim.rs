//! Backward simulation: the student is trained on the inputs its own few-step sampler feeds it.
//!
//! From pure noise at the sampler's first timestep, the steps before a chosen one run without
//! gradient (each predicts `x_0` and re-noises it with fresh noise to the next timestep); the
//! chosen step runs with gradient, and its `x_0` estimate is the generated clip the losses see.
//! The input of that step is the student's own rollout, never noised real data.

use avdm_model::sched::StudentSampler;
use burn::prelude::*;

/// What one backward simulation produced.
#[derive(Debug, Clone)]
pub struct Rollout<const D: usize> {
    /// Index (in the sampler's timesteps) of the step that ran with gradient.
    pub step: usize,
    /// Its timestep.
    pub timestep: usize,
    /// Its input, the student's own noisy sample (detached).
    pub x_t: Tensor<D>,
    /// Its `x_0` estimate, carrying the gradient to the student's weights.
    pub x0: Tensor<D>,
}

/// Runs the sampler's steps `0..stop` with `frozen` (no gradient) and step `stop` with `graded`.
///
/// `x_start` is the pure noise of the first timestep; `fresh_noise()` draws the noise of each
/// re-noising. Both models take `(x_t, t)` and return the raw model output (ε, v or x_0, as
/// the sampler's prediction type says). `stop` must be a step of the sampler.
pub fn backward_simulation<const D: usize, E>(
    sampler: &StudentSampler,
    stop: usize,
    x_start: Tensor<D>,
    mut frozen: impl FnMut(Tensor<D>, usize) -> Result<Tensor<D>, E>,
    graded: impl FnOnce(Tensor<D>, usize) -> Result<Tensor<D>, E>,
    mut fresh_noise: impl FnMut() -> Tensor<D>,
) -> Result<Rollout<D>, E> {
    assert!(stop < sampler.timesteps.len(), "step {stop} of a {}-step sampler", sampler.timesteps.len());
    let mut x = x_start.detach();
    for window in sampler.timesteps[..=stop].windows(2) {
        let (t, next) = (window[0], window[1]);
        let x0 = sampler.predict_x0(x.clone(), frozen(x, t)?, t).detach();
        x = sampler.add_noise(x0, fresh_noise(), next);
    }
    let timestep = sampler.timesteps[stop];
    let output = graded(x.clone(), timestep)?;
    let x0 = sampler.predict_x0(x.clone(), output, timestep);
    Ok(Rollout { step: stop, timestep, x_t: x, x0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use avdm_model::sched::{NoiseSchedule, PredictionType, StudentConfig};

    /// A "model" that outputs the ε which makes its `x_0` estimate exactly `target`: the
    /// rollout's inputs are then known in closed form.
    fn eps_towards(sampler: &StudentSampler, x_t: Tensor<1>, target: &Tensor<1>, t: usize) -> Tensor<1> {
        let (signal, sigma) = sampler.schedule.scales(t);
        (x_t - target.clone() * signal) / sigma
    }

    #[test]
    fn the_graded_step_sees_the_students_own_rollout() {
        let device = Device::flex();
        let config = StudentConfig { prediction_type: PredictionType::Epsilon, ..StudentConfig::default() };
        let sampler = StudentSampler::new(NoiseSchedule::animatediff(), &config).unwrap();
        let student_x0 = Tensor::<1>::from_floats([0.5, -0.25, 1.0], &device);
        let start = Tensor::<1>::from_floats([1.5, 0.3, -2.0], &device);
        let noises: Vec<Tensor<1>> =
            (0..3).map(|k| Tensor::<1>::from_floats([0.1 * k as f32, -0.2, 0.7 - k as f32], &device)).collect();
        for stop in 0..4 {
            let (mut frozen_calls, mut draws) = (Vec::new(), 0);
            let mut graded_input = None;
            let rollout = backward_simulation(
                &sampler,
                stop,
                start.clone(),
                |x, t| {
                    frozen_calls.push(t);
                    Ok::<_, ()>(eps_towards(&sampler, x, &student_x0, t))
                },
                |x, t| {
                    graded_input = Some(x.clone());
                    Ok(eps_towards(&sampler, x, &student_x0, t))
                },
                || {
                    draws += 1;
                    noises[draws - 1].clone()
                },
            )
            .unwrap();
            assert_eq!(frozen_calls, sampler.timesteps[..stop].to_vec(), "steps before {stop} run without gradient");
            assert_eq!((rollout.step, rollout.timestep), (stop, sampler.timesteps[stop]));
            // The input is pure noise at the first step, and afterwards the student's x_0
            // re-noised with the last fresh draw: never anything else.
            let expected = if stop == 0 {
                start.clone()
            } else {
                sampler.add_noise(student_x0.clone(), noises[stop - 1].clone(), rollout.timestep)
            };
            let seen = graded_input.expect("the graded step ran");
            for x in [&seen, &rollout.x_t] {
                let diff = (x.clone() - expected.clone()).abs().max().into_scalar::<f32>();
                assert!(diff < 1e-5, "step {stop}: input off by {diff}");
            }
            let diff = (rollout.x0.clone() - student_x0.clone()).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-4, "step {stop}: x0 off by {diff}");
        }
    }
}
