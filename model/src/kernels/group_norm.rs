//! GroupNorm, and GroupNorm followed by SiLU (every ResNet block's `silu(norm(x))`), as one
//! operation.
//!
//! Burn's `GroupNorm` is ten elementwise and reduction ops (a reshape, two means, a
//! subtraction, a square, a square root, a division, the affine product and sum), and SiLU two
//! more, each a full pass over the activations with its own buffer, all kept for the backward
//! pass. Here the CPU backend makes one pass for the statistics and one for the output, on all
//! cores, with the vectorised `exp` of [`super::fast_math`]; the backward pass keeps only the
//! input and recomputes the statistics. Other backends and dtypes run the composed default
//! bodies (statistics in f32, as Burn's).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::GroupNorm;
use burn::prelude::*;
use burn::tensor::{FloatDType, Shape};
use rayon::prelude::*;

use super::fast_math::{exp, simd_fn};
use super::{all_f32, contiguous, f32_slice};

/// What follows the normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Nothing,
    Silu,
}

/// The backend operations behind [`group_norm`] and [`group_norm_silu`].
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")), Autodiff)]
pub trait GroupNormBackend: Backend {
    /// `x (N, C, ...)` normalised over each group of `C / groups` channels of each sample,
    /// scaled by `gamma (C)`, shifted by `beta (C)`, then SiLU when `silu`.
    fn fused_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        composed_forward::<Self>(x, gamma, beta, Settings { groups, epsilon, silu })
    }

    /// The gradients `(dx, dgamma, dbeta)` of `fused_group_norm` for the output gradient `grad`.
    fn fused_group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed_backward::<Self>(x, gamma, beta, grad, Settings { groups, epsilon, silu })
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl GroupNormBackend for burn::backend::Cube {}

/// `norm(x)` for `x (N, C, ...)`, fused on the CPU backend.
pub fn group_norm<const D: usize>(norm: &GroupNorm, x: Tensor<D>) -> Tensor<D> {
    apply(norm, x, Then::Nothing)
}

/// `silu(norm(x))` for `x (N, C, ...)`, fused on the CPU backend.
pub fn group_norm_silu<const D: usize>(norm: &GroupNorm, x: Tensor<D>) -> Tensor<D> {
    apply(norm, x, Then::Silu)
}

fn apply<const D: usize>(norm: &GroupNorm, x: Tensor<D>, then: Then) -> Tensor<D> {
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        let y = norm.forward(x);
        return if then == Then::Silu { burn::tensor::activation::silu(y) } else { y };
    };
    let out = Dispatch::fused_group_norm(
        x.into_dispatch(),
        gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        norm.num_groups,
        norm.epsilon,
        then == Then::Silu,
    );
    Tensor::from_dispatch(out)
}

/// The non-tensor arguments.
#[derive(Debug, Clone, Copy)]
struct Settings {
    groups: usize,
    epsilon: f64,
    silu: bool,
}

impl<B: GroupNormBackend, C: CheckpointStrategy> GroupNormBackend for Autodiff<B, C> {
    fn fused_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let inputs = [x.primitive().clone(), gamma.primitive().clone(), beta.primitive().clone()];
        let settings = Settings { groups, epsilon, silu };
        match GroupNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let [x, gamma, beta] = inputs;
                let out = B::fused_group_norm(x.clone(), gamma.clone(), beta.clone(), groups, epsilon, silu);
                prep.finish(GroupNormState { x, gamma, beta, settings }, out)
            }
            OpsKind::UnTracked(prep) => {
                let [x, gamma, beta] = inputs;
                prep.finish(B::fused_group_norm(x, gamma, beta, groups, epsilon, silu))
            }
        }
    }
}

/// What the backward pass keeps: the inputs (the statistics are recomputed).
#[derive(Debug, Clone)]
struct GroupNormState<B: Backend> {
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    settings: Settings,
}

#[derive(Debug)]
struct GroupNormBackward;

impl<B: GroupNormBackend> Backward<B, 3> for GroupNormBackward {
    type State = GroupNormState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        #[cfg(test)]
        tests::BACKWARD_PASSES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let GroupNormState { x, gamma, beta, settings: s } = ops.state;
        let (dx, dgamma, dbeta) = B::fused_group_norm_backward(x, gamma, beta, grad, s.groups, s.epsilon, s.silu);
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

// ---- The composed bodies: Burn's primitives, statistics in f32. ----

/// The normalised `x̂ (N, G, M)` of `x` in f32 and `1 / sqrt(var + eps)` per group `(N, G, 1)`.
fn normalised<B: Backend>(x: &FloatTensor<B>, s: Settings) -> [FloatTensor<B>; 2] {
    let shape = x.shape();
    let n = shape[0];
    let x = B::float_reshape(
        B::float_cast(x.clone(), FloatDType::F32),
        Shape::new([n, s.groups, shape.num_elements() / n / s.groups]),
    );
    let centred = B::float_sub(x.clone(), B::float_mean_dim(x, 2));
    let var = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), 2);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, s.epsilon.into())));
    [B::float_mul(centred, rstd.clone()), rstd]
}

/// `(1, C, 1, ...)`: a per-channel vector shaped to broadcast over `x`.
fn per_channel<B: Backend>(v: FloatTensor<B>, x_shape: &Shape) -> FloatTensor<B> {
    let mut dims = vec![1; x_shape.num_dims()];
    dims[1] = x_shape[1];
    B::float_reshape(B::float_cast(v, FloatDType::F32), dims.into_iter().collect::<Shape>())
}

/// The affine output `y = x̂ gamma + beta` in f32 and `x̂`, both shaped like `x`, and
/// `1 / sqrt(var + eps)` per group `(N, G, 1)`.
fn affine<B: Backend>(
    x: &FloatTensor<B>,
    gamma: &FloatTensor<B>,
    beta: &FloatTensor<B>,
    s: Settings,
) -> [FloatTensor<B>; 3] {
    let shape = x.shape();
    let [xhat, rstd] = normalised::<B>(x, s);
    let xhat = B::float_reshape(xhat, shape.clone());
    let y = B::float_add(
        B::float_mul(xhat.clone(), per_channel::<B>(gamma.clone(), &shape)),
        per_channel::<B>(beta.clone(), &shape),
    );
    [y, xhat, rstd]
}

fn composed_forward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    s: Settings,
) -> FloatTensor<B> {
    let dtype = x.dtype();
    let [y, _, _] = affine::<B>(&x, &gamma, &beta, s);
    let y = if s.silu { B::float_mul(y.clone(), B::sigmoid(y)) } else { y };
    B::float_cast(y, dtype.into())
}

fn composed_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    grad: FloatTensor<B>,
    s: Settings,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (shape, dtype) = (x.shape(), x.dtype());
    let [y, xhat, rstd] = affine::<B>(&x, &gamma, &beta, s);
    let grad = B::float_cast(grad, FloatDType::F32);
    // d silu(y) / dy = σ(y) (1 + y (1 - σ(y))).
    let dy = if s.silu {
        let sigma = B::sigmoid(y.clone());
        let one_minus = B::float_neg(B::float_add_scalar(sigma.clone(), (-1.0).into()));
        let slope = B::float_mul(sigma, B::float_add_scalar(B::float_mul(y, one_minus), 1.0.into()));
        B::float_mul(grad, slope)
    } else {
        grad
    };
    // Sums over every dim but the channels: (N, C, S) summed over N and S.
    let n = shape[0];
    let per_channel_sum = |t: FloatTensor<B>| {
        let t = B::float_reshape(t, Shape::new([n, shape[1], shape.num_elements() / n / shape[1]]));
        B::float_reshape(B::float_sum_dim(B::float_sum_dim(t, 2), 0), Shape::new([shape[1]]))
    };
    let dbeta = per_channel_sum(dy.clone());
    let dgamma = per_channel_sum(B::float_mul(dy.clone(), xhat.clone()));
    // dx = rstd (dx̂ - mean(dx̂) - x̂ mean(dx̂ x̂)) per group, with dx̂ = dy gamma.
    let grouped =
        |t: FloatTensor<B>| B::float_reshape(t, Shape::new([n, s.groups, shape.num_elements() / n / s.groups]));
    let dxhat = grouped(B::float_mul(dy, per_channel::<B>(gamma.clone(), &shape)));
    let xhat = grouped(xhat);
    let mean_dxhat = B::float_mean_dim(dxhat.clone(), 2);
    let mean_dxhat_xhat = B::float_mean_dim(B::float_mul(dxhat.clone(), xhat.clone()), 2);
    let inner = B::float_sub(B::float_sub(dxhat, mean_dxhat), B::float_mul(xhat, mean_dxhat_xhat));
    let dx = B::float_reshape(B::float_mul(inner, rstd), shape);
    let cast = |t: FloatTensor<B>, like: &FloatTensor<B>| B::float_cast(t, like.dtype().into());
    (B::float_cast(dx, dtype.into()), cast(dgamma, &gamma), cast(dbeta, &beta))
}

// ---- The CPU kernels (f32). ----

impl GroupNormBackend for Flex {
    fn fused_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let s = Settings { groups, epsilon, silu };
        if !all_f32(&[&x, &gamma, &beta]) {
            return composed_forward::<Self>(x, gamma, beta, s);
        }
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let layout = Blocks::of(&x, groups);
        let (input, gamma, beta) = (f32_slice(&x), f32_slice(&gamma), f32_slice(&beta));
        let mut out = vec![0.0f32; input.len()];
        out.par_chunks_mut(layout.block).enumerate().for_each(|(index, out)| {
            let channels = layout.channels_of(index, groups);
            let block = &input[index * layout.block..][..layout.block];
            normalise_block(out, block, &gamma[channels.clone()], &beta[channels], layout.spatial, s);
        });
        FlexTensor::from_data(TensorData::new(out, x.shape().to_vec()))
    }

    fn fused_group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let s = Settings { groups, epsilon, silu };
        if !all_f32(&[&x, &gamma, &beta, &grad]) {
            return composed_backward::<Self>(x, gamma, beta, grad, s);
        }
        let (x, gamma_t, beta_t, grad) = (contiguous(x), contiguous(gamma), contiguous(beta), contiguous(grad));
        let layout = Blocks::of(&x, groups);
        let (input, gamma, beta, grad) = (f32_slice(&x), f32_slice(&gamma_t), f32_slice(&beta_t), f32_slice(&grad));
        let mut dx = vec![0.0f32; input.len()];
        // Per block: the sums over each of its channels of dy and dy x̂ (dbeta and dgamma).
        let partials: Vec<Vec<[f64; 2]>> = dx
            .par_chunks_mut(layout.block)
            .enumerate()
            .map(|(index, dx)| {
                let channels = layout.channels_of(index, groups);
                let at = index * layout.block;
                let (block, grad) = (&input[at..][..layout.block], &grad[at..][..layout.block]);
                let (gamma, beta) = (&gamma[channels.clone()], &beta[channels]);
                block_backward(dx, block, grad, gamma, beta, layout.spatial, s)
            })
            .collect();
        // dgamma, dbeta: each channel's sums over the samples, in sample order.
        let channels = gamma.len();
        let (mut dgamma, mut dbeta) = (vec![0.0f64; channels], vec![0.0f64; channels]);
        for (index, sums) in partials.iter().enumerate() {
            for (c, [dg, db]) in layout.channels_of(index, groups).zip(sums) {
                dgamma[c] += dg;
                dbeta[c] += db;
            }
        }
        let vector =
            |v: Vec<f64>| FlexTensor::from_data(TensorData::new(v.into_iter().map(|x| x as f32).collect(), [channels]));
        (FlexTensor::from_data(TensorData::new(dx, x.shape().to_vec())), vector(dgamma), vector(dbeta))
    }
}

/// How `x (N, C, S...)` splits into contiguous `(n, group)` blocks.
struct Blocks {
    /// Elements per block: `C / groups` channels of `S` elements.
    block: usize,
    /// Channels per group.
    channels: usize,
    /// Elements per channel (`S`).
    spatial: usize,
}

impl Blocks {
    fn of(x: &FlexTensor, groups: usize) -> Self {
        let dims = x.shape().to_vec();
        assert!(dims.len() >= 2, "group_norm: the input needs a channel dim, got {dims:?}");
        let channels = dims[1];
        assert!(groups > 0 && channels.is_multiple_of(groups), "group_norm: {channels} channels in {groups} groups");
        let spatial = dims[2..].iter().product::<usize>();
        Self { block: channels / groups * spatial, channels: channels / groups, spatial }
    }

    /// The channels of block `index` (sample-major, then group).
    fn channels_of(&self, index: usize, groups: usize) -> std::ops::Range<usize> {
        let first = (index % groups) * self.channels;
        first..first + self.channels
    }
}

simd_fn! {
    /// One `(sample, group)` block `x (channels, spatial)` normalised into `out` with the
    /// group's `gamma` and `beta` (channels), then SiLU when `s.silu`.
    fn normalise_block(
        out: &mut [f32],
        block: &[f32],
        gamma: &[f32],
        beta: &[f32],
        spatial: usize,
        s: Settings,
    ) {
        let (mean, rstd) = statistics(block, s.epsilon);
        for (((out, x), &g), &b) in out.chunks_mut(spatial).zip(block.chunks(spatial)).zip(gamma).zip(beta) {
            let scale = rstd * g;
            let shift = b - mean * scale;
            if s.silu {
                for (o, &x) in out.iter_mut().zip(x) {
                    let y = x * scale + shift;
                    *o = y / (1.0 + exp(-y));
                }
            } else {
                for (o, &x) in out.iter_mut().zip(x) {
                    *o = x * scale + shift;
                }
            }
        }
    }
}

simd_fn! {
    /// The gradient `dx` of one block (as [`normalise_block`]) for its output gradient `grad`;
    /// returns each channel's `[Σ dy x̂, Σ dy]` (its share of dgamma and dbeta).
    fn block_backward(
        dx: &mut [f32],
        block: &[f32],
        grad: &[f32],
        gamma: &[f32],
        beta: &[f32],
        spatial: usize,
        s: Settings,
    ) -> Vec<[f64; 2]> {
        let (mean, rstd) = statistics(block, s.epsilon);
        let mut sums = Vec::with_capacity(gamma.len());
        // dx̂ = dy gamma into dx, and the group's sums of dx̂ and dx̂ x̂.
        let (mut sum_dxhat, mut sum_dxhat_xhat) = (0.0f64, 0.0f64);
        let rows = dx.chunks_mut(spatial).zip(block.chunks(spatial)).zip(grad.chunks(spatial));
        for (((dx, x), grad), (&g, &b)) in rows.zip(gamma.iter().zip(beta)) {
            if s.silu {
                for ((dy, &x), &d) in dx.iter_mut().zip(x).zip(grad) {
                    *dy = d * silu_slope((x - mean) * rstd * g + b);
                }
            } else {
                dx.copy_from_slice(grad);
            }
            let dy_sum = sum_of(dx, |dy| dy);
            let dy_xhat_sum = sum_of_pairs(dx, x, |dy, x| dy * ((x - mean) * rstd));
            dx.iter_mut().for_each(|dy| *dy *= g);
            sum_dxhat += dy_sum * g as f64;
            sum_dxhat_xhat += dy_xhat_sum * g as f64;
            sums.push([dy_xhat_sum, dy_sum]);
        }
        let count = block.len() as f64;
        let (a, b) = ((sum_dxhat / count) as f32, (sum_dxhat_xhat / count) as f32);
        for (dx, &x) in dx.iter_mut().zip(block) {
            *dx = rstd * (*dx - a - (x - mean) * rstd * b);
        }
        sums
    }
}

/// Mean and `1 / sqrt(var + eps)` of a block (biased variance, as PyTorch).
#[inline(always)]
fn statistics(block: &[f32], epsilon: f64) -> (f32, f32) {
    let count = block.len().max(1) as f64;
    let mean = (sum_of(block, |x| x) / count) as f32;
    let var = sum_of(block, |x| (x - mean) * (x - mean)) / count;
    (mean, (1.0 / (var + epsilon).sqrt()) as f32)
}

/// `Σ f(x)` accumulated in eight f32 lanes (one SIMD register) folded into f64.
#[inline(always)]
fn sum_of(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    sum_of_pairs(xs, xs, |x, _| f(x))
}

/// `Σ f(a, b)` over pairs, accumulated like [`sum_of`].
#[inline(always)]
fn sum_of_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(&a, &b)| f(a, b) as f64).sum();
    let mut lanes = [0.0f32; 8];
    for (a, b) in chunks_a.zip(chunks_b) {
        for j in 0..8 {
            lanes[j] += f(a[j], b[j]);
        }
    }
    lanes.iter().map(|&x| x as f64).sum::<f64>() + tail
}

/// `d silu(y) / dy = σ(y) (1 + y (1 - σ(y)))`.
#[inline(always)]
fn silu_slope(y: f32) -> f32 {
    let sigma = 1.0 / (1.0 + exp(-y));
    sigma * (1.0 + y * (1.0 - sigma))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::GroupNormConfig;
    use burn::tensor::activation::silu;
    use burn::tensor::{DType, Distribution};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs of [`GroupNormBackward`]: the gradients must come from it.
    pub(super) static BACKWARD_PASSES: AtomicUsize = AtomicUsize::new(0);

    /// A GroupNorm with a random affine part.
    fn norm(groups: usize, channels: usize, device: &Device) -> GroupNorm {
        let mut norm = GroupNormConfig::new(groups, channels).with_epsilon(1e-6).init(device);
        norm.gamma = Some(Param::from_tensor(Tensor::random([channels], Distribution::Normal(1.0, 0.5), device)));
        norm.beta = Some(Param::from_tensor(Tensor::random([channels], Distribution::Normal(0.0, 0.5), device)));
        norm
    }

    fn reference<const D: usize>(norm: &GroupNorm, x: Tensor<D>, then: Then) -> Tensor<D> {
        let y = norm.forward(x);
        if then == Then::Silu { silu(y) } else { y }
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn equals_burn_s_group_norm_and_silu() {
        let device = Device::flex();
        let norm = norm(4, 12, &device);
        // Off-centre, so the statistics matter; 5 elements per channel leave a SIMD tail.
        let x = Tensor::<4>::random([3, 12, 5, 7], Distribution::Normal(2.0, 3.0), &device);
        for then in [Then::Nothing, Then::Silu] {
            let diff = max_abs_diff(apply(&norm, x.clone(), then), reference(&norm, x.clone(), then));
            assert!(diff < 2e-5, "{then:?}: {diff}");
        }
        // Five dims (the VAE's and the motion modules' layout) and a non-contiguous input.
        let x5 = Tensor::<5>::random([2, 3, 12, 4, 4], Distribution::Normal(0.0, 1.0), &device).swap_dims(1, 2);
        let diff = max_abs_diff(group_norm_silu(&norm, x5.clone()), reference(&norm, x5, Then::Silu));
        assert!(diff < 2e-5, "5 dims: {diff}");
    }

    #[test]
    fn gradients_equal_those_of_burn_s_group_norm() {
        let device = Device::flex().autodiff();
        let norm = norm(2, 6, &device);
        let x = Tensor::<4>::random([2, 6, 9, 3], Distribution::Normal(1.0, 2.0), &device);
        let weight = Tensor::<4>::random([2, 6, 9, 3], Distribution::Normal(0.0, 1.0), &device);
        for then in [Then::Nothing, Then::Silu] {
            let grads_of = |fused: bool| {
                let x = x.clone().detach().require_grad();
                let out = if fused { apply(&norm, x.clone(), then) } else { reference(&norm, x.clone(), then) };
                let grads = (out * weight.clone()).sum().backward();
                let gamma = norm.gamma.as_ref().unwrap().val().grad(&grads).expect("dgamma");
                let beta = norm.beta.as_ref().unwrap().val().grad(&grads).expect("dbeta");
                (x.grad(&grads).expect("dx"), gamma, beta)
            };
            let passes = BACKWARD_PASSES.load(Ordering::SeqCst);
            let (dx, dgamma, dbeta) = grads_of(true);
            assert!(BACKWARD_PASSES.load(Ordering::SeqCst) > passes, "the hand-written backward pass ran");
            let (want_dx, want_dgamma, want_dbeta) = grads_of(false);
            assert!(max_abs_diff(dx, want_dx) < 1e-4, "{then:?}: dx");
            assert!(max_abs_diff(dgamma, want_dgamma) < 1e-4, "{then:?}: dgamma");
            assert!(max_abs_diff(dbeta, want_dbeta) < 1e-4, "{then:?}: dbeta");
        }
    }

    #[test]
    fn bf16_runs_the_composed_ops() {
        let device = Device::flex().autodiff();
        let norm = norm(2, 4, &device);
        let x = Tensor::<4>::random([2, 4, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        let half = x.clone().cast(FloatDType::BF16).require_grad();
        let out = group_norm_silu(&norm, half.clone());
        assert_eq!(out.dtype(), DType::BF16);
        let want = reference(&norm, x, Then::Silu);
        // Relative to the largest value: bf16 keeps 8 bits of mantissa.
        let scale = want.clone().abs().max().into_scalar::<f32>();
        let diff = max_abs_diff(out.clone().cast(FloatDType::F32), want) / scale;
        assert!(diff < 0.02, "{diff}");
        let grads = out.sum().backward();
        assert_eq!(half.grad(&grads).expect("dx").dtype(), DType::BF16);
    }
}
