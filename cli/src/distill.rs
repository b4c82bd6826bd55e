//! `avdm distill`: AVDM2 distillation of a video teacher into a 4-step student (the toy preset
//! on the shipped toy teacher without arguments).

use std::path::PathBuf;

use anyhow::bail;
use avdm_model::precision::Precision;
use avdm_train::distill::config::{DistillConfig, Losses};
use avdm_train::distill::eval::final_table;
use avdm_train::distill::plan::plan;
use avdm_train::distill::run::distill;
use avdm_train::monitor::dashboard::Dashboard;
use burn::prelude::Device;
use clap::Args;

use crate::device::{default_threads, parse_devices};
use crate::interrupt;
use crate::ranks::{CollectiveKind, join};

/// Distill a video teacher into a 4-step student without CFG (AVDM2); the toy preset by default.
#[derive(Args)]
pub struct DistillArgs {
    /// Settings (TOML; missing keys take the paper's defaults; `configs/animatediff.toml` is the
    /// paper's run on Realistic Vision + AnimateDiff). Without it: the run's own config.toml
    /// with --resume, else the toy preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run folder: config.toml, metrics.jsonl, checkpoint/, student/.
    #[arg(long, default_value = "runs/distill")]
    out: PathBuf,
    /// Continue the run in --out from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Generator updates (overrides the config).
    #[arg(long)]
    steps: Option<usize>,
    /// Which losses train the student (overrides the config's loss.losses): adm-sdm2d (the
    /// method), adm-only, adm-sdm-video or sdm-only.
    #[arg(long)]
    losses: Option<Losses>,
    /// Clips per row of the toy eval (overrides the config's eval.clips; 0: no eval).
    #[arg(long)]
    eval_clips: Option<usize>,
    /// A 2D teacher pipeline folder (overrides the config's models.teacher_2d): another image
    /// model of the teacher's family, whose look the student takes (style transfer), e.g. the
    /// `image-teacher/` of `avdm train-teacher --stage image --init-from ...`.
    #[arg(long)]
    teacher_2d: Option<PathBuf>,
    /// Threads each update's batch is split over (default: all cores on the CPU, 1 on a GPU;
    /// overrides the config).
    #[arg(long)]
    threads: Option<usize>,
    /// Precision of the networks, their gradients and optimizer states (overrides the config's
    /// dtype): f32, bf16 (CUDA) or f16.
    #[arg(long)]
    dtype: Option<Precision>,
    /// auto, cpu, wgpu, vulkan or cuda[:N]; a comma-separated list (`cuda:0,cuda:1`) splits
    /// every update's batch over several devices (data parallel), the first holding the networks.
    /// Under torchrun or srun with several ranks, `cuda` is the local rank's GPU.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// How the ranks of a torchrun/srun launch sum their gradients: auto (NCCL on CUDA, else
    /// TCP; nothing in a single process), nccl or tcp (named, they run even in a single
    /// process, through every step of the multi-process path).
    #[arg(long, value_enum, default_value_t = CollectiveKind::Auto)]
    collective: CollectiveKind,
    /// Load everything, resolve the settings and print the plan (schedules, parameter groups
    /// and learning rates, frozen networks, batch per device, memory per device, iterations)
    /// without training or writing anything.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: DistillArgs) -> anyhow::Result<()> {
    let saved = args.out.join("config.toml");
    let mut config = match &args.config {
        Some(path) => DistillConfig::from_toml_file(path)?,
        // A resumed run goes on with its own settings.
        None if args.resume && saved.is_file() => DistillConfig::from_toml_file(&saved)?,
        None => DistillConfig::toy(),
    };
    config.steps = args.steps.unwrap_or(config.steps);
    config.loss.losses = args.losses.unwrap_or(config.loss.losses);
    config.eval.clips = args.eval_clips.unwrap_or(config.eval.clips);
    if let Some(dir) = &args.teacher_2d {
        config.models.teacher_2d = Some(dir.clone());
    }
    config.dtype = args.dtype.unwrap_or(config.dtype);
    let first_device = args.device.split(',').next().unwrap_or_default().trim();
    config.threads = args.threads.unwrap_or_else(|| default_threads(first_device));
    config.validate()?;
    if !args.resume && args.out.join("checkpoint").exists() {
        bail!("{} already holds a checkpoint: pass --resume to continue, or choose a new --out", args.out.display());
    }
    if args.dry_run {
        let devices: Vec<Device> = parse_devices(&args.device)?.into_iter().map(|d| d.autodiff()).collect();
        // Under a launcher, the plan of the whole launch (each rank prints it).
        let ranks = avdm_train::cluster::RankEnv::from_process()?.world;
        print!("{}", plan(&config, &devices, ranks)?);
        return Ok(());
    }
    let rank = join(args.collective, &args.device)?;
    interrupt::install();
    let devices: Vec<Device> = parse_devices(&rank.devices)?.into_iter().map(|d| d.autodiff()).collect();
    let device = devices[0].clone();
    let lead = rank.env.is_lead();
    let mut dashboard = None;
    let state = distill(&config, &args.out, args.resume, &devices, rank.collective.as_ref(), |report| {
        if !lead {
            return !interrupt::requested();
        }
        let dashboard = dashboard.get_or_insert_with(|| Dashboard::new(report.step, config.steps));
        dashboard.update(report);
        !dashboard.stop_requested() && !interrupt::requested()
    });
    if let Some(dashboard) = dashboard {
        dashboard.finish();
    }
    let state = state?;
    if interrupt::requested() && state.step < config.steps {
        bail!(
            "interrupted at step {} of {}; the checkpoint is in {} (continue with --resume)",
            state.step,
            config.steps,
            args.out.join("checkpoint").display()
        );
    }
    if state.step < config.steps {
        eprintln!(
            "stopped at step {} of {}; the checkpoint is in {} (continue with --resume)",
            state.step,
            config.steps,
            args.out.join("checkpoint").display()
        );
        return Ok(());
    }
    if !lead {
        eprintln!("rank {}: distilled {} steps; rank 0 writes the student and the table", rank.env.rank, state.step);
        return Ok(());
    }
    eprintln!(
        "distilled {} steps in {:.0} s; student: {}",
        state.step,
        state.seconds,
        args.out.join("student").display()
    );
    // The student is saved and the table's files are written atomically: from here a signal
    // ends the process at once.
    interrupt::restore_default();
    if interrupt::requested() {
        bail!(
            "interrupted before the final table; evaluate the student with `avdm eval --model {} --sampler student`",
            args.out.join("student").display()
        );
    }
    match final_table(&config, &args.out, &device.clone().without_autodiff())? {
        Some(table) => {
            println!("{table}");
            eprintln!("wrote {}/eval.md, eval.json and samples/", args.out.display());
        }
        None => eprintln!(
            "evaluate it: avdm eval --model {} --sampler student (the toy eval runs on the toy teacher only)",
            args.out.join("student").display()
        ),
    }
    Ok(())
}
