//! transformers `CLIPVisionTransformer`: images cut into patches, a class token, full-attention
//! pre-LN layers; the class token's final state (after `post_layernorm`) is the pooled output.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::encoder_layer::ClipEncoderLayer;
use super::text_transformer::ClipEncoder;
use super::vision_config::ClipVisionConfig;

/// transformers `CLIPVisionEmbeddings`: `[class; patches] + positions`.
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    /// `(dim)`.
    pub class_embedding: Param<Tensor<1>>,
    /// `patch x patch` convolution at stride `patch`, no bias.
    pub patch_embedding: Conv2d,
    /// `[patches + 1, dim]`.
    pub position_embedding: Embedding,
}

impl ClipVisionEmbeddings {
    /// `(B, C, S, S)` with `S = image_size`, any float dtype -> `(B, patches + 1, dim)` in the
    /// weights' dtype.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let patches = self.patch_embedding.forward(pixels.cast(self.patch_embedding.weight.val().dtype()));
        let [b, dim, h, w] = patches.dims();
        let patches = patches.reshape([b, dim, h * w]).swap_dims(1, 2);
        let class = self.class_embedding.val().reshape([1, 1, dim]).expand([b, 1, dim]);
        let tokens = Tensor::cat(vec![class, patches], 1);
        let positions = Tensor::<1, Int>::arange(0..(h * w + 1) as i64, &tokens.device()).unsqueeze::<2>();
        tokens + self.position_embedding.forward(positions)
    }
}

/// The CLIP image tower. Field names are transformers' state-dict keys (under `vision_model.`).
#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    pub embeddings: ClipVisionEmbeddings,
    /// (transformers' spelling.)
    pub pre_layrnorm: LayerNorm,
    pub encoder: ClipEncoder,
    pub post_layernorm: LayerNorm,
    pub image_size: usize,
}

impl ClipVisionTransformer {
    /// A randomly initialised tower of a validated `config`.
    pub fn new(c: &ClipVisionConfig, device: &Device) -> Self {
        let norm = || LayerNormConfig::new(c.hidden_size).with_epsilon(c.layer_norm_eps).init(device);
        let patch = c.patch_size;
        Self {
            embeddings: ClipVisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::zeros([c.hidden_size], device)),
                patch_embedding: Conv2dConfig::new([c.num_channels, c.hidden_size], [patch, patch])
                    .with_stride([patch, patch])
                    .with_bias(false)
                    .init(device),
                position_embedding: EmbeddingConfig::new(c.positions(), c.hidden_size).init(device),
            },
            pre_layrnorm: norm(),
            encoder: ClipEncoder {
                layers: (0..c.num_hidden_layers).map(|_| ClipEncoderLayer::new(&c.layer_shape(), device)).collect(),
            },
            post_layernorm: norm(),
            image_size: c.image_size,
        }
    }

    /// Normalised pixels `(B, C, S, S)` (mean and std of CLIP's processor) -> pooled features `(B, dim)`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let h = self.pre_layrnorm.forward(self.embeddings.forward(pixels));
        let h = self.encoder.layers.iter().fold(h, |h, layer| layer.forward(h));
        let [b, _, dim] = h.dims();
        self.post_layernorm.forward(h.narrow(1, 0, 1).reshape([b, dim]))
    }
}
