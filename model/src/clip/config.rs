//! The CLIP text encoder's configuration: transformers' `text_encoder/config.json` (`CLIPTextConfig`).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The MLP activation of the encoder layers (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipActivation {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP, SD1.5).
    QuickGelu,
    /// Exact (erf) GELU (OpenCLIP ViT-H, SD2).
    Gelu,
}

/// What one encoder layer is made of (the text and the vision tower share the layer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipLayerShape {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub heads: usize,
    pub activation: ClipActivation,
    pub layer_norm_eps: f64,
    /// Causal self-attention (text) or full (vision).
    pub causal: bool,
}

/// transformers `CLIPTextConfig`; only the fields that shape the text tower are read, unknown
/// fields are ignored and absent ones take transformers' defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "default_intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "default_num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "default_num_attention_heads")]
    pub num_attention_heads: usize,
    /// The longest token sequence the encoder accepts (77).
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: ClipActivation,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_bos_token_id")]
    pub bos_token_id: Option<usize>,
    /// Picks the pooled token: the legacy value 2 means "the position of the largest id",
    /// anything else "the first position holding this id".
    #[serde(default = "default_eos_token_id")]
    pub eos_token_id: usize,
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: Option<usize>,
    /// Width of `text_projection` in `CLIPTextModelWithProjection` (not part of this network).
    #[serde(default)]
    pub projection_dim: Option<usize>,
}

impl ClipTextConfig {
    /// Parses and validates a `config.json`.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            serde_json::from_str(text).map_err(|source| ConfigError::Json { kind: "CLIPTextModel", source })?;
        config.validate()?;
        Ok(config)
    }

    /// SD1.5's text encoder: OpenAI CLIP ViT-L/14 (runwayml/stable-diffusion-v1-5 `text_encoder/config.json`).
    pub fn vit_l14() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            hidden_act: ClipActivation::QuickGelu,
            layer_norm_eps: 1e-5,
            bos_token_id: Some(0),
            eos_token_id: 2,
            pad_token_id: Some(1),
            projection_dim: Some(768),
        }
    }

    /// The shape of its (causal) encoder layers.
    pub fn layer_shape(&self) -> ClipLayerShape {
        ClipLayerShape {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            heads: self.num_attention_heads,
            activation: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            causal: true,
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks that the config describes a network we can build.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ConfigError::invalid(
                "num_attention_heads",
                format!("{} heads do not divide hidden_size {}", self.num_attention_heads, self.hidden_size),
            ));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(ConfigError::invalid("layer_norm_eps", format!("{} is not positive", self.layer_norm_eps)));
        }
        if self.eos_token_id >= self.vocab_size {
            return Err(ConfigError::invalid(
                "eos_token_id",
                format!("{} is outside the vocabulary of {} tokens", self.eos_token_id, self.vocab_size),
            ));
        }
        Ok(())
    }
}

fn default_vocab_size() -> usize {
    49408
}
fn default_hidden_size() -> usize {
    512
}
fn default_intermediate_size() -> usize {
    2048
}
fn default_num_hidden_layers() -> usize {
    12
}
fn default_num_attention_heads() -> usize {
    8
}
fn default_max_position_embeddings() -> usize {
    77
}
fn default_hidden_act() -> ClipActivation {
    ClipActivation::QuickGelu
}
fn default_layer_norm_eps() -> f64 {
    1e-5
}
fn default_bos_token_id() -> Option<usize> {
    Some(49406)
}
fn default_eos_token_id() -> usize {
    49407
}
fn default_pad_token_id() -> Option<usize> {
    Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sd15_hub_config() {
        let json = r#"{
          "_name_or_path": "openai/clip-vit-large-patch14", "architectures": ["CLIPTextModel"],
          "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2,
          "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0,
          "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
          "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 12,
          "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768, "torch_dtype": "float32",
          "transformers_version": "4.22.0.dev0", "vocab_size": 49408
        }"#;
        assert_eq!(ClipTextConfig::from_json(json).unwrap(), ClipTextConfig::vit_l14());
    }

    #[test]
    fn rejects_what_cannot_be_built() {
        let err = ClipTextConfig::from_json(r#"{"hidden_size": 30, "num_attention_heads": 4}"#).unwrap_err();
        assert_eq!(err.to_string(), "config field `num_attention_heads`: 4 heads do not divide hidden_size 30");
        let err = ClipTextConfig::from_json(r#"{"hidden_act": "gelu_new"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `gelu_new`"), "{err}");
        let err = ClipTextConfig::from_json(r#"{"vocab_size": 100}"#).unwrap_err();
        assert!(err.to_string().contains("eos_token_id"), "{err}");
        let err = ClipTextConfig::from_json(r#"{"num_hidden_layers": 0}"#).unwrap_err();
        assert!(err.to_string().contains("num_hidden_layers"), "{err}");
    }
}
