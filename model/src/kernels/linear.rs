//! Linear layers `y = x W + b` (`burn::nn::Linear`) as one Burn backend extension.
//!
//! Burn's CPU backend runs a linear layer as a matrix product into a buffer that it allocates
//! zeroed and then copies once more (to align it), on the calling thread while the other cores
//! wait, and adds the bias in one more pass: on the toy sampler a sixth of the time. Here the
//! CPU backend writes each block of output rows once, bias first and the product added in, on
//! all cores, reading `x` and `W` in place through their strides. The backward pass computes
//! `dx = dy Wᵀ` the same way and sums `xᵀ dy` and the bias gradient per thread, each only when
//! it is needed; it keeps `x` only for the weight's gradient and `W` only for `x`'s. Other
//! backends and dtypes run Burn's linear ops.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::Linear;
use burn::prelude::*;
use rayon::prelude::*;

use super::matmul::{Matrix, matmul};
use super::{all_f32, contiguous, f32_slice};

/// The backend operations behind [`linear`].
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")), Autodiff)]
pub trait LinearBackend: Backend {
    /// `x (..., K)`, `weight (K, N)`, `bias (N)` -> `x weight + bias`, `(..., N)`.
    fn linear_layer(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear(x, weight, Some(bias))
    }

    /// `x (..., K)`, `weight (K, N)` -> `x weight`, `(..., N)` (a layer without bias).
    fn linear_layer_unbiased(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear(x, weight, None)
    }

    /// The gradient of `x` for the output gradient `grad (..., N)`: `grad weightᵀ`, `(..., K)`.
    fn linear_layer_dx(weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_x_backward(weight, grad)
    }

    /// The gradient of the weight: `xᵀ grad` summed over the rows, `(K, N)`.
    fn linear_layer_dweight(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_weight_backward(x, grad)
    }

    /// The gradient of the bias: `grad` summed over its rows, `(N)`.
    fn linear_layer_dbias(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_bias_backward(grad)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl LinearBackend for burn::backend::Cube {}

/// `layer.forward(x)` for `x (..., K)`: the kernels here on the CPU backend (f32), Burn's
/// linear op elsewhere; differentiable on autodiff devices.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let (x, weight) = (x.into_dispatch(), layer.weight.val().into_dispatch());
    Tensor::from_dispatch(match &layer.bias {
        Some(bias) => Dispatch::linear_layer(x, weight, bias.val().into_dispatch()),
        None => Dispatch::linear_layer_unbiased(x, weight),
    })
}

impl<B: LinearBackend, C: CheckpointStrategy> LinearBackend for Autodiff<B, C> {
    fn linear_layer(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = B::linear_layer(x.primitive().clone(), weight.primitive().clone(), bias.primitive().clone());
        let kept = Kept::of::<C>(&x, &weight);
        record(
            LinearBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful(),
            kept,
            out,
        )
    }

    fn linear_layer_unbiased(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = B::linear_layer_unbiased(x.primitive().clone(), weight.primitive().clone());
        let kept = Kept::of::<C>(&x, &weight);
        record(LinearBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful(), kept, out)
    }
}

/// The output of a linear layer, recorded for the backward pass when one of its inputs is
/// tracked.
fn record<B: LinearBackend, C: CheckpointStrategy, const N: usize>(
    kind: OpsKind<LinearBackward, B, Kept<B>, C, N>,
    kept: Kept<B>,
    out: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match kind {
        OpsKind::Tracked(prep) => prep.finish(kept, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// What the backward pass keeps.
#[derive(Debug, Clone)]
struct Kept<B: Backend> {
    /// `x`, when the weight is tracked.
    x: Option<FloatTensor<B>>,
    /// The weight, when `x` is tracked.
    weight: Option<FloatTensor<B>>,
}

impl<B: Backend> Kept<B> {
    /// `x` is needed only for the weight's gradient, the weight only for `x`'s.
    fn of<C: CheckpointStrategy>(x: &FloatTensor<Autodiff<B, C>>, weight: &FloatTensor<Autodiff<B, C>>) -> Self {
        Self {
            x: weight.is_tracked().then(|| x.primitive().clone()),
            weight: x.is_tracked().then(|| weight.primitive().clone()),
        }
    }
}

/// The backward pass of a linear layer whose parents are `x`, the weight and (`N = 3`) the
/// bias.
#[derive(Debug)]
struct LinearBackward;

impl<B: LinearBackend, const N: usize> Backward<B, N> for LinearBackward {
    type State = Kept<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        #[cfg(test)]
        tests::BACKWARD_PASSES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let grad = grads.consume::<B>(&ops.node);
        let Kept { x, weight } = ops.state;
        for (parent, node) in ops.parents.into_iter().enumerate() {
            let Some(node) = node else { continue };
            let gradient = match parent {
                0 => B::linear_layer_dx(weight.clone().expect("kept for x's gradient"), grad.clone()),
                1 => B::linear_layer_dweight(x.clone().expect("kept for the weight's gradient"), grad.clone()),
                _ => B::linear_layer_dbias(grad.clone()),
            };
            grads.register::<B>(node.id, gradient);
        }
    }
}

// ---- The CPU kernels (f32). ----

impl LinearBackend for Flex {
    fn linear_layer(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        if !all_f32(&[&x, &weight, &bias]) {
            return Self::linear(x, weight, Some(bias));
        }
        forward(x, weight, Some(contiguous(bias)))
    }

    fn linear_layer_unbiased(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        if !all_f32(&[&x, &weight]) {
            return Self::linear(x, weight, None);
        }
        forward(x, weight, None)
    }

    fn linear_layer_dx(weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if !all_f32(&[&weight, &grad]) {
            return Self::linear_x_backward(weight, grad);
        }
        let (weight, grad) = (readable(weight), readable(grad));
        let out = product(&Rows::of(&grad), strided(&weight).transposed(), None);
        tensor(out, &grad, weight.shape()[0])
    }

    fn linear_layer_dweight(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if !all_f32(&[&x, &grad]) {
            return Self::linear_weight_backward(x, grad);
        }
        let (x, grad) = (readable(x), contiguous(grad));
        let (rows, n) = (Rows::of(&x), grad.shape()[grad.shape().num_dims() - 1]);
        let dweight = weight_gradient(&rows, f32_slice(&grad), n);
        FlexTensor::from_data(TensorData::new(dweight, [rows.cols, n]))
    }

    fn linear_layer_dbias(grad: FlexTensor) -> FlexTensor {
        if !all_f32(&[&grad]) {
            return Self::linear_bias_backward(grad);
        }
        let grad = contiguous(grad);
        let n = grad.shape()[grad.shape().num_dims() - 1];
        FlexTensor::from_data(TensorData::new(column_sums(f32_slice(&grad), n), [n]))
    }
}

/// `x weight (+ bias)` of f32 tensors.
fn forward(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>) -> FlexTensor {
    let (x, weight) = (readable(x), readable(weight));
    let out = product(&Rows::of(&x), strided(&weight), bias.as_ref().map(f32_slice));
    tensor(out, &x, weight.shape()[1])
}

/// Rows per block of work: a few hundred, so that the blocks keep every core busy and each
/// product is large enough for the matrix kernel.
const BLOCK_ROWS: usize = 256;

/// A tensor `(..., R, C)` read in place as `batches` matrices `R x C`: element `(b, i, j)` at
/// `b * batch_stride + i * row_stride + j * col_stride` of `data`.
struct Rows<'a> {
    data: &'a [f32],
    batches: usize,
    rows: usize,
    cols: usize,
    batch_stride: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Rows<'a> {
    /// The view of a [`readable`] tensor of at least one dimension.
    fn of(t: &'a FlexTensor) -> Self {
        let (dims, strides) = batched(t).expect("a readable tensor");
        let [batches, rows, cols] = dims;
        let data = &t.storage::<f32>()[t.layout().start_offset()..];
        let [batch_stride, row_stride, col_stride] = strides;
        // Batches that follow each other row after row are one taller matrix.
        if batches > 1 && batch_stride == rows * row_stride {
            return Self { data, batches: 1, rows: batches * rows, cols, batch_stride: 0, row_stride, col_stride };
        }
        Self { data, batches, rows, cols, batch_stride, row_stride, col_stride }
    }

    /// Rows `[first, first + count)` of batch `b`.
    fn block(&self, b: usize, first: usize, count: usize) -> Matrix<'a> {
        let start = (b * self.batch_stride + first * self.row_stride).min(self.data.len());
        Matrix {
            data: &self.data[start..],
            rows: count,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }

    /// The blocks of rows: `(batch, first row, rows)`, in row order.
    fn blocks(&self) -> Vec<(usize, usize, usize)> {
        let rows = self.rows;
        (0..self.batches)
            .flat_map(|b| (0..rows).step_by(BLOCK_ROWS).map(move |first| (b, first, BLOCK_ROWS.min(rows - first))))
            .collect()
    }
}

/// `t (..., R, C)`'s sizes `[batches, R, C]` and strides when its leading dimensions are one
/// run of batches and no stride is negative (a 1-D tensor is one row).
fn batched(t: &FlexTensor) -> Option<([usize; 3], [usize; 3])> {
    let layout = t.layout();
    let (dims, strides) = (layout.shape().to_vec(), layout.strides());
    if strides.iter().any(|&s| s < 0) || dims.is_empty() {
        return None;
    }
    let strides: Vec<usize> = strides.iter().map(|&s| s as usize).collect();
    let rank = dims.len();
    let (cols, col_stride) = (dims[rank - 1], strides[rank - 1]);
    let (rows, row_stride) = if rank >= 2 { (dims[rank - 2], strides[rank - 2]) } else { (1, 0) };
    let leading = rank.saturating_sub(2);
    let one_run = (1..leading).all(|i| strides[i - 1] == strides[i] * dims[i]);
    let batch_stride = if leading > 0 { strides[leading - 1] } else { 0 };
    one_run.then_some(([dims[..leading].iter().product(), rows, cols], [batch_stride, row_stride, col_stride]))
}

/// `t` itself when [`Rows::of`] can read it in place, else a contiguous copy.
fn readable(t: FlexTensor) -> FlexTensor {
    if batched(&t).is_some() { t } else { t.to_contiguous() }
}

/// The [`readable`] 2-D tensor `t` read in place.
fn strided(t: &FlexTensor) -> Matrix<'_> {
    let (dims, strides) = (t.shape().to_vec(), t.layout().strides());
    assert_eq!(dims.len(), 2, "linear: a 2-D weight, got {dims:?}");
    Matrix {
        data: &t.storage::<f32>()[t.layout().start_offset()..],
        rows: dims[0],
        cols: dims[1],
        row_stride: strides[0] as usize,
        col_stride: strides[1] as usize,
    }
}

/// `out (..., width)` with the leading dimensions of `like (..., C)`.
fn tensor(out: Vec<f32>, like: &FlexTensor, width: usize) -> FlexTensor {
    let mut dims = like.shape().to_vec();
    *dims.last_mut().expect("at least one dim") = width;
    FlexTensor::from_data(TensorData::new(out, dims))
}

/// `x b (+ bias)` for the rows of `x`, row-major `(batches * R, b.cols)`, block by block on
/// all cores.
fn product(x: &Rows, b: Matrix, bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.cols, b.rows, "linear: rows of {} times {}x{}", x.cols, b.rows, b.cols);
    let n = b.cols;
    let mut out = vec![0.0f32; x.batches * x.rows * n];
    if out.is_empty() {
        return out;
    }
    let blocks = x.blocks();
    let mut pieces = Vec::with_capacity(blocks.len());
    let mut rest = out.as_mut_slice();
    for &(_, _, count) in &blocks {
        let (piece, tail) = rest.split_at_mut(count * n);
        pieces.push(piece);
        rest = tail;
    }
    pieces.into_par_iter().zip(blocks).for_each(|(out, (batch, first, count))| {
        if let Some(bias) = bias {
            out.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(bias));
        }
        matmul(out, n, bias.is_some(), x.block(batch, first, count), b);
    });
    out
}

/// `xᵀ grad (K, N)` over every row of `x` and the contiguous `grad (rows, N)`, summed per
/// thread and then across threads.
fn weight_gradient(x: &Rows, grad: &[f32], n: usize) -> Vec<f32> {
    let k = x.cols;
    let blocks = x.blocks();
    let per_thread = blocks.len().div_ceil(rayon::current_num_threads()).max(1);
    blocks
        .into_par_iter()
        .with_min_len(per_thread)
        .fold(
            || vec![0.0f32; k * n],
            |mut acc, (batch, first, count)| {
                let row = batch * x.rows + first;
                let dy = Matrix::dense(&grad[row * n..][..count * n], count, n);
                matmul(&mut acc, n, true, x.block(batch, first, count).transposed(), dy);
                acc
            },
        )
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_else(|| vec![0.0; k * n])
}

/// The column sums of the row-major `grad (rows, N)` (summed in f64 per block of rows).
fn column_sums(grad: &[f32], n: usize) -> Vec<f32> {
    if grad.is_empty() || n == 0 {
        return vec![0.0; n];
    }
    let sums = grad
        .par_chunks(BLOCK_ROWS * n)
        .fold(
            || vec![0.0f64; n],
            |mut acc, block| {
                for row in block.chunks_exact(n) {
                    acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
                }
                acc
            },
        )
        .reduce(
            || vec![0.0f64; n],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    sums.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::LinearConfig;
    use burn::tensor::{DType, Distribution, FloatDType};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs of [`LinearBackward`]: the gradients must come from it.
    pub(super) static BACKWARD_PASSES: AtomicUsize = AtomicUsize::new(0);

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Inputs of every layout the UNet gives a linear layer: 2-D, 3-D contiguous and taller
    /// than a block, a 3-D transposed view (tokens of an image), 4-D, and a transposed weight.
    fn inputs(device: &Device) -> Vec<(Linear, Tensor<3>)> {
        let layer = |bias: bool| LinearConfig::new(12, 7).with_bias(bias).init(device);
        let random = |dims: [usize; 3]| Tensor::<3>::random(dims, Distribution::Normal(0.0, 1.0), device);
        let mut transposed_weight = layer(true);
        let weight = Tensor::<2>::random([7, 12], Distribution::Normal(0.0, 0.3), device).transpose();
        transposed_weight.weight = Param::from_tensor(weight);
        vec![
            (layer(true), random([1, 3, 12])),
            (layer(true), random([3, 300, 12])),
            (layer(false), random([2, 12, 290]).swap_dims(1, 2)),
            (layer(false), random([4, 5, 12])),
            (transposed_weight, random([2, 9, 12])),
        ]
    }

    #[test]
    fn equals_burn_s_linear() {
        let device = Device::flex();
        for (layer, x) in inputs(&device) {
            let dims = x.dims();
            let diff = max_abs_diff(linear(&layer, x.clone()), layer.forward(x.clone()));
            assert!(diff < 1e-5, "over {dims:?}: {diff}");
            let four = x.clone().reshape([1, dims[0], dims[1], dims[2]]);
            assert!(max_abs_diff(linear(&layer, four.clone()), layer.forward(four)) < 1e-5, "4-D over {dims:?}");
        }
        let layer = LinearConfig::new(12, 7).init(&device);
        let x = Tensor::<2>::random([5, 12], Distribution::Normal(0.0, 1.0), &device);
        assert!(max_abs_diff(linear(&layer, x.clone()), layer.forward(x)) < 1e-5, "2-D");
    }

    #[test]
    fn gradients_equal_those_of_burn_s_linear() {
        let device = Device::flex().autodiff();
        let passes = BACKWARD_PASSES.load(Ordering::SeqCst);
        for (layer, x) in inputs(&device) {
            let x = x.detach().require_grad();
            let run = |fused: bool| {
                let out = if fused { linear(&layer, x.clone()) } else { layer.forward(x.clone()) };
                let weight = Tensor::<3>::ones(out.dims(), &device).mul_scalar(0.5) + out.clone().detach();
                let grads = (out * weight).sum().backward();
                let bias = layer.bias.as_ref().map(|b| b.grad(&grads).unwrap());
                (x.grad(&grads).unwrap(), layer.weight.grad(&grads).unwrap(), bias)
            };
            let ((dx, dw, db), (want_dx, want_dw, want_db)) = (run(true), run(false));
            let what = format!("over {:?}, bias {}", x.dims(), db.is_some());
            assert!(max_abs_diff(dx, want_dx) < 1e-4, "{what}: dx");
            assert!(max_abs_diff(dw, want_dw) < 1e-3, "{what}: dweight");
            if let (Some(db), Some(want_db)) = (db, want_db) {
                assert!(max_abs_diff(db, want_db) < 1e-3, "{what}: dbias");
            }
        }
        assert!(BACKWARD_PASSES.load(Ordering::SeqCst) >= passes + 5, "the hand-written backward pass ran");
    }

    #[test]
    fn a_frozen_layer_passes_only_x_s_gradient() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(12, 7).init(&device).no_grad();
        let x = Tensor::<3>::random([2, 4, 12], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let grads = linear(&layer, x.clone()).sum().backward();
        let want = layer.forward(x.clone()).sum().backward();
        assert!(max_abs_diff(x.grad(&grads).unwrap(), x.grad(&want).unwrap()) < 1e-5);
        assert!(layer.weight.grad(&grads).is_none());
    }

    #[test]
    fn bf16_runs_burn_s_linear() {
        let device = Device::flex();
        let (layer, x) = inputs(&device).remove(1);
        let half = crate::precision::with_float_dtype(layer.clone(), FloatDType::BF16);
        let out = linear(&half, x.clone().cast(FloatDType::BF16));
        assert_eq!(out.dtype(), DType::BF16);
        let want = layer.forward(x);
        let scale = want.clone().abs().max().into_scalar::<f32>();
        assert!(max_abs_diff(out.cast(FloatDType::F32), want) / scale < 0.02);
    }
}
