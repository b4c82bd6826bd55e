//! diffusers `AutoencoderKL`: the SD1.5 VAE.

use crate::kernels::conv2d::conv2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::config::VaeConfig;
use super::decoder::Decoder;
use super::distribution::DiagonalGaussian;
use super::encoder::Encoder;
use crate::unet::resnet::conv1x1;

/// `encoder` -> `quant_conv`? gives the latent distribution; `post_quant_conv`? -> `decoder`
/// gives the image back.
#[derive(Module, Debug)]
pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub decoder: Decoder,
    /// 1x1 conv `2L -> 2L` on the encoder's moments.
    pub quant_conv: Option<Conv2d>,
    /// 1x1 conv `L -> L` on the latents before decoding.
    pub post_quant_conv: Option<Conv2d>,
    /// Pipelines feed the UNet `(z - shift_factor) * scaling_factor` (0.18215 for SD1.5).
    pub scaling_factor: f64,
    /// 0 unless the config sets `shift_factor`.
    pub shift_factor: f64,
    latent_channels: usize,
    blocks: usize,
}

impl AutoencoderKL {
    /// The VAE of `c` (assumed valid, see [`VaeConfig::validate`]), randomly initialised.
    pub fn new(c: &VaeConfig, device: &Device) -> Self {
        let l = c.latent_channels;
        Self {
            encoder: Encoder::new(c, device),
            decoder: Decoder::new(c, device),
            quant_conv: c.use_quant_conv.then(|| conv1x1(2 * l, 2 * l, device)),
            post_quant_conv: c.use_post_quant_conv.then(|| conv1x1(l, l, device)),
            scaling_factor: c.scaling_factor,
            shift_factor: c.shift_factor.unwrap_or(0.0),
            latent_channels: l,
            blocks: c.block_out_channels.len(),
        }
    }

    /// Channels of the latents (`L`, 4 for SD1.5).
    pub fn latent_channels(&self) -> usize {
        self.latent_channels
    }

    /// How much smaller the latents are than the image per side: `2^(blocks - 1)` (8 for SD1.5).
    pub fn downscale_factor(&self) -> usize {
        1 << (self.blocks - 1)
    }

    /// `image (N, 3, H, W)` in `[-1, 1]` -> the latent distribution, each tensor
    /// `(N, L, H/f, W/f)` (unscaled, like diffusers' `vae.encode(x).latent_dist`).
    pub fn encode(&self, image: Tensor<4>) -> DiagonalGaussian {
        let moments = self.encoder.forward(image);
        let moments = match &self.quant_conv {
            Some(conv) => conv2d(conv, moments),
            None => moments,
        };
        DiagonalGaussian::from_moments(moments)
    }

    /// Unscaled latents `z (N, L, h, w)` -> image `(N, 3, h*f, w*f)`, like diffusers'
    /// `vae.decode(z).sample` (divide pipeline latents by `scaling_factor` first).
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let z = match &self.post_quant_conv {
            Some(conv) => conv2d(conv, z),
            None => z,
        };
        self.decoder.forward(z)
    }

    /// [`decode`](Self::decode) of `chunk` latents at a time, concatenated along the batch: the
    /// same images with less peak memory (AnimateDiff's `decode_chunk_size`). `chunk` 0 is 1.
    pub fn decode_chunked(&self, z: Tensor<4>, chunk: usize) -> Tensor<4> {
        let [n, ..] = z.dims();
        let chunk = chunk.max(1);
        if n <= chunk {
            return self.decode(z);
        }
        let parts = (0..n).step_by(chunk).map(|start| self.decode(z.clone().narrow(0, start, chunk.min(n - start))));
        Tensor::cat(parts.collect(), 0)
    }
}
