//! The paper's measures of a text-to-video model on a prompt set: FVD (Kinetics-400 I3D)
//! against real videos and CLIPScore against the prompts (torchmetrics' convention), of videos
//! sampled by the model or read from a folder. Real videos come from files or a latent cache;
//! real and generated videos pass through the same preparation
//! ([`crate::metrics::fvd::fvd_input`]).

use std::path::{Path, PathBuf};

use avdm_model::i3d::InceptionI3d;
use avdm_model::sched::BetaSchedule;
use avdm_model::vae::AutoencoderKL;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::cache_reader::CacheReader;
use crate::data::clip_frames::{ClipSampling, ClipStart, ShortVideos};
use crate::data::decode::{probe, read_probed_clip};
use crate::error::TrainError;
use crate::metrics::clip_score::ClipScorer;
use crate::metrics::fvd::{FVD_FRAMES, Fvd, i3d_features};
use crate::metrics::pil_resize::Rgb8;
use crate::metrics::prompt_diversity;

/// The networks that measure: either may be absent (that measure is not taken).
pub struct StandardMeasures {
    pub i3d: Option<InceptionI3d>,
    pub clip: Option<ClipScorer>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardRow {
    pub name: String,
    pub steps: Option<usize>,
    pub guidance: Option<f32>,
    pub nfe: Option<usize>,
    /// The betas the model was sampled on (none for a folder of videos).
    #[serde(default)]
    pub beta_schedule: Option<BetaSchedule>,
    pub videos: usize,
    pub fvd: Option<Fvd>,
    /// Mean over videos of the mean over frames of `max(100 cos, 0)`.
    pub clipscore: Option<f64>,
    /// Mean pairwise distance of the I3D features among the videos of each repeated prompt
    /// ([`prompt_diversity`]; with FVD, where a prompt has two videos or more).
    #[serde(default)]
    pub diversity: Option<f64>,
    pub seconds_per_video: Option<f64>,
}

/// The frames of a video `(1, 3, F, H, W)` in `[-1, 1]` as 8-bit RGB images (what a saved
/// video holds).
pub fn video_frames(video: &Tensor<5>) -> Vec<Rgb8> {
    let [_, _, f, h, w] = video.dims();
    let bytes: Vec<u8> = ((video.clone() + 1.0) * 127.5)
        .round()
        .clamp(0.0, 255.0)
        .permute([0, 2, 3, 4, 1])
        .into_data()
        .convert::<f32>()
        .iter::<f32>()
        .map(|v| v as u8)
        .collect();
    bytes.chunks(h * w * 3).take(f).map(|frame| Rgb8 { height: h, width: w, data: frame.to_vec() }).collect()
}

/// A video file's first 16 frames (`stride` apart, reduced for short videos) as `(1, 3, 16, S,
/// S)` in `[-1, 1]`, the centre square of its short side `S` (resizing is FVD's own).
pub fn read_fvd_video(path: &Path, stride: usize, device: &Device) -> Result<Tensor<5>, String> {
    let info = probe(path)?;
    let side = info.width.min(info.height);
    let sampling = ClipSampling { frames: FVD_FRAMES, stride, short_videos: ShortVideos::ReduceStride };
    let clip = read_probed_clip(path, &info, &sampling, ClipStart::First, side)?;
    let data = TensorData::new(clip.data, [1, 3, clip.frames, clip.size, clip.size]);
    Ok(Tensor::from_data(data, device))
}

/// I3D features of real videos; the ones that cannot be decoded are left out and returned as
/// `path: reason`.
pub fn real_features(
    i3d: &InceptionI3d,
    videos: &[PathBuf],
    stride: usize,
    device: &Device,
) -> Result<(Vec<Vec<f32>>, Vec<String>), TrainError> {
    let (mut features, mut skipped) = (Vec::new(), Vec::new());
    for path in videos {
        match read_fvd_video(path, stride, device) {
            Ok(video) => features.extend(i3d_features(i3d, video)?),
            Err(reason) => skipped.push(format!("{}: {reason}", path.display())),
        }
    }
    Ok((features, skipped))
}

/// I3D features of the clips of a latent cache ([`CacheReader`]): a pixel cache's clips as they
/// are, a latent cache's decoded by `vae` (its scaling undone) first.
pub fn cache_features(
    i3d: &InceptionI3d,
    cache: &CacheReader,
    vae: Option<&AutoencoderKL>,
    device: &Device,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let [channels, ..] = cache.clip_dims;
    if channels != 3 && vae.is_none() {
        let message = format!("{} holds {channels}-channel latents: a VAE must decode them", cache.dir().display());
        return Err(TrainError::setting("real videos", message));
    }
    let mut features = Vec::new();
    for clip in 0..cache.len() {
        let (latents, _) = cache.batch(&[clip], device)?;
        let video = match vae.filter(|_| channels != 3) {
            Some(vae) => {
                let [_, c, f, h, w] = latents.dims();
                let latents = latents.cast(vae.decoder.conv_in.weight.val().dtype());
                let z = latents.permute([0, 2, 1, 3, 4]).reshape([f, c, h, w]) / vae.scaling_factor + vae.shift_factor;
                let frames = vae.decode_chunked(z, 4).clamp(-1.0, 1.0);
                let [_, rgb, height, width] = frames.dims();
                frames.reshape([1, f, rgb, height, width]).permute([0, 2, 1, 3, 4])
            }
            None => latents,
        };
        features.extend(i3d_features(i3d, video)?);
    }
    Ok(features)
}

/// Measures generated videos one by one against their prompts.
pub struct StandardAccumulator<'a> {
    measures: &'a StandardMeasures,
    /// Unit prompt embeddings `(P, E)`, when CLIPScore is measured.
    prompts: Option<Tensor<2>>,
    features: Vec<Vec<f32>>,
    scores: Vec<f64>,
    /// The prompt texts, and the text of each added video (its diversity group).
    texts: Vec<String>,
    added: Vec<String>,
    device: Device,
}

impl<'a> StandardAccumulator<'a> {
    pub fn new(measures: &'a StandardMeasures, texts: &[String], device: &Device) -> Result<Self, TrainError> {
        let prompts = measures.clip.as_ref().map(|clip| clip.prompt_embeddings(texts, device)).transpose()?;
        Ok(Self {
            measures,
            prompts,
            features: Vec::new(),
            scores: Vec::new(),
            texts: texts.to_vec(),
            added: Vec::new(),
            device: device.clone(),
        })
    }

    /// Adds the video `(1, 3, F, H, W)` in `[-1, 1]` made for prompt `prompt`.
    pub fn add(&mut self, prompt: usize, video: Tensor<5>) -> Result<(), TrainError> {
        if let (Some(clip), Some(prompts)) = (&self.measures.clip, &self.prompts) {
            let embedding = prompts.clone().narrow(0, prompt, 1);
            self.scores.push(clip.video_score(&video_frames(&video), embedding, &self.device)?);
        }
        if let Some(i3d) = &self.measures.i3d {
            self.features.extend(i3d_features(i3d, video)?);
            self.added.push(self.texts.get(prompt).cloned().unwrap_or_default());
        }
        Ok(())
    }

    /// The row's measures against `real` I3D features (when FVD is measured).
    pub fn finish(self, name: &str, real: Option<&[Vec<f32>]>) -> Result<StandardRow, TrainError> {
        let videos = self.features.len().max(self.scores.len());
        let fvd = match real {
            Some(real) if self.measures.i3d.is_some() => Some(Fvd::between(real, &self.features)?),
            _ => None,
        };
        let clipscore = (!self.scores.is_empty()).then(|| self.scores.iter().sum::<f64>() / self.scores.len() as f64);
        Ok(StandardRow {
            name: name.into(),
            steps: None,
            guidance: None,
            nfe: None,
            beta_schedule: None,
            videos,
            fvd,
            clipscore,
            diversity: prompt_diversity(&self.features, &self.added),
            seconds_per_video: None,
        })
    }
}

/// The rows as a Markdown table.
pub fn standard_table(rows: &[StandardRow]) -> String {
    let mut out = String::from(
        "| model | steps | CFG | NFE | videos | FVD (real / generated videos) | CLIPScore | diversity | s/video |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            or_dash(r.steps.map(|s| s.to_string())),
            or_dash(r.guidance.map(|g| g.to_string())),
            or_dash(r.nfe.map(|n| n.to_string())),
            r.videos,
            or_dash(r.fvd.map(|f| f.to_string())),
            or_dash(r.clipscore.map(|c| format!("{c:.2}"))),
            or_dash(r.diversity.map(|d| format!("{d:.3}"))),
            or_dash(r.seconds_per_video.map(|s| format!("{s:.2}"))),
        );
    }
    out
}
