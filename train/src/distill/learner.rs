//! One AVDM2 iteration (`method.md`, "Algorithm"): a generator update on the student's own
//! rollout with ADM and frame-level SDM, then `critic_updates` updates each of the fake score
//! (the plain diffusion loss on the generated frames, at the SDM branch's timesteps
//! `[t_min, t_max]` as the paper's Algorithm 1 says) and of the discriminator head (real
//! against generated clips). As in DMD2, every critic update sees fresh generated clips: the
//! first the generator update's (detached), each further one a new rollout of the updated
//! student.
//!
//! Every random draw of step `s` is a pure function of the seed and `s`, so a run resumed from a
//! checkpoint continues exactly as an uninterrupted one.

use avdm_import::ClipTokenizer;
use avdm_model::pipeline::repeat_per_frame;
use avdm_model::precision::timestep_column as column;
use avdm_model::sched::{NoiseSchedule, PredictionType, StudentSampler};
use std::ops::Range;

use avdm_model::{ClipTextTransformer, UNetMotionModel};
use burn::module::{Module, ParamGroup};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::cluster::buckets::{BUCKET, sum_gradients};
use crate::cluster::{Collective, rank_rows};
use crate::data_parallel::{Shard, ShardedGradients, parallel_map, sharded_gradients, split_rows};
use crate::distill::config::{DistillConfig, Losses, OptimConfig};
use crate::distill::param_groups::split_by_module;
use crate::distill::sample_streams::{Draws, Purpose, SampleStreams};
use crate::error::TrainError;
use crate::grad_norm::clip_global_norm;
use crate::method::adm::{Judged, discriminator_adm_loss, generator_adm_loss};
use crate::method::backward_sim::backward_simulation;
use crate::method::discriminator::DiscriminatorHead;
use crate::method::fake_score::{FakeScoreInit, fake_score};
use crate::method::sdm::{dmd_loss, pick_frames};
use crate::rekey::rekeyed;
use crate::teacher::caption_ids;

/// How a network is queried: its noise schedule and what it predicts.
#[derive(Debug, Clone)]
pub struct Parameterisation {
    pub schedule: NoiseSchedule,
    pub prediction: PredictionType,
}

impl Parameterisation {
    /// `x_0` from the network's output at `x_t`, each sample at its own timestep.
    fn x0<const D: usize>(&self, output: Tensor<D>, x_t: Tensor<D>, timesteps: &[usize]) -> Tensor<D> {
        let (signal, sigma) = self.schedule.scale_columns::<D>(timesteps, &x_t.device());
        self.prediction.x0_and_eps(output, x_t, signal, sigma).0
    }

    /// The diffusion loss of `output` at `x_t = noise_batch(x0, noise, timesteps)`.
    fn denoising_loss<const D: usize>(
        &self,
        output: Tensor<D>,
        x0: Tensor<D>,
        noise: Tensor<D>,
        timesteps: &[usize],
    ) -> Tensor<1> {
        let noised = self.schedule.noise_batch(x0.clone(), noise.clone(), timesteps);
        (output - self.prediction.target(x0, noise, noised.signal, noised.sigma)).square().mean()
    }
}

/// The networks of a distillation. Frozen: the text encoder, the video teacher (the
/// discriminator's encoder; the real score of the video-SDM ablation) and the 2D teacher (the
/// real score of 2D SDM). Trained: the student, the fake score and the discriminator head.
#[derive(Debug, Clone)]
pub struct Networks {
    pub text_encoder: ClipTextTransformer,
    pub teacher: UNetMotionModel,
    pub teacher_2d: UNetMotionModel,
    pub student: UNetMotionModel,
    /// A 2D UNet (a video UNet for the video-SDM ablation).
    pub fake_score: UNetMotionModel,
    pub head: DiscriminatorHead,
}

impl Networks {
    /// The networks of a distillation of `teacher` (on an autodiff device): the student is a
    /// re-keyed copy of the teacher; the 2D teacher is `teacher_2d` or the teacher's own 2D
    /// UNet (sharing its weights); the fake score is made from [`FakeScoreBase::of`] the config,
    /// a full copy or LoRA as `config.fake_score` says; the head is new (its init drawn from the
    /// seed).
    pub fn new(
        text_encoder: ClipTextTransformer,
        teacher: UNetMotionModel,
        teacher_2d: Option<UNetMotionModel>,
        config: &DistillConfig,
        device: &Device,
    ) -> Self {
        let teacher = teacher.no_grad();
        let teacher_2d = teacher_2d.unwrap_or_else(|| teacher.without_motion_modules()).no_grad();
        let fake_from = match FakeScoreBase::of(config) {
            FakeScoreBase::VideoTeacher => teacher.clone(),
            FakeScoreBase::Teacher2d => teacher_2d.clone(),
            FakeScoreBase::StudentOwn2d => teacher.without_motion_modules(),
        };
        Self {
            text_encoder: text_encoder.no_grad(),
            student: rekeyed(&teacher).set_require_grad_group(ParamGroup::all(), true),
            fake_score: fake_score(&fake_from, &config.fake_score, config.seed ^ 0xFA4E, device),
            head: DiscriminatorHead::new(&teacher, &config.head, config.seed, device),
            teacher,
            teacher_2d,
        }
    }
}

/// The network the fake score starts from: the video teacher for the video-SDM ablation,
/// otherwise the 2D teacher or the student's own 2D UNet as `fake_score.init` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeScoreBase {
    VideoTeacher,
    Teacher2d,
    StudentOwn2d,
}

impl FakeScoreBase {
    pub fn of(config: &DistillConfig) -> Self {
        match (config.loss.losses, config.fake_score.init) {
            (Losses::AdmSdmVideo, _) => Self::VideoTeacher,
            (_, FakeScoreInit::Teacher2d) => Self::Teacher2d,
            (_, FakeScoreInit::Student) => Self::StudentOwn2d,
        }
    }

    /// As the plan of a run names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::VideoTeacher => "the video teacher",
            Self::Teacher2d => "the 2D teacher",
            Self::StudentOwn2d => "the student's own 2D UNet",
        }
    }
}

/// The frozen networks forked to a further device, once for a run: the part of a
/// data-parallel replica that never changes ([`crate::data_parallel`]).
pub struct FrozenReplica {
    /// An autodiff device.
    pub device: Device,
    pub text_encoder: ClipTextTransformer,
    pub teacher: UNetMotionModel,
    pub teacher_2d: UNetMotionModel,
}

impl FrozenReplica {
    pub fn new(nets: &Networks, device: &Device) -> Self {
        Self {
            device: device.clone(),
            text_encoder: nets.text_encoder.clone().fork(device),
            teacher: nets.teacher.clone().fork(device),
            teacher_2d: nets.teacher_2d.clone().fork(device),
        }
    }
}

/// The optimizers of the three trained networks.
#[derive(Clone)]
pub struct Optimizers {
    pub student: ModuleOptimizer,
    pub fake_score: ModuleOptimizer,
    pub head: ModuleOptimizer,
}

impl Optimizers {
    /// AdamW as torch's, with the config's betas, epsilon and weight decay.
    pub fn new(c: &OptimConfig) -> Self {
        let adamw = || {
            AdamWConfig::new()
                .with_beta_1(c.beta1)
                .with_beta_2(c.beta2)
                .with_epsilon(c.epsilon)
                .with_weight_decay(c.weight_decay)
                .init()
        };
        Self { student: adamw(), fake_score: adamw(), head: adamw() }
    }
}

/// The data of one iteration ([`crate::distill::data`]): prompts for the generator and
/// captioned real clips for the discriminator (one batch per discriminator update).
pub struct IterationData {
    /// The prompts' text embeddings `(B, T, D)`, without autodiff.
    pub prompts: Tensor<3>,
    pub real: Vec<RealBatch>,
}

/// Real clips and their captions' text embeddings.
pub struct RealBatch {
    /// `(B, C, F, H, W)` in the models' input space (scaled latents, or pixels in `[-1, 1]`).
    pub clips: Tensor<5>,
    /// `(B, T, D)`, without autodiff.
    pub text: Tensor<3>,
}

/// What an iteration measured.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IterationReport {
    pub step: usize,
    pub loss_adm: Option<f64>,
    pub loss_sdm: Option<f64>,
    /// Mean over the iteration's fake-score updates.
    pub loss_fake: Option<f64>,
    /// Mean over the iteration's discriminator updates.
    pub loss_disc: Option<f64>,
    pub disc_accuracy_real: Option<f64>,
    pub disc_accuracy_fake: Option<f64>,
    pub grad_norm_student: f64,
    pub grad_norm_fake: Option<f64>,
    pub grad_norm_head: Option<f64>,
    /// The warm-up factor applied to every learning rate.
    pub lr_factor: f64,
    /// Index of the student step that ran with gradient.
    pub rollout_step: usize,
    /// Updates applied this iteration: generator, fake score, discriminator.
    pub updates: [usize; 3],
    /// The toy eval of the student after this iteration (every `sample_every` steps): Fréchet
    /// distance and prompt accuracy.
    #[serde(default)]
    pub eval_frechet: Option<f64>,
    #[serde(default)]
    pub eval_accuracy: Option<f64>,
}

/// Everything one iteration needs besides the networks and their optimizers.
pub struct Learner<'a> {
    pub config: &'a DistillConfig,
    pub tokenizer: &'a ClipTokenizer,
    /// The video teacher's and the student's parameterisation.
    pub video: Parameterisation,
    /// The 2D teacher's (and the 2D fake score's).
    pub image: Parameterisation,
    pub sampler: StudentSampler,
    /// The autodiff device the networks and the optimizers live on.
    pub device: Device,
    /// The frozen networks on further devices (the other GPUs of the machine) that every
    /// update's batch is also split over ([`crate::data_parallel`]); empty for one device.
    pub replicas: Vec<FrozenReplica>,
    /// Where the random draws come from (the seed, or a file for the learner's oracle test).
    pub draws: Draws,
    /// The other processes of a multi-process run ([`crate::cluster`]): this rank works on its
    /// share of the global batch ([`Learner::rows`]) and every update's gradients and losses are
    /// summed over the ranks. [`crate::cluster::SingleRank`] for one process.
    pub collective: &'a dyn Collective,
}

/// What the generator update's pass computed.
pub struct GeneratorPass {
    /// The batch gradient of the student's loss, before clipping.
    pub grads: GradientsParams,
    /// The loss terms (unweighted, means over the batch).
    pub loss_adm: Option<f64>,
    pub loss_sdm: Option<f64>,
    /// The rollout's clips `(B, C, F, H, W)` (detached, on the main device without autodiff).
    pub generated: Tensor<5>,
    /// The sampler step the rollout ran with gradient.
    pub stop: usize,
}

/// A value that must be finite, or the run stops at the last good checkpoint.
fn finite(step: usize, what: &'static str, value: f64) -> Result<f64, TrainError> {
    if value.is_finite() { Ok(value) } else { Err(TrainError::NonFinite { step, what, value }) }
}

fn scalar(loss: &Tensor<1>) -> f64 {
    loss.clone().into_scalar::<f32>() as f64
}

/// The networks a shard runs with (besides the one it trains) and their autodiff device.
#[derive(Clone, Copy)]
struct Replica<'a> {
    device: &'a Device,
    text_encoder: &'a ClipTextTransformer,
    teacher: &'a UNetMotionModel,
    teacher_2d: &'a UNetMotionModel,
    fake_score: &'a UNetMotionModel,
    head: &'a DiscriminatorHead,
}

impl<'a> Replica<'a> {
    /// The main device's: `nets` themselves.
    fn main(nets: &'a Networks, device: &'a Device) -> Self {
        let Networks { text_encoder, teacher, teacher_2d, fake_score, head, .. } = nets;
        Self { device, text_encoder, teacher, teacher_2d, fake_score, head }
    }

    /// A further device's: its frozen networks and this update's forks of the trained ones.
    fn further(frozen: &'a FrozenReplica, (fake_score, head): &'a (UNetMotionModel, DiscriminatorHead)) -> Self {
        let FrozenReplica { device, text_encoder, teacher, teacher_2d } = frozen;
        Self { device, text_encoder, teacher, teacher_2d, fake_score, head }
    }
}

/// Text embeddings `(B, L, D)` of `captions` by the frozen `text_encoder` on `device`, without
/// autodiff.
fn embed_on(
    tokenizer: &ClipTokenizer,
    text_encoder: &ClipTextTransformer,
    captions: &[String],
    device: &Device,
) -> Result<Tensor<3>, TrainError> {
    let ids = caption_ids(tokenizer, captions, &device.clone().without_autodiff())?;
    Ok(text_encoder.valid().embed(ids, 0)?)
}

/// What a shard of the generator update returns beside its loss: its share of each loss term
/// and its generated clips `(S, C, F, H, W)` (detached, without autodiff).
struct GeneratorShard {
    adm: Option<f64>,
    sdm: Option<f64>,
    generated: Tensor<5>,
}

impl Learner<'_> {
    fn streams(&self, step: usize, purpose: Purpose, shard: &Shard) -> SampleStreams {
        self.draws.streams(self.config.seed, step, purpose, shard.samples.clone())
    }

    /// Text embeddings `(B, L, D)` of `captions` (frozen encoder, no autodiff).
    pub fn embed(&self, text_encoder: &ClipTextTransformer, captions: &[String]) -> Result<Tensor<3>, TrainError> {
        embed_on(self.tokenizer, text_encoder, captions, &self.device)
    }

    /// The networks a shard on each device runs with: `nets` on the main device; on the others
    /// the frozen replicas and `trained` (the fake score and the head forked at the start of the
    /// iteration).
    fn replicas<'a>(
        &'a self,
        nets: &'a Networks,
        trained: &'a [(UNetMotionModel, DiscriminatorHead)],
    ) -> Vec<Replica<'a>> {
        std::iter::once(Replica::main(nets, &self.device))
            .chain(self.replicas.iter().zip(trained).map(|(frozen, trained)| Replica::further(frozen, trained)))
            .collect()
    }

    /// The main device, then the replicas'.
    fn devices(&self) -> Vec<Device> {
        std::iter::once(self.device.clone()).chain(self.replicas.iter().map(|r| r.device.clone())).collect()
    }

    /// The global sample rows of `config.batch` this rank works on (all of them in one
    /// process); the iteration's data holds these rows only.
    pub fn rows(&self) -> Range<usize> {
        rank_rows(self.config.batch, self.collective.rank(), self.collective.world())
    }

    /// The shards every update of this rank's rows is split into.
    fn shards(&self) -> Vec<Shard> {
        split_rows(self.rows(), self.config.batch, self.config.threads.max(1) * (1 + self.replicas.len()))
    }

    /// A pass's gradients of `module` and its `scalars` (weighted loss terms, accuracies)
    /// summed over the ranks; unchanged in one process.
    fn over_ranks<M: Module>(
        &self,
        module: &M,
        grads: GradientsParams,
        scalars: &mut [f64],
    ) -> Result<GradientsParams, TrainError> {
        if self.collective.single_process() {
            return Ok(grads);
        }
        self.collective.sum_f64(scalars)?;
        Ok(sum_gradients(module, grads, self.collective, BUCKET)?)
    }

    /// Runs iteration `step`, updating `nets` and `optim`. Every update splits the batch over
    /// `config.threads` threads ([`crate::data_parallel`]).
    pub fn iterate(
        &self,
        step: usize,
        nets: &mut Networks,
        optim: &mut Optimizers,
        data: &IterationData,
    ) -> Result<IterationReport, TrainError> {
        let c = self.config;
        let losses = c.loss.losses;
        let lr_factor = ((step + 1) as f64 / c.optim.warmup.max(1) as f64).min(1.0);
        let mut report = IterationReport { step, lr_factor, ..IterationReport::default() };

        // 1-4. The generator update on the student's own rollout, with gradient at a random step.
        let generator = self.generator_pass(step, nets, data)?;
        report.rollout_step = generator.stop;
        report.loss_adm = generator.loss_adm.map(|v| finite(step, "ADM generator loss", v)).transpose()?;
        report.loss_sdm = generator.loss_sdm.map(|v| finite(step, "SDM loss", v)).transpose()?;
        let (grads, norm) = self.clipped(&nets.student, generator.grads);
        report.grad_norm_student = finite(step, "student gradient norm", norm)?;
        let (motion, backbone) = split_by_module(&nets.student, grads, "motion_modules");
        let student = optim.student.step(c.optim.lr_motion * lr_factor, nets.student.clone(), motion);
        nets.student = optim.student.step(c.optim.lr_backbone * lr_factor, student, backbone);
        report.updates[0] = 1;

        // 5-6. Two-timescale critic updates, each on fresh generated clips (detached).
        let (mut fake_losses, mut disc_losses, mut accs) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..c.critic_updates {
            let generated = match k {
                0 => generator.generated.clone(),
                _ => self.fresh_fakes(step, k, &nets.student, &data.prompts, &generator.generated)?,
            };
            if losses.uses_sdm() {
                let pass = self.fake_score_pass(step, k, nets, &generated, &data.prompts)?;
                fake_losses.push(finite(step, "fake-score loss", pass.loss)?);
                let (grads, norm) = self.clipped(&nets.fake_score, pass.grads);
                report.grad_norm_fake = Some(finite(step, "fake-score gradient norm", norm)?);
                nets.fake_score = optim.fake_score.step(c.optim.lr_fake * lr_factor, nets.fake_score.clone(), grads);
                report.updates[1] += 1;
            }
            if losses.uses_adm() {
                let real = data.real.get(k).unwrap_or(&data.real[0]);
                let pass = self.discriminator_pass(step, k, nets, real, &generated, &data.prompts)?;
                disc_losses.push(finite(step, "discriminator loss", pass.loss)?);
                let sum = |side: fn(&(f64, f64)) -> f64| pass.outputs.iter().map(side).sum::<f64>();
                accs.push((sum(|a| a.0), sum(|a| a.1)));
                let (grads, norm) = self.clipped(&nets.head, pass.grads);
                report.grad_norm_head = Some(finite(step, "discriminator gradient norm", norm)?);
                nets.head = optim.head.step(c.optim.lr_head * lr_factor, nets.head.clone(), grads);
                report.updates[2] += 1;
            }
        }
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        report.loss_fake = mean(&fake_losses);
        report.loss_disc = mean(&disc_losses);
        report.disc_accuracy_real = mean(&accs.iter().map(|a| a.0).collect::<Vec<_>>());
        report.disc_accuracy_fake = mean(&accs.iter().map(|a| a.1).collect::<Vec<_>>());
        Ok(report)
    }

    /// The generator update's forward and backward pass (steps 1-3 of the algorithm) on the
    /// student of `nets`: the rollout, ADM and SDM, and the batch gradient of
    /// `lambda_sdm L_SDM + lambda_adm L_ADM` before clipping.
    pub fn generator_pass(
        &self,
        step: usize,
        nets: &Networks,
        data: &IterationData,
    ) -> Result<GeneratorPass, TrainError> {
        let batch = data.prompts.dims()[0];
        let [_, channels, frames, height, width] = data
            .real
            .first()
            .map(|real| real.clips.dims())
            .ok_or_else(|| TrainError::setting("data", "an iteration needs real clips for the discriminator"))?;
        if data.real.iter().any(|real| real.clips.dims()[0] != batch || real.text.dims()[0] != batch) {
            return Err(TrainError::setting("data", format!("every real batch needs {batch} clips and captions")));
        }
        let rows = self.rows();
        if batch != rows.len() {
            return Err(TrainError::setting(
                "batch",
                format!("this rank's data has {batch} prompts, its share {rows:?} of the batch holds {}", rows.len()),
            ));
        }
        let devices = self.devices();
        // The fake score and the head as the generator update sees them (constants), on the
        // other devices; the frozen networks were forked there once.
        let trained: Vec<_> = (self.replicas.iter())
            .map(|r| (nets.fake_score.clone().fork(&r.device), nets.head.clone().fork(&r.device)))
            .collect();
        let stop = self.rollout_stop(step, Purpose::Rollout);
        let clip = [channels, frames, height, width];
        let replicas = self.replicas(nets, &trained);
        let sharded = sharded_gradients(&nets.student, &self.shards(), &devices, |student, shard, d| {
            self.generator_shard(step, stop, student, replicas[d], data, shard, clip)
        })?;
        let sum = |term: fn(&GeneratorShard) -> Option<f64>| sharded.outputs.iter().map(term).sum::<Option<f64>>();
        let (adm, sdm) = (sum(|s| s.adm), sum(|s| s.sdm));
        let mut scalars = [adm.unwrap_or(0.0), sdm.unwrap_or(0.0)];
        let grads = self.over_ranks(&nets.student, sharded.grads, &mut scalars)?;
        let (loss_adm, loss_sdm) = (adm.map(|_| scalars[0]), sdm.map(|_| scalars[1]));
        let inner = self.device.clone().without_autodiff();
        let generated = Tensor::cat(sharded.outputs.into_iter().map(|s| s.generated.to_device(&inner)).collect(), 0);
        Ok(GeneratorPass { grads, loss_adm, loss_sdm, generated, stop })
    }

    /// Fake-score update `k`'s pass: the batch gradient (before clipping) of the diffusion loss
    /// on generated clips `(B, C, F, H, W)` (this rank's rows) with their prompts `(B, L, D)`.
    pub fn fake_score_pass(
        &self,
        step: usize,
        k: usize,
        nets: &Networks,
        generated: &Tensor<5>,
        prompts: &Tensor<3>,
    ) -> Result<ShardedGradients<()>, TrainError> {
        let devices = self.devices();
        let pass = sharded_gradients(&nets.fake_score, &self.shards(), &devices, |fake_score, shard, d| {
            self.fake_score_shard(step, k, fake_score, &devices[d], generated, prompts, shard)
        })?;
        let mut loss = [pass.loss];
        let grads = self.over_ranks(&nets.fake_score, pass.grads, &mut loss)?;
        Ok(ShardedGradients { loss: loss[0], grads, outputs: pass.outputs })
    }

    /// Discriminator update `k`'s pass: the batch gradient (before clipping) of the head's loss
    /// on `real` clips against generated ones `(B, C, F, H, W)` with their prompts (this rank's
    /// rows), and the weighted accuracies on both (one pair per shard; one pair summed over the
    /// ranks when there are several).
    pub fn discriminator_pass(
        &self,
        step: usize,
        k: usize,
        nets: &Networks,
        real: &RealBatch,
        generated: &Tensor<5>,
        prompts: &Tensor<3>,
    ) -> Result<ShardedGradients<(f64, f64)>, TrainError> {
        let devices = self.devices();
        let pass = sharded_gradients(&nets.head, &self.shards(), &devices, |head, shard, d| {
            // The discriminator's shards use the frozen teacher of their device only.
            let teacher = if d == 0 { &nets.teacher } else { &self.replicas[d - 1].teacher };
            self.discriminator_shard(step, k, head, (&devices[d], teacher), real, (generated, prompts), shard)
        })?;
        if self.collective.single_process() {
            return Ok(pass);
        }
        let sum = |side: fn(&(f64, f64)) -> f64| pass.outputs.iter().map(side).sum::<f64>();
        let mut scalars = [pass.loss, sum(|a| a.0), sum(|a| a.1)];
        let grads = self.over_ranks(&nets.head, pass.grads, &mut scalars)?;
        Ok(ShardedGradients { loss: scalars[0], grads, outputs: vec![(scalars[1], scalars[2])] })
    }

    /// The gradient of the (unweighted) SDM loss with respect to generated clips `x0 (B, C, F,
    /// H, W)` with their prompts `(B, L, D)`, with the draws of the generator update of `step`
    /// (zero on frames the SDM branch did not pick); on the main device.
    pub fn sdm_gradient(
        &self,
        step: usize,
        nets: &Networks,
        x0: Tensor<5>,
        prompts: &Tensor<3>,
    ) -> Result<Tensor<5>, TrainError> {
        let whole = Shard { samples: 0..x0.dims()[0], total: x0.dims()[0], origin: 0 };
        let inner = self.device.clone().without_autodiff();
        let x0 = x0.to_device(&inner).autodiff().require_grad();
        let text = prompts.clone().to_device(&inner);
        let loss = self.sdm_loss(
            Replica::main(nets, &self.device),
            &x0,
            &text,
            &mut self.streams(step, Purpose::Sdm, &whole),
        )?;
        let grads = loss.backward();
        Ok(x0.grad(&grads).expect("the SDM loss depends on the clips"))
    }

    /// The step of the student's sampler at which the rollout for `purpose` (the generator
    /// update's, or a critic update's fresh fakes) stops. The same for every shard.
    fn rollout_stop(&self, step: usize, purpose: Purpose) -> usize {
        self.draws.rollout_stop(self.config.seed, step, purpose, self.sampler.timesteps.len())
    }

    /// Fresh generated clips for critic update `k >= 1`, shaped as `like (B, C, F, H, W)`
    /// (this rank's rows, without autodiff, on the main device): the current student's own
    /// rollout from new noise, stopped at a new random step, every shard on its device.
    pub fn fresh_fakes(
        &self,
        step: usize,
        k: usize,
        student: &UNetMotionModel,
        prompts: &Tensor<3>,
        like: &Tensor<5>,
    ) -> Result<Tensor<5>, TrainError> {
        let [_, channels, frames, height, width] = like.dims();
        let per_clip = [1, channels, frames, height, width];
        let shards = self.shards();
        let stop = self.rollout_stop(step, Purpose::CriticRollout(k));
        let devices = self.devices();
        let main = self.device.clone().without_autodiff();
        let work: Vec<_> = (shards.iter().enumerate())
            .map(|(i, shard)| {
                let d = i % devices.len();
                (student.clone().fork(&devices[d]).valid(), shard, devices[d].clone().without_autodiff())
            })
            .collect();
        let parts = parallel_map(work, |(student, shard, inner)| -> Result<Tensor<5>, TrainError> {
            let text_frames = repeat_per_frame(shard.rows(prompts.clone()).to_device(&inner), frames);
            let mut noise = self.streams(step, Purpose::CriticRollout(k), shard);
            let denoise = |x: Tensor<5>, t: usize| student.forward(x, column(&[t], &inner), text_frames.clone());
            let start = noise.normal(per_clip, &inner);
            let rollout =
                backward_simulation(&self.sampler, stop, start, denoise, denoise, || noise.normal(per_clip, &inner))?;
            Ok(rollout.x0.to_device(&main))
        });
        Ok(Tensor::cat(parts.into_iter().collect::<Result<Vec<_>, _>>()?, 0))
    }

    /// The generator loss of one shard (weighted by its share of the batch), computed through
    /// `student` (a fork of the student): the rollout by backward simulation, then ADM and SDM
    /// on the clips it ends with. `clip` is `[C, F, H, W]`.
    #[allow(clippy::too_many_arguments)]
    fn generator_shard(
        &self,
        step: usize,
        stop: usize,
        student: UNetMotionModel,
        on: Replica,
        data: &IterationData,
        shard: &Shard,
        clip: [usize; 4],
    ) -> Result<(Tensor<1>, GeneratorShard), TrainError> {
        let c = self.config;
        let [channels, frames, height, width] = clip;
        let per_clip = [1, channels, frames, height, width];
        let device = on.device;
        let inner = device.clone().without_autodiff();
        let text = shard.rows(data.prompts.clone()).to_device(&inner);
        let text_frames = repeat_per_frame(text.clone(), frames);
        let mut rollout_noise = self.streams(step, Purpose::Rollout, shard);
        let student_frozen = student.valid();
        let rollout = backward_simulation(
            &self.sampler,
            stop,
            rollout_noise.normal(per_clip, &inner),
            |x, t| student_frozen.forward(x, column(&[t], &inner), text_frames.clone()),
            |x, t| student.forward(x.autodiff(), column(&[t], device), text_frames.clone().autodiff()),
            || rollout_noise.normal(per_clip, &inner),
        )?;
        let generated = rollout.x0;
        let weight = shard.weight();
        let (mut total, mut adm, mut sdm) = (None::<Tensor<1>>, None, None);
        let mut add = |loss: Tensor<1>, lambda: f32| {
            let value = scalar(&loss) * weight as f64;
            let loss = loss * (lambda * weight);
            total = Some(match total.take() {
                Some(t) => t + loss,
                None => loss,
            });
            value
        };
        if c.loss.losses.uses_adm() {
            let mut streams = self.streams(step, Purpose::Adm, shard);
            let judged = Judged {
                clips: generated.clone(),
                noise: streams.normal(per_clip, device),
                timesteps: streams.timesteps(1, c.adm.t_min, c.adm.t_max),
                text: text_frames.clone().autodiff(),
            };
            // The gradient reaches the student through the clips only: the head is a constant.
            let head = on.head.clone().no_grad();
            adm = Some(add(generator_adm_loss(on.teacher, &self.video.schedule, &head, judged)?, c.loss.lambda_adm));
        }
        if c.loss.losses.uses_sdm() {
            let loss = self.sdm_loss(on, &generated, &text, &mut self.streams(step, Purpose::Sdm, shard))?;
            sdm = Some(add(loss, c.loss.lambda_sdm));
        }
        let total = total.expect("every setting has a generator loss");
        Ok((total, GeneratorShard { adm, sdm, generated: generated.detach().inner() }))
    }

    /// Clips the gradients to the global norm of the config; returns them and the norm before.
    fn clipped<M: Module>(&self, module: &M, mut grads: GradientsParams) -> (GradientsParams, f64) {
        let norm = clip_global_norm(module, &mut grads, self.config.optim.max_grad_norm);
        (grads, norm as f64)
    }

    /// Whether the fake score (and the real score it is compared with) work on frames (2D SDM)
    /// or on whole clips (the video-SDM ablation).
    fn video_sdm(&self) -> bool {
        self.config.loss.losses == Losses::AdmSdmVideo
    }

    /// What the SDM branch sees of generated clips `(S, C, F, H, W)`: `K` random frames of each
    /// clip as one-frame clips `(S*K, C, 1, H, W)` and their text `(S*K, L, D)`, or the whole
    /// clips and their per-frame text for the video ablation.
    fn sdm_view(&self, clips: Tensor<5>, text: &Tensor<3>, streams: &mut SampleStreams) -> (Tensor<5>, Tensor<3>) {
        let [b, c, f, h, w] = clips.dims();
        if self.video_sdm() {
            return (clips, repeat_per_frame(text.clone(), f));
        }
        let k = self.config.sdm.frames.min(f);
        let frames = pick_frames(clips, &streams.picks(f, k)).reshape([b * k, c, 1, h, w]);
        (frames, repeat_per_frame(text.clone(), k))
    }

    /// The parameterisation of the SDM branch's networks.
    fn sdm_query(&self) -> &Parameterisation {
        if self.video_sdm() { &self.video } else { &self.image }
    }

    /// The SDM loss of generated clips `(S, C, F, H, W)` (gradient to the student through
    /// them), with text `(S, L, D)`.
    fn sdm_loss(
        &self,
        on: Replica,
        generated: &Tensor<5>,
        text: &Tensor<3>,
        streams: &mut SampleStreams,
    ) -> Result<Tensor<1>, TrainError> {
        let c = &self.config.sdm;
        let (x0, view_text) = self.sdm_view(generated.clone(), text, streams);
        let [n, ch, f, h, w] = x0.dims();
        let per = n / text.dims()[0];
        let timesteps = streams.timesteps(per, c.t_min, c.t_max);
        let inner = on.device.clone().without_autodiff();
        let query = self.sdm_query();
        let noise = streams.normal([per, ch, f, h, w], &inner);
        let x_t = query.schedule.noise_batch(x0.clone().inner(), noise, &timesteps).x_t;
        let t = column(&timesteps, &inner);
        let real_net = if self.video_sdm() { on.teacher.valid() } else { on.teacher_2d.valid() };
        let mut real = real_net.forward(x_t.clone(), t.clone(), view_text.clone())?;
        if c.guidance > 1.0 {
            let empty = embed_on(self.tokenizer, on.text_encoder, &vec![String::new(); view_text.dims()[0]], &inner)?;
            let uncond = real_net.forward(x_t.clone(), t.clone(), empty)?;
            real = uncond.clone() + (real - uncond) * c.guidance;
        }
        let fake = on.fake_score.valid().forward(x_t.clone(), t, view_text)?;
        let frames = |x: Tensor<5>| x.permute([0, 2, 1, 3, 4]).reshape([n * f, ch, h, w]);
        let x0_real = query.x0(real, x_t.clone(), &timesteps);
        let x0_fake = query.x0(fake, x_t, &timesteps);
        Ok(dmd_loss(frames(x0), frames(x0_real).autodiff(), frames(x0_fake).autodiff()))
    }

    /// The weighted diffusion loss of the fake score (a fork) on one shard of the generated
    /// clips `(B, C, F, H, W)`, for critic update `k`.
    #[allow(clippy::too_many_arguments)]
    fn fake_score_shard(
        &self,
        step: usize,
        k: usize,
        fake_score: UNetMotionModel,
        device: &Device,
        generated: &Tensor<5>,
        prompts: &Tensor<3>,
        shard: &Shard,
    ) -> Result<(Tensor<1>, ()), TrainError> {
        let mut streams = self.streams(step, Purpose::FakeScore(k), shard);
        let inner = device.clone().without_autodiff();
        let text = shard.rows(prompts.clone()).to_device(&inner);
        let (x0, view_text) = self.sdm_view(shard.rows(generated.clone()).to_device(&inner), &text, &mut streams);
        let (x0, view_text) = (x0.autodiff(), view_text.autodiff());
        let [n, ch, f, h, w] = x0.dims();
        let per = n / shard.samples.len();
        let query = self.sdm_query();
        let timesteps = streams.timesteps(per, self.config.sdm.t_min, self.config.sdm.t_max);
        let eps = streams.normal([per, ch, f, h, w], device);
        let x_t = query.schedule.noise_batch(x0.clone(), eps.clone(), &timesteps).x_t;
        let output = fake_score.forward(x_t, column(&timesteps, device), view_text)?;
        Ok((query.denoising_loss(output, x0, eps, &timesteps) * shard.weight(), ()))
    }

    /// The weighted discriminator loss of the head (a fork) on one shard of real clips and of
    /// the generated ones, for critic update `k`, with the frozen teacher on the shard's
    /// device; also its weighted accuracy on each.
    #[allow(clippy::too_many_arguments)]
    fn discriminator_shard(
        &self,
        step: usize,
        k: usize,
        head: DiscriminatorHead,
        (device, teacher): (&Device, &UNetMotionModel),
        real: &RealBatch,
        (generated, prompts): (&Tensor<5>, &Tensor<3>),
        shard: &Shard,
    ) -> Result<(Tensor<1>, (f64, f64)), TrainError> {
        let c = self.config;
        let mut streams = self.streams(step, Purpose::Discriminator(k), shard);
        let [_, channels, frames, height, width] = real.clips.dims();
        let inner = device.clone().without_autodiff();
        let mut judged = |clips: Tensor<5>, text: &Tensor<3>| Judged {
            noise: streams.normal([1, channels, frames, height, width], device),
            timesteps: streams.timesteps(1, c.adm.t_min, c.adm.t_max),
            clips: shard.rows(clips).to_device(&inner).autodiff(),
            text: repeat_per_frame(shard.rows(text.clone()).to_device(&inner), frames).autodiff(),
        };
        let real_batch = judged(real.clips.clone(), &real.text);
        let fake_batch = judged(generated.clone(), prompts);
        let (loss, (real_acc, fake_acc)) =
            discriminator_adm_loss(teacher, &self.video.schedule, &head, real_batch, fake_batch)?;
        let weight = shard.weight();
        Ok((loss * weight, (real_acc * weight as f64, fake_acc * weight as f64)))
    }
}
