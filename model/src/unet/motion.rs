//! The AnimateDiff motion module: diffusers `AnimateDiffTransformer3D`, attention along frames.

use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::transformer_block::{BasicTransformerBlock, TransformerBlockSpec};

/// `x + reshape(proj_out(blocks(proj_in(tokens(norm(x))))))` where each token sequence is one
/// pixel's `F` frames: the blocks attend across time only, with sinusoidal frame positions.
#[derive(Module, Debug)]
pub struct AnimateDiffTransformer3D {
    pub norm: GroupNorm,
    pub proj_in: Linear,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Linear,
    /// Original AnimateDiff normalised each frame alone; diffusers normalises the whole clip.
    pub norm_per_frame: bool,
}

/// Hyper-parameters of an [`AnimateDiffTransformer3D`].
#[derive(Debug, Clone, Copy)]
pub struct MotionModuleSpec {
    pub channels: usize,
    pub heads: usize,
    pub layers: usize,
    pub groups: usize,
    pub max_positions: usize,
    pub norm_per_frame: bool,
}

impl AnimateDiffTransformer3D {
    pub fn new(s: MotionModuleSpec, device: &Device) -> Self {
        let block = TransformerBlockSpec {
            dim: s.channels,
            heads: s.heads,
            cross_attention_dim: None,
            max_positions: s.max_positions,
        };
        Self {
            norm: GroupNormConfig::new(s.groups, s.channels).with_epsilon(1e-6).init(device),
            proj_in: LinearConfig::new(s.channels, s.channels).init(device),
            transformer_blocks: (0..s.layers).map(|_| BasicTransformerBlock::new(block, device)).collect(),
            proj_out: LinearConfig::new(s.channels, s.channels).init(device),
            norm_per_frame: s.norm_per_frame,
        }
    }

    /// `x (B*F, C, H, W)` (frames folded frame-minor) -> `(B*F, C, H, W)`.
    pub fn forward(&self, x: Tensor<4>, frames: usize) -> Tensor<4> {
        let [bf, c, h, w] = x.dims();
        let b = bf / frames;
        let normed = if self.norm_per_frame {
            self.norm.forward(x.clone()).reshape([b, frames, c, h, w]).permute([0, 2, 1, 3, 4])
        } else {
            // (B, C, F, H, W): GroupNorm statistics over all frames.
            self.norm.forward(x.clone().reshape([b, frames, c, h, w]).permute([0, 2, 1, 3, 4]))
        };
        // (B, C, F, H, W) -> (B, H, W, F, C) -> (B*H*W, F, C)
        let tokens = normed.permute([0, 3, 4, 2, 1]).reshape([b * h * w, frames, c]);
        let mut tokens = self.proj_in.forward(tokens);
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, None);
        }
        let tokens = self.proj_out.forward(tokens);
        // (B, H, W, F, C) -> (B, F, C, H, W) -> (B*F, C, H, W)
        let out = tokens.reshape([b, h, w, frames, c]).permute([0, 3, 4, 1, 2]).reshape([bf, c, h, w]);
        out + x
    }
}
