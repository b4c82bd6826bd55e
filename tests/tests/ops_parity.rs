//! Single ops against diffusers / torch on the same inputs (tests/fixtures/ops.safetensors).

use avdm_import::{TensorSet, apply_tensors};
use avdm_model::unet::attention::{Attention, AttentionSpec};
use avdm_model::unet::embeddings::{frame_positions, timestep_embedding};
use avdm_model::unet::feed_forward::FeedForward;
use avdm_tests::{assert_close, device, fixture_tensors, tensor};
use burn::nn::GroupNormConfig;
use burn::prelude::*;
use burn::tensor::DType;

const TOLERANCE: f32 = 1e-5;

/// The fixture tensors under `prefix.`, with the prefix removed.
fn weights(prefix: &str) -> TensorSet {
    fixture_tensors("ops.safetensors").rename(|k| k.strip_prefix(&format!("{prefix}.")).map(str::to_string))
}

#[test]
fn timestep_embedding_matches() {
    let ops = fixture_tensors("ops.safetensors");
    let t: Tensor<1> = tensor(&ops, "timestep_t");
    assert_close(
        "flip_sin_to_cos, dim 32",
        timestep_embedding(t.clone(), 32, true, 0.0),
        tensor(&ops, "timestep_emb_flip"),
        TOLERANCE,
    );
    assert_close(
        "odd dim 33, shift 1",
        timestep_embedding(t, 33, false, 1.0),
        tensor(&ops, "timestep_emb_odd_shift1"),
        TOLERANCE,
    );
}

#[test]
fn frame_positions_match() {
    let ops = fixture_tensors("ops.safetensors");
    assert_close(
        "sinusoidal positions 32x48",
        frame_positions(32, 48, &device()),
        tensor(&ops, "frame_positions"),
        TOLERANCE,
    );
}

#[test]
fn groupnorm_on_five_dims_matches() {
    let ops = fixture_tensors("ops.safetensors");
    let mut norm = GroupNormConfig::new(4, 16).with_epsilon(1e-6).init(&device());
    norm.gamma = Some(burn::module::Param::from_tensor(tensor(&ops, "groupnorm_weight")));
    norm.beta = Some(burn::module::Param::from_tensor(tensor(&ops, "groupnorm_bias")));
    let x: Tensor<5> = tensor(&ops, "groupnorm_in");
    assert_close("GroupNorm (B, C, F, H, W)", norm.forward(x), tensor(&ops, "groupnorm_out"), TOLERANCE);
}

#[test]
fn geglu_feed_forward_matches() {
    let ops = fixture_tensors("ops.safetensors");
    let mut ff = FeedForward::new(16, &device());
    let applied = apply_tensors(&mut ff, weights("ff"), DType::F32).expect("GEGLU weights");
    assert_eq!(applied.applied, 4);
    assert_close("GEGLU feed-forward", ff.forward(tensor(&ops, "ff_in")), tensor(&ops, "ff_out"), TOLERANCE);
}

#[test]
fn cross_attention_matches() {
    let ops = fixture_tensors("ops.safetensors");
    let spec = AttentionSpec { query_dim: 16, context_dim: 12, heads: 2, head_dim: 8, qkv_bias: false };
    let mut attn = Attention::new(spec, &device());
    apply_tensors(&mut attn, weights("attn"), DType::F32).expect("attention weights");
    let out = attn.forward(tensor(&ops, "attn_in"), Some(tensor(&ops, "attn_context")));
    assert_close("2-head cross-attention", out, tensor(&ops, "attn_out"), TOLERANCE);
}
