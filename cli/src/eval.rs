//! `avdm eval`: samples the toy eval prompts with a model and sampler(s) and prints the table
//! (Fréchet distance with its real floor, prompt accuracy, flicker, NFE, seconds per clip);
//! writes it as `eval.json` and `eval.md`, with a GIF grid of samples per row.

use std::path::PathBuf;

use anyhow::{Context, bail};
use avdm_import::{LoadOptions, load_pipeline, read_student_config};
use avdm_model::sched::StudentConfig;
use avdm_train::data::prompt_set::{PromptCsv, PromptSet};
use avdm_train::eval::{
    EvalSettings, ddim_sampler, evaluate, markdown_table, real_reference, real_reference_from_videos, student_sampler,
    write_grid,
};
use avdm_train::judge::Judge;
use avdm_train::toy::assets::default_assets_dir;
use avdm_train::toy::world::Attributes;
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
    /// Clips per row (default: 256, or one per prompt with --prompts).
    #[arg(long)]
    clips: Option<usize>,
    /// Eval prompts from a CSV with a header (default: the toy world's eval split, all 48
    /// combinations in turn); the toy judge reads toy captions only ("a red square moving left").
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// The CSV's caption column.
    #[arg(long, default_value = "caption", requires = "prompts")]
    caption_column: String,
    /// The CSV's column of reference videos: the real clips the samples are compared with
    /// (default: clips rendered by the toy world for the same prompts).
    #[arg(long, requires = "prompts")]
    video_column: Option<String>,
    /// Folder the CSV's video paths are relative to (default: the CSV's folder).
    #[arg(long, requires = "video_column")]
    videos: Option<PathBuf>,
    /// Prompts chosen at random (by --seed) from the CSV (default: all).
    #[arg(long, requires = "prompts")]
    prompt_count: Option<usize>,
    /// Frames between the frames taken from each reference video (from its first frame).
    #[arg(long, default_value_t = 1, requires = "video_column")]
    video_stride: usize,
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

/// The prompt set of `--prompts` and each prompt's toy attributes.
fn prompt_set(args: &EvalArgs) -> anyhow::Result<Option<(PromptSet, Vec<Attributes>)>> {
    let Some(csv) = &args.prompts else { return Ok(None) };
    let source = PromptCsv {
        csv: csv.clone(),
        caption_column: args.caption_column.clone(),
        video_column: args.video_column.clone(),
        videos: args.videos.clone().unwrap_or_else(|| csv.parent().map(PathBuf::from).unwrap_or_default()),
    };
    let set = source.load(args.prompt_count, args.seed)?;
    for skipped in &set.skipped {
        eprintln!("{}: skipped {}", csv.display(), skipped.0);
    }
    let attributes = set
        .prompts
        .iter()
        .map(|p| {
            Attributes::parse(&p.caption).with_context(|| {
                format!(
                    "{}: \"{}\" is not a toy-world caption (a <colour> <shape> moving <direction>); the toy judge measures only those",
                    csv.display(),
                    p.caption
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some((set, attributes)))
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.video_stride == 0 {
        bail!("--video-stride must be positive");
    }
    let prompts = prompt_set(&args)?;
    let clips = args.clips.unwrap_or(prompts.as_ref().map_or(256, |(set, _)| set.prompts.len()));
    if clips < 2 || args.batch == 0 {
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
    let settings = EvalSettings {
        clips,
        batch: args.batch,
        threads,
        seed: args.seed,
        prompts: prompts.as_ref().map(|(_, attributes)| attributes.clone()).unwrap_or_default(),
        ..EvalSettings::default()
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let reference_videos = prompts.as_ref().and_then(|(set, _)| set.videos());
    let reference = match (&reference_videos, &prompts) {
        (Some(videos), Some((_, attributes))) => {
            let (reference, skipped) =
                real_reference_from_videos(&judge, videos, attributes, args.video_stride, &settings, &device)?;
            eprintln!("{} reference videos, {} could not be decoded", videos.len() - skipped.len(), skipped.len());
            for line in &skipped {
                eprintln!("  skipped {line}");
            }
            reference
        }
        _ => real_reference(&judge, &settings, &device)?,
    };
    let prompt_file = args.prompts.as_ref().map(|csv| {
        let count = settings.prompts.len();
        serde_json::json!({ "csv": csv, "prompts": count, "reference_videos": reference_videos.is_some() })
    });
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
            "model": model, "judge": judge_dir, "settings": settings, "prompt_set": prompt_file, "real_accuracy": reference.accuracy,
            "rows": rows, "avdm_version": env!("CARGO_PKG_VERSION"),
        });
        write_json_atomically(&args.out.join("eval.json"), &json)?;
        write_atomically(&args.out.join("eval.md"), &markdown_table(&rows, reference.accuracy))?;
    }
    println!("{}", markdown_table(&rows, reference.accuracy));
    eprintln!("wrote {}/eval.json, eval.md and sample grids", args.out.display());
    Ok(())
}
