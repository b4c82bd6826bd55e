//! avdm-model: the networks and samplers of avdm, written once in Burn and run on any device.
//!
//! Nothing here reads files: configs are plain (serde) structs, weights arrive through
//! `avdm-import`. Module fields carry diffusers' state-dict names (`down_blocks`, `resnets`,
//! `motion_modules`, `to_q`, ...), so a checkpoint key is a path into these structs.

pub mod clip;
pub mod error;
pub mod i3d;
pub mod kernels;
pub mod noise;
pub mod pipeline;
pub mod precision;
pub mod sched;
pub mod unet;
pub mod vae;

pub use clip::{ClipTextConfig, ClipTextTransformer};
pub use error::ConfigError;
pub use unet::{UNetConfig, UNetMotionModel};
pub use vae::{AutoencoderKL, VaeConfig};
