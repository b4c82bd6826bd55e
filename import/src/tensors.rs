//! Named tensors read lazily from safetensors files (single, sharded, variants) and PyTorch
//! checkpoints, each remembering the file it came from.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ModuleStore, PytorchStore, SafetensorsStore};

use crate::error::ImportError;
use crate::values::Float;

/// One named tensor and its file.
#[derive(Clone)]
pub struct Entry {
    pub tensor: PackTensor,
    pub file: PathBuf,
    /// A float tensor of a safetensors file: its bytes in the file's memory map, which the
    /// loader decodes straight into the parameter ([`crate::values`]).
    pub mapped: Option<Mapped>,
}

/// A tensor's bytes in a memory-mapped safetensors file.
#[derive(Clone)]
pub struct Mapped {
    pub map: Arc<memmap2::Mmap>,
    pub bytes: Range<usize>,
    pub dtype: Float,
}

impl Mapped {
    /// The tensor's bytes, mapped in one call first (one fault per page costs more than the
    /// decoding on a fast disk or the page cache).
    pub fn bytes(&self) -> &[u8] {
        #[cfg(target_os = "linux")]
        let _ = self.map.advise_range(memmap2::Advice::PopulateRead, self.bytes.start, self.bytes.len());
        &self.map[self.bytes.clone()]
    }

    /// Lets the kernel drop the tensor's pages from this process (they stay in the page cache,
    /// and a later read maps them again), so that a load holds one copy of the weights.
    pub fn release(&self) {
        // SAFETY: the map is a read-only private file mapping nobody writes; after
        // MADV_DONTNEED a read faults the same file bytes back in, so no reference into the
        // range can observe a change. (memmap2 rounds the range to whole pages.)
        #[cfg(unix)]
        let _ = unsafe {
            self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, self.bytes.start, self.bytes.len())
        };
    }
}

/// The float tensors of a safetensors file, by key, as ranges of its memory map.
fn mapped_tensors(path: &Path) -> Result<BTreeMap<String, Mapped>, ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Io { path: path.into(), source })?;
    // SAFETY: read-only map of a weight file; a concurrent truncation by another process would
    // be a user error we cannot guard against (as with any reader of the file).
    let map =
        Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ImportError::Io { path: path.into(), source })?);
    let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&map[..])
        .map_err(|e| ImportError::NotSafetensors { path: path.into(), message: e.to_string() })?;
    let start = 8 + header_len;
    let mut out = BTreeMap::new();
    for (name, info) in metadata.tensors() {
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => Float::F32,
            safetensors::Dtype::F16 => Float::F16,
            safetensors::Dtype::BF16 => Float::BF16,
            _ => continue,
        };
        let (from, to) = info.data_offsets;
        out.insert(name, Mapped { map: map.clone(), bytes: start + from..start + to, dtype });
    }
    Ok(out)
}

/// Tensors by checkpoint key. Data is read only when a tensor is applied to a model.
#[derive(Clone, Default)]
pub struct TensorSet {
    pub entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for TensorSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorSet").field("keys", &self.entries.len()).finish()
    }
}

/// Checks the header and the length of a safetensors file, so that a truncated or foreign
/// file is reported by name before any tensor is read.
fn validate_safetensors(path: &Path) -> Result<(), ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Io { path: path.into(), source })?;
    // SAFETY: the map is read-only and dropped before returning; a concurrent truncation
    // of a weight file would be a user error we cannot guard against anyway.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ImportError::Io { path: path.into(), source })?;
    safetensors::SafeTensors::read_metadata(&map).map_err(|e| ImportError::NotSafetensors {
        path: path.into(),
        message: match e {
            safetensors::SafeTensorError::MetadataIncompleteBuffer => {
                "the file is truncated or has trailing bytes".into()
            }
            safetensors::SafeTensorError::HeaderTooSmall | safetensors::SafeTensorError::InvalidHeaderLength => {
                "the file is too short to hold a safetensors header (truncated, or another format)".into()
            }
            other => other.to_string(),
        },
    })?;
    Ok(())
}

impl TensorSet {
    /// Every tensor of one `.safetensors` file.
    pub fn from_safetensors(path: &Path) -> Result<Self, ImportError> {
        if !path.is_file() {
            return Err(ImportError::NotFound { what: "safetensors file", path: path.into() });
        }
        validate_safetensors(path)?;
        let mut store = SafetensorsStore::from_file(path);
        let tensors = store
            .get_all_tensors()
            .map_err(|e| ImportError::NotSafetensors { path: path.into(), message: e.to_string() })?;
        let mut mapped = mapped_tensors(path)?;
        let entries = tensors
            .iter()
            .map(|(k, t)| (k.clone(), Entry { tensor: t.clone(), file: path.into(), mapped: mapped.remove(k) }))
            .collect();
        Ok(Self { entries })
    }

    /// The shards listed by a diffusers/transformers `*.safetensors.index.json`.
    pub fn from_shard_index(index: &Path) -> Result<Self, ImportError> {
        let text = std::fs::read_to_string(index).map_err(|source| ImportError::Io { path: index.into(), source })?;
        let bad = |message: String| ImportError::ShardIndex { path: index.into(), message };
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let map =
            json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| bad("no `weight_map` object".into()))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, file) in map {
            let file = file.as_str().ok_or_else(|| bad(format!("`{key}` maps to a non-string")))?;
            shards.entry(file.to_string()).or_default().push(key.clone());
        }
        let mut set = TensorSet::default();
        for (file, keys) in shards {
            let path = dir.join(&file);
            if !path.is_file() {
                return Err(bad(format!("shard `{file}` does not exist")));
            }
            let shard = Self::from_safetensors(&path)?;
            if let Some(key) = keys.iter().find(|k| !shard.entries.contains_key(*k)) {
                return Err(bad(format!("`{key}` is listed in shard `{file}` but is not in it")));
            }
            set = set.merge(shard)?;
        }
        Ok(set)
    }

    /// The weights of a diffusers model folder named `{stem}[.{variant}].safetensors`, single or
    /// sharded (`.safetensors.index.json`). Without a variant the plain file is preferred, then
    /// the `fp16` variant.
    pub fn from_model_folder(dir: &Path, stem: &str, variant: Option<&str>) -> Result<Self, ImportError> {
        crate::load_phases::timed("read the files' indexes", || Self::find_in_folder(dir, stem, variant))
    }

    fn find_in_folder(dir: &Path, stem: &str, variant: Option<&str>) -> Result<Self, ImportError> {
        if !dir.is_dir() {
            return Err(ImportError::NotFound { what: "model folder", path: dir.into() });
        }
        let variants: Vec<Option<&str>> = match variant {
            Some(v) => vec![Some(v)],
            None => vec![None, Some("fp16"), Some("bf16")],
        };
        for v in variants {
            let name = match v {
                Some(v) => format!("{stem}.{v}.safetensors"),
                None => format!("{stem}.safetensors"),
            };
            let single = dir.join(&name);
            if single.is_file() {
                return Self::from_safetensors(&single);
            }
            let index = dir.join(format!("{name}.index.json"));
            if index.is_file() {
                return Self::from_shard_index(&index);
            }
        }
        let wanted = match variant {
            Some(v) => format!("{stem}.{v}.safetensors"),
            None => format!("{stem}.safetensors"),
        };
        Err(ImportError::NotFound { what: "weights (single file or .index.json shards)", path: dir.join(wanted) })
    }

    /// Every tensor of a PyTorch checkpoint (`.ckpt`, `.pt`, `.pth`, `.bin`); a top-level
    /// `state_dict` wrapper is removed.
    pub fn from_checkpoint(path: &Path) -> Result<Self, ImportError> {
        crate::load_phases::timed("read the files' indexes", || Self::read_checkpoint(path))
    }

    fn read_checkpoint(path: &Path) -> Result<Self, ImportError> {
        if !path.is_file() {
            return Err(ImportError::NotFound { what: "checkpoint file", path: path.into() });
        }
        let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
        let tensors = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.get_all_tensors().cloned().map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|_| Err("the reader failed on this file".into()))
        .map_err(|message| ImportError::Checkpoint { path: path.into(), message })?;
        let entries = tensors
            .into_iter()
            .map(|(k, t)| {
                let key = k.strip_prefix("state_dict.").map(str::to_string).unwrap_or(k);
                (key, Entry { tensor: t, file: path.into(), mapped: None })
            })
            .collect();
        Ok(Self { entries })
    }

    /// The union of two sets; a key present in both is an error naming both files.
    pub fn merge(mut self, other: TensorSet) -> Result<Self, ImportError> {
        for (key, entry) in other.entries {
            if let Some(first) = self.entries.get(&key) {
                return Err(ImportError::DuplicateKey { key, first: first.file.clone(), second: entry.file });
            }
            self.entries.insert(key, entry);
        }
        Ok(self)
    }

    /// Renames keys; keys mapped to `None` are dropped.
    pub fn rename(self, mut f: impl FnMut(&str) -> Option<String>) -> Self {
        let entries = self.entries.into_iter().filter_map(|(k, e)| f(&k).map(|k| (k, e))).collect();
        Self { entries }
    }

    /// The distinct files the tensors came from.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.entries.values().map(|e| e.file.clone()).collect();
        files.sort();
        files.dedup();
        files
    }
}
