//! `avdm bench --end-to-end`: text to video end to end, timed. Tiny size: the shipped toy
//! teacher's DDIM 25 steps with CFG against the 4-step student sampler (pixel space, no VAE).
//! Full size: the 4-step student sampler on SD1.5 + motion adapter v1-5-2 with the SD1.5 VAE's
//! decode and CLIP ViT-L/14, random weights (nothing to download, so it runs on a bare GPU
//! machine): the paper's 16x512x512 video at `--full-side 64`.

use anyhow::Context;
use avdm_import::{ClipTokenizer, LoadOptions, load_pipeline};
use avdm_model::clip::{ClipTextConfig, ClipTextTransformer};
use avdm_model::pipeline::{Sampler, VideoPipeline};
use avdm_model::precision::{Precision, with_float_dtype};
use avdm_model::sched::{DdimConfig, StudentConfig, VideoSchedule};
use avdm_model::vae::{AutoencoderKL, VaeConfig};
use avdm_model::{UNetConfig, UNetMotionModel};
use avdm_train::eval::toy::{ddim_sampler, sample_videos, student_sampler};
use avdm_train::toy::assets::default_assets_dir;
use burn::prelude::*;
use burn::tensor::FloatDType;

/// A pipeline to time, its tokenizer, the samplers to time on it (a name each) and the latent
/// shape `[frames, h, w]` each clip is sampled at.
pub struct Generation {
    pub pipeline: VideoPipeline,
    pub tokenizer: ClipTokenizer,
    pub samplers: Vec<(String, Sampler)>,
    pub latent: [usize; 3],
}

impl Generation {
    /// The toy world at its own clip shape (8 frames of 32x32 pixels).
    pub fn toy(dtype: Precision, device: &Device) -> anyhow::Result<Self> {
        let teacher = default_assets_dir().join("teacher");
        let loaded = load_pipeline(&teacher, None, &LoadOptions::in_precision(dtype), device)
            .with_context(|| format!("loading the toy teacher {}", teacher.display()))?;
        let scheduler = loaded.video_scheduler(VideoSchedule::default());
        let samplers = vec![
            ("toy teacher DDIM 25 steps, CFG 3 (NFE 50)".into(), ddim_sampler(&scheduler, 25, 3.0)?),
            ("toy student sampler 4 steps (NFE 4)".into(), student_sampler(&scheduler, &StudentConfig::default())?),
        ];
        Ok(Self { pipeline: loaded.pipeline, tokenizer: loaded.tokenizer, samplers, latent: [8, 32, 32] })
    }

    /// SD1.5 + motion adapter v1-5-2, its VAE (f32, as `load_pipeline` keeps it) and CLIP
    /// ViT-L/14 with random weights, sampled by the 4-step student sampler on AnimateDiff's
    /// schedule; clips of `frames` frames of `side`x`side` latents.
    pub fn full(dtype: Precision, frames: usize, side: usize, device: &Device) -> anyhow::Result<Self> {
        let unet = UNetMotionModel::new(&UNetConfig::sd15_motion_v1_5_2(), device);
        let text_encoder = ClipTextTransformer::new(&ClipTextConfig::vit_l14(), device);
        let vae = AutoencoderKL::new(&VaeConfig::sd15(), device);
        let pipeline = VideoPipeline {
            text_encoder: with_float_dtype(text_encoder, dtype.float_dtype()),
            unet: with_float_dtype(unet, dtype.float_dtype()),
            vae: Some(with_float_dtype(vae, FloatDType::F32)),
            clip_skip: 0,
            decode_chunk: 16,
        };
        // The toy tokenizer stands in for CLIP's: its ids are valid CLIP ids, and the prompt's
        // words do not change the time.
        let tokenizer = ClipTokenizer::from_folder(&default_assets_dir().join("teacher/tokenizer"))?;
        let scheduler = DdimConfig::animatediff();
        let name = "full student sampler 4 steps + VAE decode (NFE 4)".to_string();
        let samplers = vec![(name, student_sampler(&scheduler, &StudentConfig::default())?)];
        Ok(Self { pipeline, tokenizer, samplers, latent: [frames, side, side] })
    }

    /// The decoded videos' shape `(batch, 3, F, H, W)`.
    pub fn video_shape(&self, batch: usize) -> Vec<usize> {
        let [frames, h, w] = self.latent;
        let scale = self.pipeline.downscale_factor();
        vec![batch, 3, frames, h * scale, w * scale]
    }

    /// Samples and decodes `batch` clips with sampler `index`, reading the result back.
    pub fn run(&self, index: usize, batch: usize, device: &Device) -> anyhow::Result<()> {
        let prompts = vec!["a red square moving left".to_string(); batch];
        let sampler = &self.samplers[index].1;
        let videos = sample_videos(&self.pipeline, &self.tokenizer, sampler, &prompts, self.latent, 0, device)?;
        videos.sum().into_scalar::<f32>();
        Ok(())
    }
}
