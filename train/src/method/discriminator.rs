//! The ADM discriminator: the frozen video teacher's encoder half and a trainable head on three
//! spatial scales.
//!
//! The encoder is the teacher itself, passed in at every call, so the discriminator shares the
//! teacher's weights instead of holding a copy; only the head is trained. The encoder sees the
//! noised clip, its timestep and the prompt as the teacher does, motion modules included.

use avdm_model::UNetMotionModel;
use avdm_model::kernels::conv2d::conv2d;
use avdm_model::kernels::group_norm::group_norm_silu;
use avdm_model::unet::InputError;
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::AvgPool2dConfig;
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::softplus;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// How many of the encoder's coarsest resolutions the head reads.
pub const SCALES: usize = 3;

/// Settings of the head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// Channels of each scale's branch.
    pub channels: usize,
    /// GroupNorm groups in the branches.
    pub groups: usize,
}

/// One scale's conv layers: two (conv 3x3, GroupNorm, SiLU).
#[derive(Module, Debug)]
pub struct Branch {
    pub conv1: Conv2d,
    pub norm1: GroupNorm,
    pub conv2: Conv2d,
    pub norm2: GroupNorm,
}

impl Branch {
    fn new(in_channels: usize, c: &HeadConfig, rng: &mut StdRng, device: &Device) -> Self {
        // Affine weights made eagerly: a lazily initialised parameter is shared by the module's
        // clones until its first use, so the generator's constant `head.clone().no_grad()` froze
        // the trained head's norms (and a resumed run, loading them from a file, trained them).
        let norm = || GroupNorm {
            gamma: Some(Param::from_tensor(Tensor::ones([c.channels], device))),
            beta: Some(Param::from_tensor(Tensor::zeros([c.channels], device))),
            ..GroupNormConfig::new(c.groups, c.channels).init(device)
        };
        Self {
            conv1: seeded_conv(in_channels, c.channels, 3, rng, device),
            norm1: norm(),
            conv2: seeded_conv(c.channels, c.channels, 3, rng, device),
            norm2: norm(),
        }
    }

    /// `(N, C_i, H_i, W_i)` -> `(N, channels, H_i, W_i)`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = group_norm_silu(&self.norm1, conv2d(&self.conv1, x));
        group_norm_silu(&self.norm2, conv2d(&self.conv2, x))
    }
}

/// The trainable head: a branch per scale, average-pooled to the coarsest scale, concatenated,
/// and a 1x1 conv to one logit per location.
#[derive(Module, Debug)]
pub struct DiscriminatorHead {
    pub branches: Vec<Branch>,
    pub out: Conv2d,
}

impl DiscriminatorHead {
    /// A head for `teacher`'s encoder: one branch for each of its [`SCALES`] coarsest feature
    /// maps (fewer if the encoder has fewer resolutions).
    /// Its initial weights are a function of `seed` (torch's default conv init: uniform in
    /// `±1/sqrt(fan_in)`), so that a run is reproducible.
    pub fn new(teacher: &UNetMotionModel, c: &HeadConfig, seed: u64, device: &Device) -> Self {
        let widths = encoder_widths(teacher);
        let read = &widths[widths.len().saturating_sub(SCALES)..];
        let mut rng = StdRng::seed_from_u64(seed);
        Self {
            branches: read.iter().map(|&w| Branch::new(w, c, &mut rng, device)).collect(),
            out: seeded_conv(c.channels * read.len(), 1, 1, &mut rng, device),
        }
    }

    /// Logits `(B*F, 1, h, w)` (`h, w`: the coarsest resolution) from the encoder's feature
    /// maps, finest first (as [`UNetMotionModel::encoder_features`] returns them).
    pub fn forward(&self, features: Vec<Tensor<4>>) -> Tensor<4> {
        let read = &features[features.len() - self.branches.len()..];
        let [_, _, h, w] = read.last().expect("at least one scale").dims();
        let maps = read
            .iter()
            .zip(&self.branches)
            .map(|(x, branch)| {
                let y = branch.forward(x.clone());
                let [_, _, hi, wi] = y.dims();
                let factor = [hi / h, wi / w];
                if factor == [1, 1] { y } else { AvgPool2dConfig::new(factor).with_strides(factor).init().forward(y) }
            })
            .collect();
        conv2d(&self.out, Tensor::cat(maps, 1))
    }
}

/// A `k x k` conv (padding `k / 2`) with weights and bias uniform in `±1/sqrt(in * k * k)`.
fn seeded_conv(in_channels: usize, out_channels: usize, k: usize, rng: &mut StdRng, device: &Device) -> Conv2d {
    let p = k / 2;
    let mut conv = Conv2dConfig::new([in_channels, out_channels], [k, k])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(device);
    let bound = 1.0 / ((in_channels * k * k) as f32).sqrt();
    let mut uniform = |shape: Vec<usize>| {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
        TensorData::new(values, shape)
    };
    conv.weight = Param::from_data(uniform(vec![out_channels, in_channels, k, k]), device);
    conv.bias = Some(Param::from_data(uniform(vec![out_channels]), device));
    conv
}

/// Channels of the encoder's feature maps, finest first.
fn encoder_widths(teacher: &UNetMotionModel) -> Vec<usize> {
    teacher.down_blocks.iter().map(|b| b.resnets.last().expect("a block has resnets").conv2.weight.dims()[0]).collect()
}

/// The discriminator's logits for noised clips `x_t (B, C, F, H, W)` at timesteps `t (B)`
/// with text `(B*F, L, D)`: `(B*F, 1, h, w)`. Gradients reach `x_t` through the frozen encoder.
pub fn logits(
    teacher: &UNetMotionModel,
    head: &DiscriminatorHead,
    x_t: Tensor<5>,
    t: Tensor<1>,
    text: Tensor<3>,
) -> Result<Tensor<4>, InputError> {
    Ok(head.forward(teacher.encoder_features(x_t, t, text)?))
}

/// The discriminator's loss: non-saturating BCE on logits, real labelled 1 and generated 0,
/// `mean(softplus(-real)) + mean(softplus(fake))`.
pub fn discriminator_loss(real: Tensor<4>, fake: Tensor<4>) -> Tensor<1> {
    softplus(real.neg(), 1.0).mean() + softplus(fake, 1.0).mean()
}

/// The generator's non-saturating loss `mean(-log D(fake)) = mean(softplus(-fake))`.
pub fn generator_loss(fake: Tensor<4>) -> Tensor<1> {
    softplus(fake.neg(), 1.0).mean()
}

/// Fraction of logits on the right side of 0 (real > 0, generated < 0), for the dashboard.
pub fn accuracy(real: Tensor<4>, fake: Tensor<4>) -> (f64, f64) {
    let right = |t: Tensor<4>| t.greater_elem(0.0).float().mean().into_scalar::<f32>() as f64;
    (right(real), 1.0 - right(fake))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_are_the_bce_of_the_logits() {
        let device = Device::flex();
        let real = Tensor::<1>::from_floats([2.0, -1.0], &device).reshape([2, 1, 1, 1]);
        let fake = Tensor::<1>::from_floats([0.5, -3.0], &device).reshape([2, 1, 1, 1]);
        let bce = |p: f64, label: f64| -(label * p.ln() + (1.0 - label) * (1.0 - p).ln());
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected_d = (bce(sigmoid(2.0), 1.0) + bce(sigmoid(-1.0), 1.0)) / 2.0
            + (bce(sigmoid(0.5), 0.0) + bce(sigmoid(-3.0), 0.0)) / 2.0;
        let d = discriminator_loss(real.clone(), fake.clone()).into_scalar::<f32>() as f64;
        assert!((d - expected_d).abs() < 1e-5, "{d} vs {expected_d}");
        let expected_g = (-(sigmoid(0.5).ln()) - sigmoid(-3.0).ln()) / 2.0;
        let g = generator_loss(fake.clone()).into_scalar::<f32>() as f64;
        assert!((g - expected_g).abs() < 1e-5, "{g} vs {expected_g}");
        assert_eq!(accuracy(real, fake), (0.5, 0.5));
    }

    /// The generator uses a constant clone of the head (`no_grad`): the trained head keeps every
    /// parameter trainable, its norms' too.
    #[test]
    fn a_constant_clone_leaves_the_head_trainable() {
        let device = Device::flex().autodiff();
        let teacher = UNetMotionModel::new(&crate::toy::preset::unet_config(true), &device);
        let head = DiscriminatorHead::new(&teacher, &HeadConfig { channels: 8, groups: 4 }, 0, &device);
        let constant = head.clone().no_grad();
        assert_eq!(crate::method::fake_score::trained_values(&constant), 0);
        assert_eq!(crate::method::fake_score::trained_values(&head), head.num_params());
    }
}
