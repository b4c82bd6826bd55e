//! Training the toy teacher the way AnimateDiff was trained, in two stages:
//!
//! 1. [`Stage::Image`]: a pixel-space 2D UNet and a CLIP-style text encoder learn single frames
//!    (`scaled_linear` schedule, as Stable Diffusion), with empty captions some of the time so
//!    that classifier-free guidance works.
//! 2. [`Stage::Motion`]: motion modules (output projections zero-initialised, so training
//!    starts from the image model) learn clips while the 2D UNet and the text encoder stay
//!    frozen (`linear` schedule, as AnimateDiff).
//!
//! Both minimise `||eps - eps_theta(x_t, t, text)||^2`. A step's data, timesteps and noise are
//! functions of `(seed, step)`, so a resumed run continues exactly where it stopped.

use std::path::{Path, PathBuf};

use avdm_import::{ClipTokenizer, LoadOptions, load_pipeline};
use avdm_model::clip::ClipTextTransformer;
use avdm_model::noise::NoiseSource;
use avdm_model::pipeline::repeat_per_frame;
use avdm_model::sched::{NoiseSchedule, NoisedBatch, PredictionType};
use avdm_model::{UNetConfig, UNetMotionModel};
use burn::module::{Module, ModuleMapper, Param, ParamGroup};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointWriter};
use crate::data_parallel::{sharded_gradients, split};
use crate::error::TrainError;
use crate::grad_norm::clip_global_norm;
use crate::lr_schedule::warmup_cosine;
use crate::monitor::progress::Progress;
use crate::toy::preset;
use crate::toy::world::{ClipSpec, Split, ToyWorld};

/// The text encoder and the (video) UNet, trained together.
#[derive(Module, Debug)]
pub struct TextToVideo {
    pub text_encoder: ClipTextTransformer,
    pub unet: UNetMotionModel,
}

/// The two training stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Image,
    Motion,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Image => "image",
            Stage::Motion => "motion",
        }
    }

    /// The noise schedule the stage trains with.
    pub fn schedule(self) -> NoiseSchedule {
        match self {
            Stage::Image => NoiseSchedule::stable_diffusion(),
            Stage::Motion => NoiseSchedule::animatediff(),
        }
    }
}

/// Settings of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageConfig {
    pub steps: usize,
    /// Frames (image stage) or clips (motion stage) per step.
    pub batch: usize,
    pub learning_rate: f64,
    /// Steps of linear learning-rate warm-up from 0.
    pub warmup: usize,
    pub weight_decay: f64,
    /// Global gradient-norm clipping.
    pub max_grad_norm: f32,
    /// Probability that a sample is trained with the empty caption.
    pub empty_caption: f32,
    pub checkpoint_every: usize,
}

/// Everything that determines a teacher training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherConfig {
    pub seed: u64,
    pub world: ToyWorld,
    /// What the UNet learns to output (both stages; written to the scheduler config).
    #[serde(default)]
    pub prediction_type: PredictionType,
    pub image: StageConfig,
    pub motion: StageConfig,
    /// A pipeline folder whose image model (text encoder and 2D UNet) the image stage starts
    /// from instead of random weights; the text encoder then stays frozen, so the result is a
    /// fine-tune of the same family (as SD1.5's community models are), usable as the 2D
    /// teacher of a distillation of that folder (`models.teacher_2d`).
    #[serde(default)]
    pub image_init: Option<PathBuf>,
    /// CPU threads each step's batch is split over ([`crate::data_parallel`]); the gradient
    /// is the same up to float summation order.
    #[serde(default = "one_thread")]
    pub threads: usize,
}

fn one_thread() -> usize {
    1
}

impl TeacherConfig {
    /// The preset the shipped toy teacher was trained with.
    pub fn toy() -> Self {
        let stage = |steps, batch| StageConfig {
            steps,
            batch,
            learning_rate: 1e-3,
            warmup: 100,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            empty_caption: 0.1,
            checkpoint_every: 100,
        };
        Self {
            seed: 0,
            world: ToyWorld::default(),
            prediction_type: PredictionType::VPrediction,
            image: stage(3000, 32),
            motion: stage(3000, 4),
            image_init: None,
            threads: 1,
        }
    }

    pub fn stage(&self, stage: Stage) -> &StageConfig {
        match stage {
            Stage::Image => &self.image,
            Stage::Motion => &self.motion,
        }
    }

    pub fn stage_mut(&mut self, stage: Stage) -> &mut StageConfig {
        match stage {
            Stage::Image => &mut self.image,
            Stage::Motion => &mut self.motion,
        }
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        if self.threads == 0 {
            return Err(TrainError::setting("threads", "must be positive"));
        }
        for stage in [Stage::Image, Stage::Motion] {
            let c = self.stage(stage);
            if c.batch == 0 {
                return Err(TrainError::setting("batch", format!("{} stage: must be positive", stage.name())));
            }
            if !(c.learning_rate.is_finite() && c.learning_rate > 0.0) {
                return Err(TrainError::setting("learning_rate", format!("{} is not positive", c.learning_rate)));
            }
            if !(0.0..1.0).contains(&c.empty_caption) {
                return Err(TrainError::setting("empty_caption", format!("{} is not in [0, 1)", c.empty_caption)));
            }
            if c.checkpoint_every == 0 {
                return Err(TrainError::setting("checkpoint_every", "must be positive"));
            }
        }
        let frames = self.world.frames;
        let max = preset::unet_config(true).max_frames();
        if frames == 0 || frames > max {
            return Err(TrainError::setting("frames", format!("{frames}: the toy motion modules take 1 to {max}")));
        }
        Ok(())
    }
}

/// What a stage checkpoint records besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageState {
    pub stage: Stage,
    /// Steps done.
    pub step: usize,
    pub config: TeacherConfig,
    /// Mean loss of the steps since the previous checkpoint.
    pub loss: f64,
    pub seconds: f64,
}

/// A freshly initialised image-stage model (text encoder + 2D UNet).
pub fn init_image_model(device: &Device) -> TextToVideo {
    TextToVideo {
        text_encoder: ClipTextTransformer::new(&preset::text_config(), device),
        unet: UNetMotionModel::new(&preset::unet_config(false), device),
    }
}

/// Zeroes the output projections of the motion modules.
struct ZeroMotionOutputs {
    path: Vec<String>,
}

impl ModuleMapper for ZeroMotionOutputs {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let in_motion_output =
            self.path.iter().any(|p| p == "motion_modules") && self.path.iter().any(|p| p == "proj_out");
        if in_motion_output { param.map(|t| t.zeros_like()) } else { param }
    }
}

/// The motion-stage model: the image model's weights in a UNet with motion modules whose
/// output projections are zero (so it starts as the image model, frame by frame).
pub fn init_motion_model(image: &TextToVideo, config: &UNetConfig, device: &Device) -> Result<TextToVideo, TrainError> {
    let record = image.unet.clone().into_record().allow_partial(true);
    let unet = UNetMotionModel::new(config, device)
        .try_load_record(record)
        .map_err(|e| TrainError::setting("unet", format!("the image UNet does not fit the motion UNet: {e}")))?;
    let unet = unet.map(&mut ZeroMotionOutputs { path: Vec::new() });
    Ok(TextToVideo { text_encoder: image.text_encoder.clone(), unet })
}

/// Marks what a stage trains: everything in the image stage (the UNet only when it starts
/// from `config.image_init`), only the motion modules in the motion stage.
pub fn set_trainable(model: TextToVideo, stage: Stage, config: &TeacherConfig) -> TextToVideo {
    match stage {
        Stage::Image if config.image_init.is_some() => {
            TextToVideo { text_encoder: model.text_encoder.no_grad(), unet: model.unet.set_require_grad(true) }
        }
        Stage::Image => model.set_require_grad(true),
        Stage::Motion => model.no_grad().set_require_grad_group(ParamGroup::from_predicate("motion_modules"), true),
    }
}

/// The image model (text encoder and 2D UNet) of the toy pipeline folder `dir`.
pub fn image_model_of(dir: &Path, device: &Device) -> Result<TextToVideo, TrainError> {
    let loaded = load_pipeline(dir, None, &LoadOptions::default(), device)?;
    let image = UNetConfig { motion: None, ..loaded.unet_config.clone() };
    if image != preset::unet_config(false) {
        return Err(TrainError::setting(
            "image_init",
            format!("{}: its UNet is not the toy preset's, so it cannot start the image stage", dir.display()),
        ));
    }
    Ok(TextToVideo { text_encoder: loaded.pipeline.text_encoder, unet: loaded.pipeline.unet.without_motion_modules() })
}

/// `||target - model(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t, text)||^2` averaged over all values,
/// where the target is `eps`, `x0` or `v` as `prediction` says.
///
/// `x0 (B, 3, F, H, W)`, `ids (B, L)`, one timestep per clip, `noise` like `x0`.
pub fn denoising_loss(
    model: &TextToVideo,
    schedule: &NoiseSchedule,
    prediction: PredictionType,
    x0: Tensor<5>,
    ids: Tensor<2, Int>,
    timesteps: &[usize],
    noise: Tensor<5>,
) -> Result<Tensor<1>, TrainError> {
    let [_, _, f, _, _] = x0.dims();
    let device = x0.device();
    let NoisedBatch { x_t, signal, sigma } = schedule.noise_batch(x0.clone(), noise.clone(), timesteps);
    let t = Tensor::<1>::from_floats(timesteps.iter().map(|&t| t as f32).collect::<Vec<_>>().as_slice(), &device);
    let text = repeat_per_frame(model.text_encoder.embed(ids, 0)?, f);
    let predicted = model.unet.forward(x_t, t, text)?;
    Ok((predicted - prediction.target(x0, noise, signal, sigma)).square().mean())
}

/// Token ids `(B, L)` of the captions.
pub fn caption_ids(
    tokenizer: &ClipTokenizer,
    captions: &[String],
    device: &Device,
) -> Result<Tensor<2, Int>, TrainError> {
    let ids: Vec<i64> = tokenizer
        .encode_batch(&captions.iter().map(String::as_str).collect::<Vec<_>>())?
        .into_iter()
        .flatten()
        .map(i64::from)
        .collect();
    let len = tokenizer.max_length();
    Ok(Tensor::from_data(TensorData::new(ids, [captions.len(), len]), device))
}

/// One step's training data: clean samples `(B, 3, F, H, W)` (`F = 1` in the image stage, a
/// random frame of each clip), captions (some emptied), timesteps and noise.
pub struct StepData {
    pub x0: Tensor<5>,
    pub captions: Vec<String>,
    pub timesteps: Vec<usize>,
    pub noise: Tensor<5>,
}

/// The data of `step` of `stage`: a pure function of the config's seed and the step.
pub fn step_data(config: &TeacherConfig, stage: Stage, step: usize, device: &Device) -> StepData {
    let settings = config.stage(stage);
    let world = &config.world;
    let mut rng = StdRng::seed_from_u64(config.seed ^ (step as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ stage as u64);
    let specs: Vec<ClipSpec> = (0..settings.batch)
        .map(|i| world.spec(config.seed, Split::Train, (step * settings.batch + i) as u64))
        .collect();
    let (frames, size) = (world.frames, world.size);
    let x0 = match stage {
        Stage::Motion => world.render_batch(&specs, device),
        Stage::Image => {
            let plane = size * size;
            let values: Vec<f32> = specs
                .iter()
                .flat_map(|spec| {
                    let clip = world.render(spec);
                    let f = rng.random_range(0..frames);
                    (0..3).flat_map(move |c| clip[(c * frames + f) * plane..(c * frames + f + 1) * plane].to_vec())
                })
                .collect();
            Tensor::from_data(TensorData::new(values, [specs.len(), 3, 1, size, size]), device)
        }
    };
    let captions = specs
        .iter()
        .map(|s| if rng.random::<f32>() < settings.empty_caption { String::new() } else { s.attributes.caption() })
        .collect();
    let timesteps = (0..specs.len()).map(|_| rng.random_range(0..1000)).collect();
    let mut noise = NoiseSource { seed: config.seed ^ 0x0015_E5EE_D000 ^ stage as u64, draws: step as u64 };
    let noise = noise.normal(x0.dims(), device);
    StepData { x0, captions, timesteps, noise }
}

fn optimizer(settings: &StageConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(settings.weight_decay as f32)
        .init()
}

/// Linear warm-up to the stage's learning rate, then cosine decay to zero at the last step.
pub fn learning_rate(settings: &StageConfig, step: usize) -> f64 {
    warmup_cosine(settings.learning_rate, settings.warmup, settings.steps, step)
}

/// The checkpoint folder of a stage under a run folder.
pub fn stage_dir(run: &Path, stage: Stage) -> PathBuf {
    run.join(stage.name())
}

/// Trains `stage` from `init` (or resumes from the stage's checkpoint under `run`, if
/// `resume`), checkpointing every `checkpoint_every` steps and at the end. `keep_going` is
/// asked after every step: when it says no, the stage checkpoints and returns early (the
/// state's `step` tells). Returns the trained model and the final state.
#[allow(clippy::too_many_arguments)]
pub fn train_stage(
    config: &TeacherConfig,
    stage: Stage,
    init: TextToVideo,
    tokenizer: &ClipTokenizer,
    run: &Path,
    resume: bool,
    device: &Device,
    keep_going: &dyn Fn() -> bool,
) -> Result<(TextToVideo, StageState), TrainError> {
    config.validate()?;
    let settings = config.stage(stage).clone();
    let dir = stage_dir(run, stage);
    let schedule = stage.schedule();
    let mut model = set_trainable(init, stage, config);
    let mut optim = optimizer(&settings);
    let mut state = StageState { stage, step: 0, config: config.clone(), loss: f64::NAN, seconds: 0.0 };
    if resume && let Some(checkpoint) = Checkpoint::find(&dir) {
        let saved: StageState = checkpoint.state()?;
        let same_run = saved.stage == stage
            && saved.config.seed == config.seed
            && saved.config.world == config.world
            && saved.config.prediction_type == config.prediction_type
            && saved.config.image_init == config.image_init;
        if !same_run {
            return Err(TrainError::Checkpoint {
                path: checkpoint.dir().into(),
                message: "was written by a run with another stage, seed, world, prediction type or image init; resume it with the same settings or start a new run folder".into(),
            });
        }
        model = set_trainable(checkpoint.module("model", model)?, stage, config);
        optim = checkpoint.optimizer("model", optim)?;
        eprintln!("resuming the {} stage at step {}", stage.name(), saved.step);
        state = StageState { config: config.clone(), ..saved };
    }
    let progress = Progress::new(&format!("teacher/{}", stage.name()), state.step, settings.steps, 50);
    let started = std::time::Instant::now();
    let seconds_before = state.seconds;
    let (mut loss_sum, mut loss_count) = (0.0, 0usize);
    while state.step < settings.steps {
        let step = state.step;
        let data = step_data(config, stage, step, device);
        let shards = split(settings.batch, config.threads);
        let sharded = sharded_gradients(&model, &shards, std::slice::from_ref(device), |model, shard, _| {
            let ids = caption_ids(tokenizer, &data.captions[shard.samples.clone()], device)?;
            let (x0, noise) = (shard.rows(data.x0.clone()), shard.rows(data.noise.clone()));
            let timesteps = &data.timesteps[shard.samples.clone()];
            let loss = denoising_loss(&model, &schedule, config.prediction_type, x0, ids, timesteps, noise)?;
            Ok::<_, TrainError>((loss * shard.weight(), ()))
        })?;
        let (value, mut grads) = (sharded.loss, sharded.grads);
        if !value.is_finite() {
            return Err(TrainError::NonFinite { step, what: "loss", value });
        }
        let norm = clip_global_norm(&model, &mut grads, settings.max_grad_norm);
        if !norm.is_finite() {
            return Err(TrainError::NonFinite { step, what: "gradient norm", value: norm as f64 });
        }
        let lr = learning_rate(&settings, step);
        model = optim.step(lr, model, grads);
        state.step += 1;
        loss_sum += value;
        loss_count += 1;
        progress.update(state.step, &[("loss", value), ("grad_norm", norm as f64), ("lr", lr)]);
        let stop = !keep_going();
        if stop || state.step.is_multiple_of(settings.checkpoint_every) || state.step == settings.steps {
            state.loss = loss_sum / loss_count as f64;
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            (loss_sum, loss_count) = (0.0, 0);
            let writer = CheckpointWriter::begin(&dir)?;
            writer.module("model", &model)?;
            writer.optimizer("model", &optim)?;
            writer.state(&state)?;
            writer.commit()?;
        }
        if stop {
            break;
        }
    }
    progress.finish();
    Ok((model, state))
}
