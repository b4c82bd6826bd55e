//! diffusers `Downsample2D` / `Upsample2D` (with convolution), as used in the UNet.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::resnet::conv3x3;

/// 3x3 conv with stride 2 (`downsamplers.0.conv`).
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    /// `padding`: the UNet's `downsample_padding` (1 for SD).
    pub fn new(channels: usize, padding: usize, device: &Device) -> Self {
        let p = padding;
        let conv = Conv2dConfig::new([channels, channels], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .init(device);
        Self { conv }
    }

    /// `(N, C, H, W)` -> `(N, C, ceil(H/2), ceil(W/2))` (for padding 1).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// Nearest-neighbour upsampling to `size` (2x by default), then a 3x3 conv (`upsamplers.0.conv`).
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self { conv: conv3x3(channels, channels, device) }
    }

    /// `(N, C, H, W)` -> `(N, C, size)`, `size` defaulting to `(2H, 2W)`.
    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let size = size.unwrap_or([2 * h, 2 * w]);
        let options = InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size);
        self.conv.forward(interpolate(x, options))
    }
}
