//! avdm-train: the toy world, toy-teacher training, evaluation, and AVDM2 distillation.
//!
//! It builds on the networks of `avdm-model` and the loaders of `avdm-import`.

pub mod checkpoint;
pub mod cluster;
pub mod data;
pub mod data_parallel;
pub mod distill;
pub mod error;
pub mod eval;
pub mod grad_norm;
pub mod lr_schedule;
pub mod method;
pub mod metrics;
pub mod monitor;
pub mod rekey;
pub mod teacher;
pub mod toy;

pub use error::TrainError;
