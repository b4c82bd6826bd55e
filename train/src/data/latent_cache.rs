//! The latent cache: every usable video of a dataset decoded once, encoded by the VAE (latent
//! mean, scaled as the UNet sees it) and its caption by the text encoder, written as sharded
//! safetensors with an `index.json`.
//!
//! A shard holds `latents (N, L, F, h, w)` and `text (N, T, D)` (f32); the index lists the
//! shards with each clip's video and caption, the videos skipped with their reason, and where
//! in the dataset the next shard starts. Shards and the index are written whole or not at all
//! (temporary file, then rename), the index after its shard, so an interrupted cache resumes
//! at the first shard the index does not list and ends identical to an uninterrupted one.

use std::path::{Path, PathBuf};

use avdm_import::{ClipTokenizer, LoadOptions, load_clip_text, load_vae};
use avdm_model::clip::ClipTextTransformer;
use avdm_model::vae::AutoencoderKL;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::clip_frames::{ClipSampling, ClipStart};
use super::dataset::VideoDataset;
use super::decode::{Clip, read_clip};
use super::parallel_decode::decode_in_order;
use crate::checkpoint::{sibling, write_file_atomically};
use crate::error::TrainError;
use crate::monitor::progress::Progress;
use crate::teacher::caption_ids;

pub const INDEX: &str = "index.json";

/// What a cache is encoded with: a pipeline folder's VAE (`None`: a pixel-space pipeline such
/// as the toy world's, whose cache holds the pixels) and text encoder. The UNet is not needed.
pub struct CacheEncoders {
    pub vae: Option<AutoencoderKL>,
    pub text_encoder: ClipTextTransformer,
    pub tokenizer: ClipTokenizer,
}

impl CacheEncoders {
    /// `vae/` (when the folder has one), `text_encoder/` and `tokenizer/` of a diffusers
    /// pipeline folder.
    pub fn load(pipeline: &Path, options: &LoadOptions, device: &Device) -> Result<Self, TrainError> {
        let vae_dir = pipeline.join("vae");
        let vae = if vae_dir.is_dir() { Some(load_vae(&vae_dir, options, device)?.model) } else { None };
        let text_encoder = load_clip_text(&pipeline.join("text_encoder"), options, device)?.model;
        let tokenizer = ClipTokenizer::from_folder(&pipeline.join("tokenizer"))?;
        Ok(Self { vae, text_encoder, tokenizer })
    }
}

/// How clips are cut and grouped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    pub clip: ClipSampling,
    /// Side of the square frames (the paper: 512).
    pub size: usize,
    /// A random start per video (a pure function of the seed and the video's row) or the first
    /// frame.
    pub random_start: bool,
    pub seed: u64,
    /// Clips per shard.
    pub shard_clips: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { clip: ClipSampling::default(), size: 512, random_start: true, seed: 0, shard_clips: 64 }
    }
}

/// One shard file and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub videos: Vec<PathBuf>,
    pub captions: Vec<String>,
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheIndex {
    pub settings: CacheSettings,
    pub shards: Vec<ShardInfo>,
    /// `"path: reason"` of every video left out.
    pub skipped: Vec<String>,
    /// Videos the dataset listed when the cache began (a resumed cache must see the same).
    pub listed: usize,
    /// The dataset entry the next shard starts at (the dataset's length when complete).
    pub next_entry: usize,
    pub complete: bool,
}

impl CacheIndex {
    pub fn read(dir: &Path) -> Result<Option<Self>, TrainError> {
        let path = dir.join(INDEX);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| TrainError::Dataset { path, message: format!("not a cache index: {e}") })
    }

    pub fn clips(&self) -> usize {
        self.shards.iter().map(|s| s.videos.len()).sum()
    }
}

/// Builds (or, when `out` holds an unfinished cache of the same settings, continues) the cache
/// of `dataset` under `out`, decoding on `workers` threads. `keep_going` is asked after every
/// shard. Returns the index as written.
#[allow(clippy::too_many_arguments)]
pub fn build_cache(
    dataset: &VideoDataset,
    encoders: &CacheEncoders,
    settings: &CacheSettings,
    out: &Path,
    workers: usize,
    device: &Device,
    keep_going: &dyn Fn() -> bool,
) -> Result<CacheIndex, TrainError> {
    if settings.shard_clips == 0 || settings.size == 0 || settings.clip.frames == 0 || settings.clip.stride == 0 {
        return Err(TrainError::setting("cache", "shard_clips, size, frames and stride must be positive"));
    }
    std::fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let mut index = match CacheIndex::read(out)? {
        Some(index) if index.settings != *settings => {
            return Err(TrainError::Dataset {
                path: out.join(INDEX),
                message: "was written with other settings (frames, stride, size, start, seed or shard size); use them again or another folder".into(),
            });
        }
        Some(index) if index.listed != dataset.entries.len() => {
            return Err(TrainError::Dataset {
                path: out.join(INDEX),
                message: format!(
                    "was begun on a dataset of {} videos, this one lists {}; use the same dataset or another folder",
                    index.listed,
                    dataset.entries.len()
                ),
            });
        }
        Some(index) => index,
        None => CacheIndex {
            settings: settings.clone(),
            shards: vec![],
            skipped: vec![],
            listed: dataset.entries.len(),
            next_entry: 0,
            complete: false,
        },
    };
    let entries = &dataset.entries;
    let progress = Progress::new("cache", index.next_entry, entries.len(), 10);
    let mut shard = Shard::default();
    let first = index.next_entry;
    let decode = |i: usize| {
        let entry = &entries[first + i];
        let start = if settings.random_start {
            ClipStart::Random(start_draw(settings.seed, (first + i) as u64))
        } else {
            ClipStart::First
        };
        read_clip(&entry.path, &settings.clip, start, settings.size)
    };
    decode_in_order(entries.len() - first, workers, 2 * workers.max(1), decode, |i, clip| {
        let entry = &entries[first + i];
        match clip {
            Ok(clip) => shard.push(encoders.encode(&clip, &entry.caption, device)?, entry),
            Err(reason) => shard.skipped.push(format!("{}: {reason}", entry.path.display())),
        }
        progress.update(first + i + 1, &[("clips", (index.clips() + shard.videos.len()) as f64)]);
        let last = first + i + 1 == entries.len();
        if shard.videos.len() == settings.shard_clips || last {
            shard.commit(out, &mut index, first + i + 1, last)?;
            return Ok(keep_going());
        }
        Ok::<_, TrainError>(true)
    })?;
    progress.finish();
    Ok(index)
}

/// The clips of the shard being filled.
#[derive(Default)]
struct Shard {
    latents: Vec<Tensor<4>>,
    text: Vec<Tensor<2>>,
    videos: Vec<PathBuf>,
    captions: Vec<String>,
    skipped: Vec<String>,
}

impl Shard {
    fn push(&mut self, (latents, text): (Tensor<4>, Tensor<2>), entry: &super::dataset::VideoEntry) {
        self.latents.push(latents);
        self.text.push(text);
        self.videos.push(entry.path.clone());
        self.captions.push(entry.caption.clone());
    }

    /// Writes the shard (if it has clips), then the index that lists it; empties the shard.
    fn commit(
        &mut self,
        out: &Path,
        index: &mut CacheIndex,
        next_entry: usize,
        complete: bool,
    ) -> Result<(), TrainError> {
        let shard = std::mem::take(self);
        if !shard.videos.is_empty() {
            let file = format!("shard-{:06}.safetensors", index.shards.len());
            let latents = f32_bytes(Tensor::stack::<5>(shard.latents, 0));
            let text = f32_bytes(Tensor::stack::<3>(shard.text, 0));
            write_tensors(&out.join(&file), &[("latents", latents), ("text", text)])?;
            index.shards.push(ShardInfo { file, videos: shard.videos, captions: shard.captions });
        }
        index.skipped.extend(shard.skipped);
        index.next_entry = next_entry;
        index.complete = complete;
        let text = serde_json::to_string_pretty(index).expect("the index serialises") + "\n";
        write_file_atomically(&out.join(INDEX), text)
    }
}

impl CacheEncoders {
    /// One clip's scaled latents `(L, F, h, w)` (the pixels for a pixel-space pipeline) and its
    /// caption's embedding `(T, D)` (the last hidden state, as the UNet is conditioned).
    fn encode(&self, clip: &Clip, caption: &str, device: &Device) -> Result<(Tensor<4>, Tensor<2>), TrainError> {
        let latents = clip_latents(self.vae.as_ref(), clip, device);
        let ids = caption_ids(&self.tokenizer, &[caption.to_owned()], device)?;
        let text = self.text_encoder.embed(ids, 0)?;
        let [_, t, d] = text.dims();
        Ok((latents, text.reshape([t, d])))
    }
}

/// A clip's scaled VAE latent mean `(L, F, h, w)`, as the UNet sees clean data; the pixels
/// `(3, F, S, S)` themselves for a pixel-space pipeline (`vae` `None`).
pub fn clip_latents(vae: Option<&AutoencoderKL>, clip: &Clip, device: &Device) -> Tensor<4> {
    let (f, s) = (clip.frames, clip.size);
    let pixels = Tensor::<1>::from_floats(clip.data.as_slice(), device).reshape([3, f, s, s]);
    match vae {
        Some(vae) => {
            // In the VAE's dtype (f32 even when the device defaults to bf16).
            let frames = pixels.permute([1, 0, 2, 3]).cast(vae.encoder.conv_in.weight.val().dtype());
            let z = (vae.encode(frames).mean - vae.shift_factor) * vae.scaling_factor;
            z.permute([1, 0, 2, 3])
        }
        None => pixels,
    }
}

/// A tensor's shape and little-endian f32 bytes, for [`write_tensors`].
fn f32_bytes<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<u8>) {
    let shape = t.dims().to_vec();
    let values = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 data");
    (shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// A tensor to write: its name, shape and little-endian bytes.
type NamedTensor<'a> = (&'a str, (Vec<usize>, Vec<u8>));

/// Writes named f32 tensors `(name, shape, bytes)` as one safetensors file, through a
/// temporary sibling.
fn write_tensors(path: &Path, tensors: &[NamedTensor<'_>]) -> Result<(), TrainError> {
    let error = |message: String| TrainError::Dataset { path: path.into(), message };
    let views = tensors
        .iter()
        .map(|(name, (shape, bytes))| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map_err(|e| error(e.to_string()))?;
            Ok((name.to_string(), view))
        })
        .collect::<Result<Vec<_>, TrainError>>()?;
    let tmp = sibling(path, ".partial");
    safetensors::serialize_to_file(views, None, &tmp).map_err(|e| error(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(TrainError::io(path))
}

/// The draw of a video's clip start: a pure function of the seed and the video's row, seeded
/// the way the rest of the project seeds its streams.
fn start_draw(seed: u64, row: u64) -> u64 {
    StdRng::seed_from_u64(seed ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15)).random()
}
