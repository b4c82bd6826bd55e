//! The toy teacher's networks: the SD1.5 / AnimateDiff architecture at a size that trains on
//! two CPU cores. Pixel space (no VAE): the UNet sees 3-channel 32x32 frames in `[-1, 1]`.

use avdm_model::clip::{ClipActivation, ClipTextConfig};
use avdm_model::unet::{MotionConfig, UNetConfig};

use super::vocabulary::{MAX_LENGTH, tokens};

/// Width of the text embeddings (the UNet's `cross_attention_dim`).
pub const TEXT_WIDTH: usize = 64;

/// A 2-layer CLIP-style text transformer over the toy vocabulary (quick_gelu, causal mask,
/// pooled at the first EOS).
pub fn text_config() -> ClipTextConfig {
    ClipTextConfig {
        vocab_size: tokens().len(),
        hidden_size: TEXT_WIDTH,
        intermediate_size: 4 * TEXT_WIDTH,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        max_position_embeddings: MAX_LENGTH,
        hidden_act: ClipActivation::QuickGelu,
        layer_norm_eps: 1e-5,
        bos_token_id: Some(0),
        eos_token_id: 1,
        pad_token_id: Some(1),
        projection_dim: None,
    }
}

/// The toy UNet: blocks of 16/32/32 channels at 32/16/8 pixels, one resnet per block, spatial
/// and cross attention in the 8x8 block and the mid block only (what two CPU cores afford).
/// With `motion`, AnimateDiff motion modules in every block and the mid block, for up to 16
/// frames.
pub fn unet_config(motion: bool) -> UNetConfig {
    UNetConfig {
        sample_size: Some(32),
        in_channels: 3,
        out_channels: 3,
        block_out_channels: vec![16, 32, 32],
        down_cross_attention: vec![false, false, true],
        up_cross_attention: vec![true, false, false],
        layers_per_block: vec![1, 1, 1],
        transformer_layers_per_block: vec![1, 1, 1],
        reverse_transformer_layers_per_block: vec![1, 1, 1],
        transformer_layers_per_mid_block: 1,
        mid_block_layers: 1,
        num_attention_heads: vec![2, 4, 4],
        cross_attention_dim: TEXT_WIDTH,
        use_linear_projection: true,
        norm_num_groups: 8,
        norm_eps: 1e-5,
        downsample_padding: 1,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
        motion: motion.then(|| MotionConfig {
            num_attention_heads: vec![2, 4, 4],
            reverse_num_attention_heads: vec![4, 4, 2],
            transformer_layers_per_block: vec![1, 1, 1],
            reverse_transformer_layers_per_block: vec![1, 1, 1],
            transformer_layers_per_mid_block: 1,
            mid_block: true,
            max_seq_length: 16,
            norm_per_frame: false,
        }),
    }
}
