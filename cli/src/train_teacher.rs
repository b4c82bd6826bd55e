//! `avdm train-teacher`: trains the toy teacher in AnimateDiff's two stages (image, then
//! motion) and writes it as a pipeline folder.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use avdm_import::ClipTokenizer;
use avdm_train::checkpoint::Checkpoint;
use avdm_train::teacher::{
    Stage, StageState, TeacherConfig, TextToVideo, image_model_of, init_image_model, init_motion_model, stage_dir,
    train_stage,
};
use avdm_train::toy::Style;
use avdm_train::toy::assets::{PipelineKind, write_pipeline_folder};
use avdm_train::toy::preset;
use avdm_train::toy::vocabulary::write_tokenizer;
use clap::{Args, ValueEnum};

use crate::device::{default_threads, parse_device};
use crate::interrupt;
use crate::output::{write_folder_atomically, write_json_atomically};

#[derive(Clone, Copy, ValueEnum)]
enum Stages {
    Both,
    Image,
    Motion,
}

/// Train the toy teacher (toy preset by default): stage 1 learns frames, stage 2 motion.
#[derive(Args)]
pub struct TrainTeacherArgs {
    /// Run folder: checkpoints (`image/`, `motion/`), the tokenizer, and the finished
    /// pipeline folder: `teacher/` (video), or `image-teacher/` (the image model, a
    /// Stable-Diffusion-style folder) after `--stage image`.
    #[arg(long, default_value = "runs/toy-teacher")]
    out: PathBuf,
    /// Which stages to run; `motion` needs a finished image stage in the run folder.
    #[arg(long, value_enum, default_value = "both")]
    stage: Stages,
    /// How the toy world draws its shapes: `filled` (the shipped teacher's world), `outline`
    /// (hollow shapes) or `grey` (on a grey backdrop): restyled worlds for restyled image models.
    #[arg(long, default_value = "filled")]
    style: Style,
    /// Start the image stage from this pipeline folder's image model (text encoder and 2D
    /// UNet, e.g. assets/toy/teacher) with its text encoder frozen: a fine-tune of the same
    /// family, usable as the 2D teacher of a distillation of that folder (`models.teacher_2d`).
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Continue from the checkpoints in the run folder.
    #[arg(long)]
    resume: bool,
    /// Image-stage steps (preset: 3000).
    #[arg(long)]
    image_steps: Option<usize>,
    /// Motion-stage steps (preset: 3000).
    #[arg(long)]
    motion_steps: Option<usize>,
    /// Frames per image-stage step (preset: 32).
    #[arg(long)]
    image_batch: Option<usize>,
    /// Clips per motion-stage step (preset: 4).
    #[arg(long)]
    motion_batch: Option<usize>,
    /// Learning rate of both stages (preset: 1e-3).
    #[arg(long)]
    lr: Option<f64>,
    /// Steps between checkpoints (preset: 100).
    #[arg(long)]
    checkpoint_every: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// CPU threads each step's batch is split over (default: all cores on the CPU, 1 on a GPU).
    #[arg(long)]
    threads: Option<usize>,
    /// auto, cpu, wgpu, vulkan or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl TrainTeacherArgs {
    fn config(&self) -> TeacherConfig {
        let mut config = TeacherConfig::toy();
        config.seed = self.seed;
        config.world.style = self.style;
        config.image_init.clone_from(&self.init_from);
        config.threads = self.threads.unwrap_or_else(|| default_threads(&self.device));
        let overrides =
            [(Stage::Image, self.image_steps, self.image_batch), (Stage::Motion, self.motion_steps, self.motion_batch)];
        for (stage, steps, batch) in overrides {
            let c = config.stage_mut(stage);
            c.steps = steps.unwrap_or(c.steps);
            c.batch = batch.unwrap_or(c.batch);
            c.learning_rate = self.lr.unwrap_or(c.learning_rate);
            c.checkpoint_every = self.checkpoint_every.unwrap_or(c.checkpoint_every);
        }
        config
    }
}

pub fn run(args: TrainTeacherArgs) -> anyhow::Result<()> {
    interrupt::install();
    let config = args.config();
    config.validate()?;
    let device = parse_device(&args.device)?.autodiff();
    if !args.resume && ["image", "motion"].iter().any(|s| args.out.join(s).exists()) {
        bail!("{} already holds checkpoints: pass --resume to continue, or choose a new --out", args.out.display());
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let tokenizer_dir = args.out.join("tokenizer");
    write_tokenizer(&tokenizer_dir).with_context(|| format!("writing {}", tokenizer_dir.display()))?;
    let tokenizer = ClipTokenizer::from_folder(&tokenizer_dir)?;
    write_json_atomically(&args.out.join("config.json"), &config)?;
    let started = Instant::now();
    let keep_going = || !interrupt::requested();

    let image = match args.stage {
        Stages::Both | Stages::Image => {
            let init = match &config.image_init {
                Some(dir) => image_model_of(dir, &device)?,
                None => init_image_model(&device),
            };
            let (model, state) =
                train_stage(&config, Stage::Image, init, &tokenizer, &args.out, args.resume, &device, &keep_going)?;
            report(&args, &config, &state)?;
            model
        }
        Stages::Motion => finished_image_stage(&args, &config, &device)?,
    };
    if matches!(args.stage, Stages::Image) {
        let folder = args.out.join("image-teacher");
        write_folder_atomically(&folder, |staging| {
            Ok(write_pipeline_folder(&image, config.prediction_type, PipelineKind::Image, staging)?)
        })?;
        eprintln!("wrote {} ({:.0} s this run)", folder.display(), started.elapsed().as_secs_f64());
        return Ok(());
    }
    let init = init_motion_model(&image, &preset::unet_config(true), &device)?;
    let resume = args.resume || matches!(args.stage, Stages::Motion);
    let (model, state) =
        train_stage(&config, Stage::Motion, init, &tokenizer, &args.out, resume, &device, &keep_going)?;
    report(&args, &config, &state)?;
    let folder = args.out.join("teacher");
    write_folder_atomically(&folder, |staging| {
        Ok(write_pipeline_folder(&model, config.prediction_type, PipelineKind::Video, staging)?)
    })?;
    eprintln!("wrote {} ({:.0} s this run)", folder.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// The image model of a finished image stage in the run folder.
fn finished_image_stage(
    args: &TrainTeacherArgs,
    config: &TeacherConfig,
    device: &burn::prelude::Device,
) -> anyhow::Result<TextToVideo> {
    let dir = stage_dir(&args.out, Stage::Image);
    let Some(checkpoint) = Checkpoint::find(&dir) else {
        bail!("{}: no image-stage checkpoint; run `avdm train-teacher --stage image` first", dir.display());
    };
    let state: StageState = checkpoint.state()?;
    if state.step < config.image.steps {
        bail!(
            "{}: the image stage stopped at step {} of {}; resume it first",
            dir.display(),
            state.step,
            config.image.steps
        );
    }
    Ok(checkpoint.module("model", init_image_model(device))?)
}

/// Prints how a stage ended; a stage stopped by Ctrl-C / SIGTERM ends the command with an error
/// naming its checkpoint.
fn report(args: &TrainTeacherArgs, config: &TeacherConfig, state: &StageState) -> anyhow::Result<()> {
    let stage = state.stage;
    let steps = config.stage(stage).steps;
    if state.step < steps {
        bail!(
            "interrupted at step {} of {} of the {} stage; the checkpoint is in {} (continue with --resume)",
            state.step,
            steps,
            stage.name(),
            stage_dir(&args.out, stage).display()
        );
    }
    eprintln!(
        "{} stage: {} steps, last loss {:.4}, {:.0} s in total",
        stage.name(),
        state.step,
        state.loss,
        state.seconds
    );
    Ok(())
}
