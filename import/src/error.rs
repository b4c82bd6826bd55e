//! Everything that can go wrong while importing weights, each naming the file and the key.

use std::path::PathBuf;

use avdm_model::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{what} not found: {}", path.display())]
    NotFound { what: &'static str, path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid safetensors file: {message}", path.display())]
    NotSafetensors { path: PathBuf, message: String },
    #[error("{} is not a readable PyTorch checkpoint: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error("bad shard index {}: {message}", path.display())]
    ShardIndex { path: PathBuf, message: String },
    #[error("config {}: {source}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("{what}: {source}")]
    Incompatible {
        what: String,
        #[source]
        source: ConfigError,
    },
    #[error("{} has no weights for the motion modules (no key starts with a block's `motion_modules`)", path.display())]
    NoMotionModules { path: PathBuf },
    #[error("key `{key}` appears in both {} and {}", first.display(), second.display())]
    DuplicateKey { key: String, first: PathBuf, second: PathBuf },
    #[error("tensor `{key}` in {} has shape {found:?}, the model expects {expected:?}", file.display())]
    Shape { key: String, file: PathBuf, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{key}` in {} has dtype {dtype}, which cannot be loaded as a weight", file.display())]
    Dtype { key: String, file: PathBuf, dtype: String },
    #[error("{} weights missing from {sources}: {}", keys.len(), preview(keys))]
    MissingKeys { keys: Vec<String>, sources: String },
    #[error("positions table `{key}` in {}: {message}", file.display())]
    Positions { key: String, file: PathBuf, message: String },
    #[error("pipeline {}: {message}", path.display())]
    Pipeline { path: PathBuf, message: String },
    #[error("output {}: {message}", path.display())]
    Output { path: PathBuf, message: String },
    #[error("tokenizer file {}: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    #[error("cannot tokenize {text:?}: {message}")]
    Encode { text: String, message: String },
    #[error("cannot export to {}: {message}", path.display())]
    Export { path: PathBuf, message: String },
    #[error("applying the weights failed: {message}")]
    Apply { message: String },
}

/// The first few keys of a long list, and how many more there are.
fn preview(keys: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = keys.iter().take(SHOWN).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    if keys.len() > SHOWN {
        s.push_str(&format!(" and {} more", keys.len() - SHOWN));
    }
    s
}
