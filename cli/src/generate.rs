//! `avdm generate`: a diffusers pipeline folder + motion modules + a prompt in, a video out.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use avdm_import::{
    AdapterSource, LoadOptions, LoadedPipeline, Video, VideoFormat, load_pipeline, read_student_config, write_video,
};
use avdm_model::noise::NoiseSource;
use avdm_model::pipeline::Sampler;
use avdm_model::precision::Precision;
use avdm_model::sched::{DdimConfig, DdimScheduler, StudentConfig, VideoSchedule};
use avdm_train::eval::toy::student_sampler;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::device::{configure_dtype, parse_device};
use crate::output::write_json_atomically;

/// Which sampler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// The teacher: DDIM with classifier-free guidance.
    Ddim,
    /// A distilled student: few steps on trailing timesteps, no guidance.
    Student,
}

/// Generate a video from a prompt with a diffusers pipeline folder and motion modules.
#[derive(Args, Debug, Clone, Serialize)]
pub struct GenerateArgs {
    /// A diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
    /// scheduler/), e.g. a Realistic Vision or SD1.5 download.
    #[arg(long)]
    pub pipeline: PathBuf,
    /// Motion modules: a diffusers MotionAdapter folder or an original AnimateDiff `.ckpt`
    /// (not needed when the pipeline's unet/ is already a UNetMotionModel).
    #[arg(long)]
    pub motion_adapter: Option<PathBuf>,
    /// The prompt.
    #[arg(long, required_unless_present = "prompt_file", conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from a UTF-8 text file instead.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// What the video should not show (the unconditional branch of guidance).
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
    pub sampler: SamplerKind,
    /// Sampling steps [default: 50 for ddim, as diffusers; 4 for student].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale w in `uncond + w (cond - uncond)`, ddim only [default: 7.5].
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Frames of the clip (at most the motion modules' positions: 32 for v2, 24 for v1).
    #[arg(long, default_value_t = 16)]
    pub frames: usize,
    /// Height in pixels [default: the UNet's sample_size x the VAE factor: 512 for SD1.5].
    #[arg(long)]
    pub height: Option<usize>,
    /// Width in pixels [default: as the height].
    #[arg(long)]
    pub width: Option<usize>,
    /// Seed of the initial noise (and of the student's re-noising).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, wgpu, vulkan or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// A diffusers weight variant, e.g. `fp16`.
    #[arg(long)]
    pub variant: Option<String>,
    /// Precision of the UNet and the text encoder (weights and activations); the VAE decodes
    /// in f32.
    #[arg(long, default_value_t = Precision::F32)]
    pub dtype: Precision,
    /// The video model's noise schedule: `animatediff` (the folder's scheduler with the
    /// overrides of diffusers' AnimateDiff guide: linear betas, `linspace` spacing, `steps_offset`
    /// 1, no clipping) or `folder` (its `scheduler_config.json` as it is). A student samples on
    /// the betas its `student.json` records.
    #[arg(long, default_value_t = VideoSchedule::Animatediff)]
    pub scheduler: VideoSchedule,
    /// Use the k-th from last text-encoder layer (diffusers' clip_skip).
    #[arg(long, default_value_t = 0)]
    pub clip_skip: usize,
    /// Frames the VAE decodes at a time.
    #[arg(long, default_value_t = 16)]
    pub decode_chunk: usize,
    /// Frames per second of the GIF / MP4.
    #[arg(long, default_value_t = 8)]
    pub fps: u32,
    /// Output: `.gif`, `.mp4` (needs ffmpeg) or a path without extension for PNG frames. The
    /// resolved settings are written next to it as `<out>.json`.
    #[arg(long)]
    pub out: PathBuf,
}

/// What a run resolved to, saved next to its output.
#[derive(Debug, Serialize)]
struct Settings<'a> {
    avdm_version: &'static str,
    #[serde(flatten)]
    args: &'a GenerateArgs,
    prompt_text: &'a str,
    steps_resolved: usize,
    guidance_resolved: Option<f32>,
    height_resolved: usize,
    width_resolved: usize,
    timesteps: Vec<usize>,
    network_evaluations: usize,
    scheduler_config: &'a DdimConfig,
    seconds: f64,
}

fn read_prompt(args: &GenerateArgs) -> anyhow::Result<String> {
    match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|p| p.trim().to_string())
            .with_context(|| format!("cannot read the prompt file {}", path.display())),
        (None, None) => bail!("give --prompt or --prompt-file"),
    }
}

/// The sampler, its guidance scale and the scheduler config it samples on (a student's with the
/// betas it was trained on).
fn build_sampler(args: &GenerateArgs, config: DdimConfig) -> anyhow::Result<(Sampler, Option<f32>, DdimConfig)> {
    match args.sampler {
        SamplerKind::Ddim => {
            let mut scheduler = DdimScheduler::new(config.clone()).context("scheduler config")?;
            scheduler.set_timesteps(args.steps.unwrap_or(50)).context("--steps")?;
            let guidance_scale = args.guidance.unwrap_or(7.5);
            if !guidance_scale.is_finite() || guidance_scale < 0.0 {
                bail!("--guidance {guidance_scale}: must be a finite number >= 0");
            }
            Ok((Sampler::Ddim { scheduler, guidance_scale }, Some(guidance_scale), config))
        }
        SamplerKind::Student => {
            if args.guidance.is_some() {
                bail!("--guidance: the student sampler runs without classifier-free guidance");
            }
            let student = StudentConfig::for_steps(read_student_config(&args.pipeline)?, args.steps);
            let sampler = student_sampler(&config, &student).context("--steps")?;
            Ok((sampler, None, student.scheduler(&config)))
        }
    }
}

/// Checks the frame count and size against the loaded networks; returns `(height, width)`.
fn check_shape(args: &GenerateArgs, loaded: &LoadedPipeline) -> anyhow::Result<(usize, usize)> {
    let max = loaded.pipeline.unet.max_frames;
    if args.frames == 0 || args.frames > max {
        bail!("--frames {}: the motion modules support 1 to {max} frames", args.frames);
    }
    let factor = loaded.pipeline.downscale_factor();
    let default = loaded.unet_config.sample_size.map_or(512, |s| s * factor);
    let height = args.height.unwrap_or(default);
    let width = args.width.unwrap_or(height);
    for (name, size) in [("--height", height), ("--width", width)] {
        if size == 0 || size % factor != 0 {
            bail!("{name} {size}: must be a positive multiple of the VAE's factor {factor}");
        }
    }
    Ok((height, width))
}

fn progress_bar(steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps, {per_sec}, ETA {eta}")
        .expect("valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message("sampling");
    bar
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let prompt = read_prompt(&args)?;
    VideoFormat::for_output(&args.out)?;
    let device = parse_device(&args.device)?;
    configure_dtype(args.dtype, &device)?;
    let options = LoadOptions { variant: args.variant.clone(), ..LoadOptions::in_precision(args.dtype) };
    let adapter = args.motion_adapter.as_deref().map(AdapterSource::from_path);
    eprintln!("loading {}", args.pipeline.display());
    let mut loaded = load_pipeline(&args.pipeline, adapter.as_ref(), &options, &device)
        .with_context(|| format!("loading the pipeline {}", args.pipeline.display()))?;
    loaded.pipeline.clip_skip = args.clip_skip;
    loaded.pipeline.decode_chunk = args.decode_chunk;
    let (height, width) = check_shape(&args, &loaded)?;
    let (sampler, guidance, config) = build_sampler(&args, loaded.video_scheduler(args.scheduler))?;

    let tokens = |text: &str| loaded.tokenizer.encode_tensor(text, &device);
    let negative = if sampler.uses_guidance() { Some(tokens(&args.negative_prompt)?) } else { None };
    let text = loaded.pipeline.encode_prompts(tokens(&prompt)?, negative)?;

    let mut noise = NoiseSource::new(args.seed);
    let factor = loaded.pipeline.downscale_factor();
    let channels = loaded.pipeline.latent_channels();
    let latents = noise.normal([1, channels, args.frames, height / factor, width / factor], &device);
    let bar = progress_bar(sampler.steps());
    let clean = loaded.pipeline.denoise(latents, &text, &sampler, &mut noise, |i, _| bar.set_position(i as u64))?;
    bar.finish_and_clear();
    eprintln!("decoding {} frames", args.frames);
    let frames = loaded.pipeline.decode(clean);
    let [_, f, c, h, w] = frames.dims();
    let video = Video::from_tensor(frames.reshape([f, c, h, w]));
    write_video(&video, &args.out, args.fps)?;

    let settings = Settings {
        avdm_version: env!("CARGO_PKG_VERSION"),
        args: &args,
        prompt_text: &prompt,
        steps_resolved: sampler.steps(),
        guidance_resolved: guidance,
        height_resolved: height,
        width_resolved: width,
        timesteps: sampler.timesteps().to_vec(),
        network_evaluations: sampler.nfe(),
        scheduler_config: &config,
        seconds: started.elapsed().as_secs_f64(),
    };
    let settings_path = PathBuf::from(format!("{}.json", args.out.display()));
    write_json_atomically(&settings_path, &settings)?;
    eprintln!(
        "wrote {} ({} frames, {}x{}, {} network evaluations, {:.1} s) and {}",
        args.out.display(),
        args.frames,
        width,
        height,
        sampler.nfe(),
        started.elapsed().as_secs_f64(),
        settings_path.display()
    );
    Ok(())
}
