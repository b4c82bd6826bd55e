//! Loading the VAE (diffusers `AutoencoderKL`) from a diffusers `vae/` folder.
//!
//! Besides today's names, the folder may use the legacy attention names of older diffusers
//! saves (`query`, `key`, `value`, `proj_attn`), and attention weights may be stored as 1x1
//! convolutions `[C, C, 1, 1]` (as LDM checkpoints do); both load like the current layout.

use std::path::Path;

use avdm_model::vae::{AutoencoderKL, VaeConfig};
use burn::prelude::*;
use burn::store::bridge;
use burn::tensor::TensorData;

use crate::apply::apply_tensors;
use crate::error::ImportError;
use crate::tensors::TensorSet;
use crate::unet::{LoadOptions, LoadReport, WEIGHTS_STEM, read_config};

/// A loaded VAE with the config it was built from.
#[derive(Debug)]
pub struct LoadedVae {
    pub model: AutoencoderKL,
    pub config: VaeConfig,
    pub report: LoadReport,
}

/// (legacy, current) names of the mid-block attention's layers.
const LEGACY_ATTENTION: [(&str, &str); 4] =
    [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")];

/// A legacy VAE attention key under its current name (as diffusers'
/// `_convert_deprecated_attention_blocks` does); other keys are returned unchanged.
pub fn vae_key_to_current(key: &str) -> String {
    if !key.contains(".attentions.") {
        return key.to_string();
    }
    LEGACY_ATTENTION.iter().fold(key.to_string(), |k, (old, new)| k.replace(old, new))
}

/// Whether a (current) key is one of the attention's linear weights `to_q/to_k/to_v/to_out.0`.
fn is_attention_linear_weight(key: &str) -> bool {
    key.contains(".attentions.")
        && [".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight"].iter().any(|s| key.ends_with(s))
}

/// Current names, and `[C, C, 1, 1]` attention weights viewed as the `[C, C]` Linear weights
/// they are.
fn normalize(tensors: TensorSet) -> TensorSet {
    let mut out = TensorSet::default();
    for (key, mut entry) in tensors.entries {
        let key = vae_key_to_current(&key);
        let dims = entry.tensor.shape.to_vec();
        if is_attention_linear_weight(&key) && dims.len() == 4 && dims[2] == 1 && dims[3] == 1 {
            let shape = [dims[0], dims[1]];
            let tensor = entry.tensor;
            let name = tensor.name.clone();
            let dtype = tensor.dtype;
            entry.tensor = bridge::map_data(tensor, name, dtype, shape.into(), move |data: TensorData| {
                let (bytes, _, dtype) = data.into_parts();
                TensorData::try_from_bytes(bytes, shape, dtype).expect("a 1x1 kernel has the elements of its matrix")
            });
        }
        out.entries.insert(key, entry);
    }
    out
}

/// The VAE of a diffusers `vae/` folder (`config.json` + `diffusion_pytorch_model[.variant]`
/// weights, single or sharded).
pub fn load_vae(dir: &Path, options: &LoadOptions, device: &Device) -> Result<LoadedVae, ImportError> {
    let config = read_config(dir, VaeConfig::from_json)?;
    let tensors = TensorSet::from_model_folder(dir, WEIGHTS_STEM, options.variant.as_deref())?;
    load_vae_weights(config, tensors, options, device)
}

/// Builds the VAE of `config` and fills it from `tensors` (diffusers key names, legacy
/// attention names and 1x1-conv attention weights accepted).
pub fn load_vae_weights(
    config: VaeConfig,
    tensors: TensorSet,
    options: &LoadOptions,
    device: &Device,
) -> Result<LoadedVae, ImportError> {
    let mut model = crate::load_phases::timed("build the modules", || AutoencoderKL::new(&config, device));
    let applied = apply_tensors(&mut model, normalize(tensors), options.dtype)?;
    let report =
        LoadReport { applied: applied.applied, positions_checked: 0, unused: applied.unused, files: applied.files };
    Ok(LoadedVae { model, config, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_attention_names_are_renamed() {
        assert_eq!(
            vae_key_to_current("encoder.mid_block.attentions.0.proj_attn.weight"),
            "encoder.mid_block.attentions.0.to_out.0.weight"
        );
        assert_eq!(
            vae_key_to_current("decoder.mid_block.attentions.0.query.bias"),
            "decoder.mid_block.attentions.0.to_q.bias"
        );
        assert_eq!(
            vae_key_to_current("decoder.mid_block.attentions.0.group_norm.weight"),
            "decoder.mid_block.attentions.0.group_norm.weight"
        );
        // Only attention keys are touched.
        assert_eq!(vae_key_to_current("encoder.key.weight"), "encoder.key.weight");
    }
}
