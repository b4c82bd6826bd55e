//! `avdm eval`: samples the toy eval prompts with a model and sampler(s) and prints the table
//! (Fréchet distance with its real floor, prompt accuracy, flicker, NFE, seconds per clip);
//! writes it as `eval.json` and `eval.md`, with a GIF grid of samples per row.

use std::path::PathBuf;

use anyhow::{Context, bail};
use avdm_import::{LoadOptions, Video, load_pipeline, write_video};
use avdm_model::pipeline::Sampler;
use avdm_model::sched::{DdimScheduler, StudentConfig, StudentSampler};
use avdm_train::eval::{EvalSettings, evaluate, markdown_table, real_reference};
use avdm_train::judge::Judge;
use avdm_train::toy::assets::default_assets_dir;
use burn::prelude::*;
use clap::{Args, ValueEnum};

use crate::device::{default_threads, parse_device};
use crate::output::{write_atomically, write_json_atomically};

#[derive(Clone, Copy, ValueEnum)]
enum SamplerKind {
    Ddim,
    Student,
}

/// Evaluate a model on the toy world (the shipped toy teacher by default).
#[derive(Args)]
pub struct EvalArgs {
    /// Pipeline folder (default: the shipped toy teacher, assets/toy/teacher).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Judge folder (default: assets/toy/judge).
    #[arg(long)]
    judge: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "ddim")]
    sampler: SamplerKind,
    /// Sampling steps; several (`50,25,4`) give one row each (default: 25 for ddim, 4 for student).
    #[arg(long, value_delimiter = ',')]
    steps: Vec<usize>,
    /// Classifier-free guidance scale of the ddim sampler.
    #[arg(long, default_value_t = 7.5)]
    guidance: f32,
    /// Clips per row.
    #[arg(long, default_value_t = 256)]
    clips: usize,
    /// Clips per sampling batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Threads sampling batches side by side (default: all cores on the CPU, 1 on a GPU).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder for eval.json, eval.md and the sample grids.
    #[arg(long, default_value = "runs/eval")]
    out: PathBuf,
    /// auto, cpu, wgpu, vulkan or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.clips < 2 || args.batch == 0 {
        bail!("--clips must be at least 2 and --batch positive");
    }
    if args.steps.contains(&0) {
        bail!("--steps: every step count must be positive");
    }
    let device = parse_device(&args.device)?;
    let assets = default_assets_dir();
    let model = args.model.clone().unwrap_or_else(|| assets.join("teacher"));
    let judge_dir = args.judge.clone().unwrap_or_else(|| assets.join("judge"));
    let loaded = load_pipeline(&model, None, &LoadOptions::default(), &device)
        .with_context(|| format!("loading the model {}", model.display()))?;
    let judge = Judge::load(&judge_dir, &device)?;
    let threads = args.threads.unwrap_or_else(|| default_threads(&args.device));
    if threads == 0 {
        bail!("--threads must be positive");
    }
    let settings =
        EvalSettings { clips: args.clips, batch: args.batch, threads, seed: args.seed, ..EvalSettings::default() };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let reference = real_reference(&judge, &settings, &device)?;
    let steps = if args.steps.is_empty() {
        vec![if matches!(args.sampler, SamplerKind::Ddim) { 25 } else { 4 }]
    } else {
        args.steps.clone()
    };
    let mut rows = Vec::new();
    for n in steps {
        let (name, sampler) = match args.sampler {
            SamplerKind::Ddim => {
                let mut scheduler = DdimScheduler::new(loaded.scheduler.clone())?;
                scheduler.set_timesteps(n)?;
                (format!("ddim-{n}"), Sampler::Ddim { scheduler, guidance_scale: args.guidance })
            }
            SamplerKind::Student => {
                let config =
                    StudentConfig { steps: n, timesteps: None, prediction_type: loaded.scheduler.prediction_type };
                let schedule = DdimScheduler::new(loaded.scheduler.clone())?.schedule;
                (format!("student-{n}"), Sampler::Student(StudentSampler::new(schedule, &config)?))
            }
        };
        let (row, clips) =
            evaluate(&name, &loaded.pipeline, &loaded.tokenizer, &sampler, &judge, &reference, &settings, &device)?;
        write_grid(&clips, &args.out.join(format!("{name}.gif")))?;
        rows.push(row);
        // After every row, so that a long run keeps what it measured.
        let json = serde_json::json!({
            "model": model, "judge": judge_dir, "settings": settings, "real_accuracy": reference.accuracy,
            "rows": rows, "avdm_version": env!("CARGO_PKG_VERSION"),
        });
        write_json_atomically(&args.out.join("eval.json"), &json)?;
        write_atomically(&args.out.join("eval.md"), &markdown_table(&rows, reference.accuracy))?;
    }
    println!("{}", markdown_table(&rows, reference.accuracy));
    eprintln!("wrote {}/eval.json, eval.md and sample grids", args.out.display());
    Ok(())
}

/// The first 16 clips `(N, 3, F, H, W)` in `[-1, 1]` as a 4x4 GIF grid.
fn write_grid(clips: &Tensor<5>, path: &std::path::Path) -> anyhow::Result<()> {
    let [n, c, f, h, w] = clips.dims();
    let side = 4.min(n);
    let rows = (n / side).min(4);
    let tiles = clips.clone().slice([0..rows * side, 0..c, 0..f, 0..h, 0..w]);
    // (rows, side, 3, F, H, W) -> (F, 3, rows, H, side, W)
    let grid = tiles.reshape([rows, side, c, f, h, w]).permute([3, 2, 0, 4, 1, 5]).reshape([f, c, rows * h, side * w]);
    let video = Video::from_tensor(grid / 2.0 + 0.5);
    write_video(&video, path, 8)?;
    Ok(())
}
