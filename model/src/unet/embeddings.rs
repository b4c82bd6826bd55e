//! Sinusoidal embeddings: the diffusion timestep (`Timesteps` + `TimestepEmbedding`) and the
//! temporal frame positions of the motion modules (`SinusoidalPositionalEmbedding`).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::{DType, FloatDType};

use crate::kernels::linear::linear;

/// diffusers `get_timestep_embedding`: `t (N)` -> `(N, dim)`.
///
/// `freqs[i] = exp(-ln(10000) * i / (half - freq_shift))`, `emb = [sin(t f), cos(t f)]`,
/// swapped to `[cos, sin]` when `flip_sin_to_cos`; zero-padded when `dim` is odd.
/// The frequencies are computed on the host in f32, as torch does; the result is f32 whatever
/// the device's default dtype (pass the timesteps in f32: [`crate::precision::timestep_column`]).
pub fn timestep_embedding(timesteps: Tensor<1>, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Tensor<2> {
    let device = timesteps.device();
    let timesteps = timesteps.cast(FloatDType::F32);
    let half = dim / 2;
    let ln = -(10000f64.ln()) as f32;
    let denominator = (half as f64 - freq_shift) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| ((ln * i as f32) / denominator).exp()).collect();
    let freqs = Tensor::<1>::from_data(TensorData::new(freqs, [half]), (&device, DType::F32));
    let n = timesteps.dims()[0];
    let args = timesteps.reshape([n, 1]) * freqs.reshape([1, half]);
    let (first, second) =
        if flip_sin_to_cos { (args.clone().cos(), args.sin()) } else { (args.clone().sin(), args.cos()) };
    let mut parts = vec![first, second];
    if dim % 2 == 1 {
        parts.push(Tensor::zeros([n, 1], (&device, DType::F32)));
    }
    Tensor::cat(parts, 1)
}

/// diffusers `TimestepEmbedding`: `linear_2(silu(linear_1(x)))`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(in_dim: usize, embed_dim: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(in_dim, embed_dim).init(device),
            linear_2: LinearConfig::new(embed_dim, embed_dim).init(device),
        }
    }

    /// `(N, in_dim)` -> `(N, embed_dim)`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        linear(&self.linear_2, silu(linear(&self.linear_1, x)))
    }
}

/// The motion modules' frame positions: `pe[p, 2i] = sin(p w_i)`, `pe[p, 2i+1] = cos(p w_i)`,
/// `w_i = exp(-2i ln(10000) / dim)` (sin and cos *interleaved*). Returns `(frames, dim)`.
/// diffusers saves this table as the buffer `pos_embed.pe`; we compute it, in f32 like torch
/// (whatever the device's default dtype).
pub fn frame_positions(frames: usize, dim: usize, device: &Device) -> Tensor<2> {
    let scale = (-(10000f64.ln()) / dim as f64) as f32;
    let mut table = vec![0f32; frames * dim];
    for p in 0..frames {
        for i in (0..dim).step_by(2) {
            let w = (i as f32 * scale).exp();
            let angle = p as f32 * w;
            table[p * dim + i] = angle.sin();
            if i + 1 < dim {
                table[p * dim + i + 1] = angle.cos();
            }
        }
    }
    Tensor::from_data(TensorData::new(table, [frames, dim]), (device, DType::F32))
}
