//! I3D's `Unit3D`: a 3D convolution with TensorFlow "SAME" padding, its batch norm (inference
//! statistics, folded into the convolution's weight and bias when loaded) and a ReLU.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;
use burn::tensor::module::conv3d;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::pool3d::same_padding_3d;

#[derive(Module, Debug)]
pub struct Unit3d {
    /// `(out, in, kt, kh, kw)`.
    pub weight: Param<Tensor<5>>,
    /// `(out)`.
    pub bias: Param<Tensor<1>>,
    pub stride: [usize; 3],
    /// Whether a ReLU follows (all units but the logits).
    pub relu: bool,
}

impl Unit3d {
    /// A unit with random weights (uniform in `±1/sqrt(fan_in)`) and zero bias.
    pub fn new(channels: [usize; 2], kernel: [usize; 3], stride: [usize; 3], relu: bool, device: &Device) -> Self {
        let [inputs, outputs] = channels;
        let bound = 1.0 / ((inputs * kernel.iter().product::<usize>()) as f64).sqrt();
        let shape = [outputs, inputs, kernel[0], kernel[1], kernel[2]];
        Self {
            weight: Param::from_tensor(Tensor::random(shape, Distribution::Uniform(-bound, bound), device)),
            bias: Param::from_tensor(Tensor::zeros([outputs], device)),
            stride,
            relu,
        }
    }

    /// A unit from its convolution `(out, in, kt, kh, kw)` and the batch norm that follows it
    /// (`y = (x - mean) / sqrt(var + eps) + beta`, no scale), folded into one convolution.
    pub fn folded(
        weight: Tensor<5>,
        [beta, mean, var]: [Tensor<1>; 3],
        eps: f64,
        stride: [usize; 3],
        relu: bool,
    ) -> Self {
        let inv_std = (var + eps).sqrt().recip();
        let bias = beta - mean * inv_std.clone();
        let [out, ..] = weight.dims();
        let weight = weight * inv_std.reshape([out, 1, 1, 1, 1]);
        Self { weight: Param::from_tensor(weight), bias: Param::from_tensor(bias), stride, relu }
    }

    /// `(B, C, T, H, W) -> (B, out, ceil(T/st), ceil(H/sh), ceil(W/sw))`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [_, _, kt, kh, kw] = self.weight.dims();
        let padding = same_padding_3d(&x, [kt, kh, kw], self.stride);
        let x = if padding.iter().all(|&(a, b)| a + b == 0) { x } else { x.pad(padding, PadMode::Constant(0.0)) };
        let y = conv3d(x, self.weight.val(), Some(self.bias.val()), ConvOptions::new(self.stride, [0; 3], [1; 3], 1));
        if self.relu { relu(y) } else { y }
    }
}
