//! diffusers `Attention` with the SDPA processor: multi-head scaled dot-product attention.

use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use burn::tensor::module::attention as sdpa;
use burn::tensor::ops::AttentionModuleOptions;

use crate::kernels::chunked_attention::{chunk_rows, chunked_attention, score_budget};
use crate::kernels::group_norm::group_norm;
use crate::kernels::linear::linear;

/// `to_out(softmax(q kᵀ / sqrt(head_dim)) v)` with `q = to_q(x)`, `k = to_k(ctx)`, `v = to_v(ctx)`.
/// Checkpoint key `to_out.0` maps onto `to_out`.
#[derive(Module, Debug)]
pub struct Attention {
    /// diffusers' `Attention.group_norm`: only the VAE's mid-block attention has one
    /// (see [`Attention::forward_image`]).
    pub group_norm: Option<GroupNorm>,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub heads: usize,
}

/// Hyper-parameters of an [`Attention`].
#[derive(Debug, Clone, Copy)]
pub struct AttentionSpec {
    /// Width of the queries' input.
    pub query_dim: usize,
    /// Width of the keys' and values' input (the text width for cross-attention).
    pub context_dim: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Bias on `to_q/to_k/to_v` (false in the UNet, true in the VAE).
    pub qkv_bias: bool,
}

impl Attention {
    pub fn new(s: AttentionSpec, device: &Device) -> Self {
        let inner = s.heads * s.head_dim;
        Self {
            group_norm: None,
            to_q: LinearConfig::new(s.query_dim, inner).with_bias(s.qkv_bias).init(device),
            to_k: LinearConfig::new(s.context_dim, inner).with_bias(s.qkv_bias).init(device),
            to_v: LinearConfig::new(s.context_dim, inner).with_bias(s.qkv_bias).init(device),
            to_out: LinearConfig::new(inner, s.query_dim).init(device),
            heads: s.heads,
        }
    }

    /// `x (N, S, query_dim)`, `context (N, L, context_dim)` (self-attention when `None`)
    /// -> `(N, S, query_dim)`.
    pub fn forward(&self, x: Tensor<3>, context: Option<Tensor<3>>) -> Tensor<3> {
        let context = context.unwrap_or_else(|| x.clone());
        let q = split_heads(linear(&self.to_q, x), self.heads);
        let k = split_heads(linear(&self.to_k, context.clone()), self.heads);
        let v = split_heads(linear(&self.to_v, context), self.heads);
        linear(&self.to_out, merge_heads(scaled_dot_product(q, k, v)))
    }

    /// Adds the GroupNorm (`groups`, `eps`) that [`Attention::forward_image`] applies first.
    pub fn with_group_norm(mut self, groups: usize, eps: f64, device: &Device) -> Self {
        let channels = self.to_q.weight.dims()[0];
        self.group_norm = Some(GroupNormConfig::new(groups, channels).with_epsilon(eps).init(device));
        self
    }

    /// Self-attention over the `H*W` pixels of an image, with diffusers' `residual_connection`:
    /// `x + to_out(attention(group_norm(x)))`. `(N, C, H, W)` -> `(N, C, H, W)`.
    pub fn forward_image(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let normed = match &self.group_norm {
            Some(norm) => group_norm(norm, x.clone()),
            None => x.clone(),
        };
        let tokens = normed.reshape([n, c, h * w]).swap_dims(1, 2);
        let out = self.forward(tokens, None).swap_dims(1, 2).reshape([n, c, h, w]);
        x + out
    }
}

/// `softmax(q kᵀ / sqrt(D)) v` for `q (N, H, S, D)`, `k, v (N, H, L, D)` -> `(N, H, S, D)`,
/// through [`chunked_attention`]: under autodiff it keeps only the output and each row's
/// log-sum-exp for its backward pass, a score matrix over the budget a chunk of rows at a time
/// (Burn's op would keep the whole `S x L` matrix and its softmax); without autodiff it is the
/// backend's own op (fused or tiled for inference) or, on the CPU, its kernel. Burn's op
/// everywhere when the score budget is `usize::MAX` (`avdm bench --attention burn`).
pub fn scaled_dot_product(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    if score_budget() == usize::MAX {
        return sdpa(q, k, v, None, None, AttentionModuleOptions::default());
    }
    let chunk = chunk_rows(q.dims(), k.dims()[2]).unwrap_or(q.dims()[2]);
    chunked_attention(q, k, v, chunk)
}

/// `(N, S, H*D)` -> `(N, H, S, D)`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [n, s, inner] = x.dims();
    x.reshape([n, s, heads, inner / heads]).swap_dims(1, 2)
}

/// `(N, H, S, D)` -> `(N, S, H*D)`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [n, h, s, d] = x.dims();
    x.swap_dims(1, 2).reshape([n, s, h * d])
}
