//! Training checkpoints: a folder of burnpack files (modules and optimizer states, which keep
//! the parameter ids that tie optimizer state to parameters) and a `state.json`, written under a
//! temporary name and swapped into place so that an interrupted write never damages the last
//! good checkpoint.
//!
//! Layout: `<dir>/state.json`, `<dir>/<name>.module.bpk`, `<dir>/<name>.optim.bpk`.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::TrainError;

const STATE: &str = "state.json";

/// `dir` with `suffix` appended to its name (`run/image` -> `run/image.writing`).
pub(crate) fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Writes `contents` at `path` whole or not at all: `<path>.partial`, then a rename.
pub fn write_file_atomically(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), TrainError> {
    let tmp = sibling(path, ".partial");
    fs::write(&tmp, contents).map_err(TrainError::io(&tmp))?;
    fs::rename(&tmp, path).map_err(TrainError::io(path))
}

/// A checkpoint being written; nothing is visible at its destination before [`Self::commit`].
pub struct CheckpointWriter {
    dest: PathBuf,
    staging: PathBuf,
}

impl CheckpointWriter {
    /// Starts a checkpoint that will replace `dest`.
    pub fn begin(dest: &Path) -> Result<Self, TrainError> {
        let staging = sibling(dest, ".writing");
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(TrainError::io(&staging))?;
        }
        fs::create_dir_all(&staging).map_err(TrainError::io(&staging))?;
        Ok(Self { dest: dest.into(), staging })
    }

    fn error(&self, message: String) -> TrainError {
        TrainError::Checkpoint { path: self.staging.clone(), message }
    }

    pub fn module<M: Module>(&self, name: &str, module: &M) -> Result<(), TrainError> {
        let path = self.staging.join(format!("{name}.module.bpk"));
        module.clone().save_file(&path).map_err(|e| self.error(format!("writing {name}: {e}")))
    }

    pub fn optimizer(&self, name: &str, optimizer: &ModuleOptimizer) -> Result<(), TrainError> {
        let path = self.staging.join(format!("{name}.optim.bpk"));
        optimizer.save(&path).map_err(|e| self.error(format!("writing the {name} optimizer: {e}")))
    }

    pub fn state<S: Serialize>(&self, state: &S) -> Result<(), TrainError> {
        let path = self.staging.join(STATE);
        let text = serde_json::to_string_pretty(state).expect("training state serialises") + "\n";
        fs::write(&path, text).map_err(TrainError::io(path))
    }

    /// Replaces the checkpoint at the destination by this one.
    pub fn commit(self) -> Result<(), TrainError> {
        replace_folder(&self.staging, &self.dest)
    }
}

/// Moves the finished folder `staging` to `dest`, replacing what is there: the old folder is
/// first renamed to `<dest>.old` (which [`Checkpoint::find`] still reads if a crash stops the
/// swap half-way), then removed.
pub fn replace_folder(staging: &Path, dest: &Path) -> Result<(), TrainError> {
    let old = sibling(dest, ".old");
    if old.exists() {
        fs::remove_dir_all(&old).map_err(TrainError::io(&old))?;
    }
    if dest.exists() {
        fs::rename(dest, &old).map_err(TrainError::io(dest))?;
    }
    fs::rename(staging, dest).map_err(TrainError::io(dest))?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(TrainError::io(&old))?;
    }
    Ok(())
}

/// A checkpoint on disk.
pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    /// The checkpoint at `dir`, if one was committed there (also the previous one when a crash
    /// interrupted the swap).
    pub fn find(dir: &Path) -> Option<Self> {
        [dir.to_path_buf(), sibling(dir, ".old")].into_iter().find(|d| d.join(STATE).is_file()).map(|dir| Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn error(&self, message: String) -> TrainError {
        TrainError::Checkpoint { path: self.dir.clone(), message }
    }

    pub fn state<S: DeserializeOwned>(&self) -> Result<S, TrainError> {
        let path = self.dir.join(STATE);
        let text = fs::read_to_string(&path).map_err(TrainError::io(&path))?;
        serde_json::from_str(&text).map_err(|e| self.error(format!("{STATE} is not a training state: {e}")))
    }

    /// Loads the module saved as `name` into `module` (same architecture), keeping the saved
    /// parameter ids so that the optimizer state matches.
    pub fn module<M: Module>(&self, name: &str, module: M) -> Result<M, TrainError> {
        let path = self.dir.join(format!("{name}.module.bpk"));
        let record = ModuleRecord::load(&path).map_err(|e| self.error(format!("reading {}: {e}", path.display())))?;
        module.try_load_record(record).map_err(|e| self.error(format!("{name} does not fit the model: {e}")))
    }

    pub fn optimizer(&self, name: &str, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer, TrainError> {
        let path = self.dir.join(format!("{name}.optim.bpk"));
        optimizer.load(&path).map_err(|e| self.error(format!("reading {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_partial_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.md");
        write_file_atomically(&path, "first").unwrap();
        write_file_atomically(&path, "second").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("eval.md")]);
        let missing = dir.path().join("no-such-folder").join("eval.md");
        let err = write_file_atomically(&missing, "x").unwrap_err().to_string();
        assert!(err.contains("no-such-folder"), "{err}");
    }
}
