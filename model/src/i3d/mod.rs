//! The I3D network of FVD, with 3D pooling composed from Burn's 2D pooling.

pub mod inception;
pub mod network;
pub mod pool3d;
pub mod unit3d;

pub use network::{InceptionI3d, UnitSpec};
