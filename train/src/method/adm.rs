//! Video adversarial distribution matching (ADM): a diffusion-GAN on whole clips.
//!
//! Real and generated clips are noised with the video teacher's schedule to timesteps drawn
//! from `[t_min, t_max]` (the paper: `[0, 0.5T]`) and judged by the
//! [discriminator](crate::method::discriminator) (frozen teacher encoder + trainable head). The
//! discriminator learns real from generated; the generator gets the non-saturating loss,
//! whose gradient reaches it through the noised clip.

use avdm_model::UNetMotionModel;
use avdm_model::sched::NoiseSchedule;
use avdm_model::unet::InputError;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::method::discriminator::{DiscriminatorHead, accuracy, discriminator_loss, generator_loss, logits};

/// The timestep range of the noised clips, inclusive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdmTimesteps {
    pub t_min: usize,
    pub t_max: usize,
}

impl Default for AdmTimesteps {
    /// The paper's `[0, 0.5T]` for `T = 1000`.
    fn default() -> Self {
        Self { t_min: 0, t_max: 500 }
    }
}

/// A batch of clips `(B, C, F, H, W)` to judge: noise and timesteps per clip, and the text
/// `(B*F, L, D)` the encoder is conditioned on.
pub struct Judged {
    pub clips: Tensor<5>,
    pub noise: Tensor<5>,
    pub timesteps: Vec<usize>,
    pub text: Tensor<3>,
}

/// The logits `(B*F, 1, h, w)` of a noised batch.
pub fn judge(
    teacher: &UNetMotionModel,
    schedule: &NoiseSchedule,
    head: &DiscriminatorHead,
    batch: Judged,
) -> Result<Tensor<4>, InputError> {
    let device = batch.clips.device();
    let x_t = schedule.noise_batch(batch.clips, batch.noise, &batch.timesteps).x_t;
    let t: Vec<f32> = batch.timesteps.iter().map(|&t| t as f32).collect();
    logits(teacher, head, x_t, Tensor::from_floats(t.as_slice(), &device), batch.text)
}

/// The generator's ADM loss on its clips (the gradient flows back into them).
pub fn generator_adm_loss(
    teacher: &UNetMotionModel,
    schedule: &NoiseSchedule,
    head: &DiscriminatorHead,
    generated: Judged,
) -> Result<Tensor<1>, InputError> {
    Ok(generator_loss(judge(teacher, schedule, head, generated)?))
}

/// The discriminator's ADM loss on real and (detached) generated clips, and its accuracy on
/// each `(real, generated)`.
pub fn discriminator_adm_loss(
    teacher: &UNetMotionModel,
    schedule: &NoiseSchedule,
    head: &DiscriminatorHead,
    real: Judged,
    generated: Judged,
) -> Result<(Tensor<1>, (f64, f64)), InputError> {
    let generated = Judged { clips: generated.clips.detach(), ..generated };
    let real_logits = judge(teacher, schedule, head, real)?;
    let fake_logits = judge(teacher, schedule, head, generated)?;
    let acc = accuracy(real_logits.clone().detach(), fake_logits.clone().detach());
    Ok((discriminator_loss(real_logits, fake_logits), acc))
}
