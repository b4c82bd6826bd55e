//! Video quality measures: the Fréchet distance of feature sets and temporal flicker.

pub mod flicker;
pub mod frechet;

pub use flicker::frame_change;
pub use frechet::{Gaussian, frechet_distance};
