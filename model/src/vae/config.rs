//! diffusers `AutoencoderKL` configuration (`vae/config.json`).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::unet::config::{default_act_fn, default_latent_channels, default_norm_num_groups, default_true, require};

/// GroupNorm epsilon of every norm in the VAE (hard-coded by diffusers, not a config field).
pub const VAE_NORM_EPS: f64 = 1e-6;

/// diffusers `AutoencoderKL` config; missing fields take diffusers' defaults, unknown fields
/// (`force_upcast`, `latents_mean`, `_class_name`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Image channels in.
    #[serde(default = "default_image_channels")]
    pub in_channels: usize,
    /// Image channels out.
    #[serde(default = "default_image_channels")]
    pub out_channels: usize,
    /// One `DownEncoderBlock2D` per entry of `block_out_channels`.
    #[serde(default = "default_down_block_types")]
    pub down_block_types: Vec<String>,
    /// One `UpDecoderBlock2D` per entry of `block_out_channels`.
    #[serde(default = "default_up_block_types")]
    pub up_block_types: Vec<String>,
    #[serde(default = "default_block_out_channels")]
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block (decoder blocks have one more).
    #[serde(default = "default_layers_per_block")]
    pub layers_per_block: usize,
    #[serde(default = "default_act_fn")]
    pub act_fn: String,
    #[serde(default = "default_latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "default_norm_num_groups")]
    pub norm_num_groups: usize,
    /// Image size the VAE was trained on (informative only).
    #[serde(default = "default_sample_size")]
    pub sample_size: usize,
    /// Pipelines feed the UNet `(z - shift_factor) * scaling_factor`.
    #[serde(default = "default_scaling_factor")]
    pub scaling_factor: f64,
    /// `None` (SD1.5) means no shift.
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// 1x1 conv `2L -> 2L` after the encoder.
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    /// 1x1 conv `L -> L` before the decoder.
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    /// Whether the mid blocks have their self-attention.
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
}

fn default_image_channels() -> usize {
    3
}
fn default_down_block_types() -> Vec<String> {
    vec!["DownEncoderBlock2D".into()]
}
fn default_up_block_types() -> Vec<String> {
    vec!["UpDecoderBlock2D".into()]
}
fn default_block_out_channels() -> Vec<usize> {
    vec![64]
}
fn default_layers_per_block() -> usize {
    1
}
fn default_sample_size() -> usize {
    32
}
fn default_scaling_factor() -> f64 {
    0.18215
}

impl VaeConfig {
    /// Parses and validates diffusers' `vae/config.json` text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            serde_json::from_str(text).map_err(|source| ConfigError::Json { kind: "AutoencoderKL", source })?;
        config.validate()?;
        Ok(config)
    }

    /// The SD1.5 VAE (runwayml/stable-diffusion-v1-5 `vae/config.json`).
    pub fn sd15() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".into(); 4],
            up_block_types: vec!["UpDecoderBlock2D".into(); 4],
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            act_fn: "silu".into(),
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: 512,
            scaling_factor: 0.18215,
            shift_factor: None,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }

    /// Checks that the config describes a VAE avdm builds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.block_out_channels.len();
        require(n > 0, "block_out_channels", "is empty")?;
        for (field, types, wanted) in [
            ("down_block_types", &self.down_block_types, "DownEncoderBlock2D"),
            ("up_block_types", &self.up_block_types, "UpDecoderBlock2D"),
        ] {
            require(types.len() == n, field, format!("has {} entries but block_out_channels has {n}", types.len()))?;
            if let Some(t) = types.iter().find(|t| *t != wanted) {
                return Err(ConfigError::invalid(field, format!("unknown block type `{t}` (expected `{wanted}`)")));
            }
        }
        require(
            self.act_fn == "silu" || self.act_fn == "swish",
            "act_fn",
            format!("`{}` is not supported (silu only)", self.act_fn),
        )?;
        require(self.layers_per_block > 0, "layers_per_block", "every block needs a layer")?;
        for (field, c) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("latent_channels", self.latent_channels),
        ] {
            require(c > 0, field, "must be positive")?;
        }
        require(self.norm_num_groups > 0, "norm_num_groups", "must be positive")?;
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            require(
                c > 0 && c % self.norm_num_groups == 0,
                "norm_num_groups",
                format!("{} does not divide block {i}'s {c} channels", self.norm_num_groups),
            )?;
        }
        require(
            self.scaling_factor.is_finite() && self.scaling_factor != 0.0,
            "scaling_factor",
            format!("{} is not a finite non-zero number", self.scaling_factor),
        )?;
        require(self.shift_factor.is_none_or(f64::is_finite), "shift_factor", "is not finite")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_diffusers_defaults() {
        let c = VaeConfig::from_json("{}").unwrap();
        assert_eq!(c.block_out_channels, [64]);
        assert_eq!((c.in_channels, c.latent_channels, c.layers_per_block), (3, 4, 1));
        assert_eq!((c.scaling_factor, c.shift_factor), (0.18215, None));
        assert!(c.use_quant_conv && c.use_post_quant_conv && c.mid_block_add_attention);
    }

    #[test]
    fn invalid_fields_are_named() {
        let err = |json: &str| VaeConfig::from_json(json).unwrap_err().to_string();
        assert_eq!(err(r#"{"act_fn": "gelu"}"#), "config field `act_fn`: `gelu` is not supported (silu only)");
        assert!(err(r#"{"block_out_channels": [64, 128]}"#).starts_with("config field `down_block_types`"));
        assert!(err(r#"{"down_block_types": ["AttnDownEncoderBlock2D"]}"#).contains("AttnDownEncoderBlock2D"));
        assert!(err(r#"{"norm_num_groups": 5}"#).starts_with("config field `norm_num_groups`"));
        assert!(err(r#"{"layers_per_block": "two"}"#).starts_with("config is not valid JSON for AutoencoderKL"));
        VaeConfig::sd15().validate().unwrap();
    }
}
