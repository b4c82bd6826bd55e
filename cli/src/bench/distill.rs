//! `avdm bench --distill-step`: one AVDM2 iteration (the student's rollout, ADM + 2D SDM, two
//! fake-score and two discriminator updates, AdamW) on random data, at tiny size (the shipped
//! toy teacher) or full size (SD1.5 + motion adapter v1-5-2 and CLIP ViT-L/14, random weights:
//! nothing to download, so it runs on a bare GPU machine).

use anyhow::Context;
use avdm_import::{ClipTokenizer, LoadOptions, load_pipeline};
use avdm_model::clip::{ClipTextConfig, ClipTextTransformer};
use avdm_model::precision::Precision;
use avdm_model::sched::{NoiseSchedule, PredictionType, StudentConfig, StudentSampler};
use avdm_model::{UNetConfig, UNetMotionModel};
use avdm_train::distill::config::DistillConfig;
use avdm_train::distill::learner::{IterationData, Learner, Networks, Optimizers, Parameterisation, RealBatch};
use avdm_train::toy::assets::default_assets_dir;
use burn::prelude::*;
use burn::tensor::Distribution;

/// The networks and settings of one distillation step at `full` or tiny size, on `device`
/// (autodiff), with batch `batch` and `dtype`.
pub struct DistillStep {
    config: DistillConfig,
    tokenizer: ClipTokenizer,
    nets: Networks,
    latent_channels: usize,
}

impl DistillStep {
    pub fn new(full: bool, batch: usize, dtype: Precision, device: &Device) -> anyhow::Result<Self> {
        let teacher = default_assets_dir().join("teacher");
        let mut config = if full { DistillConfig::default() } else { DistillConfig::toy() };
        config.batch = batch;
        config.threads = 1;
        config.dtype = dtype;
        let (text_encoder, unet, latent_channels) = if full {
            let unet_config = UNetConfig::sd15_motion_v1_5_2();
            let text = ClipTextTransformer::new(&ClipTextConfig::vit_l14(), device);
            (text, UNetMotionModel::new(&unet_config, device), unet_config.in_channels)
        } else {
            let options = LoadOptions::in_precision(dtype);
            let loaded = load_pipeline(&teacher, None, &options, device)
                .with_context(|| format!("loading the toy teacher {}", teacher.display()))?;
            let channels = loaded.unet_config.in_channels;
            (loaded.pipeline.text_encoder, loaded.pipeline.unet, channels)
        };
        // The toy tokenizer stands in at full size: the step embeds only the empty prompt
        // (SDM's guidance) through it.
        let tokenizer = ClipTokenizer::from_folder(&teacher.join("tokenizer"))?;
        let nets = Networks::new(text_encoder, unet, None, &config, device);
        Ok(Self { config, tokenizer, nets, latent_channels })
    }

    /// Runs `iterations` steps on random clips `(batch, C, frames, side, side)` and prompts.
    pub fn run(&mut self, iterations: usize, frames: usize, side: usize, device: &Device) -> anyhow::Result<()> {
        let epsilon = |schedule| Parameterisation { schedule, prediction: PredictionType::Epsilon };
        let learner = Learner {
            config: &self.config,
            tokenizer: &self.tokenizer,
            video: epsilon(NoiseSchedule::animatediff()),
            image: epsilon(NoiseSchedule::stable_diffusion()),
            sampler: StudentSampler::new(NoiseSchedule::animatediff(), &StudentConfig::default())?,
            device: device.clone(),
            replicas: Vec::new(),
            draws: Default::default(),
            collective: &avdm_train::cluster::SingleRank,
        };
        let inner = device.clone().without_autodiff();
        let batch = self.config.batch;
        let captions = vec!["a red square moving left".to_string(); batch];
        let text = learner.embed(&self.nets.text_encoder, &captions)?;
        let shape = [batch, self.latent_channels, frames, side, side];
        let real = (0..self.config.critic_updates)
            .map(|_| RealBatch {
                clips: Tensor::random(shape, Distribution::Normal(0.0, 1.0), device),
                text: text.clone(),
            })
            .collect();
        let data = IterationData { prompts: text.to_device(&inner), real };
        let mut optim = Optimizers::new(&self.config.optim);
        for step in 0..iterations {
            learner.iterate(step, &mut self.nets, &mut optim, &data)?;
        }
        Ok(())
    }
}
