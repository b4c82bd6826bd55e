//! CLIP (transformers `CLIPTextModel`, `CLIPVisionModel`, `CLIPModel`), one concept per file.

pub mod attention;
pub mod clip_model;
pub mod config;
pub mod embeddings;
pub mod encoder_layer;
pub mod image_processor_config;
pub mod mlp;
pub mod text_transformer;
pub mod vision_config;
pub mod vision_transformer;

pub use clip_model::ClipModel;
pub use config::{ClipActivation, ClipLayerShape, ClipTextConfig};
pub use image_processor_config::ClipImageProcessorConfig;
pub use text_transformer::{ClipInputError, ClipTextOutput, ClipTextTransformer};
pub use vision_config::{ClipModelConfig, ClipVisionConfig};
