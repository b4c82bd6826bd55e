//! Noise schedules and samplers.

pub mod ddim;
pub mod schedule;
pub mod student;
pub mod video_schedule;

pub use ddim::{DdimConfig, DdimScheduler, DdimStep, PredictionType, TimestepSpacing};
pub use schedule::{BetaSchedule, NoiseSchedule, NoisedBatch};
pub use student::{StudentConfig, StudentSampler, trailing_timesteps};
pub use video_schedule::VideoSchedule;
