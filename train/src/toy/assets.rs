//! The shipped toy assets (`assets/toy/`):
//!
//! - `teacher/`: an AnimateDiff-style pipeline folder without VAE (pixel space):
//!   `model_index.json`, `unet/` (UNetMotionModel), `text_encoder/` (CLIPTextModel),
//!   `tokenizer/` (word level), `scheduler/` (DDIM, AnimateDiff's `linear` schedule). It loads
//!   with [`avdm_import::load_pipeline`] like any diffusers folder.
//! - `judge/`: the toy judge (`config.json`, `model.safetensors`).

use std::fs;
use std::path::{Path, PathBuf};

use avdm_import::{ExportDtype, export_clip_text, export_unet_motion};
use avdm_model::sched::PredictionType;
use serde_json::json;

use super::preset;
use super::vocabulary::write_tokenizer;
use crate::checkpoint::sibling;
use crate::error::TrainError;
use crate::teacher::TextToVideo;

/// Where the toy assets are: `assets/toy` under the working directory if it is there, else in
/// the source tree this binary was built from.
pub fn default_assets_dir() -> PathBuf {
    let local = PathBuf::from("assets/toy");
    if local.is_dir() { local } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/toy") }
}

/// The scheduler config of the toy video teacher: DDIM over AnimateDiff's schedule, for a model
/// that outputs `prediction_type`.
pub fn scheduler_config(prediction_type: PredictionType) -> serde_json::Value {
    json!({
        "_class_name": "DDIMScheduler",
        "_diffusers_version": avdm_import::export::DIFFUSERS_VERSION,
        "beta_end": 0.012,
        "beta_schedule": "linear",
        "beta_start": 0.00085,
        "clip_sample": false,
        "num_train_timesteps": 1000,
        "prediction_type": prediction_type,
        "set_alpha_to_one": true,
        "steps_offset": 1,
        "timestep_spacing": "linspace",
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n";
    fs::write(path, text).map_err(TrainError::io(path))
}

/// Writes the video teacher as a pipeline folder at `dir` (which must not exist), through a
/// temporary folder so that a failure leaves nothing behind.
pub fn write_teacher_folder(
    model: &TextToVideo,
    prediction_type: PredictionType,
    dir: &Path,
) -> Result<(), TrainError> {
    if dir.exists() {
        return Err(TrainError::setting(
            "out",
            format!("{} exists; the teacher folder is never overwritten", dir.display()),
        ));
    }
    let staging = sibling(dir, ".writing");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(TrainError::io(&staging))?;
    }
    fs::create_dir_all(&staging).map_err(TrainError::io(&staging))?;
    let index = json!({
        "_class_name": "AnimateDiffPipeline",
        "_diffusers_version": avdm_import::export::DIFFUSERS_VERSION,
        "feature_extractor": [null, null],
        "image_encoder": [null, null],
        "motion_adapter": [null, null],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "unet": ["diffusers", "UNetMotionModel"],
        "vae": [null, null],
    });
    write_json(&staging.join("model_index.json"), &index)?;
    export_unet_motion(&model.unet, &preset::unet_config(true), &staging.join("unet"), ExportDtype::F32)?;
    export_clip_text(&model.text_encoder, &preset::text_config(), &staging.join("text_encoder"), ExportDtype::F32)?;
    write_tokenizer(&staging.join("tokenizer")).map_err(TrainError::io(staging.join("tokenizer")))?;
    fs::create_dir_all(staging.join("scheduler")).map_err(TrainError::io(staging.join("scheduler")))?;
    write_json(&staging.join("scheduler").join("scheduler_config.json"), &scheduler_config(prediction_type))?;
    fs::rename(&staging, dir).map_err(TrainError::io(dir))
}
