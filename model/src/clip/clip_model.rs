//! transformers `CLIPModel`: the text and image towers and their projections into one
//! embedding space (what CLIPScore compares).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::text_transformer::{ClipInputError, ClipTextTransformer};
use super::vision_config::ClipModelConfig;
use super::vision_transformer::ClipVisionTransformer;

/// Field names are transformers' state-dict keys.
#[derive(Module, Debug)]
pub struct ClipModel {
    pub text_model: ClipTextTransformer,
    pub vision_model: ClipVisionTransformer,
    /// `vision hidden -> projection_dim`, no bias.
    pub visual_projection: Linear,
    /// `text hidden -> projection_dim`, no bias.
    pub text_projection: Linear,
}

impl ClipModel {
    /// A randomly initialised model of a validated `config`.
    pub fn new(c: &ClipModelConfig, device: &Device) -> Self {
        let projection = |from| LinearConfig::new(from, c.projection_dim).with_bias(false).init(device);
        Self {
            text_model: ClipTextTransformer::new(&c.text_config, device),
            vision_model: ClipVisionTransformer::new(&c.vision_config, device),
            visual_projection: projection(c.vision_config.hidden_size),
            text_projection: projection(c.text_config.hidden_size),
        }
    }

    /// transformers' `get_image_features`: normalised pixels `(B, C, S, S)` -> `(B, P)`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.visual_projection.forward(self.vision_model.forward(pixels))
    }

    /// transformers' `get_text_features`: token ids `(B, L)` -> `(B, P)`.
    pub fn text_features(&self, ids: Tensor<2, Int>) -> Result<Tensor<2>, ClipInputError> {
        Ok(self.text_projection.forward(self.text_model.forward(ids)?.pooled))
    }
}
