//! avdm-train: the toy world, toy-teacher training, evaluation, and (with the distillation
//! issue) the AVDM2 learner.
//!
//! It builds on the networks of `avdm-model` and the loaders of `avdm-import`.

pub mod adm;
pub mod backward_sim;
pub mod checkpoint;
pub mod cluster;
pub mod dashboard;
pub mod data;
pub mod data_parallel;
pub mod discriminator;
pub mod distill;
pub mod distill_config;
pub mod distill_data;
pub mod distill_eval;
pub mod distill_plan;
pub mod ema;
pub mod error;
pub mod eval;
pub mod fake_score;
pub mod grad_norm;
pub mod judge;
pub mod learner;
pub mod lr_schedule;
pub mod metrics;
pub mod param_groups;
pub mod plots;
pub mod progress;
pub mod rekey;
pub mod sample_streams;
pub mod sdm;
pub mod standard_eval;
pub mod teacher;
pub mod toy;

pub use error::TrainError;
