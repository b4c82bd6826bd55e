//! Errors of training and evaluation runs, each naming the file, setting or step at fault.

use std::path::PathBuf;

use avdm_import::ImportError;
use avdm_model::ConfigError;
use avdm_model::clip::ClipInputError;
use avdm_model::pipeline::PipelineError;
use avdm_model::unet::InputError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("dataset {path}: {message}")]
    Dataset { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    #[error("setting `{field}`: {message}")]
    Setting { field: &'static str, message: String },
    #[error("step {step}: the {what} is {value} (not finite); training stopped, the last checkpoint is kept as it was")]
    NonFinite { step: usize, what: &'static str, value: f64 },
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("UNet: {0}")]
    UNet(#[from] InputError),
    #[error("text encoder: {0}")]
    Text(#[from] ClipInputError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }

    pub fn setting(field: &'static str, message: impl Into<String>) -> TrainError {
        TrainError::Setting { field, message: message.into() }
    }
}
