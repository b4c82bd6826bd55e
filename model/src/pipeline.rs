//! Text -> latents -> frames, as diffusers' `AnimateDiffPipeline` runs it: the teacher samples
//! with DDIM and classifier-free guidance, the student with its few-step sampler and no guidance.

use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::clip::{ClipInputError, ClipTextTransformer};
use crate::noise::NoiseSource;
use crate::precision::timestep_column;
use crate::sched::{DdimScheduler, StudentSampler};
use crate::unet::{InputError, UNetMotionModel};
use crate::vae::AutoencoderKL;

/// Inputs the pipeline cannot run on.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("text encoder: {0}")]
    Text(#[from] ClipInputError),
    #[error("UNet: {0}")]
    UNet(#[from] InputError),
    #[error("the negative prompt has batch {negative}, the prompt {prompt}")]
    NegativeBatch { prompt: usize, negative: usize },
}

/// How latents are denoised.
#[derive(Debug, Clone)]
pub enum Sampler {
    /// The teacher's sampler: DDIM over `scheduler.timesteps` with classifier-free guidance in
    /// the standard form `uncond + w (cond - uncond)` when `guidance_scale > 1` (as diffusers).
    Ddim { scheduler: DdimScheduler, guidance_scale: f32 },
    /// The distilled student: predict `x_0`, re-noise to the next timestep; no guidance.
    Student(StudentSampler),
}

impl Sampler {
    /// Whether this sampler evaluates an unconditional branch.
    pub fn uses_guidance(&self) -> bool {
        matches!(self, Sampler::Ddim { guidance_scale, .. } if *guidance_scale > 1.0)
    }

    /// The timesteps the sampler visits, in order.
    pub fn timesteps(&self) -> &[usize] {
        match self {
            Sampler::Ddim { scheduler, .. } => &scheduler.timesteps,
            Sampler::Student(student) => &student.timesteps,
        }
    }

    /// Number of sampling steps.
    pub fn steps(&self) -> usize {
        self.timesteps().len()
    }

    /// Network evaluations per clip (a guided step costs two).
    pub fn nfe(&self) -> usize {
        self.steps() * if self.uses_guidance() { 2 } else { 1 }
    }
}

/// Encoded prompts: `cond (B, L, D)` and, for guidance, `uncond (B, L, D)`.
#[derive(Debug, Clone)]
pub struct TextConditioning {
    pub cond: Tensor<3>,
    pub uncond: Option<Tensor<3>>,
}

/// The networks of a text-to-video pipeline.
#[derive(Debug, Clone)]
pub struct VideoPipeline {
    pub text_encoder: ClipTextTransformer,
    pub unet: UNetMotionModel,
    /// The latent autoencoder; `None` for a pixel-space model (the toy world's), whose UNet
    /// denoises RGB frames in `[-1, 1]` directly.
    pub vae: Option<AutoencoderKL>,
    /// 0: the last hidden state; k: the k-th from last layer, final-layer-normed (diffusers).
    pub clip_skip: usize,
    /// Frames decoded by the VAE at a time (diffusers' `decode_chunk_size`, 16).
    pub decode_chunk: usize,
}

/// `(B, L, D)` -> `(B*F, L, D)`, each prompt repeated for its clip's frames (frame-minor).
pub fn repeat_per_frame(text: Tensor<3>, frames: usize) -> Tensor<3> {
    let [b, l, d] = text.dims();
    text.unsqueeze_dim::<4>(1).repeat_dim(1, frames).reshape([b * frames, l, d])
}

impl VideoPipeline {
    /// Pixels per latent pixel (1 without a VAE).
    pub fn downscale_factor(&self) -> usize {
        self.vae.as_ref().map_or(1, |vae| vae.downscale_factor())
    }

    /// Channels the sampler denoises: the VAE's latent channels, or the UNet's input channels.
    pub fn latent_channels(&self) -> usize {
        self.vae.as_ref().map_or(self.unet.in_channels, |vae| vae.latent_channels())
    }

    /// Token ids `(B, 77)` of the prompts and, for guidance, of the negative prompts.
    pub fn encode_prompts(
        &self,
        ids: Tensor<2, Int>,
        negative_ids: Option<Tensor<2, Int>>,
    ) -> Result<TextConditioning, PipelineError> {
        let cond = self.text_encoder.embed(ids, self.clip_skip)?;
        let uncond = match negative_ids {
            Some(ids) => {
                let (prompt, negative) = (cond.dims()[0], ids.dims()[0]);
                if prompt != negative {
                    return Err(PipelineError::NegativeBatch { prompt, negative });
                }
                Some(self.text_encoder.embed(ids, self.clip_skip)?)
            }
            None => None,
        };
        Ok(TextConditioning { cond, uncond })
    }

    /// Denoises `latents (B, C, F, h, w)` (pure noise at the sampler's first timestep) into clean
    /// latents of the same shape. `noise` feeds the student's re-noising; `on_step(i, n)` is
    /// called after each of the `n` steps.
    pub fn denoise(
        &self,
        latents: Tensor<5>,
        text: &TextConditioning,
        sampler: &Sampler,
        noise: &mut NoiseSource,
        mut on_step: impl FnMut(usize, usize),
    ) -> Result<Tensor<5>, PipelineError> {
        let [_, _, frames, _, _] = latents.dims();
        let device = latents.device();
        let cond = repeat_per_frame(text.cond.clone(), frames);
        let n = sampler.steps();
        let timestep = |t: usize| timestep_column(&[t], &device);
        match sampler {
            Sampler::Ddim { scheduler, guidance_scale } => {
                let guided = match (&text.uncond, sampler.uses_guidance()) {
                    (Some(uncond), true) => {
                        Some(Tensor::cat(vec![repeat_per_frame(uncond.clone(), frames), cond.clone()], 0))
                    }
                    _ => None,
                };
                let mut x = latents;
                for (i, &t) in scheduler.timesteps.iter().enumerate() {
                    let eps = match &guided {
                        Some(both) => {
                            let input = Tensor::cat(vec![x.clone(), x.clone()], 0);
                            let mut halves = self.unet.forward(input, timestep(t), both.clone())?.chunk(2, 0);
                            let c = halves.pop().expect("two halves");
                            let u = halves.pop().expect("two halves");
                            u.clone() + (c - u) * *guidance_scale
                        }
                        None => self.unet.forward(x.clone(), timestep(t), cond.clone())?,
                    };
                    x = scheduler.step(eps, t, x).prev_sample;
                    on_step(i + 1, n);
                }
                Ok(x)
            }
            Sampler::Student(student) => {
                let shape = latents.dims();
                let mut step = 0;
                student
                    .sample(
                        latents,
                        |x, t| {
                            let eps = self.unet.forward(x, timestep(t), cond.clone());
                            step += 1;
                            on_step(step, n);
                            eps
                        },
                        || noise.normal(shape, &device),
                    )
                    .map_err(PipelineError::from)
            }
        }
    }

    /// Clean latents `(B, C, F, h, w)` -> frames `(B, F, 3, H, W)` in `[0, 1]`, decoded
    /// `decode_chunk` frames at a time (pixel-space models: the samples themselves, rescaled),
    /// in f32 whatever the latents' dtype (the VAE is f32: `avdm_import::load_pipeline`).
    pub fn decode(&self, latents: Tensor<5>) -> Tensor<5> {
        let [b, c, f, h, w] = latents.dims();
        let frames = latents.cast(FloatDType::F32).permute([0, 2, 1, 3, 4]);
        let images = match &self.vae {
            Some(vae) => {
                let z = frames.reshape([b * f, c, h, w]) / vae.scaling_factor + vae.shift_factor;
                let images = vae.decode_chunked(z, self.decode_chunk.max(1));
                let [_, channels, height, width] = images.dims();
                images.reshape([b, f, channels, height, width])
            }
            None => frames,
        };
        (images / 2.0 + 0.5).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_repeat_frame_minor() {
        let device = Device::flex();
        let text = Tensor::<3>::from_floats([[[1.0, 2.0]], [[3.0, 4.0]]], &device);
        let out = repeat_per_frame(text, 3);
        let values: Vec<f32> = out.into_data().try_to_vec().unwrap();
        assert_eq!(values, vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0]);
    }
}
