//! The whole UNet: diffusers `UNetMotionModel`, or `UNet2DConditionModel` without motion modules.

use crate::kernels::conv2d::conv2d;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::prelude::*;

use super::blocks::{Conditioning, DownBlock, MidBlock, UpBlock};
use super::config::UNetConfig;
use super::embeddings::{TimestepEmbedding, timestep_embedding};
use super::motion::{AnimateDiffTransformer3D, MotionModuleSpec};
use super::resnet::{ResnetBlock2D, ResnetSpec, conv3x3};
use super::sampling::{Downsample2D, Upsample2D};
use super::transformer_2d::{Transformer2DModel, Transformer2DSpec};
use crate::kernels::group_norm::group_norm_silu;

/// Inputs whose shapes do not fit the network.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("sample has {got} channels, the UNet expects {expected}")]
    Channels { got: usize, expected: usize },
    #[error("{got} frames exceed the motion modules' {max} positions")]
    TooManyFrames { got: usize, max: usize },
    #[error("a clip needs at least one frame")]
    NoFrames,
    #[error("timestep has {got} entries for a batch of {batch} (give 1 or {batch})")]
    Timesteps { got: usize, batch: usize },
    #[error("text has batch {got}, expected {expected} (batch x frames, repeated per frame)")]
    TextBatch { got: usize, expected: usize },
    #[error("text width is {got}, the UNet's cross_attention_dim is {expected}")]
    TextWidth { got: usize, expected: usize },
}

/// The encoder half's outputs: the mid block's output, the skip tensors the up blocks take
/// (`conv_in`'s output, then every down-block layer's and downsampler's), and each down block's
/// output before its downsampler.
struct Encoded {
    mid: Tensor<4>,
    skips: Vec<Tensor<4>>,
    block_features: Vec<Tensor<4>>,
}

/// SD1.5-family UNet with optional AnimateDiff motion modules. Field names are diffusers'
/// state-dict keys; `time_proj` has no weights and is the function `timestep_embedding`.
#[derive(Module, Debug)]
pub struct UNetMotionModel {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepEmbedding,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    pub in_channels: usize,
    pub cross_attention_dim: usize,
    /// Most frames per clip (1 without motion modules).
    pub max_frames: usize,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
}

impl UNetMotionModel {
    /// Builds the network of `config` with freshly initialised (random) weights.
    pub fn new(config: &UNetConfig, device: &Device) -> Self {
        let c = config;
        let ch = &c.block_out_channels;
        let n = ch.len();
        let temb = ch[0] * 4;
        let resnet = |in_channels, out_channels| {
            ResnetBlock2D::new(
                ResnetSpec {
                    in_channels,
                    out_channels,
                    temb_channels: Some(temb),
                    groups: c.norm_num_groups,
                    eps: c.norm_eps,
                },
                device,
            )
        };
        let attention = |channels: usize, heads, layers| {
            Transformer2DModel::new(
                Transformer2DSpec {
                    channels,
                    heads,
                    layers,
                    cross_attention_dim: c.cross_attention_dim,
                    groups: c.norm_num_groups,
                    linear_projection: c.use_linear_projection,
                },
                device,
            )
        };
        let motion_module = |channels: usize, heads, layers| {
            c.motion.as_ref().map(|m| {
                AnimateDiffTransformer3D::new(
                    MotionModuleSpec {
                        channels,
                        heads,
                        layers,
                        groups: c.norm_num_groups,
                        max_positions: m.max_seq_length,
                        norm_per_frame: m.norm_per_frame,
                    },
                    device,
                )
            })
        };

        let mut down_blocks = Vec::with_capacity(n);
        for i in 0..n {
            let (in_ch, out_ch) = (if i == 0 { ch[0] } else { ch[i - 1] }, ch[i]);
            let layers = c.layers_per_block[i];
            let mut block =
                DownBlock { resnets: vec![], attentions: vec![], motion_modules: vec![], downsamplers: vec![] };
            for j in 0..layers {
                block.resnets.push(resnet(if j == 0 { in_ch } else { out_ch }, out_ch));
                if c.down_cross_attention[i] {
                    block.attentions.push(attention(
                        out_ch,
                        c.num_attention_heads[i],
                        c.transformer_layers_per_block[i],
                    ));
                }
                let motion = c.motion.as_ref().map(|m| (m.num_attention_heads[i], m.transformer_layers_per_block[i]));
                if let Some(m) = motion.and_then(|(h, l)| motion_module(out_ch, h, l)) {
                    block.motion_modules.push(m);
                }
            }
            if i + 1 < n {
                block.downsamplers.push(Downsample2D::new(out_ch, c.downsample_padding, device));
            }
            down_blocks.push(block);
        }

        let mid_ch = ch[n - 1];
        let mut mid_block =
            MidBlock { resnets: vec![resnet(mid_ch, mid_ch)], attentions: vec![], motion_modules: vec![] };
        for _ in 0..c.mid_block_layers {
            mid_block.attentions.push(attention(
                mid_ch,
                c.num_attention_heads[n - 1],
                c.transformer_layers_per_mid_block,
            ));
            if let Some(m) = c.motion.as_ref().filter(|m| m.mid_block) {
                let heads = m.num_attention_heads[n - 1];
                mid_block.motion_modules.extend(motion_module(mid_ch, heads, m.transformer_layers_per_mid_block));
            }
            mid_block.resnets.push(resnet(mid_ch, mid_ch));
        }

        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let rev_heads: Vec<usize> = c.num_attention_heads.iter().rev().copied().collect();
        let rev_layers: Vec<usize> = c.layers_per_block.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(n);
        for i in 0..n {
            let out_ch = rev[i];
            let prev_out = if i == 0 { rev[0] } else { rev[i - 1] };
            let skip_in = rev[(i + 1).min(n - 1)];
            let layers = rev_layers[i] + 1;
            let mut block = UpBlock { resnets: vec![], attentions: vec![], motion_modules: vec![], upsamplers: vec![] };
            for j in 0..layers {
                let res_skip = if j == layers - 1 { skip_in } else { out_ch };
                let res_in = if j == 0 { prev_out } else { out_ch };
                block.resnets.push(resnet(res_in + res_skip, out_ch));
                if c.up_cross_attention[i] {
                    block.attentions.push(attention(out_ch, rev_heads[i], c.reverse_transformer_layers_per_block[i]));
                }
                let motion = c
                    .motion
                    .as_ref()
                    .map(|m| (m.reverse_num_attention_heads[i], m.reverse_transformer_layers_per_block[i]));
                if let Some(m) = motion.and_then(|(h, l)| motion_module(out_ch, h, l)) {
                    block.motion_modules.push(m);
                }
            }
            if i + 1 < n {
                block.upsamplers.push(Upsample2D::new(out_ch, device));
            }
            up_blocks.push(block);
        }

        Self {
            conv_in: conv3x3(c.in_channels, ch[0], device),
            time_embedding: TimestepEmbedding::new(ch[0], temb, device),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNormConfig::new(c.norm_num_groups, ch[0]).with_epsilon(c.norm_eps).init(device),
            conv_out: conv3x3(ch[0], c.out_channels, device),
            in_channels: c.in_channels,
            cross_attention_dim: c.cross_attention_dim,
            max_frames: c.max_frames(),
            flip_sin_to_cos: c.flip_sin_to_cos,
            freq_shift: c.freq_shift,
        }
    }

    /// The 2D UNet inside a video UNet: the same module with its motion modules left out. It
    /// shares the weights (a clone shares tensors) and keeps their parameter ids.
    pub fn without_motion_modules(&self) -> Self {
        let mut unet = self.clone();
        for block in &mut unet.down_blocks {
            block.motion_modules.clear();
        }
        unet.mid_block.motion_modules.clear();
        for block in &mut unet.up_blocks {
            block.motion_modules.clear();
        }
        unet.max_frames = 1;
        unet
    }

    /// Whether the network has motion modules (a video UNet) or not (the 2D UNet).
    pub fn has_motion_modules(&self) -> bool {
        self.down_blocks.iter().any(|b| !b.motion_modules.is_empty())
    }

    /// Predicts the noise of a batch of clips.
    ///
    /// - `sample`: `(B, C, F, H, W)` noisy latents.
    /// - `timestep`: `(B)` or `(1)` diffusion timesteps (float, in `[0, 1000)`).
    /// - `text`: `(B*F, L, D)` text embeddings, repeated per frame (frame-minor: `b*F + f`),
    ///   as diffusers >= 0.31 expects.
    ///
    /// Returns `(B, C_out, F, H, W)`.
    pub fn forward(&self, sample: Tensor<5>, timestep: Tensor<1>, text: Tensor<3>) -> Result<Tensor<5>, InputError> {
        let [b, c, f, h, w] = sample.dims();
        self.check_frames(f)?;
        let folded = sample.permute([0, 2, 1, 3, 4]).reshape([b * f, c, h, w]);
        let out = self.forward_folded(folded, timestep, text, b, f)?;
        let [_, c_out, _, _] = out.dims();
        Ok(out.reshape([b, f, c_out, h, w]).permute([0, 2, 1, 3, 4]))
    }

    /// The 2D UNet's forward on images: `sample (N, C, H, W)`, `timestep (N)` or `(1)`,
    /// `text (N, L, D)` -> `(N, C_out, H, W)`. Each image is a one-frame clip.
    pub fn forward_2d(&self, sample: Tensor<4>, timestep: Tensor<1>, text: Tensor<3>) -> Result<Tensor<4>, InputError> {
        let n = sample.dims()[0];
        self.forward_folded(sample, timestep, text, n, 1)
    }

    /// The encoder half (`conv_in`, time embedding, down blocks, mid block) of a forward pass,
    /// as the discriminator of the distillation uses it: for each resolution from the finest to
    /// the coarsest, the last feature map computed at it, folded `(B*F, C_i, H_i, W_i)` (a down
    /// block's output before its downsampler; the mid block's output at the coarsest).
    /// Inputs as [`UNetMotionModel::forward`].
    pub fn encoder_features(
        &self,
        sample: Tensor<5>,
        timestep: Tensor<1>,
        text: Tensor<3>,
    ) -> Result<Vec<Tensor<4>>, InputError> {
        let [b, c, f, h, w] = sample.dims();
        self.check_frames(f)?;
        let folded = sample.permute([0, 2, 1, 3, 4]).reshape([b * f, c, h, w]);
        let (x, cond) = self.embed(folded, timestep, text, b, f)?;
        let encoded = self.encode(x, &cond);
        let mut features = encoded.block_features;
        *features.last_mut().expect("a UNet has down blocks") = encoded.mid;
        Ok(features)
    }

    /// `conv_in`, the down blocks and the mid block on folded frames.
    fn encode(&self, x: Tensor<4>, cond: &Conditioning) -> Encoded {
        let mut x = conv2d(&self.conv_in, x);
        let mut skips = vec![x.clone()];
        let mut block_features = Vec::with_capacity(self.down_blocks.len());
        for block in &self.down_blocks {
            let (out, block_skips) = block.forward(x, cond);
            block_features.push(block_skips[block.resnets.len() - 1].clone());
            skips.extend(block_skips);
            x = out;
        }
        Encoded { mid: self.mid_block.forward(x, cond), skips, block_features }
    }

    fn check_frames(&self, frames: usize) -> Result<(), InputError> {
        if frames == 0 {
            return Err(InputError::NoFrames);
        }
        if frames > self.max_frames {
            return Err(InputError::TooManyFrames { got: frames, max: self.max_frames });
        }
        Ok(())
    }

    /// Checks the folded inputs and builds what every block is conditioned on.
    fn embed(
        &self,
        x: Tensor<4>,
        timestep: Tensor<1>,
        text: Tensor<3>,
        batch: usize,
        frames: usize,
    ) -> Result<(Tensor<4>, Conditioning), InputError> {
        let [_, c, _, _] = x.dims();
        if c != self.in_channels {
            return Err(InputError::Channels { got: c, expected: self.in_channels });
        }
        let [text_batch, _, text_width] = text.dims();
        if text_batch != batch * frames {
            return Err(InputError::TextBatch { got: text_batch, expected: batch * frames });
        }
        if text_width != self.cross_attention_dim {
            return Err(InputError::TextWidth { got: text_width, expected: self.cross_attention_dim });
        }
        let t = match timestep.dims()[0] {
            n if n == batch => timestep,
            1 => timestep.repeat_dim(0, batch),
            got => return Err(InputError::Timesteps { got, batch }),
        };
        let t_dim = self.time_embedding.linear_1.weight.dims()[0];
        // In f32, then in the weights' dtype (diffusers: `t_emb.to(dtype=sample.dtype)`).
        let t_emb = timestep_embedding(t, t_dim, self.flip_sin_to_cos, self.freq_shift);
        let emb = self.time_embedding.forward(t_emb.cast(self.time_embedding.linear_1.weight.val().dtype()));
        let [_, emb_dim] = emb.dims();
        let temb = emb.unsqueeze_dim::<3>(1).repeat_dim(1, frames).reshape([batch * frames, emb_dim]);
        Ok((x, Conditioning { temb, text, frames }))
    }

    /// Forward on frames folded into the batch: `x (B*F, C, H, W)`.
    fn forward_folded(
        &self,
        x: Tensor<4>,
        timestep: Tensor<1>,
        text: Tensor<3>,
        batch: usize,
        frames: usize,
    ) -> Result<Tensor<4>, InputError> {
        let (x, cond) = self.embed(x, timestep, text, batch, frames)?;
        let Encoded { mid: mut x, mut skips, .. } = self.encode(x, &cond);
        for block in &self.up_blocks {
            x = block.forward(x, &mut skips, &cond);
        }
        Ok(conv2d(&self.conv_out, group_norm_silu(&self.conv_norm_out, x)))
    }
}
