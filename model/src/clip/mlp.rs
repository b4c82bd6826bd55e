//! transformers `CLIPMLP`: the feed-forward of a CLIP encoder layer.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};

use super::config::ClipActivation;

/// `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct ClipMlp {
    /// `dim -> intermediate`.
    pub fc1: Linear,
    /// `intermediate -> dim`.
    pub fc2: Linear,
    #[module(skip)]
    pub activation: ClipActivation,
}

impl ClipMlp {
    pub fn new(dim: usize, intermediate: usize, activation: ClipActivation, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(dim, intermediate).init(device),
            fc2: LinearConfig::new(intermediate, dim).init(device),
            activation,
        }
    }

    /// `(B, L, dim)` -> `(B, L, dim)`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = match self.activation {
            ClipActivation::QuickGelu => h.clone() * sigmoid(h * 1.702),
            ClipActivation::Gelu => gelu(h),
        };
        self.fc2.forward(h)
    }
}
