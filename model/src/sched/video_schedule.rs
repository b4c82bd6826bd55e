//! Which noise schedule a video model (a UNet with AnimateDiff motion modules) is queried,
//! trained and sampled with: one rule for `generate`, `distill` and `eval`.
//!
//! SD1.5-family pipeline folders ship `scaled_linear` betas (what their image UNet was trained
//! with); AnimateDiff's motion modules were trained with `linear` betas over the same range, and
//! diffusers' AnimateDiff guide loads the scheduler with those overrides. So a video model takes
//! AnimateDiff's schedule unless the folder's own is asked for.

use serde::{Deserialize, Serialize};

use super::ddim::{DdimConfig, TimestepSpacing};
use super::schedule::BetaSchedule;

/// The video model's schedule: AnimateDiff's (default) or the pipeline folder's as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VideoSchedule {
    /// The folder's scheduler with the overrides diffusers' AnimateDiff guide uses: `linear`
    /// betas (over the folder's `beta_start..beta_end`), `linspace` spacing, `steps_offset` 1,
    /// no sample clipping.
    #[default]
    Animatediff,
    /// The folder's `scheduler/scheduler_config.json` as it is.
    Folder,
}

impl VideoSchedule {
    /// The scheduler config the video model uses, from its folder's.
    pub fn resolve(self, folder: &DdimConfig) -> DdimConfig {
        match self {
            VideoSchedule::Folder => folder.clone(),
            VideoSchedule::Animatediff => DdimConfig {
                beta_schedule: BetaSchedule::Linear,
                timestep_spacing: TimestepSpacing::Linspace,
                steps_offset: 1,
                clip_sample: false,
                ..folder.clone()
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VideoSchedule::Animatediff => "animatediff",
            VideoSchedule::Folder => "folder",
        }
    }
}

impl std::fmt::Display for VideoSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for VideoSchedule {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "animatediff" => Ok(VideoSchedule::Animatediff),
            "folder" => Ok(VideoSchedule::Folder),
            _ => Err(format!("{name}: not one of animatediff, folder")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SD1.5 download's scheduler (PNDM in the hub files; the schedule fields are DDIM's).
    fn sd15_folder() -> DdimConfig {
        let json = r#"{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
            "skip_prk_steps": true, "steps_offset": 1, "clip_sample": false}"#;
        DdimConfig::from_json(json).unwrap()
    }

    #[test]
    fn an_sd15_folder_is_queried_on_animatediff_linear_betas_unless_asked() {
        let folder = sd15_folder();
        let video = VideoSchedule::default().resolve(&folder);
        assert_eq!(video.beta_schedule, BetaSchedule::Linear);
        assert_eq!((video.beta_start, video.beta_end), (0.00085, 0.012));
        assert_eq!(video.timestep_spacing, TimestepSpacing::Linspace);
        assert_eq!(VideoSchedule::Folder.resolve(&folder), folder);
        assert_eq!(VideoSchedule::Folder.resolve(&folder).beta_schedule, BetaSchedule::ScaledLinear);
        assert_eq!("folder".parse::<VideoSchedule>().unwrap(), VideoSchedule::Folder);
        assert!("linear".parse::<VideoSchedule>().unwrap_err().contains("animatediff, folder"));
    }
}
