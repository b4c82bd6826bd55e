//! diffusers VAE `Decoder`: latents -> image.

use crate::kernels::conv2d::conv2d;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::blocks::{UNetMidBlock2D, UpDecoderBlock2D, VaeBlockSpec, norm_out};
use super::config::VaeConfig;
use crate::kernels::group_norm::group_norm_silu;
use crate::unet::resnet::conv3x3;

/// `conv_in` -> `mid_block` -> `up_blocks` -> `conv_norm_out` -> SiLU -> `conv_out`.
#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: UNetMidBlock2D,
    /// Deepest first, each with `layers_per_block + 1` resnets.
    pub up_blocks: Vec<UpDecoderBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    /// The decoder of `c` (assumed valid, see [`VaeConfig::validate`]).
    pub fn new(c: &VaeConfig, device: &Device) -> Self {
        let ch: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let up_blocks = VaeBlockSpec::chain(&ch, c.layers_per_block + 1, c.norm_num_groups)
            .into_iter()
            .map(|spec| UpDecoderBlock2D::new(spec, device))
            .collect();
        let first = c.block_out_channels[0];
        Self {
            conv_in: conv3x3(c.latent_channels, ch[0], device),
            mid_block: UNetMidBlock2D::new(ch[0], c.norm_num_groups, c.mid_block_add_attention, device),
            up_blocks,
            conv_norm_out: norm_out(c.norm_num_groups, first, device),
            conv_out: conv3x3(first, c.out_channels, device),
        }
    }

    /// `(N, latent_channels, h, w)` -> `(N, out_channels, h*f, w*f)`, `f = 2^(blocks - 1)`.
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let x = self.mid_block.forward(conv2d(&self.conv_in, z));
        let x = self.up_blocks.iter().fold(x, |x, b| b.forward(x));
        conv2d(&self.conv_out, group_norm_silu(&self.conv_norm_out, x))
    }
}
