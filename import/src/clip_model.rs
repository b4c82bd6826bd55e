//! Loading a whole transformers `CLIPModel` folder (e.g. `openai/clip-vit-large-patch14`, as
//! CLIPScore uses it): `config.json`, `model[.variant].safetensors` (single or sharded), the
//! tokenizer files and the image processor's settings (`preprocessor_config.json`, or
//! `processor_config.json` as transformers 5 saves it).

use std::path::Path;

use avdm_model::clip::{ClipImageProcessorConfig, ClipModel, ClipModelConfig};
use burn::prelude::*;

use crate::apply::apply_tensors;
use crate::error::ImportError;
use crate::tensors::TensorSet;
use crate::tokenizer::ClipTokenizer;
use crate::unet::{LoadOptions, LoadReport, read_config};

/// A loaded CLIP model with what prepares its inputs.
#[derive(Debug)]
pub struct LoadedClipModel {
    pub model: ClipModel,
    pub config: ClipModelConfig,
    pub tokenizer: ClipTokenizer,
    pub image_processor: ClipImageProcessorConfig,
    pub report: LoadReport,
}

/// Buffers saved with the weights that are not weights (positions are `0..L`), and the
/// contrastive temperature (not used to compare embeddings).
fn is_weight(key: &str) -> bool {
    !key.ends_with("embeddings.position_ids") && key != "logit_scale"
}

pub fn load_clip_model(dir: &Path, options: &LoadOptions, device: &Device) -> Result<LoadedClipModel, ImportError> {
    let config = read_config(dir, ClipModelConfig::from_json)?;
    let mut tensors = TensorSet::from_model_folder(dir, "model", options.variant.as_deref())?;
    tensors.entries.retain(|key, _| is_weight(key));
    let mut model = crate::load_phases::timed("build the modules", || ClipModel::new(&config, device));
    let applied = apply_tensors(&mut model, tensors, options.dtype)?;
    let tokenizer = ClipTokenizer::from_folder(dir)?;
    let image_processor = ["preprocessor_config.json", "processor_config.json"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .map(|path| {
            let text =
                std::fs::read_to_string(&path).map_err(|source| ImportError::Io { path: path.clone(), source })?;
            ClipImageProcessorConfig::from_json(&text).map_err(|source| ImportError::Config { path, source })
        })
        .transpose()?
        .ok_or_else(|| ImportError::NotFound {
            what: "the image processor's settings (preprocessor_config.json or processor_config.json)",
            path: dir.into(),
        })?;
    let report =
        LoadReport { applied: applied.applied, positions_checked: 0, unused: applied.unused, files: applied.files };
    Ok(LoadedClipModel { model, config, tokenizer, image_processor, report })
}
