//! Where a distillation's data comes from (`[data]` of the config): the toy world (the
//! default), a latent cache made by `avdm cache`, or a video dataset decoded and encoded with the
//! teacher's VAE at every step. Each iteration takes the prompts of the generator's clips and
//! the captioned real clips of the discriminator updates; its draws are a pure function of the
//! seed and the step, so a resumed run reads the same data.

use std::ops::Range;
use std::path::PathBuf;

use avdm_model::UNetConfig;
use avdm_model::vae::AutoencoderKL;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::cache_reader::CacheReader;
use crate::data::clip_frames::{ClipSampling, ClipStart};
use crate::data::dataset::{DatasetSource, VideoDataset};
use crate::data::decode::{Clip, read_clip};
use crate::data::latent_cache::clip_latents;
use crate::data::parallel_decode::decode_in_order;
use crate::distill::config::DistillConfig;
use crate::distill::learner::{IterationData, RealBatch};
use crate::error::TrainError;
use crate::toy::world::{Split, ToyWorld};

/// The data of a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DataConfig {
    /// The toy world's training split (for the toy teacher).
    #[default]
    Toy,
    /// A finished latent cache folder (`avdm cache`, with the teacher's VAE and text encoder).
    Cache { dir: PathBuf },
    /// A video dataset, decoded at every step: clips cut as `clip` says (a random start each
    /// time), frames resized and centre-cropped to `size`, encoded by the teacher's VAE.
    Videos {
        dataset: DatasetSource,
        #[serde(default)]
        clip: ClipSampling,
        #[serde(default = "paper_size")]
        size: usize,
    },
}

fn paper_size() -> usize {
    512
}

/// What the teacher takes, to check the data against before the first step.
pub struct TeacherInput<'a> {
    pub unet: &'a UNetConfig,
    /// The VAE of a latent pipeline (`None`: pixel space).
    pub vae: Option<&'a AutoencoderKL>,
    /// Pixels per latent pixel (1 in pixel space).
    pub vae_scale: usize,
}

/// An opened data source (one per run: the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub enum DistillData {
    Toy(ToyWorld),
    Cache(CacheReader),
    Videos { dataset: VideoDataset, clip: ClipSampling, size: usize, vae: Option<AutoencoderKL> },
}

/// One iteration's data and the videos that could not be decoded for it (`path: reason`).
pub struct StepData {
    pub data: IterationData,
    pub skipped: Vec<String>,
}

/// Videos tried, one after another, for one draw before the step fails.
const TRIES: usize = 16;

impl DistillData {
    /// The source in words, for a run's plan.
    pub fn describe(&self) -> String {
        match self {
            Self::Toy(world) => {
                format!("the toy world ({} frames of {}x{} pixels)", world.frames, world.size, world.size)
            }
            Self::Cache(cache) => {
                let [c, f, h, w] = cache.clip_dims;
                format!("the latent cache {}: {} clips of {c}x{f}x{h}x{w}", cache.dir().display(), cache.len())
            }
            Self::Videos { dataset, clip, size, .. } => format!(
                "{} videos ({} rows skipped), {} frames at stride {}, {size}x{size} pixels, encoded at every step",
                dataset.entries.len(),
                dataset.skipped.len(),
                clip.frames,
                clip.stride
            ),
        }
    }

    /// Opens `config`'s data and checks its clips fit `teacher`.
    pub fn open(config: &DataConfig, teacher: &TeacherInput) -> Result<Self, TrainError> {
        let unet = teacher.unet;
        let side_step = 1 << unet.block_out_channels.len().saturating_sub(1);
        let fits = |[channels, frames, h, w]: [usize; 4], what: String| -> Result<(), TrainError> {
            let problem = if channels != unet.in_channels {
                format!("clips of {channels} channels, the teacher's UNet takes {}", unet.in_channels)
            } else if frames == 0 || frames > unet.max_frames() {
                format!("{frames} frames, the teacher's motion modules take 1 to {}", unet.max_frames())
            } else if h % side_step != 0 || w % side_step != 0 || h == 0 {
                format!("{h}x{w} latents, the teacher's UNet needs multiples of {side_step}")
            } else {
                return Ok(());
            };
            Err(TrainError::setting("data", format!("{what}: {problem}")))
        };
        match config {
            DataConfig::Toy => {
                let world = ToyWorld::default();
                fits(
                    [3, world.frames, world.size, world.size],
                    "the toy world (the default data; set [data] to a cache or videos for another teacher)".into(),
                )?;
                Ok(Self::Toy(world))
            }
            DataConfig::Cache { dir } => {
                let cache = CacheReader::open(dir)?;
                fits(cache.clip_dims, format!("the cache {}", dir.display()))?;
                let dim = cache.text_dims[1];
                if dim != unet.cross_attention_dim {
                    let message = format!(
                        "the cache {}: text embeddings of width {dim}, the teacher's UNet attends to {} (cache with the teacher's text encoder)",
                        dir.display(),
                        unet.cross_attention_dim
                    );
                    return Err(TrainError::setting("data", message));
                }
                Ok(Self::Cache(cache))
            }
            DataConfig::Videos { dataset, clip, size, .. } => {
                let scale = teacher.vae_scale.max(1);
                if size % scale != 0 {
                    let message = format!("size {size} is not a multiple of the VAE's {scale} pixels per latent");
                    return Err(TrainError::setting("data.size", message));
                }
                let channels = match teacher.vae {
                    Some(_) => unet.in_channels,
                    None => 3,
                };
                fits([channels, clip.frames, size / scale, size / scale], "the videos".into())?;
                if clip.stride == 0 {
                    return Err(TrainError::setting("data.clip.stride", "must be positive"));
                }
                let loaded = dataset.load()?;
                Ok(Self::Videos { dataset: loaded, clip: clip.clone(), size: *size, vae: teacher.vae.cloned() })
            }
        }
    }

    /// The data of iteration `step`, rows `rows` of its batch of `config.batch` (a rank's share;
    /// every draw is keyed by the global row, so a row is the same whatever the ranks):
    /// prompts embedded by `embed` (`(R, T, D)` without autodiff) and one real batch per critic
    /// update (clips on `device`).
    pub fn iteration(
        &self,
        config: &DistillConfig,
        step: usize,
        rows: Range<usize>,
        embed: &dyn Fn(&[String]) -> Result<Tensor<3>, TrainError>,
        device: &Device,
    ) -> Result<StepData, TrainError> {
        let (batch, updates) = (config.batch, config.critic_updates.max(1));
        let mut skipped = Vec::new();
        let data = match self {
            Self::Toy(world) => {
                let first = (step * batch * (1 + updates)) as u64;
                let prompts: Vec<String> = (rows.start as u64..rows.end as u64)
                    .map(|i| world.spec(config.seed, Split::Train, first + i).attributes.caption())
                    .collect();
                let real = (0..updates)
                    .map(|k| {
                        let index = first + (batch * (k + 1) + rows.start) as u64;
                        let (clips, specs) = world.batch(config.seed, Split::Train, index, rows.len(), device);
                        let captions: Vec<String> = specs.iter().map(|s| s.attributes.caption()).collect();
                        Ok(RealBatch { clips, text: embed(&captions)? })
                    })
                    .collect::<Result<_, TrainError>>()?;
                IterationData { prompts: embed(&prompts)?, real }
            }
            Self::Cache(cache) => {
                let draws: Vec<Vec<usize>> = draws(config.seed, step, cache.len(), batch, updates)
                    .into_iter()
                    .map(|d| d[rows.clone()].to_vec())
                    .collect();
                let inner = device.clone().without_autodiff();
                let real = draws[1..]
                    .iter()
                    .map(|clips| {
                        let (clips, text) = cache.batch(clips, &inner)?;
                        Ok(RealBatch { clips: clips.to_device(device), text })
                    })
                    .collect::<Result<_, TrainError>>()?;
                IterationData { prompts: cache.batch(&draws[0], &inner)?.1, real }
            }
            Self::Videos { dataset, clip, size, vae } => {
                let entries = &dataset.entries;
                let draws = draws(config.seed, step, entries.len(), batch, updates);
                let caption = |i: &usize| entries[*i].caption.clone();
                let prompts: Vec<String> = draws[0][rows.clone()].iter().map(caption).collect();
                let mut starts = StdRng::seed_from_u64(config.seed ^ (step as u64).wrapping_mul(0xA076_1D64_78BD_642F));
                let wanted: Vec<(usize, u64)> = draws[1..].iter().flatten().map(|&i| (i, starts.random())).collect();
                // This rank's rows of each real batch (the start draws above are over all rows).
                let wanted: Vec<(usize, u64)> =
                    wanted.chunks(batch).flat_map(|update| update[rows.clone()].to_vec()).collect();
                let inner = device.clone().without_autodiff();
                let mut clips = Vec::new();
                let mut captions = Vec::new();
                let decode = |i: usize| decode_first_readable(dataset, clip, *size, wanted[i]);
                decode_in_order(wanted.len(), config.threads, 2 * config.threads, decode, |_, decoded| {
                    let (entry, clip, failures) = decoded?;
                    skipped.extend(failures);
                    clips.push(clip_latents(vae.as_ref(), &clip, &inner));
                    captions.push(entries[entry].caption.clone());
                    Ok::<_, TrainError>(true)
                })?;
                let mut real = Vec::new();
                for (clips, captions) in clips.chunks(rows.len()).zip(captions.chunks(rows.len())) {
                    // The VAE encodes in f32; the networks take the device's dtype.
                    let clips = Tensor::stack::<5>(clips.to_vec(), 0).cast(device.settings().float_dtype);
                    let clips = clips.to_device(device);
                    real.push(RealBatch { clips, text: embed(captions)? });
                }
                IterationData { prompts: embed(&prompts)?, real }
            }
        };
        Ok(StepData { data, skipped })
    }
}

/// Step `step`'s draws of dataset rows (uniform, with replacement): `batch` for the prompts,
/// then `batch` for each of the `updates` real batches.
fn draws(seed: u64, step: usize, len: usize, batch: usize, updates: usize) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xDA7A ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    (0..=updates).map(|_| (0..batch).map(|_| rng.random_range(0..len)).collect()).collect()
}

/// The clip of the wanted row `(row, start draw)`, or of the next readable row after it; the
/// rows that failed on the way as `path: reason`. After [`TRIES`] failures, an error.
fn decode_first_readable(
    dataset: &VideoDataset,
    sampling: &ClipSampling,
    size: usize,
    (row, start): (usize, u64),
) -> Result<(usize, Clip, Vec<String>), TrainError> {
    let entries = &dataset.entries;
    let mut failures = Vec::new();
    for tried in 0..TRIES.min(entries.len()) {
        let entry = (row + tried) % entries.len();
        match read_clip(&entries[entry].path, sampling, ClipStart::Random(start), size) {
            Ok(clip) => return Ok((entry, clip, failures)),
            Err(reason) => failures.push(format!("{}: {reason}", entries[entry].path.display())),
        }
    }
    let message = format!("{} videos in a row could not be decoded: {}", failures.len(), failures.join("; "));
    Err(TrainError::setting("data", message))
}
