//! diffusers `Transformer2DModel` (continuous input): the spatial transformer of the UNet.

use crate::kernels::conv2d::conv2d;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::resnet::conv1x1;
use super::transformer_block::{BasicTransformerBlock, TransformerBlockSpec};
use crate::kernels::group_norm::group_norm;
use crate::kernels::linear::linear;

/// `proj_in`/`proj_out`: a 1x1 conv (SD1.5) or a Linear (`use_linear_projection`, SD2).
/// Checkpoints name both `proj_in.weight`; load with enum variants skipped.
#[derive(Module, Debug)]
pub enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// `x + proj_out(blocks(proj_in(norm(x))))`, the blocks running over the `H*W` tokens.
#[derive(Module, Debug)]
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Projection,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Projection,
}

/// Hyper-parameters of a [`Transformer2DModel`].
#[derive(Debug, Clone, Copy)]
pub struct Transformer2DSpec {
    pub channels: usize,
    pub heads: usize,
    pub layers: usize,
    pub cross_attention_dim: usize,
    pub groups: usize,
    pub linear_projection: bool,
}

impl Transformer2DModel {
    pub fn new(s: Transformer2DSpec, device: &Device) -> Self {
        let projection = || {
            if s.linear_projection {
                Projection::Linear(LinearConfig::new(s.channels, s.channels).init(device))
            } else {
                Projection::Conv(conv1x1(s.channels, s.channels, device))
            }
        };
        let block = TransformerBlockSpec {
            dim: s.channels,
            heads: s.heads,
            cross_attention_dim: Some(s.cross_attention_dim),
            max_positions: 0,
        };
        Self {
            norm: GroupNormConfig::new(s.groups, s.channels).with_epsilon(1e-6).init(device),
            proj_in: projection(),
            transformer_blocks: (0..s.layers).map(|_| BasicTransformerBlock::new(block, device)).collect(),
            proj_out: projection(),
        }
    }

    /// `x (N, C, H, W)`, `context (N, L, text_dim)` -> `(N, C, H, W)`.
    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let to_tokens = |t: Tensor<4>| t.reshape([n, c, h * w]).swap_dims(1, 2);
        let to_image = |t: Tensor<3>| t.swap_dims(1, 2).reshape([n, c, h, w]);
        let normed = group_norm(&self.norm, x.clone());
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(conv2d(conv, normed)),
            Projection::Linear(layer) => linear(layer, to_tokens(normed)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, Some(context));
        }
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv2d(conv, to_image(tokens)),
            Projection::Linear(layer) => to_image(linear(layer, tokens)),
        };
        out + x
    }
}
