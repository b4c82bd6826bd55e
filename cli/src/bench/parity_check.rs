//! `avdm bench --parity DIR`: the tiny UNet + motion adapter fixture (`tests/fixtures/tiny_unet`,
//! made by diffusers 0.42.1) run on the bench's device and compared with diffusers' outputs, so
//! that a GPU machine with only the `avdm` binary and the repository checks a backend's parity.

use std::path::Path;

use anyhow::{Context, bail};
use avdm_import::{AdapterSource, LoadOptions, TensorSet, load_unet_motion};
use burn::prelude::*;
use burn::store::bridge;

/// Whole tiny models match diffusers within this (f32), as the parity tests require.
pub const TOLERANCE: f32 = 1e-4;

/// The largest absolute difference from diffusers' outputs over the fixture's two cases (one
/// clip of 4 frames 8x8; two clips of 3 frames 7x7 with per-clip timesteps), on `device`.
/// An error when it exceeds [`TOLERANCE`].
pub fn tiny_unet_parity(dir: &Path, device: &Device) -> anyhow::Result<f32> {
    let adapter = AdapterSource::Folder(dir.join("motion_adapter"));
    let unet = load_unet_motion(&dir.join("unet"), &adapter, &LoadOptions::default(), device)
        .with_context(|| format!("loading the parity fixture {}", dir.display()))?;
    let io = TensorSet::from_safetensors(&dir.join("io.safetensors"))?;
    let tensor = |key: &str| -> anyhow::Result<TensorData> {
        let entry = io.entries.get(key).with_context(|| format!("{}: no `{key}`", dir.display()))?;
        bridge::to_data(&entry.tensor).map_err(|e| anyhow::anyhow!("{}: reading `{key}`: {e}", dir.display()))
    };
    let mut worst = 0f32;
    for case in ["a", "b"] {
        let sample = Tensor::<5>::from_data(tensor(&format!("{case}_sample"))?.convert::<f32>(), device);
        let t = Tensor::<1>::from_data(tensor(&format!("{case}_timestep"))?.convert::<f32>(), device);
        let text = Tensor::<3>::from_data(tensor(&format!("{case}_text"))?.convert::<f32>(), device);
        let expected = Tensor::<5>::from_data(tensor(&format!("{case}_out"))?.convert::<f32>(), device);
        let out = unet.model.forward(sample, t, text)?;
        worst = worst.max((out - expected).abs().max().into_scalar::<f32>());
    }
    // A NaN fails too.
    if worst.is_nan() || worst > TOLERANCE {
        bail!("the tiny UNet differs from diffusers by {worst:e} on {device:?} (tolerance {TOLERANCE:e})");
    }
    Ok(worst)
}
