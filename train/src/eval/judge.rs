//! The toy judge: a small 3D-convolution video classifier trained on ground-truth clips to
//! predict every attribute of the caption (shape, colour, direction). Its penultimate features
//! define the toy world's Fréchet distance (our FVD stand-in) and its accuracy on the prompted
//! attributes is our CLIPScore stand-in.
//!
//! Saved as `model.safetensors` + `config.json` in a folder (`assets/toy/judge/`).

use std::fs;
use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig3d};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::{log_softmax, relu};
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::lr_schedule::warmup_cosine;
use crate::monitor::progress::Progress;
use crate::toy::world::{ATTRIBUTE_CLASSES, Attributes, ClipSpec, Split, ToyWorld};

/// Width of the judge's feature vector.
pub const FEATURES: usize = 64;

#[derive(Module, Debug)]
pub struct Judge {
    /// `(B, 3, F, 32, 32)` -> `(B, 16, F, 32, 32)`: full resolution, where shapes differ.
    pub conv1: Conv3d,
    /// -> `(B, 32, F, 16, 16)`.
    pub conv2: Conv3d,
    /// -> `(B, 64, F/2, 8, 8)`.
    pub conv3: Conv3d,
    /// -> `(B, 64, F/4, 4, 4)`.
    pub conv4: Conv3d,
    /// A GroupNorm (8 groups) after each convolution.
    pub norms: Vec<GroupNorm>,
    /// Mean- and max-pooled `(B, 128)` -> features `(B, 64)`.
    pub features: Linear,
    /// Features -> logits of all attributes, concatenated (`3 + 4 + 4`).
    pub heads: Linear,
}

/// The judge's outputs for a batch of clips.
pub struct Judgement {
    /// `(B, FEATURES)`, the Fréchet-distance features.
    pub features: Tensor<2>,
    /// Per attribute: `(B, classes)` logits.
    pub logits: Vec<Tensor<2>>,
}

fn conv(channels: [usize; 2], stride: [usize; 3], device: &Device) -> Conv3d {
    Conv3dConfig::new(channels, [3, 3, 3])
        .with_stride(stride)
        .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
        .init(device)
}

impl Judge {
    pub fn new(device: &Device) -> Self {
        Self {
            conv1: conv([3, 16], [1, 1, 1], device),
            conv2: conv([16, 32], [1, 2, 2], device),
            conv3: conv([32, FEATURES], [2, 2, 2], device),
            conv4: conv([FEATURES, FEATURES], [2, 2, 2], device),
            norms: [16, 32, FEATURES, FEATURES].map(|c| GroupNormConfig::new(8, c).init(device)).to_vec(),
            features: LinearConfig::new(2 * FEATURES, FEATURES).init(device),
            heads: LinearConfig::new(FEATURES, ATTRIBUTE_CLASSES.iter().sum()).init(device),
        }
    }

    /// Clips `(B, 3, F, H, W)` in `[-1, 1]`, of any float dtype (the judge runs in its own).
    pub fn forward(&self, clips: Tensor<5>) -> Judgement {
        let clips = clips.cast(self.conv1.weight.val().dtype());
        let convs = [&self.conv1, &self.conv2, &self.conv3, &self.conv4];
        let x = convs.iter().zip(&self.norms).fold(clips, |x, (conv, norm)| relu(norm.forward(conv.forward(x))));
        let [b, c, _, _, _] = x.dims();
        let x = x.reshape([b as i32, c as i32, -1]);
        let pooled = Tensor::cat(vec![x.clone().mean_dim(2), x.max_dim(2)], 1).reshape([b, 2 * c]);
        let features = relu(self.features.forward(pooled));
        let all = self.heads.forward(features.clone());
        let mut logits = Vec::new();
        let mut start = 0;
        for classes in ATTRIBUTE_CLASSES {
            logits.push(all.clone().slice([0..b, start..start + classes]));
            start += classes;
        }
        Judgement { features, logits }
    }

    /// Predicted class of each attribute, per clip.
    pub fn predict(&self, clips: Tensor<5>) -> (Vec<Vec<f32>>, Vec<[usize; 3]>) {
        let judgement = self.forward(clips);
        let b = judgement.features.dims()[0];
        let features: Vec<f32> =
            judgement.features.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 features");
        let rows = features.chunks(FEATURES).map(<[f32]>::to_vec).collect();
        let mut predictions = vec![[0usize; 3]; b];
        for (a, logits) in judgement.logits.into_iter().enumerate() {
            let classes: Vec<i64> =
                logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().expect("int classes");
            for (i, c) in classes.into_iter().enumerate() {
                predictions[i][a] = c as usize;
            }
        }
        (rows, predictions)
    }

    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        let path = dir.join("model.safetensors");
        if path.exists() {
            fs::remove_file(&path).map_err(TrainError::io(&path))?;
        }
        let mut store = SafetensorsStore::from_file(&path);
        self.save_into(&mut store)
            .map_err(|e| TrainError::Checkpoint { path: path.clone(), message: e.to_string() })?;
        let config =
            serde_json::json!({"architecture": "avdm toy judge", "features": FEATURES, "classes": ATTRIBUTE_CLASSES});
        let config_path = dir.join("config.json");
        fs::write(&config_path, serde_json::to_string_pretty(&config).expect("JSON") + "\n")
            .map_err(TrainError::io(config_path))
    }

    pub fn load(dir: &Path, device: &Device) -> Result<Self, TrainError> {
        let path = dir.join("model.safetensors");
        if !path.is_file() {
            return Err(TrainError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no judge weights (train one with `avdm train-judge`)",
                ),
            });
        }
        let mut judge = Judge::new(device);
        let mut store = SafetensorsStore::from_file(&path);
        let result = judge
            .load_from(&mut store)
            .map_err(|e| TrainError::Checkpoint { path: path.clone(), message: e.to_string() })?;
        if !result.missing.is_empty() || !result.errors.is_empty() {
            return Err(TrainError::Checkpoint { path, message: format!("not a toy judge: {result}") });
        }
        Ok(judge)
    }
}

/// Sum over attributes of the cross-entropy of the judge's logits against `targets`.
pub fn judge_loss(judgement: &Judgement, targets: &[Attributes], device: &Device) -> Tensor<1> {
    let b = targets.len();
    let mut total = Tensor::<1>::zeros([1], device);
    for (a, logits) in judgement.logits.iter().enumerate() {
        let labels: Vec<i64> = targets.iter().map(|t| t.as_array()[a] as i64).collect();
        let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [b, 1]), device);
        let picked = log_softmax(logits.clone(), 1).gather(1, labels);
        total = total - picked.mean().reshape([1]);
    }
    total
}

/// Settings of judge training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeTraining {
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// Clips are seen with Gaussian noise of a random deviation up to this, so that the judge
    /// reads imperfect samples too.
    pub max_noise: f32,
    /// Seed of its clip stream (all combinations, distinct from the eval stream's seed).
    pub seed: u64,
    pub world: ToyWorld,
}

impl JudgeTraining {
    pub fn toy() -> Self {
        Self {
            steps: 1500,
            batch: 32,
            learning_rate: 1e-3,
            max_noise: 0.2,
            seed: 1_000_003,
            world: ToyWorld::default(),
        }
    }
}

impl JudgeTraining {
    /// Cosine decay from `learning_rate` to zero over the run.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        warmup_cosine(self.learning_rate, 0, self.steps, step)
    }
}

/// Trains a judge from scratch on ground-truth clips of every combination.
pub fn train_judge(settings: &JudgeTraining, device: &Device) -> Result<(Judge, f64), TrainError> {
    let mut judge = Judge::new(device);
    let mut optim = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.01).init();
    let progress = Progress::new("judge", 0, settings.steps, 50);
    let mut last = f64::NAN;
    for step in 0..settings.steps {
        let index = (step * settings.batch) as u64;
        let (clips, specs) = settings.world.batch(settings.seed, Split::Eval, index, settings.batch, device);
        let deviation = ((step * 7919) % 1000) as f32 / 1000.0 * settings.max_noise;
        let mut noise = avdm_model::noise::NoiseSource { seed: settings.seed, draws: step as u64 };
        let clips = clips.clone() + noise.normal(clips.dims(), device) * deviation;
        let targets: Vec<Attributes> = specs.iter().map(|s: &ClipSpec| s.attributes).collect();
        let loss = judge_loss(&judge.forward(clips), &targets, device);
        last = loss.clone().into_scalar::<f32>() as f64;
        if !last.is_finite() {
            return Err(TrainError::NonFinite { step, what: "judge loss", value: last });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &judge);
        judge = optim.step(settings.learning_rate_at(step), judge, grads);
        progress.update(step + 1, &[("loss", last)]);
    }
    progress.finish();
    Ok((judge, last))
}
