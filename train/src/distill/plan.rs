//! The plan of a distillation (`avdm distill --dry-run`): what a run loads and resolves before
//! its first step (the schedules of the video and 2D models, the trained parameter groups with
//! their learning rates, the frozen networks, the batch per device, the memory of the weights
//! and optimizer states per device, the iterations), so that a full-size run is checked before
//! it takes a cluster.

use std::fmt;
use std::path::PathBuf;

use avdm_model::sched::{BetaSchedule, DdimConfig, VideoSchedule};
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::DType;

use crate::distill::config::DistillConfig;
use crate::distill::data::DistillData;
use crate::distill::learner::FakeScoreBase;
use crate::distill::param_groups::values_by_module;
use crate::distill::run::RunSetup;
use crate::error::TrainError;
use crate::method::fake_score::trained_values;

/// A network's schedule as the plan shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSchedule {
    pub beta_schedule: BetaSchedule,
    pub beta_start: f64,
    pub beta_end: f64,
    pub prediction: String,
    /// Where it comes from, in words.
    pub source: String,
}

impl PlannedSchedule {
    fn new(s: &DdimConfig, source: String) -> Self {
        let prediction = serde_json::to_value(s.prediction_type).ok().and_then(|v| v.as_str().map(String::from));
        Self {
            beta_schedule: s.beta_schedule,
            beta_start: s.beta_start,
            beta_end: s.beta_end,
            prediction: prediction.unwrap_or_default(),
            source,
        }
    }
}

/// A trained parameter group: its values and learning rate (after warm-up).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroupPlan {
    pub name: &'static str,
    pub values: usize,
    pub lr: f64,
}

/// Everything `avdm distill --dry-run` prints.
#[derive(Debug, Clone)]
pub struct Plan {
    pub teacher: PathBuf,
    pub motion_modules: String,
    pub video: PlannedSchedule,
    pub image: PlannedSchedule,
    pub student_timesteps: Vec<usize>,
    pub trained: Vec<ParamGroupPlan>,
    /// Frozen networks and their values (the 2D teacher shares the video teacher's weights when
    /// it is its own 2D UNet).
    pub frozen: Vec<(&'static str, usize)>,
    pub devices: usize,
    /// Processes of a torchrun/srun launch ([`crate::cluster`]), each with `devices`.
    pub ranks: usize,
    pub batch: usize,
    pub threads: usize,
    /// Bytes of weights, gradients and AdamW moments on the first device and on each other one.
    pub memory_main: u64,
    pub memory_other: u64,
    pub data: String,
    config: DistillConfig,
}

/// Loads what `config` names (on the first of the autodiff `devices`), opens its data and
/// returns the plan of the run over `ranks` processes, without training.
pub fn plan(config: &DistillConfig, devices: &[Device], ranks: usize) -> Result<Plan, TrainError> {
    config.validate()?;
    if config.batch < ranks {
        return Err(TrainError::setting("batch", format!("{} clips cannot be shared by {ranks} ranks", config.batch)));
    }
    let device = devices.first().ok_or_else(|| TrainError::setting("devices", "a distillation needs a device"))?;
    for device in devices {
        config.dtype.configure(device).map_err(|e| TrainError::setting("dtype", e))?;
    }
    let setup = RunSetup::load(config, device)?;
    let data = DistillData::open(&config.data, &setup.teacher_input())?.describe();
    let nets = &setup.nets;
    let folder_schedule = setup.loaded.scheduler.beta_schedule;
    let video_source = match config.video_schedule {
        VideoSchedule::Animatediff => format!(
            "AnimateDiff's (video_schedule = \"animatediff\"; the folder's scheduler says {})",
            name(folder_schedule)
        ),
        VideoSchedule::Folder => "the teacher folder's (video_schedule = \"folder\")".into(),
    };
    let image_source = match &config.models.teacher_2d {
        Some(dir) => format!("the 2D teacher {}'s own", dir.display()),
        None => "SD1.5's, for the video teacher's own 2D UNet".into(),
    };
    let (motion, backbone) = values_by_module(&nets.student, "motion_modules");
    let o = &config.optim;
    let mut trained = vec![
        ParamGroupPlan { name: "student motion modules", values: motion, lr: o.lr_motion },
        ParamGroupPlan { name: "student 2D backbone", values: backbone, lr: o.lr_backbone },
    ];
    if config.loss.losses.uses_sdm() {
        trained.push(ParamGroupPlan { name: "fake score", values: trained_values(&nets.fake_score), lr: o.lr_fake });
    }
    if config.loss.losses.uses_adm() {
        trained.push(ParamGroupPlan { name: "discriminator head", values: nets.head.num_params(), lr: o.lr_head });
    }
    let mut frozen =
        vec![("text encoder", nets.text_encoder.num_params()), ("video teacher", nets.teacher.num_params())];
    if config.models.teacher_2d.is_some() {
        frozen.push(("2D teacher", nets.teacher_2d.num_params()));
    }
    // Weights everywhere; gradients on every device (each shard's, summed on the first); the
    // two AdamW moments on the first only.
    let bytes = DType::from(config.dtype.float_dtype()).size() as u64;
    let frozen_values: usize = frozen.iter().map(|f| f.1).sum();
    let trained_values: usize = trained.iter().map(|g| g.values).sum();
    let weights = (frozen_values + trained_values) as u64 * bytes;
    let memory_main = weights + 3 * trained_values as u64 * bytes;
    let memory_other = if devices.len() > 1 { weights + trained_values as u64 * bytes } else { 0 };
    Ok(Plan {
        teacher: setup.teacher_dir.clone(),
        motion_modules: match &config.models.motion_adapter {
            Some(path) => path.display().to_string(),
            None => "the teacher folder's unet/".into(),
        },
        video: PlannedSchedule::new(&setup.video_scheduler, video_source),
        image: PlannedSchedule::new(&setup.image_scheduler, image_source),
        student_timesteps: setup.sampler.timesteps.clone(),
        trained,
        frozen,
        devices: devices.len(),
        ranks: ranks.max(1),
        batch: config.batch,
        threads: config.threads,
        memory_main,
        memory_other,
        data,
        config: config.clone(),
    })
}

fn name(schedule: BetaSchedule) -> &'static str {
    match schedule {
        BetaSchedule::Linear => "linear",
        BetaSchedule::ScaledLinear => "scaled_linear",
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn millions(values: usize) -> String {
    format!("{:.2} M", values as f64 / 1e6)
}

impl fmt::Display for PlannedSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, lo, hi, pred) = (name(self.beta_schedule), self.beta_start, self.beta_end, &self.prediction);
        write!(f, "{kind} betas {lo}..{hi}, prediction_type {pred}: {}", self.source)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "distillation plan (dry run: nothing is trained or written)")?;
        writeln!(f, "teacher            {}", self.teacher.display())?;
        writeln!(f, "motion modules     {}", self.motion_modules)?;
        writeln!(f, "video schedule     {}", self.video)?;
        writeln!(f, "2D schedule        {}", self.image)?;
        writeln!(f, "student sampler    timesteps {:?}, no guidance", self.student_timesteps)?;
        let losses = serde_json::to_value(c.loss.losses).ok().and_then(|v| v.as_str().map(String::from));
        writeln!(
            f,
            "losses             {} (lambda_sdm {}, lambda_adm {})",
            losses.unwrap_or_default(),
            c.loss.lambda_sdm,
            c.loss.lambda_adm
        )?;
        writeln!(f, "ADM                t in [{}, {}] on the video schedule", c.adm.t_min, c.adm.t_max)?;
        writeln!(
            f,
            "SDM                {} frames per clip, t in [{}, {}], real-score guidance {}; the fake score trains on the same range, from {}",
            c.sdm.frames,
            c.sdm.t_min,
            c.sdm.t_max,
            c.sdm.guidance,
            FakeScoreBase::of(c).name()
        )?;
        writeln!(
            f,
            "trained            (AdamW, betas ({}, {}), weight decay {})",
            c.optim.beta1, c.optim.beta2, c.optim.weight_decay
        )?;
        for g in &self.trained {
            writeln!(f, "  {:<24} {:>10}  lr {:e}", g.name, millions(g.values), g.lr)?;
        }
        writeln!(f, "frozen")?;
        for (what, values) in &self.frozen {
            writeln!(f, "  {:<24} {:>10}", what, millions(*values))?;
        }
        if c.models.teacher_2d.is_none() {
            writeln!(f, "  2D teacher               the video teacher's 2D UNet (its weights, no copy)")?;
        }
        let per_rank = self.batch.div_ceil(self.ranks);
        if self.ranks > 1 {
            write!(
                f,
                "batch              {} clips per update: {} per rank on {} ranks, ",
                self.batch, per_rank, self.ranks
            )?;
        } else {
            write!(f, "batch              {} clips per update: ", self.batch)?;
        }
        writeln!(
            f,
            "{} per device on {} device(s), split over {} thread(s) each",
            per_rank.div_ceil(self.devices),
            self.devices,
            self.threads
        )?;
        writeln!(
            f,
            "iterations         {} generator updates, {} critic updates each, warm-up {}, checkpoint every {}",
            c.steps, c.critic_updates, c.optim.warmup, c.checkpoint_every
        )?;
        writeln!(f, "data               {}", self.data)?;
        writeln!(f, "precision          {}", c.dtype)?;
        write!(
            f,
            "memory             {} on the first device (weights, gradients, AdamW moments)",
            gib(self.memory_main)
        )?;
        if self.devices > 1 {
            write!(f, ", {} on each other (weights, gradients)", gib(self.memory_other))?;
        }
        writeln!(f, "; activations come on top (`avdm bench --distill-step` measures one iteration)")
    }
}
