//! The AnimateDiff motion module: diffusers `AnimateDiffTransformer3D`, attention along frames.

use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::transformer_block::{BasicTransformerBlock, TransformerBlockSpec};
use crate::kernels::group_norm::group_norm;
use crate::kernels::linear::linear;

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
            group_norm(&self.norm, x.clone()).reshape([b, frames, c, h, w]).permute([0, 2, 1, 3, 4])
        } else {
            // (B, C, F, H, W): GroupNorm statistics over all frames.
            group_norm(&self.norm, x.clone().reshape([b, frames, c, h, w]).permute([0, 2, 1, 3, 4]))
        };
        // (B, C, F, H, W) -> (B, H, W, F, C) -> (B*H*W, F, C)
        let tokens = normed.permute([0, 3, 4, 2, 1]).reshape([b * h * w, frames, c]);
        let mut tokens = linear(&self.proj_in, tokens);
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, None);
        }
        let tokens = linear(&self.proj_out, tokens);
        // (B, H, W, F, C) -> (B, F, C, H, W) -> (B*F, C, H, W)
        let out = tokens.reshape([b, h, w, frames, c]).permute([0, 3, 4, 1, 2]).reshape([bf, c, h, w]);
        out + x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `out - x` of a motion module for a clip whose first frame is scaled by `scale`.
    fn update(module: &AnimateDiffTransformer3D, x: &Tensor<4>, scale: f32) -> Tensor<4> {
        let device = x.device();
        let mut factors = vec![1f32; 4];
        factors[0] = scale;
        let factors = Tensor::<1>::from_data(TensorData::new(factors, [4]), &device).reshape([4, 1, 1, 1]);
        let scaled = x.clone() * factors;
        module.forward(scaled.clone(), 4) - scaled
    }

    #[test]
    fn norm_statistics_span_the_clip_unless_per_frame() {
        let device = Device::flex();
        let spec = |norm_per_frame| MotionModuleSpec {
            channels: 8,
            heads: 2,
            layers: 1,
            groups: 2,
            max_positions: 8,
            norm_per_frame,
        };
        let x = Tensor::<4>::random([4, 8, 3, 3], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let per_frame = AnimateDiffTransformer3D::new(spec(true), &device);
        // GroupNorm per frame is blind to one frame's scale: the module's update is unchanged.
        let diff = (update(&per_frame, &x, 1.0) - update(&per_frame, &x, 10.0)).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "per-frame norm changed by {diff}");
        // diffusers' clip-wide statistics see it.
        let clip = AnimateDiffTransformer3D::new(spec(false), &device);
        let diff = (update(&clip, &x, 1.0) - update(&clip, &x, 10.0)).abs().max().into_scalar::<f32>();
        assert!(diff > 1e-2, "clip-wide norm ignored a frame's scale ({diff})");
    }
}
