//! `avdm eval`: samples eval prompts with a model and sampler(s) and prints the table, also
//! written as `eval.json` and `eval.md`. By default the toy measures (Fréchet distance of the
//! toy judge's features with its real floor, prompt accuracy, flicker, NFE, seconds per clip)
//! with a GIF grid of samples per row; with `--fvd` / `--clipscore` the paper's measures on a
//! prompt set ([`crate::eval_standard`]).

use std::path::PathBuf;

use anyhow::{Context, bail};
use avdm_import::{AdapterSource, LoadOptions, LoadedPipeline, load_pipeline, read_student_config};
use avdm_model::pipeline::Sampler;
use avdm_model::precision::Precision;
use avdm_model::sched::{DdimConfig, StudentConfig, VideoSchedule};
use avdm_train::data::prompt_set::{PromptCsv, PromptSet};
use avdm_train::eval::judge::Judge;
use avdm_train::eval::toy::{
    EvalSettings, ddim_sampler, evaluate, markdown_table, real_reference, real_reference_from_videos, student_sampler,
    write_grid,
};
use avdm_train::toy::assets::default_assets_dir;
use avdm_train::toy::world::Attributes;
use clap::{Args, ValueEnum};

use crate::device::{configure_dtype, default_threads, parse_device};
use crate::output::{write_atomically, write_json_atomically};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SamplerKind {
    Ddim,
    Student,
}

/// Evaluate a model on the toy world (the shipped toy teacher by default).
#[derive(Args)]
pub struct EvalArgs {
    /// Pipeline folder (default: the shipped toy teacher, assets/toy/teacher).
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// Judge folder (default: assets/toy/judge).
    #[arg(long)]
    pub(crate) judge: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "ddim")]
    pub(crate) sampler: SamplerKind,
    /// Sampling steps; several (`50,25,4`) give one row each (default: 25 for ddim; for student,
    /// the steps of the folder's student.json, else 4).
    #[arg(long, value_delimiter = ',')]
    pub(crate) steps: Vec<usize>,
    /// The model's noise schedule: `animatediff` (linear betas, as `avdm generate` and `avdm
    /// distill` use by default) or `folder` (its scheduler config as it is).
    #[arg(long, default_value_t = VideoSchedule::Animatediff)]
    pub(crate) scheduler: VideoSchedule,
    /// Classifier-free guidance scale of the ddim sampler.
    #[arg(long, default_value_t = 7.5)]
    pub(crate) guidance: f32,
    /// Clips per row (default: 256, or one per prompt with --prompts).
    #[arg(long)]
    pub(crate) clips: Option<usize>,
    /// Eval prompts from a CSV with a header (default: the toy world's eval split, all 48
    /// combinations in turn); the toy judge reads toy captions only ("a red square moving left").
    #[arg(long)]
    pub(crate) prompts: Option<PathBuf>,
    /// The CSV's caption column.
    #[arg(long, default_value = "caption", requires = "prompts")]
    pub(crate) caption_column: String,
    /// The CSV's column of reference videos: the real clips the samples are compared with
    /// (default: clips rendered by the toy world for the same prompts).
    #[arg(long, requires = "prompts")]
    pub(crate) video_column: Option<String>,
    /// Folder the CSV's video paths are relative to (default: the CSV's folder).
    #[arg(long, requires = "video_column")]
    pub(crate) video_root: Option<PathBuf>,
    /// Prompts chosen at random (by --seed) from the CSV (default: all).
    #[arg(long, requires = "prompts")]
    pub(crate) prompt_count: Option<usize>,
    /// Frames between the frames taken from each reference or real video (from its first
    /// frame; reduced for short videos).
    #[arg(long, default_value_t = 1)]
    pub(crate) video_stride: usize,
    /// The paper's measures instead of the toy ones: FVD with the Kinetics-400 I3D (`avdm
    /// convert i3d`) against real videos (--real, or the prompt set's reference videos).
    #[arg(long, requires = "prompts")]
    pub(crate) fvd: bool,
    /// The paper's measures instead of the toy ones: CLIPScore (torchmetrics' convention) with
    /// the CLIP model of --clip.
    #[arg(long, requires_all = ["prompts", "clip"])]
    pub(crate) clipscore: bool,
    /// Converted I3D weights (default: $AVDM_I3D_WEIGHTS, else ~/.cache/avdm/i3d-kinetics-400.safetensors).
    #[arg(long)]
    pub(crate) i3d: Option<PathBuf>,
    /// A transformers CLIPModel folder (e.g. openai/clip-vit-large-patch14) for --clipscore.
    #[arg(long)]
    pub(crate) clip: Option<PathBuf>,
    /// Real videos for --fvd: a folder of videos, or a latent cache (`avdm cache`; a latent one
    /// is decoded by the VAE of --model) (default: the prompt set's reference videos).
    #[arg(long)]
    pub(crate) real: Option<PathBuf>,
    /// A folder of generated videos to measure instead of sampling --model: one per prompt,
    /// in the prompt set's order when sorted by file name.
    #[arg(long, requires = "prompts")]
    pub(crate) videos: Option<PathBuf>,
    /// Motion modules for a --model pipeline without them (a MotionAdapter folder or .ckpt).
    #[arg(long)]
    pub(crate) motion_adapter: Option<PathBuf>,
    /// Frames, height and width of the sampled videos for --fvd / --clipscore.
    #[arg(long, default_value_t = 16)]
    pub(crate) frames: usize,
    #[arg(long, default_value_t = 512)]
    pub(crate) height: usize,
    #[arg(long, default_value_t = 512)]
    pub(crate) width: usize,
    /// Clips per sampling batch.
    #[arg(long, default_value_t = 16)]
    pub(crate) batch: usize,
    /// Threads sampling batches side by side (default: all cores on the CPU, 1 on a GPU).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Output folder for eval.json, eval.md and the sample grids.
    #[arg(long, default_value = "runs/eval")]
    pub(crate) out: PathBuf,
    /// auto, cpu, wgpu, vulkan or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    /// Precision of the sampled model's UNet and text encoder (its VAE, the judge, I3D and
    /// CLIP compute in f32).
    #[arg(long, default_value_t = Precision::F32)]
    pub(crate) dtype: Precision,
}

/// The prompt set of `--prompts`, its skipped rows reported.
pub(crate) fn prompt_set(args: &EvalArgs) -> anyhow::Result<Option<PromptSet>> {
    let Some(csv) = &args.prompts else { return Ok(None) };
    let source = PromptCsv {
        csv: csv.clone(),
        caption_column: args.caption_column.clone(),
        video_column: args.video_column.clone(),
        videos: args.video_root.clone().unwrap_or_else(|| csv.parent().map(PathBuf::from).unwrap_or_default()),
    };
    let set = source.load(args.prompt_count, args.seed)?;
    for skipped in &set.skipped {
        eprintln!("{}: skipped {}", csv.display(), skipped.0);
    }
    Ok(Some(set))
}

/// Each prompt's toy attributes (the toy judge reads nothing else).
fn toy_attributes(csv: &std::path::Path, set: &PromptSet) -> anyhow::Result<Vec<Attributes>> {
    set.prompts
        .iter()
        .map(|p| {
            Attributes::parse(&p.caption).with_context(|| {
                format!(
                    "{}: \"{}\" is not a toy-world caption (a <colour> <shape> moving <direction>); the toy judge measures only those (--fvd / --clipscore measure any prompt)",
                    csv.display(),
                    p.caption
                )
            })
        })
        .collect()
}

/// The rows' samplers and the scheduler config they sample on (the video schedule of
/// --scheduler; a student's with the betas it was trained on): `(name, sampler)` for each
/// `--steps`.
pub(crate) fn samplers(
    args: &EvalArgs,
    model: &std::path::Path,
    loaded: &LoadedPipeline,
) -> anyhow::Result<(Vec<(String, Sampler)>, DdimConfig)> {
    let trained = read_student_config(model)?;
    let steps = if args.steps.is_empty() {
        vec![match (args.sampler, &trained) {
            (SamplerKind::Ddim, _) => 25,
            (SamplerKind::Student, Some(trained)) => trained.steps(),
            (SamplerKind::Student, None) => 4,
        }]
    } else {
        args.steps.clone()
    };
    let scheduler = loaded.video_scheduler(args.scheduler);
    let sampled_on = match (args.sampler, &trained) {
        (SamplerKind::Student, Some(trained)) => trained.scheduler(&scheduler),
        _ => scheduler.clone(),
    };
    let samplers = steps
        .into_iter()
        .map(|n| {
            Ok(match args.sampler {
                SamplerKind::Ddim => (format!("ddim-{n}"), ddim_sampler(&scheduler, n, args.guidance)?),
                SamplerKind::Student => {
                    let config = StudentConfig::for_steps(trained.clone(), Some(n));
                    (format!("student-{n}"), student_sampler(&scheduler, &config)?)
                }
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((samplers, sampled_on))
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.video_stride == 0 {
        bail!("--video-stride must be positive");
    }
    if args.batch == 0 {
        bail!("--batch must be positive");
    }
    if args.steps.contains(&0) {
        bail!("--steps: every step count must be positive");
    }
    let prompts = prompt_set(&args)?;
    if args.fvd || args.clipscore {
        let set = prompts.context("--fvd and --clipscore measure a prompt set: pass --prompts CSV")?;
        return crate::eval_standard::run(&args, &set);
    }
    let prompts = match (&args.prompts, prompts) {
        (Some(csv), Some(set)) => Some((toy_attributes(csv, &set)?, set)),
        _ => None,
    };
    let clips = args.clips.unwrap_or(prompts.as_ref().map_or(256, |(_, set)| set.prompts.len()));
    if clips < 2 {
        bail!("--clips must be at least 2");
    }
    let device = parse_device(&args.device)?;
    configure_dtype(args.dtype, &device)?;
    let assets = default_assets_dir();
    let model = args.model.clone().unwrap_or_else(|| assets.join("teacher"));
    let judge_dir = args.judge.clone().unwrap_or_else(|| assets.join("judge"));
    let adapter = args.motion_adapter.as_deref().map(AdapterSource::from_path);
    let loaded = load_pipeline(&model, adapter.as_ref(), &LoadOptions::in_precision(args.dtype), &device)
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
        prompts: prompts.as_ref().map(|(attributes, _)| attributes.clone()).unwrap_or_default(),
        ..EvalSettings::default()
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let reference_videos = prompts.as_ref().and_then(|(_, set)| set.videos());
    let reference = match (&reference_videos, &prompts) {
        (Some(videos), Some((attributes, _))) => {
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
    let (samplers, scheduler) = samplers(&args, &model, &loaded)?;
    let mut rows = Vec::new();
    for (name, sampler) in samplers {
        let (row, clips) =
            evaluate(&name, &loaded.pipeline, &loaded.tokenizer, &sampler, &judge, &reference, &settings, &device)?;
        write_grid(&clips, &args.out.join(format!("{name}.gif")))?;
        rows.push(row);
        // After every row, so that a long run keeps what it measured.
        let json = serde_json::json!({
            "model": model, "judge": judge_dir, "settings": settings, "scheduler_config": scheduler, "prompt_set": prompt_file, "real_accuracy": reference.accuracy,
            "rows": rows, "avdm_version": env!("CARGO_PKG_VERSION"),
        });
        write_json_atomically(&args.out.join("eval.json"), &json)?;
        write_atomically(&args.out.join("eval.md"), &markdown_table(&rows, reference.accuracy))?;
    }
    println!("{}", markdown_table(&rows, reference.accuracy));
    eprintln!("wrote {}/eval.json, eval.md and sample grids", args.out.display());
    Ok(())
}
