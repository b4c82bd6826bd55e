//! The SD1.5-family UNet and the AnimateDiff motion modules, one concept per file.

pub mod attention;
pub mod blocks;
pub mod config;
pub mod embeddings;
pub mod feed_forward;
pub mod motion;
pub mod resnet;
pub mod sampling;
pub mod transformer_2d;
pub mod transformer_block;
pub mod unet_motion;

pub use config::{MotionAdapterConfig, MotionConfig, PerBlock, UNet2DConditionConfig, UNetConfig, UNetMotionConfig};
pub use unet_motion::{InputError, UNetMotionModel};
