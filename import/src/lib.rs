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
pub mod clip;
pub mod clip_model;
pub mod error;
pub mod export;
pub mod i3d;
pub mod keys;
pub mod load_phases;
pub mod numpy_pickle;
pub mod pipeline;
pub mod student;
pub mod tensors;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod values;
pub mod video_writer;

pub use apply::{Applied, apply_tensors};
pub use clip::{LoadedClipText, load_clip_text};
pub use error::ImportError;
pub use export::{
    ExportDtype, ExportReport, export_clip_text, export_motion_adapter, export_unet_2d, export_unet_motion,
};
pub use pipeline::{LoadedPipeline, load_pipeline, read_scheduler, write_scheduler};
pub use student::{STUDENT_CONFIG, read_student_config, write_student_config};
pub use tensors::TensorSet;
pub use tokenizer::ClipTokenizer;
pub use unet::{
    AdapterSource, LoadOptions, LoadReport, LoadedUNet, load_unet_2d, load_unet_motion, load_unet_motion_folder,
};
pub use vae::{LoadedVae, load_vae, load_vae_weights};
pub use video_writer::{Video, VideoFormat, write_video};
