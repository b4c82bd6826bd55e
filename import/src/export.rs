//! Saving a [`UNetMotionModel`] as diffusers folders, readable by `from_pretrained`:
//! a `MotionAdapter` (the motion modules alone, [`export_motion_adapter`]) or a whole
//! `UNetMotionModel` ([`export_unet_motion`]); and a CLIP text encoder as a transformers
//! `CLIPTextModel` folder ([`export_clip_text`]).
//!
//! Key names, shapes and dtypes are what diffusers writes: PyTorch layout (Linear weights
//! `[out, in]`, norms `weight/bias`), diffusers' spellings (`ff.net.0.proj`, `to_out.0`) and the
//! motion modules' frame-position buffers `...transformer_blocks.k.pos_embed.pe` `(1, L, C)`.
//! Those tables are computed here as in the model (libm sin/cos in f32); they may differ from
//! torch's vectorised ones in the last bit (6e-8), every parameter is written as it is.
//!
//! The folder is built under a temporary name next to its destination and renamed into place,
//! so a failed export leaves nothing behind. The destination must not exist or be an empty
//! folder: an export never overwrites files (remove a previous export first).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use avdm_model::clip::{ClipTextConfig, ClipTextTransformer};
use avdm_model::unet::embeddings::frame_positions;
use avdm_model::unet::motion::AnimateDiffTransformer3D;
use avdm_model::{ConfigError, UNetConfig, UNetMotionModel};
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};
use burn::tensor::DType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ImportError;
use crate::keys::avdm_to_diffusers;
use crate::unet::WEIGHTS_STEM;

/// The diffusers version written into exported configs (the one avdm is checked against).
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// The float dtype of exported weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ExportDtype {
    /// 32-bit floats (`fp32`): the loaded values, bit for bit.
    #[default]
    #[serde(rename = "fp32")]
    F32,
    /// IEEE half precision (`fp16`), rounded to nearest; what diffusers' fp16 variants hold.
    #[serde(rename = "fp16")]
    F16,
}

impl ExportDtype {
    fn burn(self) -> DType {
        match self {
            ExportDtype::F32 => DType::F32,
            ExportDtype::F16 => DType::F16,
        }
    }

    fn safetensors(self) -> safetensors::Dtype {
        match self {
            ExportDtype::F32 => safetensors::Dtype::F32,
            ExportDtype::F16 => safetensors::Dtype::F16,
        }
    }
}

impl FromStr for ExportDtype {
    type Err = String;

    /// `fp32` / `fp16` (also `f32`, `float32`, `f16`, `float16`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" | "f32" | "float32" => Ok(ExportDtype::F32),
            "fp16" | "f16" | "float16" => Ok(ExportDtype::F16),
            other => Err(format!("unknown export dtype `{other}` (expected fp32 or fp16)")),
        }
    }
}

impl fmt::Display for ExportDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportDtype::F32 => "fp32",
            ExportDtype::F16 => "fp16",
        })
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    /// Number of tensors in the weights file (position buffers included).
    pub tensors: usize,
    /// Size of all written files together.
    pub bytes: u64,
    /// The files written, at their final paths.
    pub files: Vec<PathBuf>,
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exported {} tensors, {} bytes in {} file(s)", self.tensors, self.bytes, self.files.len())?;
        for file in &self.files {
            write!(f, "\n  {}", file.display())?;
        }
        Ok(())
    }
}

/// Writes the motion modules of `model` as a diffusers `MotionAdapter` folder (`config.json`
/// and `diffusion_pytorch_model.safetensors`), loadable with `MotionAdapter.from_pretrained(dir)`
/// and combinable with any matching 2D UNet (`UNetMotionModel.from_unet2d`).
///
/// `dir` must not exist (or be an empty folder) and its parent must exist.
pub fn export_motion_adapter(
    model: &UNetMotionModel,
    config: &UNetConfig,
    dir: &Path,
    dtype: ExportDtype,
) -> Result<ExportReport, ImportError> {
    let adapter = config.to_motion_adapter_config().map_err(|source| ImportError::Incompatible {
        what: format!("cannot export a diffusers MotionAdapter to {}", dir.display()),
        source,
    })?;
    let json = config_json("MotionAdapter", &adapter, &[]);
    export(model, config, dir, dtype, json, |key| key.contains("motion_modules."))
}

/// Writes `model` as a diffusers `UNetMotionModel` folder (`config.json` and
/// `diffusion_pytorch_model.safetensors`), loadable with `UNetMotionModel.from_pretrained(dir)`.
///
/// `dir` must not exist (or be an empty folder) and its parent must exist.
pub fn export_unet_motion(
    model: &UNetMotionModel,
    config: &UNetConfig,
    dir: &Path,
    dtype: ExportDtype,
) -> Result<ExportReport, ImportError> {
    let full = config.to_unet_motion_config().map_err(|source| ImportError::Incompatible {
        what: format!("cannot export a diffusers UNetMotionModel to {}", dir.display()),
        source,
    })?;
    // Fields diffusers writes that avdm does not model; all hold their (None) defaults.
    let unmodelled = ["encoder_hid_dim", "addition_time_embed_dim", "projection_class_embeddings_input_dim"];
    let json = config_json("UNetMotionModel", &full, &unmodelled);
    export(model, config, dir, dtype, json, |_| true)
}

/// Writes the 2D part of `model` (all of it when it has no motion modules) as a diffusers
/// `UNet2DConditionModel` folder (`config.json` and `diffusion_pytorch_model.safetensors`),
/// loadable with `UNet2DConditionModel.from_pretrained(dir)` and by
/// [`crate::unet::load_unet_2d`]: an image model, e.g. a 2D teacher.
///
/// `dir` must not exist (or be an empty folder) and its parent must exist.
pub fn export_unet_2d(
    model: &UNetMotionModel,
    config: &UNetConfig,
    dir: &Path,
    dtype: ExportDtype,
) -> Result<ExportReport, ImportError> {
    let image = config.to_unet_2d_config().map_err(|source| ImportError::Incompatible {
        what: format!("cannot export a diffusers UNet2DConditionModel to {}", dir.display()),
        source,
    })?;
    let json = config_json("UNet2DConditionModel", &image, &[]);
    export(model, config, dir, dtype, json, |key| !key.contains("motion_modules."))
}

/// Writes a CLIP text encoder as a transformers `CLIPTextModel` folder (`config.json` and
/// `model.safetensors`, keys under `text_model.` as in hub files), loadable with
/// `CLIPTextModel.from_pretrained(dir)` and by [`crate::clip::load_clip_text`].
///
/// `dir` must not exist (or be an empty folder) and its parent must exist.
pub fn export_clip_text(
    model: &ClipTextTransformer,
    config: &ClipTextConfig,
    dir: &Path,
    dtype: ExportDtype,
) -> Result<ExportReport, ImportError> {
    let Value::Object(mut json) = serde_json::to_value(config).expect("configs serialize to JSON") else {
        unreachable!("a config struct serializes to a JSON object");
    };
    json.insert("architectures".into(), serde_json::json!(["CLIPTextModel"]));
    json.insert("model_type".into(), "clip_text_model".into());
    let sorted: BTreeMap<String, Value> = json.into_iter().collect();
    let target = Target::check(dir)?;
    let tensors = module_tensors(model, dtype, dir, |key| Some(format!("text_model.{key}")))?;
    target.write(&Value::Object(sorted.into_iter().collect()), &tensors, dtype, "model.safetensors")
}

/// A diffusers `config.json` object: the config's fields, `_class_name`, `_diffusers_version`
/// and `nulls`, with sorted keys as diffusers writes them.
fn config_json(class: &str, config: &impl Serialize, nulls: &[&str]) -> Value {
    let Value::Object(fields) = serde_json::to_value(config).expect("configs serialize to JSON") else {
        unreachable!("a config struct serializes to a JSON object");
    };
    let mut sorted: BTreeMap<String, Value> = fields.into_iter().collect();
    sorted.insert("_class_name".into(), class.into());
    sorted.insert("_diffusers_version".into(), DIFFUSERS_VERSION.into());
    for key in nulls {
        sorted.entry((*key).to_string()).or_insert(Value::Null);
    }
    Value::Object(sorted.into_iter().collect())
}

/// One tensor to write: diffusers key, shape and little-endian bytes in the export dtype.
struct Named {
    key: String,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Named {
    fn new(key: String, shape: Vec<usize>, data: TensorData, dtype: ExportDtype) -> Self {
        let bytes = data.convert_dtype(dtype.burn()).as_bytes().to_vec();
        Self { key, shape, bytes }
    }
}

fn export_error(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Export { path: path.into(), message: message.into() }
}

/// Checks the facts of `model` that `config` also states, so that a model is not saved under
/// the description of another.
fn check_model(model: &UNetMotionModel, config: &UNetConfig) -> Result<(), ImportError> {
    let facts = [
        ("motion", model.has_motion_modules() == config.motion.is_some()),
        ("in_channels", model.in_channels == config.in_channels),
        ("cross_attention_dim", model.cross_attention_dim == config.cross_attention_dim),
        ("motion_max_seq_length", model.max_frames == config.max_frames()),
    ];
    match facts.iter().find(|(_, same)| !same) {
        None => Ok(()),
        Some((field, _)) => Err(ImportError::Incompatible {
            what: "the model was not built from the config it is exported with".into(),
            source: ConfigError::Invalid { field: (*field).into(), message: "differs between model and config".into() },
        }),
    }
}

/// The frame-position tables diffusers saves as buffers, `(1, L, C)` per motion transformer
/// block, under their diffusers keys.
fn position_tables(model: &UNetMotionModel, dtype: ExportDtype) -> Vec<Named> {
    let mut blocks: Vec<(String, &[AnimateDiffTransformer3D])> = Vec::new();
    blocks
        .extend(model.down_blocks.iter().enumerate().map(|(i, b)| (format!("down_blocks.{i}"), &b.motion_modules[..])));
    blocks.push(("mid_block".into(), &model.mid_block.motion_modules));
    blocks.extend(model.up_blocks.iter().enumerate().map(|(i, b)| (format!("up_blocks.{i}"), &b.motion_modules[..])));
    let modules = blocks.into_iter().flat_map(|(prefix, list)| {
        list.iter().enumerate().map(move |(j, m)| (format!("{prefix}.motion_modules.{j}"), m))
    });
    let device = Device::flex();
    let mut out = Vec::new();
    for (prefix, module) in modules {
        for (k, block) in module.transformer_blocks.iter().enumerate().filter(|(_, b)| b.max_positions > 0) {
            let channels = block.norm1.gamma.val().dims()[0];
            let table = frame_positions(block.max_positions, channels, &device).into_data();
            let key = format!("{prefix}.transformer_blocks.{k}.pos_embed.pe");
            out.push(Named::new(key, vec![1, block.max_positions, channels], table, dtype));
        }
    }
    out
}

/// The parameters of `model` in PyTorch layout under the names `key` gives them (`None`:
/// left out).
fn module_tensors<M: ModuleSnapshot>(
    model: &M,
    dtype: ExportDtype,
    dir: &Path,
    key: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Named>, ImportError> {
    let mut out = Vec::new();
    for tensor in model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let Some(key) = key(&tensor.name) else { continue };
        let data = bridge::to_data(&tensor).map_err(|e| export_error(dir, format!("reading `{key}`: {e}")))?;
        out.push(Named::new(key, tensor.shape.to_vec(), data, dtype));
    }
    Ok(out)
}

/// The state dict of `model` as diffusers writes it, restricted to the keys `keep` accepts.
fn state_dict(
    model: &UNetMotionModel,
    dtype: ExportDtype,
    keep: fn(&str) -> bool,
    dir: &Path,
) -> Result<Vec<Named>, ImportError> {
    let mut out = module_tensors(model, dtype, dir, |name| Some(avdm_to_diffusers(name)).filter(|key| keep(key)))?;
    out.extend(position_tables(model, dtype).into_iter().filter(|t| keep(&t.key)));
    Ok(out)
}

/// Builds the folder of `config_json` and `tensors` and moves it to `dir`.
fn export(
    model: &UNetMotionModel,
    config: &UNetConfig,
    dir: &Path,
    dtype: ExportDtype,
    config_json: Value,
    keep: fn(&str) -> bool,
) -> Result<ExportReport, ImportError> {
    check_model(model, config)?;
    let target = Target::check(dir)?;
    let tensors = state_dict(model, dtype, keep, dir)?;
    target.write(&config_json, &tensors, dtype, &format!("{WEIGHTS_STEM}.safetensors"))
}

/// A checked export destination.
struct Target {
    dir: PathBuf,
    parent: PathBuf,
    name: OsString,
    /// `dir` exists as an empty folder, to be replaced.
    exists_empty: bool,
}

/// A temporary folder next to the destination, removed on drop unless renamed away.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if self.0.exists() {
            // Best effort: the export already failed, and that error is what gets reported.
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

impl Target {
    /// Refuses a destination without an existing parent, or one that exists and is not an
    /// empty folder.
    fn check(dir: &Path) -> Result<Self, ImportError> {
        let name = dir.file_name().ok_or_else(|| export_error(dir, "does not end in a folder name"))?.to_os_string();
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(ImportError::NotFound { what: "parent folder of the export", path: parent });
        }
        let exists_empty = match fs::symlink_metadata(dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(source) => return Err(ImportError::Io { path: dir.into(), source }),
            Ok(meta) if meta.is_dir() => {
                let mut entries = fs::read_dir(dir).map_err(|source| ImportError::Io { path: dir.into(), source })?;
                if entries.next().is_some() {
                    return Err(export_error(
                        dir,
                        "the folder exists and is not empty (an export never overwrites; remove it or choose a new folder)",
                    ));
                }
                true
            }
            Ok(_) => return Err(export_error(dir, "exists and is not a folder")),
        };
        Ok(Self { dir: dir.into(), parent, name, exists_empty })
    }

    /// Writes `config.json` and the weights (`weights_name`) into a temporary folder, then
    /// renames it to `dir`.
    fn write(
        self,
        config_json: &Value,
        tensors: &[Named],
        dtype: ExportDtype,
        weights_name: &str,
    ) -> Result<ExportReport, ImportError> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut temp_name = OsString::from(".");
        temp_name.push(&self.name);
        temp_name.push(format!(".avdm-export-{}-{nanos}", std::process::id()));
        let staging = Staging(self.parent.join(temp_name));
        let write_err = |path: &Path, e: &dyn fmt::Display| export_error(path, format!("cannot write: {e}"));
        fs::create_dir(&staging.0).map_err(|e| write_err(&staging.0, &e))?;

        let config_path = staging.0.join("config.json");
        let text = serde_json::to_string_pretty(config_json).expect("a JSON value serializes") + "\n";
        fs::write(&config_path, text).map_err(|e| write_err(&config_path, &e))?;

        let weights_path = staging.0.join(weights_name);
        let views = tensors
            .iter()
            .map(|t| {
                safetensors::tensor::TensorView::new(dtype.safetensors(), t.shape.clone(), &t.bytes)
                    .map(|view| (t.key.clone(), view))
                    .map_err(|e| export_error(&self.dir, format!("tensor `{}`: {e}", t.key)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(views, Some(metadata), &weights_path)
            .map_err(|e| write_err(&weights_path, &e))?;

        let mut bytes = 0;
        for path in [&config_path, &weights_path] {
            bytes += fs::metadata(path).map_err(|source| ImportError::Io { path: path.clone(), source })?.len();
        }
        if self.exists_empty {
            // Fails, keeping the folder, if something was put into it meanwhile.
            fs::remove_dir(&self.dir).map_err(|e| write_err(&self.dir, &e))?;
        }
        fs::rename(&staging.0, &self.dir).map_err(|e| write_err(&self.dir, &e))?;
        Ok(ExportReport {
            tensors: tensors.len(),
            bytes,
            files: vec![self.dir.join("config.json"), self.dir.join(weights_name)],
        })
    }
}
