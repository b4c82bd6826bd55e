//! The CLIP text encoder (transformers `CLIPTextModel`), one concept per file.

pub mod attention;
pub mod config;
pub mod embeddings;
pub mod encoder_layer;
pub mod mlp;
pub mod text_transformer;

pub use config::{ClipActivation, ClipTextConfig};
pub use text_transformer::{ClipInputError, ClipTextOutput, ClipTextTransformer};
