//! Output files written whole or not at all: a temporary sibling, then a rename.

use std::path::Path;

use anyhow::Context;
use avdm_train::checkpoint::{replace_folder, write_file_atomically};
use serde::Serialize;

/// Writes `text` at `path` through `<path>.partial`.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    Ok(write_file_atomically(path, text)?)
}

/// Writes `value` as pretty JSON at `path` through a temporary file.
pub fn write_json_atomically(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    write_atomically(path, &(serde_json::to_string_pretty(value)? + "\n"))
}

/// Writes a folder at `path` whole or not at all: `write` fills `<path>.partial/`, which then
/// takes the place of `path`. If `write` fails, an existing folder at `path` stays as it was.
pub fn write_folder_atomically(path: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    let staging = std::path::PathBuf::from(name);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    if let Err(e) = write(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(replace_folder(&staging, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_replaced_only_when_its_writer_succeeds() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("teacher");
        let write = |text: &'static str| {
            move |dir: &Path| -> anyhow::Result<()> {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join("weights"), text)?;
                Ok(())
            }
        };
        write_folder_atomically(&folder, write("first")).unwrap();
        assert_eq!(std::fs::read_to_string(folder.join("weights")).unwrap(), "first");
        let failed = write_folder_atomically(&folder, |dir| {
            write("half")(dir)?;
            anyhow::bail!("disk full")
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(folder.join("weights")).unwrap(), "first", "the old folder is intact");
        write_folder_atomically(&folder, write("second")).unwrap();
        assert_eq!(std::fs::read_to_string(folder.join("weights")).unwrap(), "second");
        let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("teacher")], "no staging folder is left");
    }
}
