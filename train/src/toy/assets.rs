//! The shipped toy assets (`assets/toy/`):
//!
//! - `teacher/`: an AnimateDiff-style pipeline folder without VAE (pixel space):
//!   `model_index.json`, `unet/` (UNetMotionModel), `text_encoder/` (CLIPTextModel),
//!   `tokenizer/` (word level), `scheduler/` (DDIM, AnimateDiff's `linear` schedule). It loads
//!   with [`avdm_import::load_pipeline`] like any diffusers folder.
//! - `judge/`: the toy judge (`config.json`, `model.safetensors`).

use std::fs;
use std::path::{Path, PathBuf};

use avdm_import::{ExportDtype, export_clip_text, export_unet_2d, export_unet_motion};
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

/// The scheduler config of a toy pipeline: DDIM over the schedule its model was trained on
/// (AnimateDiff's `linear` betas for the video model, SD1.5's `scaled_linear` for the image
/// model), for a model that outputs `prediction_type`.
pub fn scheduler_config(prediction_type: PredictionType, kind: PipelineKind) -> serde_json::Value {
    let beta_schedule = match kind {
        PipelineKind::Video => "linear",
        PipelineKind::Image => "scaled_linear",
    };
    json!({
        "_class_name": "DDIMScheduler",
        "_diffusers_version": avdm_import::export::DIFFUSERS_VERSION,
        "beta_end": 0.012,
        "beta_schedule": beta_schedule,
        "beta_start": 0.00085,
        "clip_sample": false,
        "num_train_timesteps": 1000,
        "prediction_type": prediction_type,
        "set_alpha_to_one": true,
        "steps_offset": 1,
        "timestep_spacing": "linspace",
    })
}

/// What a toy pipeline folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineKind {
    /// The video teacher: an AnimateDiff-style folder (`UNetMotionModel`).
    Video,
    /// An image model: a Stable-Diffusion-style folder (`UNet2DConditionModel`), e.g. a 2D
    /// teacher (`models.teacher_2d`).
    Image,
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n";
    fs::write(path, text).map_err(TrainError::io(path))
}

/// Writes `model` as a toy pipeline folder of `kind` at `dir` (which must not exist): the
/// video teacher, or the image model (its 2D UNet) as a Stable-Diffusion-style folder; through
/// a temporary folder, so that a failure leaves nothing behind.
pub fn write_pipeline_folder(
    model: &TextToVideo,
    prediction_type: PredictionType,
    kind: PipelineKind,
    dir: &Path,
) -> Result<(), TrainError> {
    if dir.exists() {
        return Err(TrainError::setting(
            "out",
            format!("{} exists; a pipeline folder is never overwritten", dir.display()),
        ));
    }
    let staging = sibling(dir, ".writing");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(TrainError::io(&staging))?;
    }
    fs::create_dir_all(&staging).map_err(TrainError::io(&staging))?;
    let (pipeline, unet) = match kind {
        PipelineKind::Video => ("AnimateDiffPipeline", "UNetMotionModel"),
        PipelineKind::Image => ("StableDiffusionPipeline", "UNet2DConditionModel"),
    };
    let mut index = json!({
        "_class_name": pipeline,
        "_diffusers_version": avdm_import::export::DIFFUSERS_VERSION,
        "feature_extractor": [null, null],
        "image_encoder": [null, null],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "unet": ["diffusers", unet],
        "vae": [null, null],
    });
    match kind {
        PipelineKind::Video => index["motion_adapter"] = json!([null, null]),
        PipelineKind::Image => {
            index["safety_checker"] = json!([null, null]);
            index["requires_safety_checker"] = json!(false);
        }
    }
    write_json(&staging.join("model_index.json"), &index)?;
    let unet_dir = staging.join("unet");
    match kind {
        PipelineKind::Video => {
            export_unet_motion(&model.unet, &preset::unet_config(true), &unet_dir, ExportDtype::F32)?
        }
        PipelineKind::Image => export_unet_2d(&model.unet, &preset::unet_config(false), &unet_dir, ExportDtype::F32)?,
    };
    export_clip_text(&model.text_encoder, &preset::text_config(), &staging.join("text_encoder"), ExportDtype::F32)?;
    write_tokenizer(&staging.join("tokenizer")).map_err(TrainError::io(staging.join("tokenizer")))?;
    fs::create_dir_all(staging.join("scheduler")).map_err(TrainError::io(staging.join("scheduler")))?;
    write_json(&staging.join("scheduler").join("scheduler_config.json"), &scheduler_config(prediction_type, kind))?;
    fs::rename(&staging, dir).map_err(TrainError::io(dir))
}
