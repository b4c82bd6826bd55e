//! transformers `CLIPEncoderLayer`: a pre-LayerNorm transformer layer.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::attention::ClipAttention;
use super::config::ClipLayerShape;
use super::mlp::ClipMlp;

/// `h = x + self_attn(layer_norm1(x))`; `out = h + mlp(layer_norm2(h))`.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    pub self_attn: ClipAttention,
    pub layer_norm1: LayerNorm,
    pub mlp: ClipMlp,
    pub layer_norm2: LayerNorm,
}

impl ClipEncoderLayer {
    pub fn new(c: &ClipLayerShape, device: &Device) -> Self {
        let norm = || LayerNormConfig::new(c.hidden_size).with_epsilon(c.layer_norm_eps).init(device);
        Self {
            self_attn: ClipAttention::new(c.hidden_size, c.heads, c.causal, device),
            layer_norm1: norm(),
            mlp: ClipMlp::new(c.hidden_size, c.intermediate_size, c.activation, device),
            layer_norm2: norm(),
        }
    }

    /// `(B, L, dim)` -> `(B, L, dim)`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        h.clone() + self.mlp.forward(self.layer_norm2.forward(h))
    }
}
