//! Output files written whole or not at all: a temporary sibling, then a rename.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

/// Writes `text` at `path` through `<path>.partial`.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `value` as pretty JSON at `path` through a temporary file.
pub fn write_json_atomically(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    write_atomically(path, &(serde_json::to_string_pretty(value)? + "\n"))
}
