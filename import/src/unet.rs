//! Loading the (video) UNet from diffusers folders and original AnimateDiff checkpoints.
//!
//! Three layouts give the same [`UNetMotionModel`]:
//! - a base-model `unet/` folder plus a motion-adapter folder ([`AdapterSource::Folder`]);
//! - a base-model `unet/` folder plus an original `mm_sd_v15_v2.ckpt` ([`AdapterSource::Checkpoint`]);
//! - a saved `UNetMotionModel` folder ([`load_unet_motion_folder`]).
//!
//! Every weight the model needs must be found (else [`ImportError::MissingKeys`]), every shape
//! must match (else [`ImportError::Shape`]), and what the files hold beyond the model is
//! reported in [`LoadReport::unused`].

use std::fmt;
use std::path::{Path, PathBuf};

use avdm_model::precision::Precision;
use avdm_model::unet::embeddings::frame_positions;
use avdm_model::unet::{MotionAdapterConfig, PerBlock, UNet2DConditionConfig, UNetConfig, UNetMotionConfig};
use avdm_model::{ConfigError, UNetMotionModel};
use burn::prelude::*;
use burn::store::bridge;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::tensor::DType;

use crate::apply::apply_tensors;
use crate::error::ImportError;
use crate::keys::{OriginalKey, is_positions_buffer, original_motion_to_diffusers};
use crate::tensors::TensorSet;

/// How weights are read.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The float dtype of the loaded parameters, whatever the files hold (default f32).
    pub dtype: DType,
    /// A diffusers weight variant (`fp16`), as in `from_pretrained(variant=...)`.
    pub variant: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { dtype: DType::F32, variant: None }
    }
}

impl LoadOptions {
    /// The weights read in `precision` (the device must compute in it: [`Precision::configure`]).
    pub fn in_precision(precision: Precision) -> Self {
        Self { dtype: precision.float_dtype().into(), variant: None }
    }
}

/// Where the motion modules come from.
#[derive(Debug, Clone)]
pub enum AdapterSource {
    /// A diffusers `MotionAdapter` folder (`config.json` + weights).
    Folder(PathBuf),
    /// An original AnimateDiff motion-module checkpoint. Without a config, the layout is read
    /// from the tensors (blocks, layers, mid block, positions) with 8 heads, as every
    /// released AnimateDiff SD1.5 module has.
    Checkpoint { path: PathBuf, config: Option<MotionAdapterConfig> },
}

impl AdapterSource {
    /// A folder is a diffusers `MotionAdapter`; a file an original checkpoint (layout read from
    /// its tensors).
    pub fn from_path(path: &std::path::Path) -> Self {
        if path.is_dir() {
            AdapterSource::Folder(path.into())
        } else {
            AdapterSource::Checkpoint { path: path.into(), config: None }
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Number of parameter tensors loaded.
    pub applied: usize,
    /// Saved copies of the frame-position tables, checked against the computed ones.
    pub positions_checked: usize,
    /// Keys in the files that the model does not use.
    pub unused: Vec<String>,
    /// The files read.
    pub files: Vec<PathBuf>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loaded {} tensors from {} file(s); {} position tables checked; {} unused keys",
            self.applied,
            self.files.len(),
            self.positions_checked,
            self.unused.len()
        )?;
        for key in self.unused.iter().take(10) {
            write!(f, "\n  unused: {key}")?;
        }
        Ok(())
    }
}

/// A loaded UNet with the config it was built from.
#[derive(Debug)]
pub struct LoadedUNet {
    pub model: UNetMotionModel,
    pub config: UNetConfig,
    pub report: LoadReport,
}

/// Reads and parses a folder's `config.json` (any model kind).
pub(crate) fn read_config<T>(dir: &Path, parse: fn(&str) -> Result<T, ConfigError>) -> Result<T, ImportError> {
    if !dir.is_dir() {
        return Err(ImportError::NotFound { what: "model folder", path: dir.into() });
    }
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(ImportError::NotFound { what: "config.json", path });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ImportError::Io { path: path.clone(), source })?;
    parse(&text).map_err(|source| ImportError::Config { path, source })
}

/// File stem of diffusers model weights (`diffusion_pytorch_model[.variant].safetensors`).
pub(crate) const WEIGHTS_STEM: &str = "diffusion_pytorch_model";

/// The SD1.5-family 2D UNet of a diffusers `unet/` folder.
pub fn load_unet_2d(unet_dir: &Path, options: &LoadOptions, device: &Device) -> Result<LoadedUNet, ImportError> {
    let unet = read_config(unet_dir, UNet2DConditionConfig::from_json)?;
    let config = UNetConfig::from_unet_2d(&unet)
        .map_err(|source| ImportError::Config { path: unet_dir.join("config.json"), source })?;
    let tensors = TensorSet::from_model_folder(unet_dir, WEIGHTS_STEM, options.variant.as_deref())?;
    load_weights(config, tensors, options, device)
}

/// A video UNet from a diffusers `unet/` folder and a motion adapter (folder or `.ckpt`).
pub fn load_unet_motion(
    unet_dir: &Path,
    adapter: &AdapterSource,
    options: &LoadOptions,
    device: &Device,
) -> Result<LoadedUNet, ImportError> {
    let unet = read_config(unet_dir, UNet2DConditionConfig::from_json)?;
    let base = UNetConfig::from_unet_2d(&unet)
        .map_err(|source| ImportError::Config { path: unet_dir.join("config.json"), source })?;
    let unet_tensors = TensorSet::from_model_folder(unet_dir, WEIGHTS_STEM, options.variant.as_deref())?;
    let (adapter_config, motion_tensors, origin) = match adapter {
        AdapterSource::Folder(dir) => {
            let config = read_config(dir, MotionAdapterConfig::from_json)?;
            let tensors = TensorSet::from_model_folder(dir, WEIGHTS_STEM, options.variant.as_deref())?;
            (config, tensors, dir.clone())
        }
        AdapterSource::Checkpoint { path, config } => {
            let tensors = original_checkpoint_tensors(path)?;
            let config = match config {
                Some(c) => c.clone(),
                None => infer_adapter_config(&tensors, path)?,
            };
            (config, tensors, path.clone())
        }
    };
    let motion_tensors = motion_tensors.rename(|k| k.contains("motion_modules.").then(|| k.to_string()));
    if motion_tensors.entries.is_empty() {
        return Err(ImportError::NoMotionModules { path: origin });
    }
    let config = base.with_motion_adapter(&adapter_config).map_err(|source| ImportError::Incompatible {
        what: format!("motion adapter {} does not fit the UNet in {}", origin.display(), unet_dir.display()),
        source,
    })?;
    load_weights(config, unet_tensors.merge(motion_tensors)?, options, device)
}

/// A saved diffusers `UNetMotionModel` folder (UNet and motion modules together).
pub fn load_unet_motion_folder(dir: &Path, options: &LoadOptions, device: &Device) -> Result<LoadedUNet, ImportError> {
    let saved = read_config(dir, UNetMotionConfig::from_json)?;
    let config = UNetConfig::from_unet_motion(&saved)
        .map_err(|source| ImportError::Config { path: dir.join("config.json"), source })?;
    let tensors = TensorSet::from_model_folder(dir, WEIGHTS_STEM, options.variant.as_deref())?;
    load_weights(config, tensors, options, device)
}

/// An original AnimateDiff checkpoint's tensors under diffusers names (positions included).
fn original_checkpoint_tensors(path: &Path) -> Result<TensorSet, ImportError> {
    let tensors = TensorSet::from_checkpoint(path)?;
    let mut out = TensorSet::default();
    for (key, entry) in tensors.entries {
        match original_motion_to_diffusers(&key) {
            OriginalKey::Weight(k) => {
                out.entries.insert(k, entry);
            }
            // Both attentions of a block carry the same table; keep one.
            OriginalKey::Positions(k) => {
                out.entries.entry(k).or_insert(entry);
            }
        }
    }
    Ok(out)
}

/// Reads a motion adapter's layout from its tensors (diffusers names).
fn infer_adapter_config(tensors: &TensorSet, path: &Path) -> Result<MotionAdapterConfig, ImportError> {
    let shape = |key: &str| tensors.entries.get(key).map(|e| e.tensor.shape.to_vec());
    let mut block_out_channels = Vec::new();
    while let Some(s) = shape(&format!("down_blocks.{}.motion_modules.0.proj_in.weight", block_out_channels.len())) {
        block_out_channels.push(s[0]);
    }
    if block_out_channels.is_empty() {
        return Err(ImportError::NoMotionModules { path: path.into() });
    }
    let count = |prefix: &str| {
        (0..).take_while(|j| tensors.entries.keys().any(|k| k.starts_with(&format!("{prefix}.{j}.")))).count()
    };
    let layers = count("down_blocks.0.motion_modules");
    let depth = count("down_blocks.0.motion_modules.0.transformer_blocks");
    let mid = tensors.entries.keys().any(|k| k.starts_with("mid_block.motion_modules."));
    let positions = tensors
        .entries
        .iter()
        .find(|(k, _)| is_positions_buffer(k))
        .map(|(_, e)| e.tensor.shape[1])
        .unwrap_or(if mid { 32 } else { 24 });
    Ok(MotionAdapterConfig {
        block_out_channels,
        motion_layers_per_block: PerBlock::Same(layers),
        motion_transformer_layers_per_block: PerBlock::Same(depth),
        motion_mid_block_layers_per_block: 1,
        motion_transformer_layers_per_mid_block: if mid {
            count("mid_block.motion_modules.0.transformer_blocks")
        } else {
            1
        },
        motion_num_attention_heads: PerBlock::Same(8),
        motion_norm_num_groups: 32,
        motion_max_seq_length: positions,
        use_motion_mid_block: mid,
        conv_in_channels: None,
    })
}

/// Checks a saved `pos_embed.pe` buffer `(1, L, C)` against the table we compute.
fn check_positions(key: &str, tensor: &PackTensor, file: &Path, max_positions: usize) -> Result<(), ImportError> {
    let err = |message: String| ImportError::Positions { key: key.into(), file: file.into(), message };
    let dims = tensor.shape.to_vec();
    if dims.len() != 3 || dims[0] != 1 {
        return Err(err(format!("shape {dims:?} is not (1, positions, channels)")));
    }
    if dims[1] != max_positions {
        return Err(err(format!(
            "holds {} positions but the config says motion_max_seq_length = {max_positions}",
            dims[1]
        )));
    }
    let data = bridge::to_data(tensor).map_err(|e| err(e.to_string()))?.convert::<f32>();
    let saved: Vec<f32> = data.try_to_vec::<f32>().map_err(|e| err(format!("{e:?}")))?;
    let computed: Vec<f32> = frame_positions(dims[1], dims[2], &Device::flex())
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("converted to f32");
    let worst = saved.iter().zip(&computed).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    // Half-precision files round the table (bf16: up to 4e-3); a wrong table is off by O(1).
    let tolerance = if matches!(tensor.dtype, DType::F32 | DType::F64) { 1e-5 } else { 1e-2 };
    if worst > tolerance {
        return Err(err(format!("differs from the sinusoidal table by {worst:.2e}")));
    }
    Ok(())
}

/// Builds the network of `config` and fills it from `tensors` (diffusers key names).
pub fn load_weights(
    config: UNetConfig,
    tensors: TensorSet,
    options: &LoadOptions,
    device: &Device,
) -> Result<LoadedUNet, ImportError> {
    let mut model = crate::load_phases::timed("build the modules", || UNetMotionModel::new(&config, device));
    let max_positions = config.motion.as_ref().map(|m| m.max_seq_length);
    let mut positions_checked = 0;
    let mut weights = TensorSet::default();
    for (key, entry) in tensors.entries {
        match max_positions {
            Some(max) if is_positions_buffer(&key) => {
                check_positions(&key, &entry.tensor, &entry.file, max)?;
                positions_checked += 1;
            }
            _ => {
                weights.entries.insert(key, entry);
            }
        }
    }
    let applied = apply_tensors(&mut model, weights, options.dtype)?;
    let report =
        LoadReport { applied: applied.applied, positions_checked, unused: applied.unused, files: applied.files };
    Ok(LoadedUNet { model, config, report })
}
