//! Loading the CLIP text encoder from a transformers `text_encoder/` folder.
//!
//! Both key layouts load: transformers 5 saves `CLIPTextModel` without a prefix
//! (`embeddings.token_embedding.weight`), hub files and older exports use `text_model.` and carry
//! an int64 `text_model.embeddings.position_ids` buffer (ignored: the positions are `0..L`). Keys
//! of a full `CLIPModel` file (`vision_model.*`, `visual_projection`, `text_projection`,
//! `logit_scale`) are reported in [`LoadReport::unused`].

use std::path::Path;

use avdm_model::clip::{ClipTextConfig, ClipTextTransformer};
use burn::prelude::*;

use crate::apply::apply_tensors;
use crate::error::ImportError;
use crate::tensors::TensorSet;
use crate::unet::{LoadOptions, LoadReport, read_config};

/// File stem of transformers model weights (`model[.variant].safetensors`).
const WEIGHTS_STEM: &str = "model";

/// A loaded CLIP text encoder with the config it was built from.
#[derive(Debug)]
pub struct LoadedClipText {
    pub model: ClipTextTransformer,
    pub config: ClipTextConfig,
    pub report: LoadReport,
}

/// The CLIP text encoder of a transformers folder (`config.json` + `model[.variant].safetensors`,
/// single or sharded).
pub fn load_clip_text(dir: &Path, options: &LoadOptions, device: &Device) -> Result<LoadedClipText, ImportError> {
    let config = read_config(dir, ClipTextConfig::from_json)?;
    let tensors = TensorSet::from_model_folder(dir, WEIGHTS_STEM, options.variant.as_deref())?;
    let mut weights = TensorSet::default();
    for (key, entry) in tensors.entries {
        let name = key.strip_prefix("text_model.").unwrap_or(&key);
        if name == "embeddings.position_ids" {
            continue;
        }
        if let Some(first) = weights.entries.get(name) {
            return Err(ImportError::DuplicateKey { key: name.into(), first: first.file.clone(), second: entry.file });
        }
        weights.entries.insert(name.to_string(), entry);
    }
    let mut model = crate::load_phases::timed("build the modules", || ClipTextTransformer::new(&config, device));
    let applied = apply_tensors(&mut model, weights, options.dtype)?;
    let report =
        LoadReport { applied: applied.applied, positions_checked: 0, unused: applied.unused, files: applied.files };
    Ok(LoadedClipText { model, config, report })
}
