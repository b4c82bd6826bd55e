//! diffusers `FeedForward` with the GEGLU activation.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::kernels::geglu::geglu;
use crate::kernels::linear::linear;

/// `out(value * gelu(gate))` with `[value, gate] = geglu(x).chunk(2)` and exact (erf) GELU.
/// Checkpoint keys: `ff.net.0.proj` -> `geglu`, `ff.net.2` -> `out`.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `dim -> 2 * inner` (value half first, then gate half).
    pub geglu: Linear,
    /// `inner -> dim`.
    pub out: Linear,
}

impl FeedForward {
    /// diffusers' default: `inner = 4 * dim`.
    pub fn new(dim: usize, device: &Device) -> Self {
        let inner = 4 * dim;
        Self { geglu: LinearConfig::new(dim, 2 * inner).init(device), out: LinearConfig::new(inner, dim).init(device) }
    }

    /// `(N, S, dim)` -> `(N, S, dim)`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear(&self.out, geglu(linear(&self.geglu, x)))
    }
}
