//! `avdm cache`: decode a video dataset once and store the VAE latents and text embeddings
//! that distillation reads (sharded safetensors + `index.json`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use avdm_import::LoadOptions;
use avdm_train::data::clip_frames::{ClipSampling, ShortVideos};
use avdm_train::data::dataset::DatasetSource;
use avdm_train::data::latent_cache::{CacheEncoders, CacheIndex, CacheSettings, build_cache};
use clap::{ArgGroup, Args};

use crate::device::{default_threads, parse_device};
use crate::interrupt;

/// Decode a video dataset once into VAE latents and text embeddings (sharded safetensors and
/// index.json). Run it again with the same settings to continue an interrupted cache.
#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true)))]
pub struct CacheArgs {
    /// Pipeline folder whose `vae/`, `text_encoder/` and `tokenizer/` encode the clips (no
    /// `vae/`: a pixel-space pipeline; the cache holds the pixels).
    #[arg(long)]
    pipeline: PathBuf,
    /// OpenVid-1M CSV (`video`, `caption` columns).
    #[arg(long, group = "source")]
    openvid: Option<PathBuf>,
    /// A CSV with a header, its columns named by --path-column and --caption-column.
    #[arg(long, group = "source")]
    csv: Option<PathBuf>,
    /// A folder of videos, each with a `.txt` caption of the same name.
    #[arg(long, group = "source")]
    folder: Option<PathBuf>,
    /// Folder the CSV's video paths are relative to (default: the CSV's folder).
    #[arg(long)]
    videos: Option<PathBuf>,
    #[arg(long, default_value = "path")]
    path_column: String,
    #[arg(long, default_value = "caption")]
    caption_column: String,
    /// Cache folder.
    #[arg(long)]
    out: PathBuf,
    /// Frames per clip.
    #[arg(long, default_value_t = 16)]
    frames: usize,
    /// Frames between the clip's frames.
    #[arg(long, default_value_t = 4)]
    stride: usize,
    /// Side of the square frames: short side resized to it, centre crop.
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Videos too short for the clip at the full stride: reduce-stride (the largest stride
    /// that fits, down to 1) or skip.
    #[arg(long, default_value = "reduce-stride")]
    short_videos: ShortVideos,
    /// Start every clip at the first frame (default: a random start per video, from --seed).
    #[arg(long)]
    first_frame: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Clips per shard file.
    #[arg(long, default_value_t = 64)]
    shard_clips: usize,
    /// Decoding threads (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// auto, cpu, wgpu, vulkan or cuda[:N] (for the encoders).
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl CacheArgs {
    fn source(&self) -> DatasetSource {
        let beside =
            |csv: &PathBuf| self.videos.clone().unwrap_or_else(|| csv.parent().map(PathBuf::from).unwrap_or_default());
        match (&self.openvid, &self.csv, &self.folder) {
            (Some(csv), ..) => DatasetSource::OpenVid { csv: csv.clone(), videos: beside(csv) },
            (_, Some(csv), _) => DatasetSource::Csv {
                csv: csv.clone(),
                videos: beside(csv),
                path_column: self.path_column.clone(),
                caption_column: self.caption_column.clone(),
            },
            (.., Some(dir)) => DatasetSource::Folder { dir: dir.clone() },
            _ => unreachable!("clap requires one source"),
        }
    }

    fn settings(&self) -> CacheSettings {
        CacheSettings {
            clip: ClipSampling { frames: self.frames, stride: self.stride, short_videos: self.short_videos },
            size: self.size,
            random_start: !self.first_frame,
            seed: self.seed,
            shard_clips: self.shard_clips,
        }
    }
}

pub fn run(args: CacheArgs) -> anyhow::Result<()> {
    interrupt::install();
    let settings = args.settings();
    let device = parse_device(&args.device)?;
    let dataset = args.source().load()?;
    eprintln!("{} videos listed, {} rows skipped", dataset.entries.len(), dataset.skipped.len());
    for skipped in dataset.skipped.iter().take(5) {
        eprintln!("  skipped {}", skipped.0);
    }
    let encoders = CacheEncoders::load(&args.pipeline, &LoadOptions::default(), &device)?;
    let workers = args.workers.unwrap_or_else(|| default_threads("cpu"));
    let before = CacheIndex::read(&args.out)?.map_or((0, 0), |index| (index.clips(), index.skipped.len()));
    let started = Instant::now();
    let keep_going = || !interrupt::requested();
    let index = build_cache(&dataset, &encoders, &settings, &args.out, workers, &device, &keep_going)?;
    let seconds = started.elapsed().as_secs_f64();
    for skipped in &index.skipped[before.1..] {
        eprintln!("skipped {skipped}");
    }
    if !index.complete {
        bail!(
            "interrupted after {} clips in {} shards; run the same command again to continue",
            index.clips(),
            index.shards.len()
        );
    }
    if index.clips() == 0 {
        bail!(
            "no video could be decoded ({} skipped; see {})",
            index.skipped.len(),
            args.out.join("index.json").display()
        );
    }
    let new = index.clips() - before.0;
    eprintln!(
        "cached {} clips in {} shards under {} ({} videos skipped); this run: {new} clips in {seconds:.1} s ({:.2} clips/s)",
        index.clips(),
        index.shards.len(),
        args.out.display(),
        index.skipped.len(),
        new as f64 / seconds.max(1e-9)
    );
    Ok(())
}
