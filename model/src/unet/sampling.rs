//! diffusers `Downsample2D` / `Upsample2D` (with convolution), as used in the UNet and the VAE.

use crate::kernels::conv2d::conv2d;
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
    /// `padding`: diffusers' `downsample_padding`, zeros on every side (1 in the SD UNet).
    /// `0` is diffusers' special case (the VAE encoder's): one row and one column of zeros
    /// at the bottom and right only, `F.pad(x, (0, 1, 0, 1))`, before an unpadded conv.
    pub fn new(channels: usize, padding: usize, device: &Device) -> Self {
        let padding = match padding {
            0 => PaddingConfig2d::Explicit(0, 0, 1, 1),
            p => PaddingConfig2d::Explicit(p, p, p, p),
        };
        let conv =
            Conv2dConfig::new([channels, channels], [3, 3]).with_stride([2, 2]).with_padding(padding).init(device);
        Self { conv }
    }

    /// `(N, C, H, W)` -> `(N, C, ceil(H/2), ceil(W/2))` for padding 1, `(N, C, floor(H/2), floor(W/2))`
    /// for padding 0.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(&self.conv, x)
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
        conv2d(&self.conv, interpolate(x, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(padding: usize, h: usize, w: usize) -> [usize; 4] {
        let device = Device::flex();
        Downsample2D::new(2, padding, &device).forward(Tensor::zeros([1, 2, h, w], &device)).dims()
    }

    #[test]
    fn vae_downsample_pads_bottom_right_like_diffusers() {
        // diffusers: F.pad(x, (0, 1, 0, 1)) then a 3x3 stride-2 conv without padding.
        assert_eq!(down(0, 16, 12), [1, 2, 8, 6]);
        assert_eq!(down(0, 7, 5), [1, 2, 3, 2]);
        // The UNet's symmetric padding rounds up instead.
        assert_eq!(down(1, 7, 5), [1, 2, 4, 3]);
    }

    #[test]
    fn vae_downsample_reads_only_the_padded_bottom_right() {
        // With a kernel that sums its 3x3 window, output (0, 0) covers rows/cols 0..3 (no zero
        // row above or left of the image) and the last output covers the added zero row/col.
        let device = Device::flex();
        let mut d = Downsample2D::new(1, 0, &device);
        d.conv.weight = d.conv.weight.map(|w| w.ones_like());
        d.conv.bias = d.conv.bias.map(|b| b.map(|b| b.zeros_like()));
        let out = d.forward(Tensor::ones([1, 1, 4, 4], &device));
        let values: Vec<f32> = out.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(values, [9.0, 6.0, 6.0, 4.0]);
    }
}
