//! diffusers `ResnetBlock2D` (pre-norm, `time_embedding_norm="default"`, SiLU).

use crate::kernels::conv2d::conv2d;
use crate::kernels::group_norm::group_norm_silu;
use crate::kernels::linear::linear;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::silu;

/// `h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb))`; `out = shortcut(x) + conv2(silu(norm2(h)))`.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    /// Absent in the VAE (no timestep).
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    /// 1x1 conv when the channel count changes.
    pub conv_shortcut: Option<Conv2d>,
}

/// Hyper-parameters of a [`ResnetBlock2D`].
#[derive(Debug, Clone, Copy)]
pub struct ResnetSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the time embedding; `None` for a block without timestep input.
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
}

pub(crate) fn conv3x3(in_channels: usize, out_channels: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

pub(crate) fn conv1x1(in_channels: usize, out_channels: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [1, 1]).init(device)
}

impl ResnetBlock2D {
    pub fn new(s: ResnetSpec, device: &Device) -> Self {
        Self {
            norm1: GroupNormConfig::new(s.groups, s.in_channels).with_epsilon(s.eps).init(device),
            conv1: conv3x3(s.in_channels, s.out_channels, device),
            time_emb_proj: s.temb_channels.map(|t| LinearConfig::new(t, s.out_channels).init(device)),
            norm2: GroupNormConfig::new(s.groups, s.out_channels).with_epsilon(s.eps).init(device),
            conv2: conv3x3(s.out_channels, s.out_channels, device),
            conv_shortcut: (s.in_channels != s.out_channels).then(|| conv1x1(s.in_channels, s.out_channels, device)),
        }
    }

    /// `x (N, Cin, H, W)`, `temb (N, T)` -> `(N, Cout, H, W)`.
    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = conv2d(&self.conv1, group_norm_silu(&self.norm1, x.clone()));
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = linear(proj, silu(temb.clone()));
            let [n, c] = t.dims();
            h = h + t.reshape([n, c, 1, 1]);
        }
        let h = conv2d(&self.conv2, group_norm_silu(&self.norm2, h));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv2d(conv, x),
            None => x,
        };
        shortcut + h
    }
}
