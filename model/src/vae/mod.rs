//! The SD1.5 VAE (diffusers `AutoencoderKL`), one concept per file.

pub mod autoencoder_kl;
pub mod blocks;
pub mod config;
pub mod decoder;
pub mod distribution;
pub mod encoder;

pub use autoencoder_kl::AutoencoderKL;
pub use config::VaeConfig;
pub use distribution::DiagonalGaussian;
