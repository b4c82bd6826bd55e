//! Noise schedules and samplers.

pub mod ddim;
pub mod schedule;

pub use ddim::{DdimConfig, DdimScheduler, DdimStep, TimestepSpacing};
pub use schedule::{BetaSchedule, NoiseSchedule};
