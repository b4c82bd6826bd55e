//! transformers `CLIPAttention` in the text tower: causal multi-head self-attention with biases.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::attention as sdpa;
use burn::tensor::ops::AttentionModuleOptions;

use crate::unet::attention::{merge_heads, split_heads};

/// `out_proj(softmax(q kᵀ / sqrt(head_dim) + causal mask) v)` with `q, k, v = q_proj(x), k_proj(x), v_proj(x)`:
/// each token attends to itself and the tokens before it.
#[derive(Module, Debug)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub heads: usize,
    /// Whether a position attends to earlier positions only (the text tower).
    pub causal: bool,
}

impl ClipAttention {
    /// `dim` split over `heads` heads (`dim % heads == 0`).
    pub fn new(dim: usize, heads: usize, causal: bool, device: &Device) -> Self {
        let linear = || LinearConfig::new(dim, dim).init(device);
        Self { q_proj: linear(), k_proj: linear(), v_proj: linear(), out_proj: linear(), heads, causal }
    }

    /// `(B, L, dim)` -> `(B, L, dim)`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let q = split_heads(self.q_proj.forward(x.clone()), self.heads);
        let k = split_heads(self.k_proj.forward(x.clone()), self.heads);
        let v = split_heads(self.v_proj.forward(x), self.heads);
        let options = AttentionModuleOptions { is_causal: self.causal, ..Default::default() };
        self.out_proj.forward(merge_heads(sdpa(q, k, v, None, None, options)))
    }
}
