//! diffusers VAE `Encoder`: image -> the mean and log-variance of the latent (`double_z`).

use crate::kernels::conv2d::conv2d;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::blocks::{DownEncoderBlock2D, UNetMidBlock2D, VaeBlockSpec, norm_out};
use super::config::VaeConfig;
use crate::kernels::group_norm::group_norm_silu;
use crate::unet::resnet::conv3x3;

/// `conv_in` -> `down_blocks` -> `mid_block` -> `conv_norm_out` -> SiLU -> `conv_out`.
#[derive(Module, Debug)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock2D>,
    pub mid_block: UNetMidBlock2D,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    /// The encoder of `c` (assumed valid, see [`VaeConfig::validate`]).
    pub fn new(c: &VaeConfig, device: &Device) -> Self {
        let ch = &c.block_out_channels;
        let last = ch[ch.len() - 1];
        let down_blocks = VaeBlockSpec::chain(ch, c.layers_per_block, c.norm_num_groups)
            .into_iter()
            .map(|spec| DownEncoderBlock2D::new(spec, device))
            .collect();
        Self {
            conv_in: conv3x3(c.in_channels, ch[0], device),
            down_blocks,
            mid_block: UNetMidBlock2D::new(last, c.norm_num_groups, c.mid_block_add_attention, device),
            conv_norm_out: norm_out(c.norm_num_groups, last, device),
            conv_out: conv3x3(last, 2 * c.latent_channels, device),
        }
    }

    /// `(N, in_channels, H, W)` -> `(N, 2 * latent_channels, H/f, W/f)`, `f = 2^(blocks - 1)`
    /// (each halving rounds down).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv2d(&self.conv_in, x);
        let x = self.down_blocks.iter().fold(x, |x, b| b.forward(x));
        let x = self.mid_block.forward(x);
        conv2d(&self.conv_out, group_norm_silu(&self.conv_norm_out, x))
    }
}
