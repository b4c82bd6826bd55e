//! avdm-import: diffusers folders, sharded / half-precision safetensors and original
//! AnimateDiff checkpoints into avdm models, with a report of every key.
//!
//! ```no_run
//! use avdm_import::{AdapterSource, LoadOptions, load_unet_motion};
//! # fn main() -> Result<(), avdm_import::ImportError> {
//! let device = burn::prelude::Device::flex();
//! let loaded = load_unet_motion(
//!     "sd15/unet".as_ref(),
//!     &AdapterSource::Folder("animatediff-motion-adapter-v1-5-2".into()),
//!     &LoadOptions::default(),
//!     &device,
//! )?;
//! println!("{}", loaded.report);
//! # Ok(()) }
//! ```

pub mod apply;
pub mod error;
pub mod keys;
pub mod tensors;
pub mod unet;
pub mod vae;

pub use apply::{Applied, apply_tensors};
pub use error::ImportError;
pub use tensors::TensorSet;
pub use unet::{
    AdapterSource, LoadOptions, LoadReport, LoadedUNet, load_unet_2d, load_unet_motion, load_unet_motion_folder,
};
pub use vae::{LoadedVae, load_vae, load_vae_weights};
