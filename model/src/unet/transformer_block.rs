//! diffusers `BasicTransformerBlock` (layer-norm type): self-attention, second attention, GEGLU.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::attention::{Attention, AttentionSpec};
use super::embeddings::frame_positions;
use super::feed_forward::FeedForward;

/// `h = x + attn1(pos(norm1(x)))`; `h = h + attn2(pos(norm2(h)), ctx)`; `h = h + ff(norm3(h))`.
///
/// In the spatial transformers `attn2` is cross-attention on the text; in the motion modules it
/// is a second self-attention (`double_self_attention`) and `pos` adds the sinusoidal frame
/// positions (`max_positions > 0`).
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
    /// Number of sinusoidal positions (0: none).
    pub max_positions: usize,
}

/// Hyper-parameters of a [`BasicTransformerBlock`].
#[derive(Debug, Clone, Copy)]
pub struct TransformerBlockSpec {
    pub dim: usize,
    pub heads: usize,
    /// Text width for cross-attention; `None`: `attn2` is a second self-attention.
    pub cross_attention_dim: Option<usize>,
    /// Number of sinusoidal positions added before both attentions (0: none).
    pub max_positions: usize,
}

impl BasicTransformerBlock {
    pub fn new(s: TransformerBlockSpec, device: &Device) -> Self {
        let head_dim = s.dim / s.heads;
        let attn = |context_dim| {
            Attention::new(
                AttentionSpec { query_dim: s.dim, context_dim, heads: s.heads, head_dim, qkv_bias: false },
                device,
            )
        };
        let norm = || LayerNormConfig::new(s.dim).with_epsilon(1e-5).init(device);
        Self {
            norm1: norm(),
            attn1: attn(s.dim),
            norm2: norm(),
            attn2: attn(s.cross_attention_dim.unwrap_or(s.dim)),
            norm3: norm(),
            ff: FeedForward::new(s.dim, device),
            max_positions: s.max_positions,
        }
    }

    /// `x (N, S, dim)`, `context (N, L, text_dim)` for cross-attention blocks -> `(N, S, dim)`.
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let positions = (self.max_positions > 0).then(|| {
            let [_, s, dim] = x.dims();
            assert!(s <= self.max_positions, "{s} frames exceed the {} positions", self.max_positions);
            frame_positions(s, dim, &x.device()).cast(x.dtype()).unsqueeze_dim::<3>(0)
        });
        let with_positions = |h: Tensor<3>| match &positions {
            Some(p) => h + p.clone(),
            None => h,
        };
        let h = x.clone() + self.attn1.forward(with_positions(self.norm1.forward(x)), None);
        let h = h.clone() + self.attn2.forward(with_positions(self.norm2.forward(h)), context.cloned());
        h.clone() + self.ff.forward(self.norm3.forward(h))
    }
}
