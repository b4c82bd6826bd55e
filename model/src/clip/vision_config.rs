//! The CLIP image tower's configuration (transformers `CLIPVisionConfig`) and the whole
//! `CLIPModel`'s (`CLIPConfig`: both towers and the width of the shared embedding space).

use serde::{Deserialize, Serialize};

use super::config::{ClipActivation, ClipLayerShape, ClipTextConfig};
use crate::error::ConfigError;

/// transformers `CLIPVisionConfig`; unknown fields are ignored, absent ones take transformers'
/// defaults (ViT-B/32).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipVisionConfig {
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "default_intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "default_num_channels")]
    pub num_channels: usize,
    /// Side of the square input images.
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: ClipActivation,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

impl ClipVisionConfig {
    pub fn layer_shape(&self) -> ClipLayerShape {
        ClipLayerShape {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            heads: self.num_attention_heads,
            activation: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            causal: false,
        }
    }

    /// Patches per image, plus one for the class token.
    pub fn positions(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_channels", self.num_channels),
            ("patch_size", self.patch_size),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ConfigError::invalid("num_attention_heads", "does not divide hidden_size"));
        }
        if self.image_size < self.patch_size || !self.image_size.is_multiple_of(self.patch_size) {
            let message = format!("image_size {} is not a multiple of patch_size {}", self.image_size, self.patch_size);
            return Err(ConfigError::invalid("image_size", message));
        }
        Ok(())
    }
}

/// transformers `CLIPConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipModelConfig {
    pub text_config: ClipTextConfig,
    pub vision_config: ClipVisionConfig,
    /// Width of the shared image-text embedding space.
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
}

impl ClipModelConfig {
    /// Parses and validates a `config.json` of a `CLIPModel` folder.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            serde_json::from_str(text).map_err(|source| ConfigError::Json { kind: "CLIPModel", source })?;
        config.text_config.validate()?;
        config.vision_config.validate()?;
        if config.projection_dim == 0 {
            return Err(ConfigError::invalid("projection_dim", "must be positive"));
        }
        Ok(config)
    }
}

fn default_hidden_size() -> usize {
    768
}
fn default_intermediate_size() -> usize {
    3072
}
fn default_layers() -> usize {
    12
}
fn default_heads() -> usize {
    12
}
fn default_num_channels() -> usize {
    3
}
fn default_image_size() -> usize {
    224
}
fn default_patch_size() -> usize {
    32
}
fn default_act() -> ClipActivation {
    ClipActivation::QuickGelu
}
fn default_eps() -> f64 {
    1e-5
}
fn default_projection_dim() -> usize {
    512
}
