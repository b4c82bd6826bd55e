//! Watching a long run: the progress line, the distillation dashboard, and PNG plots of the
//! metrics written into the run folder.

pub mod dashboard;
pub mod plots;
pub mod progress;
