//! The VAE's blocks: `DownEncoderBlock2D`, `UpDecoderBlock2D` and `UNetMidBlock2D`.
//!
//! They are the UNet's resnets, samplers and attention without time or text conditioning;
//! every GroupNorm has eps [`VAE_NORM_EPS`].

use burn::nn::{GroupNorm, GroupNormConfig};
use burn::prelude::*;

use super::config::VAE_NORM_EPS;
use crate::unet::attention::{Attention, AttentionSpec};
use crate::unet::resnet::{ResnetBlock2D, ResnetSpec};
use crate::unet::sampling::{Downsample2D, Upsample2D};

/// A resnet without time embedding, `in_channels -> out_channels`.
fn resnet(in_channels: usize, out_channels: usize, groups: usize, device: &Device) -> ResnetBlock2D {
    let spec = ResnetSpec { in_channels, out_channels, temb_channels: None, groups, eps: VAE_NORM_EPS };
    ResnetBlock2D::new(spec, device)
}

/// `layers` resnets, the first `in_channels -> out_channels`, the others `out_channels -> out_channels`.
fn resnets(
    layers: usize,
    in_channels: usize,
    out_channels: usize,
    groups: usize,
    device: &Device,
) -> Vec<ResnetBlock2D> {
    (0..layers).map(|j| resnet(if j == 0 { in_channels } else { out_channels }, out_channels, groups, device)).collect()
}

/// The encoder's and decoder's output norm (`conv_norm_out`).
pub(crate) fn norm_out(groups: usize, channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels).with_epsilon(VAE_NORM_EPS).init(device)
}

/// Hyper-parameters of a down or up block.
#[derive(Debug, Clone, Copy)]
pub struct VaeBlockSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Resnets in the block.
    pub layers: usize,
    pub groups: usize,
    /// Whether the block ends with a down- (encoder) or upsampler (decoder): all but the last.
    pub resample: bool,
}

impl VaeBlockSpec {
    /// One spec per entry of `channels` (in block order): each block takes the previous
    /// block's width (the first its own) and all but the last resample.
    pub fn chain(channels: &[usize], layers: usize, groups: usize) -> Vec<Self> {
        channels
            .iter()
            .enumerate()
            .map(|(i, &out)| Self {
                in_channels: channels[i.saturating_sub(1)],
                out_channels: out,
                layers,
                groups,
                resample: i + 1 < channels.len(),
            })
            .collect()
    }
}

/// `resnets.j`, then the optional `downsamplers.0` (bottom/right zero pad + 3x3 stride-2 conv).
#[derive(Module, Debug)]
pub struct DownEncoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Vec<Downsample2D>,
}

impl DownEncoderBlock2D {
    pub fn new(s: VaeBlockSpec, device: &Device) -> Self {
        Self {
            resnets: resnets(s.layers, s.in_channels, s.out_channels, s.groups, device),
            downsamplers: if s.resample { vec![Downsample2D::new(s.out_channels, 0, device)] } else { vec![] },
        }
    }

    /// `(N, Cin, H, W)` -> `(N, Cout, H/2, W/2)` (rounded down), or `(N, Cout, H, W)` without
    /// downsampler.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.resnets.iter().fold(x, |x, r| r.forward(x, None));
        self.downsamplers.iter().fold(x, |x, d| d.forward(x))
    }
}

/// `resnets.j`, then the optional `upsamplers.0` (nearest 2x + 3x3 conv).
#[derive(Module, Debug)]
pub struct UpDecoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsamplers: Vec<Upsample2D>,
}

impl UpDecoderBlock2D {
    pub fn new(s: VaeBlockSpec, device: &Device) -> Self {
        Self {
            resnets: resnets(s.layers, s.in_channels, s.out_channels, s.groups, device),
            upsamplers: if s.resample { vec![Upsample2D::new(s.out_channels, device)] } else { vec![] },
        }
    }

    /// `(N, Cin, H, W)` -> `(N, Cout, 2H, 2W)`, or `(N, Cout, H, W)` without upsampler.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.resnets.iter().fold(x, |x, r| r.forward(x, None));
        self.upsamplers.iter().fold(x, |x, u| u.forward(x, None))
    }
}

/// `resnets.0` -> `attentions.0`? -> `resnets.1`: the attention is one head over all `C`
/// channels with its own GroupNorm and a residual connection.
#[derive(Module, Debug)]
pub struct UNetMidBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    /// Empty when the config says `mid_block_add_attention: false`.
    pub attentions: Vec<Attention>,
}

impl UNetMidBlock2D {
    /// `c` channels throughout, GroupNorms of `groups` groups; `add_attention`: the config's
    /// `mid_block_add_attention`.
    pub fn new(c: usize, groups: usize, add_attention: bool, device: &Device) -> Self {
        let spec = AttentionSpec { query_dim: c, context_dim: c, heads: 1, head_dim: c, qkv_bias: true };
        Self {
            resnets: resnets(2, c, c, groups, device),
            attentions: if add_attention {
                vec![Attention::new(spec, device).with_group_norm(groups, VAE_NORM_EPS, device)]
            } else {
                vec![]
            },
        }
    }

    /// `(N, C, H, W)` -> `(N, C, H, W)`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, None);
        if let Some(attention) = self.attentions.first() {
            x = attention.forward_image(x);
        }
        self.resnets[1].forward(x, None)
    }
}
