//! An AVDM2 distillation run and what it is made of: the settings, the data, the learner (one
//! iteration of the algorithm), the moving average of the student, the plan of a dry run and
//! the toy eval during a run. The method's losses and networks are in [`crate::method`].

pub mod config;
pub mod data;
pub mod ema;
pub mod eval;
pub mod learner;
pub mod param_groups;
pub mod plan;
pub mod run;
pub mod sample_streams;
