//! Every setting of an AVDM2 distillation run, with the paper's numbers as defaults
//! (`../shared/docs/method.md`), read from TOML (`avdm distill --config FILE.toml`).

use std::path::{Path, PathBuf};

use avdm_model::sched::{StudentConfig, VideoSchedule};
use serde::{Deserialize, Serialize};

use crate::method::adm::AdmTimesteps;
use avdm_model::precision::Precision;

use crate::distill::data::DataConfig;
use crate::error::TrainError;
use crate::method::discriminator::HeadConfig;
use crate::method::fake_score::FakeScoreConfig;

/// Which losses train the student: the method and the paper's ablations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Losses {
    /// ADM + 2D SDM: the method.
    #[default]
    AdmSdm2d,
    /// The video GAN alone.
    AdmOnly,
    /// ADM + SDM with the video teacher and a video fake score over all frames.
    AdmSdmVideo,
    /// 2D SDM alone (no discriminator).
    SdmOnly,
}

impl std::str::FromStr for Losses {
    type Err = String;

    /// The config file's names: `adm-sdm2d`, `adm-only`, `adm-sdm-video`, `sdm-only`.
    fn from_str(name: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(name.into()))
            .map_err(|_| format!("{name}: not one of adm-sdm2d, adm-only, adm-sdm-video, sdm-only"))
    }
}

impl Losses {
    pub fn uses_adm(self) -> bool {
        !matches!(self, Losses::SdmOnly)
    }

    pub fn uses_sdm(self) -> bool {
        !matches!(self, Losses::AdmOnly)
    }
}

/// Loss selection and weights: `lambda_sdm * L_SDM + lambda_adm * L_ADM`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    pub losses: Losses,
    pub lambda_sdm: f32,
    pub lambda_adm: f32,
}

impl Default for LossConfig {
    /// `lambda_adm` in DMD2's range; tuned on the toy benchmark.
    fn default() -> Self {
        Self { losses: Losses::default(), lambda_sdm: 1.0, lambda_adm: 0.05 }
    }
}

/// Frame-level SDM settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SdmConfig {
    /// Random frames per clip (`K`).
    pub frames: usize,
    /// Timestep range of the noised frames, inclusive (the paper: `[0.2T, 0.98T]`).
    pub t_min: usize,
    pub t_max: usize,
    /// Classifier-free guidance of the real score (1: none); standard form
    /// `uncond + w (cond - uncond)`.
    pub guidance: f32,
}

impl Default for SdmConfig {
    /// The paper's `K` (4 of 16 frames, our choice: it gives no number) and `[0.2T, 0.98T]`; the
    /// real-score guidance of DMD2's SD1.5 recipe (1.75; the paper gives none).
    fn default() -> Self {
        Self { frames: 4, t_min: 200, t_max: 980, guidance: 1.75 }
    }
}

/// AdamW settings and learning rates (the paper's), linear warm-up, global-norm clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Generator: motion modules.
    pub lr_motion: f64,
    /// Generator: the 2D backbone (everything but the motion modules).
    pub lr_backbone: f64,
    /// Discriminator head.
    pub lr_head: f64,
    /// 2D fake score.
    pub lr_fake: f64,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    pub warmup: usize,
    pub max_grad_norm: f32,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr_motion: 2e-5,
            lr_backbone: 4e-6,
            lr_head: 2e-5,
            lr_fake: 2e-5,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            warmup: 500,
            max_grad_norm: 1.0,
        }
    }
}

/// Where the models come from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPaths {
    /// The video teacher: an AnimateDiff pipeline folder (diffusers layout); `None`: the
    /// shipped toy teacher.
    pub teacher: Option<PathBuf>,
    /// A motion adapter folder or original `.ckpt` for a pipeline folder without one.
    pub motion_adapter: Option<PathBuf>,
    /// A 2D teacher pipeline folder; `None`: the video teacher's own 2D UNet.
    pub teacher_2d: Option<PathBuf>,
}

/// The toy eval of a run: `avdm eval`'s measures with the shipped toy judge, so only on the
/// toy teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Clips per row (one per eval prompt; 48 cover every attribute combination once); 0: no
    /// eval.
    pub clips: usize,
    /// The teacher's DDIM step counts, one row each, in the final table.
    pub teacher_steps: Vec<usize>,
    /// The teacher's classifier-free guidance scale in those rows.
    pub teacher_guidance: f32,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { clips: 48, teacher_steps: vec![25, 4], teacher_guidance: 7.5 }
    }
}

/// One distillation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    pub seed: u64,
    /// Generator updates.
    pub steps: usize,
    /// Clips per generator update over all devices and threads (the global batch).
    pub batch: usize,
    /// The noise schedule of the video teacher and the student: AnimateDiff's `linear` betas
    /// by default (what the motion modules were trained with), `folder` for the teacher
    /// folder's own. Recorded in the exported `student.json`; fixed for a run.
    pub video_schedule: VideoSchedule,
    /// The student's sampler (4 trailing steps, no CFG).
    pub student: StudentConfig,
    pub loss: LossConfig,
    pub adm: AdmTimesteps,
    pub sdm: SdmConfig,
    pub head: HeadConfig,
    pub fake_score: FakeScoreConfig,
    /// Fake-score and discriminator updates per generator update (the paper: 2).
    pub critic_updates: usize,
    /// Decay of an exponential moving average of the student's weights, updated after every
    /// generator update and exported as the student when positive (the paper: none, 0).
    pub ema: f64,
    pub optim: OptimConfig,
    pub models: ModelPaths,
    /// Real clips for the discriminator and prompts for the generator.
    pub data: DataConfig,
    pub checkpoint_every: usize,
    /// Generator updates between sample GIFs and toy evals of the student (0: none).
    pub sample_every: usize,
    /// The toy eval: every `sample_every` steps and the final table against the teacher.
    pub eval: EvalConfig,
    /// CPU threads each update's batch is split over ([`crate::data_parallel`]); the result is
    /// the same up to float summation order.
    pub threads: usize,
    /// The precision of every network's weights, gradients, optimizer states and activations
    /// (`f32`; `bf16` on CUDA); the VAE encodes videos in f32.
    pub dtype: Precision,
}

impl Default for DistillConfig {
    /// The paper's settings: a global batch of 16 (8 GPUs x 2), evaluated at 10k iterations.
    fn default() -> Self {
        Self {
            seed: 0,
            steps: 10_000,
            batch: 16,
            video_schedule: VideoSchedule::default(),
            student: StudentConfig::default(),
            loss: LossConfig::default(),
            adm: AdmTimesteps::default(),
            sdm: SdmConfig::default(),
            head: HeadConfig { channels: 256, groups: 32 },
            fake_score: FakeScoreConfig::default(),
            critic_updates: 2,
            ema: 0.0,
            optim: OptimConfig::default(),
            models: ModelPaths::default(),
            data: DataConfig::default(),
            checkpoint_every: 500,
            sample_every: 500,
            eval: EvalConfig::default(),
            threads: 1,
            dtype: Precision::F32,
        }
    }
}

impl DistillConfig {
    /// The toy preset of `avdm distill` without arguments: the shipped toy teacher, settings
    /// sized for two CPU cores and chosen on the toy eval (book: benchmarks). With the real
    /// score at DMD2's CFG (1.75, the default) and a moving average of the student exported
    /// (decay 0.98), the student gets better up to about 100 updates and then drifts
    /// (mode-seeking: bigger, rounder shapes), so the preset stops there; learning rates suit
    /// a model trained from scratch at 1e-3, not the paper's fine-tuning rates.
    pub fn toy() -> Self {
        let mut c = Self {
            steps: 100,
            batch: 2,
            ema: 0.98,
            head: HeadConfig { channels: 32, groups: 8 },
            checkpoint_every: 25,
            sample_every: 25,
            eval: EvalConfig { teacher_guidance: 3.0, ..EvalConfig::default() },
            ..Self::default()
        };
        c.optim = OptimConfig {
            lr_motion: 1e-4,
            lr_backbone: 5e-5,
            lr_head: 2e-4,
            lr_fake: 2e-4,
            warmup: 20,
            ..OptimConfig::default()
        };
        c
    }

    /// Reads a TOML file; missing keys take their defaults, unknown keys are errors.
    pub fn from_toml_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        let config: Self =
            toml::from_str(&text).map_err(|e| TrainError::ConfigFile { path: path.into(), message: e.to_string() })?;
        config.validate().map_err(|e| TrainError::ConfigFile { path: path.into(), message: e.to_string() })?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config serialises")
    }

    /// Checks what the types cannot: positive counts, ranges inside the schedule, frames.
    pub fn validate(&self) -> Result<(), TrainError> {
        let positive = [
            ("steps", self.steps),
            ("batch", self.batch),
            ("checkpoint_every", self.checkpoint_every),
            ("threads", self.threads),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(TrainError::setting(field, "must be positive"));
            }
        }
        if self.critic_updates == 0 && self.loss.losses.uses_adm() {
            return Err(TrainError::setting("critic_updates", "the discriminator needs at least one update per step"));
        }
        if !(0.0..1.0).contains(&self.ema) {
            return Err(TrainError::setting(
                "ema",
                format!("{} is not a decay in [0, 1) (0: no moving average)", self.ema),
            ));
        }
        let ranges = [("adm", self.adm.t_min, self.adm.t_max), ("sdm", self.sdm.t_min, self.sdm.t_max)];
        for (name, lo, hi) in ranges {
            if lo > hi || hi >= 1000 {
                return Err(TrainError::setting(
                    name,
                    format!("timesteps [{lo}, {hi}] are not a range inside 0..1000"),
                ));
            }
        }
        for (field, weight) in [("loss.lambda_sdm", self.loss.lambda_sdm), ("loss.lambda_adm", self.loss.lambda_adm)] {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(TrainError::setting(field, format!("{weight} is not a loss weight")));
            }
        }
        if self.eval.clips == 1 {
            return Err(TrainError::setting("eval.clips", "a Fréchet distance needs at least 2 clips (0: no eval)"));
        }
        if self.eval.teacher_steps.contains(&0) {
            return Err(TrainError::setting("eval.teacher_steps", "every step count must be positive"));
        }
        let guidance = self.eval.teacher_guidance;
        if !(guidance.is_finite() && guidance >= 0.0) {
            return Err(TrainError::setting("eval.teacher_guidance", format!("{guidance} is not a guidance scale")));
        }
        if self.sdm.frames == 0 {
            return Err(TrainError::setting("sdm.frames", "must be positive"));
        }
        if !(self.sdm.guidance.is_finite() && self.sdm.guidance >= 1.0) {
            return Err(TrainError::setting("sdm.guidance", format!("{} is below 1 (no guidance)", self.sdm.guidance)));
        }
        let rates = [
            ("optim.lr_motion", self.optim.lr_motion),
            ("optim.lr_backbone", self.optim.lr_backbone),
            ("optim.lr_head", self.optim.lr_head),
            ("optim.lr_fake", self.optim.lr_fake),
        ];
        for (field, lr) in rates {
            if !(lr.is_finite() && lr >= 0.0) {
                return Err(TrainError::setting(field, format!("{lr} is not a learning rate")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trips_and_fills_defaults() {
        let config = DistillConfig { steps: 7, ..DistillConfig::default() };
        let back: DistillConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(back, config);
        let partial: DistillConfig = toml::from_str("steps = 3\n[loss]\nlosses = \"adm-only\"\n").unwrap();
        assert_eq!(partial.steps, 3);
        assert_eq!(partial.loss.losses, Losses::AdmOnly);
        assert_eq!(partial.optim.lr_motion, 2e-5, "the paper's learning rates by default");
        assert_eq!((partial.sdm.t_min, partial.sdm.t_max, partial.adm.t_max), (200, 980, 500));
        assert_eq!(partial.data, DataConfig::Toy, "the toy world by default");
    }

    #[test]
    fn the_data_section_names_a_cache_or_a_dataset() {
        use crate::data::dataset::DatasetSource;
        let cache: DistillConfig = toml::from_str("[data]\nkind = \"cache\"\ndir = \"/data/cache\"\n").unwrap();
        assert_eq!(cache.data, DataConfig::Cache { dir: "/data/cache".into() });
        let text = "[data]\nkind = \"videos\"\n[data.dataset]\nkind = \"open-vid\"\ncsv = \"o.csv\"\nvideos = \"v\"\n[data.clip]\nstride = 2\n";
        let videos: DistillConfig = toml::from_str(text).unwrap();
        let DataConfig::Videos { dataset, clip, size } = &videos.data else { panic!("{:?}", videos.data) };
        assert_eq!(dataset, &DatasetSource::OpenVid { csv: "o.csv".into(), videos: "v".into() });
        assert_eq!((clip.frames, clip.stride, *size), (16, 2, 512), "the paper's clip where unset");
        let back: DistillConfig = toml::from_str(&videos.to_toml()).unwrap();
        assert_eq!(back, videos);
        let err = toml::from_str::<DistillConfig>("[data]\nkind = \"cache\"\ndri = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("dri"), "{err}");
    }

    /// `configs/animatediff.toml` (the paper's run) is the default config with its paths, and the
    /// defaults are the paper's numbers.
    #[test]
    fn the_shipped_animatediff_config_is_the_paper_run() {
        let shipped: DistillConfig = toml::from_str(include_str!("../../../configs/animatediff.toml")).unwrap();
        shipped.validate().unwrap();
        let models = ModelPaths {
            teacher: Some("models/realistic-vision-v5-1".into()),
            motion_adapter: Some("models/animatediff-motion-adapter-v1-5-2".into()),
            teacher_2d: None,
        };
        let data = DataConfig::Cache { dir: "data/openvid-cache".into() };
        assert_eq!(shipped, DistillConfig { models, data, ..DistillConfig::default() });
        let (o, c) = (&shipped.optim, &shipped);
        assert_eq!((c.batch, c.steps, c.critic_updates, o.warmup), (16, 10_000, 2, 500));
        assert_eq!((o.lr_motion, o.lr_backbone, o.lr_head, o.lr_fake), (2e-5, 4e-6, 2e-5, 2e-5));
        assert_eq!((o.beta1, o.beta2, o.weight_decay), (0.9, 0.999, 0.01));
        assert_eq!((c.adm.t_min, c.adm.t_max, c.sdm.t_min, c.sdm.t_max), (0, 500, 200, 980));
        assert_eq!((c.student.steps, c.video_schedule, c.sdm.guidance), (4, VideoSchedule::Animatediff, 1.75));
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            DistillConfig::from_toml_file(&path).unwrap_err().to_string()
        };
        let typo = write("typo.toml", "[optim]\nlr_motoin = 1e-4\n");
        assert!(typo.contains("typo.toml") && typo.contains("lr_motoin"), "{typo}");
        let range = write("range.toml", "[sdm]\nt_min = 900\nt_max = 100\n");
        assert!(range.contains("sdm") && range.contains("[900, 100]"), "{range}");
        let weight = write("weight.toml", "[loss]\nlambda_adm = -1.0\n");
        assert!(weight.contains("lambda_adm"), "{weight}");
        let ema = write("ema.toml", "ema = 1.0\n");
        assert!(ema.contains("ema") && ema.contains("[0, 1)"), "{ema}");
        let kind = write("kind.toml", "batch = \"two\"\n");
        assert!(kind.contains("batch"), "{kind}");
        let missing = DistillConfig::from_toml_file(&dir.path().join("absent.toml")).unwrap_err().to_string();
        assert!(missing.contains("absent.toml"), "{missing}");
    }
}
