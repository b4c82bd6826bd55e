//! `--dtype f32|bf16|f16`: the float precision of the UNet and the text encoder (weights and
//! activations); the VAE decodes in f32 whatever it is.

use anyhow::anyhow;
use avdm_import::{LoadOptions, LoadedPipeline};
pub use avdm_model::precision::Precision;
use burn::prelude::Device;

/// Makes `precision` the default float dtype of `device`: before anything is created there.
pub fn configure(precision: Precision, device: &Device) -> anyhow::Result<()> {
    precision.configure(device).map_err(|e| anyhow!("--dtype {precision}: {e}"))
}

/// Load options that read the weights in `precision`.
pub fn load_options(precision: Precision, variant: Option<String>) -> LoadOptions {
    LoadOptions { variant, ..LoadOptions::in_precision(precision) }
}

/// The loaded pipeline's UNet and text encoder in `precision`, its VAE in f32.
pub fn apply(precision: Precision, mut loaded: LoadedPipeline) -> LoadedPipeline {
    loaded.pipeline = loaded.pipeline.with_dtype(precision.float_dtype());
    loaded
}
