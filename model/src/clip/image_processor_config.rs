//! How CLIP's image processor prepares an image (transformers `CLIPImageProcessor`, saved as
//! `preprocessor_config.json` or inside `processor_config.json`): the short side resized to
//! `size` (bicubic), a centre crop of `crop_size`, pixels scaled by `rescale_factor` and
//! normalised by `image_mean` and `image_std`.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// A size as transformers writes it: a number, `{"shortest_edge": n}` or `{"height", "width"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    Square(usize),
    ShortestEdge { shortest_edge: usize },
    HeightWidth { height: usize, width: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipImageProcessorConfig {
    #[serde(default = "default_size")]
    pub size: SizeSpec,
    #[serde(default = "default_size")]
    pub crop_size: SizeSpec,
    #[serde(default = "yes")]
    pub do_resize: bool,
    #[serde(default = "yes")]
    pub do_center_crop: bool,
    #[serde(default = "yes")]
    pub do_rescale: bool,
    #[serde(default = "yes")]
    pub do_normalize: bool,
    #[serde(default = "default_rescale")]
    pub rescale_factor: f64,
    #[serde(default = "openai_mean")]
    pub image_mean: [f64; 3],
    #[serde(default = "openai_std")]
    pub image_std: [f64; 3],
    /// PIL's resampling filter number (3: bicubic, the only one CLIP uses).
    #[serde(default = "bicubic")]
    pub resample: u32,
}

impl ClipImageProcessorConfig {
    /// Parses a `preprocessor_config.json`, or a `processor_config.json` (its `image_processor`).
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let json = |source| ConfigError::Json { kind: "CLIPImageProcessor", source };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json)?;
        let inner = value.get("image_processor").cloned().unwrap_or(value);
        let config: Self = serde_json::from_value(inner).map_err(json)?;
        if config.resample != 3 {
            return Err(ConfigError::invalid(
                "resample",
                format!("filter {} (only 3, bicubic, is supported)", config.resample),
            ));
        }
        if config.short_side() == 0 || config.crop() == [0, 0] {
            return Err(ConfigError::invalid("size", "must be positive"));
        }
        Ok(config)
    }

    /// The side the short side is resized to.
    pub fn short_side(&self) -> usize {
        match self.size {
            SizeSpec::Square(n) | SizeSpec::ShortestEdge { shortest_edge: n } => n,
            SizeSpec::HeightWidth { height, width } => height.min(width),
        }
    }

    /// `[height, width]` of the centre crop.
    pub fn crop(&self) -> [usize; 2] {
        match self.crop_size {
            SizeSpec::Square(n) | SizeSpec::ShortestEdge { shortest_edge: n } => [n, n],
            SizeSpec::HeightWidth { height, width } => [height, width],
        }
    }
}

impl Default for ClipImageProcessorConfig {
    /// OpenAI CLIP's (224 pixels).
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

fn default_size() -> SizeSpec {
    SizeSpec::ShortestEdge { shortest_edge: 224 }
}
fn yes() -> bool {
    true
}
fn default_rescale() -> f64 {
    1.0 / 255.0
}
fn openai_mean() -> [f64; 3] {
    [0.48145466, 0.4578275, 0.40821073]
}
fn openai_std() -> [f64; 3] {
    [0.26862954, 0.26130258, 0.27577711]
}
fn bicubic() -> u32 {
    3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_file_layouts() {
        let hub = r#"{"crop_size": 224, "do_center_crop": true, "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "resample": 3, "size": 224, "feature_extractor_type": "CLIPFeatureExtractor"}"#;
        let hub = ClipImageProcessorConfig::from_json(hub).unwrap();
        assert_eq!((hub.short_side(), hub.crop()), (224, [224, 224]));
        let nested =
            r#"{"image_processor": {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 30}}}"#;
        let nested = ClipImageProcessorConfig::from_json(nested).unwrap();
        assert_eq!((nested.short_side(), nested.crop()), (32, [32, 30]));
        assert!(ClipImageProcessorConfig::from_json(r#"{"resample": 2}"#).unwrap_err().to_string().contains("bicubic"));
        assert_eq!(ClipImageProcessorConfig::default().short_side(), 224);
    }
}
