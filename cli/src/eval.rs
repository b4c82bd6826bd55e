//! `avdm eval`: samples the toy eval prompts with a model and sampler(s) and prints the table
//! (Fréchet distance with its real floor, prompt accuracy, flicker, NFE, seconds per clip);
//! writes it as `eval.json` and `eval.md`, with a GIF grid of samples per row.

use std::path::PathBuf;

use anyhow::{Context, bail};
use avdm_import::{LoadOptions, load_pipeline, read_student_config};
use avdm_model::sched::StudentConfig;
use avdm_train::eval::{
    EvalSettings, ddim_sampler, evaluate, markdown_table, real_reference, student_sampler, write_grid,
};
use avdm_train::judge::Judge;
use avdm_train::toy::assets::default_assets_dir;
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
    /// Sampling steps; several (`50,25,4`) give one row each (default: 25 for ddim; for student,
    /// the steps of the folder's student.json, else 4).
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
    let trained = read_student_config(&model)?;
    let steps = if args.steps.is_empty() {
        vec![match (args.sampler, &trained) {
            (SamplerKind::Ddim, _) => 25,
            (SamplerKind::Student, Some(trained)) => trained.steps(),
            (SamplerKind::Student, None) => 4,
        }]
    } else {
        args.steps.clone()
    };
    let mut rows = Vec::new();
    for n in steps {
        let (name, sampler) = match args.sampler {
            SamplerKind::Ddim => (format!("ddim-{n}"), ddim_sampler(&loaded.scheduler, n, args.guidance)?),
            SamplerKind::Student => {
                let config = StudentConfig::for_steps(trained.clone(), Some(n));
                (format!("student-{n}"), student_sampler(&loaded.scheduler, &config)?)
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
