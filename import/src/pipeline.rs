//! A diffusers pipeline folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`,
//! `tokenizer/`, `scheduler/`) plus motion modules, loaded into a [`VideoPipeline`].
//!
//! The folder is what `StableDiffusionPipeline.save_pretrained` writes (e.g. Realistic Vision),
//! with the motion modules given separately (a MotionAdapter folder or an original `.ckpt`), or
//! what `AnimateDiffPipeline.save_pretrained` writes (`unet/` is then a UNetMotionModel and a
//! `motion_adapter/` folder may sit beside it).
//!
//! A pixel-space model (the toy world's) has no VAE: its `model_index.json` lists
//! `"vae": [null, null]`, as diffusers writes an absent optional component.

use std::path::Path;

use avdm_model::UNetConfig;
use avdm_model::clip::ClipTextConfig;
use avdm_model::pipeline::VideoPipeline;
use avdm_model::sched::{DdimConfig, VideoSchedule};
use avdm_model::vae::VaeConfig;
use burn::prelude::*;
use burn::tensor::DType;

use crate::clip::load_clip_text;
use crate::error::ImportError;
use crate::tokenizer::ClipTokenizer;
use crate::unet::{AdapterSource, LoadOptions, LoadReport, load_unet_motion, load_unet_motion_folder};
use crate::vae::load_vae;

/// The component classes each folder may hold.
const COMPONENTS: [(&str, &[&str]); 5] = [
    ("unet", &["UNet2DConditionModel", "UNetMotionModel"]),
    ("vae", &["AutoencoderKL"]),
    ("text_encoder", &["CLIPTextModel"]),
    ("tokenizer", &["CLIPTokenizer", "CLIPTokenizerFast", "PreTrainedTokenizerFast"]),
    ("scheduler", &[]),
];

/// A loaded pipeline and everything read to build it.
#[derive(Debug)]
pub struct LoadedPipeline {
    pub pipeline: VideoPipeline,
    pub tokenizer: ClipTokenizer,
    /// The folder's `scheduler/scheduler_config.json` (whatever its class: its schedule fields).
    pub scheduler: DdimConfig,
    pub unet_config: UNetConfig,
    /// `None` for a pixel-space pipeline.
    pub vae_config: Option<VaeConfig>,
    pub text_config: ClipTextConfig,
    /// One report per loaded network: `("unet", ...)`, `("vae", ...)`, `("text_encoder", ...)`.
    pub reports: Vec<(&'static str, LoadReport)>,
}

impl LoadedPipeline {
    /// The scheduler config the video model is queried and sampled with ([`VideoSchedule`]).
    pub fn video_scheduler(&self, choice: VideoSchedule) -> DdimConfig {
        choice.resolve(&self.scheduler)
    }
}

fn pipeline_error(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Pipeline { path: path.into(), message: message.into() }
}

/// A JSON file as a value; errors name the file.
fn read_json(path: &Path) -> Result<serde_json::Value, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|e| pipeline_error(path, format!("not valid JSON: {e}")))
}

/// Reads `model_index.json` and checks that every component avdm needs is there with a class
/// it can load. Returns the index.
fn read_model_index(folder: &Path) -> Result<serde_json::Value, ImportError> {
    if !folder.is_dir() {
        return Err(ImportError::NotFound { what: "pipeline folder", path: folder.into() });
    }
    let path = folder.join("model_index.json");
    if !path.is_file() {
        return Err(pipeline_error(folder, "no model_index.json: not a diffusers pipeline folder"));
    }
    let index = read_json(&path)?;
    for (name, classes) in COMPONENTS {
        if name == "vae" && !has_vae(&index) {
            continue;
        }
        let class = index.get(name).and_then(|v| v.get(1)).and_then(|c| c.as_str());
        let Some(class) = class else {
            return Err(pipeline_error(&path, format!("has no `{name}` component")));
        };
        if !classes.is_empty() && !classes.contains(&class) {
            return Err(pipeline_error(&path, format!("`{name}` is a {class}; avdm loads {}", classes.join(" or "))));
        }
        if !folder.join(name).is_dir() {
            return Err(ImportError::NotFound { what: "pipeline component folder", path: folder.join(name) });
        }
    }
    Ok(index)
}

/// Whether the index lists a VAE (`"vae": [null, null]` marks a pixel-space pipeline).
fn has_vae(index: &serde_json::Value) -> bool {
    !index.get("vae").and_then(|v| v.get(1)).is_some_and(|c| c.is_null())
}

/// The scheduler config of a pipeline folder (`scheduler/scheduler_config.json`).
pub fn read_scheduler(folder: &Path) -> Result<DdimConfig, ImportError> {
    let path = folder.join("scheduler").join("scheduler_config.json");
    if !path.is_file() {
        return Err(ImportError::NotFound { what: "scheduler config", path });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ImportError::Io { path: path.clone(), source })?;
    DdimConfig::from_json(&text).map_err(|source| ImportError::Config { path, source })
}

/// Writes `config`'s fields into `folder/scheduler/scheduler_config.json`, keeping the file's
/// other keys (its `_class_name`, a PNDM's `skip_prk_steps`); creates the file when absent.
pub fn write_scheduler(folder: &Path, config: &DdimConfig) -> Result<(), ImportError> {
    let path = folder.join("scheduler").join("scheduler_config.json");
    let mut json = match path.is_file() {
        true => read_json(&path)?,
        false => serde_json::json!({ "_class_name": "DDIMScheduler" }),
    };
    let (Some(fields), serde_json::Value::Object(resolved)) =
        (json.as_object_mut(), serde_json::to_value(config).expect("a scheduler config serialises"))
    else {
        return Err(pipeline_error(&path, "is not a JSON object"));
    };
    fields.extend(resolved);
    let text = serde_json::to_string_pretty(&json).expect("JSON serialises") + "\n";
    let output = |e: std::io::Error| ImportError::Output { path: path.clone(), message: e.to_string() };
    std::fs::create_dir_all(folder.join("scheduler")).map_err(output)?;
    std::fs::write(&path, text).map_err(output)
}

/// Whether `unet/config.json` describes a UNetMotionModel (an AnimateDiffPipeline folder).
fn unet_is_motion(unet_dir: &Path) -> Result<bool, ImportError> {
    let json = read_json(&unet_dir.join("config.json"))?;
    Ok(json.get("_class_name").and_then(|c| c.as_str()) == Some("UNetMotionModel"))
}

/// Loads a pipeline folder with its motion modules from `adapter`, or from the folder itself
/// when its UNet already has them (or it holds a `motion_adapter/` component). The UNet and
/// the text encoder take `options.dtype`; the VAE is always f32 (it encodes and decodes in f32
/// whatever the denoiser's precision, as diffusers' `upcast_vae`).
pub fn load_pipeline(
    folder: &Path,
    adapter: Option<&AdapterSource>,
    options: &LoadOptions,
    device: &Device,
) -> Result<LoadedPipeline, ImportError> {
    let index = read_model_index(folder)?;
    let scheduler = read_scheduler(folder)?;
    let tokenizer = ClipTokenizer::from_folder(&folder.join("tokenizer"))?;
    let unet_dir = folder.join("unet");
    let unet = match adapter {
        Some(adapter) => load_unet_motion(&unet_dir, adapter, options, device)?,
        None if unet_is_motion(&unet_dir)? => load_unet_motion_folder(&unet_dir, options, device)?,
        None if index.get("motion_adapter").and_then(|v| v.get(1)).is_some_and(|c| !c.is_null()) => {
            let own = AdapterSource::Folder(folder.join("motion_adapter"));
            load_unet_motion(&unet_dir, &own, options, device)?
        }
        None => {
            return Err(pipeline_error(
                folder,
                "unet/ is a 2D UNet2DConditionModel and no motion adapter was given (a MotionAdapter folder or an original .ckpt)",
            ));
        }
    };
    let vae_options = LoadOptions { dtype: DType::F32, ..options.clone() };
    let vae = if has_vae(&index) { Some(load_vae(&folder.join("vae"), &vae_options, device)?) } else { None };
    let text = load_clip_text(&folder.join("text_encoder"), options, device)?;
    let (text_width, cross) = (text.config.hidden_size, unet.config.cross_attention_dim);
    if text_width != cross {
        return Err(pipeline_error(
            folder,
            format!("the text encoder's width {text_width} differs from the UNet's cross_attention_dim {cross}"),
        ));
    }
    let (latents, unet_in) = match &vae {
        Some(vae) => (vae.config.latent_channels, unet.config.in_channels),
        None => (3, unet.config.in_channels),
    };
    if latents != unet_in {
        let source = if vae.is_some() { "the VAE has" } else { "without a VAE the frames have" };
        return Err(pipeline_error(folder, format!("{source} {latents} channels, the UNet takes {unet_in}")));
    }
    let mut reports = vec![("unet", unet.report)];
    let (vae_model, vae_config) = match vae {
        Some(vae) => {
            reports.push(("vae", vae.report));
            (Some(vae.model), Some(vae.config))
        }
        None => (None, None),
    };
    reports.push(("text_encoder", text.report));
    Ok(LoadedPipeline {
        pipeline: VideoPipeline {
            text_encoder: text.model,
            unet: unet.model,
            vae: vae_model,
            clip_skip: 0,
            decode_chunk: 16,
        },
        tokenizer,
        scheduler,
        unet_config: unet.config,
        vae_config,
        text_config: text.config,
        reports,
    })
}
