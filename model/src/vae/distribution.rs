//! diffusers `DiagonalGaussianDistribution`: what the VAE encoder returns.

use burn::prelude::*;

/// A Gaussian with diagonal covariance over the latents, each tensor `(N, L, h, w)`.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    pub mean: Tensor<4>,
    /// Log-variance, clamped to `[-30, 20]` as diffusers does.
    pub logvar: Tensor<4>,
}

impl DiagonalGaussian {
    /// Splits the encoder's `(N, 2L, h, w)` moments into mean and log-variance along channels.
    pub fn from_moments(moments: Tensor<4>) -> Self {
        let [mean, logvar] = moments.chunk(2, 1).try_into().expect("an even channel count: the encoder doubles it");
        Self { mean, logvar: logvar.clamp(-30.0, 20.0) }
    }

    /// `exp(logvar / 2)`, `(N, L, h, w)`.
    pub fn std(&self) -> Tensor<4> {
        (self.logvar.clone() * 0.5).exp()
    }

    /// `mean + std * noise`, with `noise (N, L, h, w)` standard normal.
    pub fn sample(&self, noise: Tensor<4>) -> Tensor<4> {
        self.mean.clone() + self.std() * noise
    }

    /// The most likely latents: the mean, `(N, L, h, w)`.
    pub fn mode(&self) -> Tensor<4> {
        self.mean.clone()
    }
}
