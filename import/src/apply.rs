//! Filling any avdm module from a [`TensorSet`] keyed by diffusers / PyTorch names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter};
use burn::tensor::DType;

use crate::error::ImportError;
use crate::keys::{avdm_to_diffusers, diffusers_to_avdm};
use crate::tensors::TensorSet;

/// What [`apply_tensors`] loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub applied: usize,
    /// Keys of the set that the module has no parameter for.
    pub unused: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// Loads `tensors` into `module`, casting floats to `dtype`.
///
/// Keys are PyTorch-layout state-dict keys (Linear weights `[out, in]`, norms `weight/bias`);
/// each must match a parameter's shape, every parameter must be present, and the keys the
/// module does not use are returned.
pub fn apply_tensors<M: Module>(module: &mut M, tensors: TensorSet, dtype: DType) -> Result<Applied, ImportError> {
    let expected: BTreeMap<String, Vec<usize>> = module
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| (avdm_to_diffusers(&t.name), t.shape.to_vec()))
        .collect();

    let files = tensors.files();
    let mut to_apply = Vec::with_capacity(expected.len());
    let mut provided = BTreeSet::new();
    let mut unused = Vec::new();
    for (key, entry) in tensors.entries {
        let Some(shape) = expected.get(&key) else {
            unused.push(key);
            continue;
        };
        if !entry.tensor.dtype.is_float() {
            return Err(ImportError::Dtype { key, file: entry.file, dtype: format!("{:?}", entry.tensor.dtype) });
        }
        let found = entry.tensor.shape.to_vec();
        if &found != shape {
            return Err(ImportError::Shape { key, file: entry.file, expected: shape.clone(), found });
        }
        let mut tensor = entry.tensor;
        tensor.name = diffusers_to_avdm(&key);
        to_apply.push(tensor);
        provided.insert(key);
    }
    let missing: Vec<String> = expected.keys().filter(|k| !provided.contains(*k)).cloned().collect();
    if !missing.is_empty() {
        let sources = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(ImportError::MissingKeys { keys: missing, sources });
    }

    let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(dtype));
    let result = module.apply(to_apply, None, Some(Box::new(adapter)), true);
    if let Some(error) = result.errors.first() {
        return Err(ImportError::Apply { message: error.to_string() });
    }
    if let Some((path, _)) = result.missing.first() {
        return Err(ImportError::Apply {
            message: format!("`{}` was not applied to the module", avdm_to_diffusers(path)),
        });
    }
    Ok(Applied { applied: result.applied.len(), unused, files })
}
