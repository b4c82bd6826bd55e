//! diffusers' GEGLU activation `value * gelu(gate)` (exact GELU) as one operation.
//!
//! Written with Burn's ops it is a slice of each half, an erf GELU through libm (a scalar call
//! per element on the CPU backend), a product, and under autodiff three more ops and the saved
//! halves for the backward pass. Here it is one pass over the projection's output forward and
//! one backward, on all cores, with the vectorised GELU of [`super::fast_math`]; the backward
//! pass keeps only that output. Other backends and dtypes run the composed default bodies.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::Slice;
use rayon::prelude::*;

use super::fast_math::{gelu, gelu_and_derivative, simd_fn};
use super::{all_f32, contiguous, f32_slice};

/// The backend operation behind [`geglu`].
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")), Autodiff)]
pub trait GegluBackend: Backend {
    /// `h (..., 2I)` (value half first, then gate half) -> `value * gelu(gate)`, `(..., I)`.
    fn geglu(h: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_forward::<Self>(h)
    }

    /// The gradient of `geglu` at `h (..., 2I)` for the output gradient `grad (..., I)`:
    /// `[grad * gelu(gate), grad * value * gelu'(gate)]`, `(..., 2I)`.
    fn geglu_backward(h: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_backward::<Self>(h, grad)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl GegluBackend for burn::backend::Cube {}

impl GegluBackend for Flex {
    fn geglu(h: FloatTensor<Self>) -> FloatTensor<Self> {
        if !all_f32(&[&h]) {
            return composed_forward::<Self>(h);
        }
        let h = contiguous(h);
        let [width, inner] = widths(&h);
        let input = f32_slice(&h);
        let mut out = vec![0.0f32; input.len() / 2];
        for_row_blocks(&mut out, inner, |first, out| geglu_rows(out, &input[first * width..][..out.len() * 2], inner));
        let mut dims = h.shape().to_vec();
        *dims.last_mut().expect("at least one dim") = inner;
        FlexTensor::from_data(TensorData::new(out, dims))
    }

    fn geglu_backward(h: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if !all_f32(&[&h, &grad]) {
            return composed_backward::<Self>(h, grad);
        }
        let (h, grad) = (contiguous(h), contiguous(grad));
        let [width, inner] = widths(&h);
        let input = f32_slice(&h);
        let grad = f32_slice(&grad);
        let mut out = vec![0.0f32; input.len()];
        for_row_blocks(&mut out, width, |first, out| {
            let rows = out.len() / width;
            geglu_backward_rows(
                out,
                &input[first * width..][..rows * width],
                &grad[first * inner..][..rows * inner],
                inner,
            )
        });
        FlexTensor::from_data(TensorData::new(out, h.shape().to_vec()))
    }
}

/// `value * gelu(gate)` of `x (..., 2I)` -> `(..., I)`, in one fused operation on the CPU
/// backend (f32), composed of Burn's ops elsewhere; differentiable on autodiff devices.
pub fn geglu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::geglu(x.into_dispatch()))
}

impl<B: GegluBackend, C: CheckpointStrategy> GegluBackend for Autodiff<B, C> {
    fn geglu(h: FloatTensor<Self>) -> FloatTensor<Self> {
        let input = h.primitive().clone();
        match GegluBackward.prepare::<C>([h.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::geglu(input.clone());
                prep.finish(input, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::geglu(input)),
        }
    }
}

#[derive(Debug)]
struct GegluBackward;

impl<B: GegluBackend> Backward<B, 1> for GegluBackward {
    /// The projection's output `h (..., 2I)`.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        #[cfg(test)]
        tests::BACKWARD_PASSES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, B::geglu_backward(ops.state, grad));
        }
    }
}

/// The two halves of the last dim of `h`.
fn halves<B: Backend>(h: &FloatTensor<B>) -> [FloatTensor<B>; 2] {
    let shape = h.shape();
    let rank = shape.num_dims();
    let inner = shape[rank - 1] / 2;
    let half = |range: std::ops::Range<usize>| {
        let mut slices = vec![Slice::from(..); rank];
        slices[rank - 1] = Slice::from(range);
        B::float_slice(h.clone(), &slices)
    };
    [half(0..inner), half(inner..2 * inner)]
}

fn composed_forward<B: Backend>(h: FloatTensor<B>) -> FloatTensor<B> {
    let [value, gate] = halves::<B>(&h);
    B::float_mul(value, B::gelu(gate))
}

fn composed_backward<B: Backend>(h: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let [value, gate] = halves::<B>(&h);
    let d_value = B::float_mul(grad.clone(), B::gelu(gate.clone()));
    let d_gate = B::gelu_backward(gate, B::float_mul(grad, value));
    B::float_cat(vec![d_value, d_gate], h.shape().num_dims() - 1)
}

/// `[2I, I]` of `h (..., 2I)`.
fn widths(h: &FlexTensor) -> [usize; 2] {
    let width = *h.shape().as_slice().last().expect("at least one dim");
    assert!(width.is_multiple_of(2), "geglu: the last dim ({width}) must split into two halves");
    [width, width / 2]
}

/// Calls `kernel(first_row, out_rows)` on blocks of the rows of `out` (`width` elements each),
/// spread over Burn's thread pool.
fn for_row_blocks(out: &mut [f32], width: usize, kernel: impl Fn(usize, &mut [f32]) + Sync) {
    // About 32k outputs per task: enough work to be worth a thread, and a few tasks per core.
    let rows_per_task = (32_768 / width.max(1)).max(1);
    out.par_chunks_mut(rows_per_task * width).enumerate().for_each(|(task, out)| kernel(task * rows_per_task, out));
}

simd_fn! {
    /// `out (R, I) = value * gelu(gate)` for the rows `[value, gate]` of `input (R, 2I)`.
    fn geglu_rows(out: &mut [f32], input: &[f32], inner: usize) {
        for (out, row) in out.chunks_mut(inner).zip(input.chunks(2 * inner)) {
            let (value, gate) = row.split_at(inner);
            for ((o, &v), &g) in out.iter_mut().zip(value).zip(gate) {
                *o = v * gelu(g);
            }
        }
    }
}

simd_fn! {
    /// `out (R, 2I) = [grad * gelu(gate), grad * value * gelu'(gate)]` for the rows of
    /// `input (R, 2I)` and `grad (R, I)`.
    fn geglu_backward_rows(out: &mut [f32], input: &[f32], grad: &[f32], inner: usize) {
        for ((out, row), grad) in out.chunks_mut(2 * inner).zip(input.chunks(2 * inner)).zip(grad.chunks(inner)) {
            let (value, gate) = row.split_at(inner);
            let (d_value, d_gate) = out.split_at_mut(inner);
            let outs = d_value.iter_mut().zip(d_gate.iter_mut());
            for ((d_value, d_gate), ((&v, &g), &d)) in outs.zip(value.iter().zip(gate).zip(grad)) {
                let (gelu, derivative) = gelu_and_derivative(g);
                *d_value = d * gelu;
                *d_gate = d * v * derivative;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::gelu;
    use burn::tensor::{DType, Distribution, FloatDType};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs of [`GegluBackward`]: the gradients must come from it.
    pub(super) static BACKWARD_PASSES: AtomicUsize = AtomicUsize::new(0);

    fn reference<const D: usize>(h: Tensor<D>) -> Tensor<D> {
        let mut halves = h.chunk(2, D - 1);
        let gate = halves.pop().unwrap();
        halves.pop().unwrap() * gelu(gate)
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn equals_value_times_gelu_of_gate() {
        let device = Device::flex();
        // Gates over [-8, 8] cover both tails; 3 x 70 rows span several tasks at width 2 x 200.
        let h = Tensor::<3>::random([3, 70, 400], Distribution::Normal(0.0, 3.0), &device);
        assert!(max_abs_diff(geglu(h.clone()), reference(h.clone())) < 1e-5);
        // A transposed (non-contiguous) input.
        let t = Tensor::<3>::random([3, 400, 70], Distribution::Normal(0.0, 3.0), &device).swap_dims(1, 2);
        assert_eq!(geglu(t.clone()).dims(), [3, 70, 200]);
        assert!(max_abs_diff(geglu(t.clone()), reference(t)) < 1e-5);
    }

    #[test]
    fn gradients_equal_those_of_the_composed_ops() {
        let device = Device::flex().autodiff();
        let h = Tensor::<3>::random([2, 33, 48], Distribution::Normal(0.0, 2.0), &device);
        let weight = Tensor::<3>::random([2, 33, 24], Distribution::Normal(0.0, 1.0), &device);
        let grad_of = |fused: bool| {
            let h = h.clone().detach().require_grad();
            let out = if fused { geglu(h.clone()) } else { reference(h.clone()) };
            let grads = (out * weight.clone()).sum().backward();
            h.grad(&grads).expect("a gradient of h")
        };
        let passes = BACKWARD_PASSES.load(Ordering::SeqCst);
        let diff = max_abs_diff(grad_of(true), grad_of(false));
        assert!(diff < 1e-5, "{diff}");
        assert!(BACKWARD_PASSES.load(Ordering::SeqCst) > passes, "the hand-written backward pass ran");
    }

    #[test]
    fn bf16_runs_the_composed_ops_in_bf16() {
        let device = Device::flex().autodiff();
        let h = Tensor::<2>::random([5, 16], Distribution::Normal(0.0, 2.0), &device);
        let half = h.clone().cast(FloatDType::BF16).require_grad();
        let out = geglu(half.clone());
        assert_eq!(out.dtype(), DType::BF16);
        let want = reference(h);
        // Relative to the largest value: bf16 keeps 8 bits of mantissa.
        let scale = want.clone().abs().max().into_scalar::<f32>();
        let diff = max_abs_diff(out.clone().cast(FloatDType::F32), want) / scale;
        assert!(diff < 0.02, "{diff}");
        let grads = out.sum().backward();
        assert_eq!(half.grad(&grads).expect("a gradient").dtype(), DType::BF16);
    }
}
