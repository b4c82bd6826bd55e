//! Filling any avdm module from a [`TensorSet`] keyed by diffusers / PyTorch names.
//!
//! A module's parameters are made lazily (no random values are drawn for weights that will be
//! overwritten): the expected keys and shapes come from the parameters' lazy shapes, and each
//! parameter is then made once from its stored bytes, decoded on all cores straight from the
//! file's memory map ([`crate::values`]). PyTorch's layout is Burn's except for Linear weights
//! (`[out, in]`, transposed on the way) and the norms' `weight`/`bias` (Burn's `gamma`/`beta`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::store::bridge;
use burn::tensor::DType;

use crate::error::ImportError;
use crate::keys::avdm_to_diffusers;
use crate::tensors::{Entry, TensorSet};
use crate::values::{Float, decode};

/// What [`apply_tensors`] loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub applied: usize,
    /// Keys of the set that the module has no parameter for.
    pub unused: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// Where the traversal of a module is: the field path (enum variants left out, as burn-store
/// names them) and the containers' types.
#[derive(Default)]
struct Walk {
    path: Vec<String>,
    containers: Vec<String>,
}

/// One float parameter as a checkpoint stores it.
struct Slot {
    /// The diffusers / PyTorch key.
    key: String,
    /// The stored (PyTorch) shape.
    shape: Vec<usize>,
    /// Stored as the transpose of the parameter (a Linear weight).
    transposed: bool,
}

impl Walk {
    fn enter(&mut self, name: &str, container: &str) {
        self.containers.push(container.to_string());
        if !container.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    fn exit(&mut self, container: &str) {
        self.containers.pop();
        if !container.starts_with("Enum:") {
            self.path.pop();
        }
    }

    /// The parameter at the current path, of (Burn) shape `dims`.
    fn slot(&self, dims: &[usize]) -> Slot {
        let module = self.containers.iter().rev().find(|c| c.starts_with("Struct:") || c.starts_with("Enum:"));
        let module = module.map_or("", String::as_str);
        let mut path = self.path.clone();
        let name = path.last().cloned().unwrap_or_default();
        let norm = matches!(module, "Struct:GroupNorm" | "Struct:LayerNorm" | "Struct:BatchNorm" | "Struct:RmsNorm");
        if let (true, Some(last)) = (norm, path.last_mut()) {
            match name.as_str() {
                "gamma" => *last = "weight".into(),
                "beta" => *last = "bias".into(),
                _ => {}
            }
        }
        let transposed = module == "Struct:Linear" && name == "weight" && dims.len() == 2;
        let shape = if transposed { vec![dims[1], dims[0]] } else { dims.to_vec() };
        Slot { key: avdm_to_diffusers(&path.join(".")), shape, transposed }
    }
}

/// Collects every float parameter's slot without initialising any parameter.
#[derive(Default)]
struct Slots {
    walk: Walk,
    slots: Vec<Slot>,
}

impl ModuleVisitor for Slots {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.walk.enter(name, container_type);
    }
    fn exit_module(&mut self, _: &str, container_type: &str) {
        self.walk.exit(container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.slots.push(self.walk.slot(&param.lazy_shape().to_vec()));
    }
}

/// Makes every float parameter from its entry.
struct Loader {
    walk: Walk,
    entries: BTreeMap<String, Entry>,
    dtype: DType,
    applied: usize,
    error: Option<ImportError>,
}

impl Loader {
    /// The entry's values in the parameter's layout and `self.dtype`.
    fn values(&self, slot: &Slot, entry: Entry) -> Result<burn::tensor::TensorData, ImportError> {
        let target = Float::of(self.dtype).ok_or_else(|| ImportError::Apply {
            message: format!("parameters cannot be loaded as {:?}", self.dtype),
        })?;
        if let Some(mapped) = &entry.mapped {
            let data = decode(mapped.bytes(), mapped.dtype, &slot.shape, slot.transposed, target);
            mapped.release();
            return Ok(data);
        }
        // Other sources (PyTorch checkpoints) are read by burn-store, then decoded the same way.
        let data = bridge::into_data(entry.tensor)
            .map_err(|e| ImportError::Apply { message: format!("reading `{}`: {e:?}", slot.key) })?;
        let (data, stored) = match Float::of(data.dtype()) {
            Some(stored) => (data, stored),
            None => (data.convert::<f32>(), Float::F32),
        };
        Ok(decode(data.as_bytes(), stored, &slot.shape, slot.transposed, target))
    }
}

impl ModuleMapper for Loader {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.walk.enter(name, container_type);
    }
    fn exit_module(&mut self, _: &str, container_type: &str) {
        self.walk.exit(container_type);
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let slot = self.walk.slot(&param.lazy_shape().to_vec());
        let Some(entry) = self.entries.remove(&slot.key) else {
            self.error = Some(ImportError::Apply { message: format!("`{}` was not applied to the module", slot.key) });
            return param;
        };
        match self.values(&slot, entry) {
            Ok(data) => {
                let device = param.lazy_device();
                let tensor = Tensor::<D>::from_data(data, (&device, self.dtype));
                self.applied += 1;
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}

/// Loads `tensors` into `module`, casting floats to `dtype`.
///
/// Keys are PyTorch-layout state-dict keys (Linear weights `[out, in]`, norms `weight/bias`);
/// each must match a parameter's shape, every parameter must be present, and the keys the
/// module does not use are returned.
pub fn apply_tensors<M: Module>(module: &mut M, tensors: TensorSet, dtype: DType) -> Result<Applied, ImportError> {
    crate::load_phases::timed("decode and apply the weights", || apply(module, tensors, dtype))
}

fn apply<M: Module>(module: &mut M, tensors: TensorSet, dtype: DType) -> Result<Applied, ImportError> {
    let mut slots = Slots::default();
    module.visit(&mut slots);
    let expected: BTreeMap<String, Vec<usize>> = slots.slots.into_iter().map(|s| (s.key, s.shape)).collect();

    let files = tensors.files();
    let mut to_apply = BTreeMap::new();
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
        provided.insert(key.clone());
        to_apply.insert(key, entry);
    }
    let missing: Vec<String> = expected.keys().filter(|k| !provided.contains(*k)).cloned().collect();
    if !missing.is_empty() {
        let sources = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(ImportError::MissingKeys { keys: missing, sources });
    }

    let mut loader = Loader { walk: Walk::default(), entries: to_apply, dtype, applied: 0, error: None };
    *module = module.clone().map(&mut loader);
    match loader.error {
        Some(e) => Err(e),
        None => Ok(Applied { applied: loader.applied, unused, files }),
    }
}
