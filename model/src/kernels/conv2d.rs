//! 2-D convolution (square kernel, one stride and one zero padding on every side, no groups or
//! dilation: every convolution of the UNet and the VAE) as one Burn backend extension.
//!
//! Burn's CPU backend runs a 2-D convolution as a 3-D one: it copies the whole input to
//! channels-last on one core, gathers each tile's columns element by element, and writes the
//! result back element by element; its backward pass is a transposed convolution and a second
//! gather. Here the CPU backend lays out each tile of output rows as columns in channels-first
//! order (whole runs of a row per copy), multiplies once into the output, and the backward pass
//! recomputes the columns for the weight's gradient and scatters the columns' gradient back;
//! samples run on all cores. Other backends and dtypes run Burn's own convolution ops.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

use super::matmul::{Matrix, matmul};
use super::{all_f32, contiguous, f32_slice};

/// The backend operations behind [`conv2d`].
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")), Autodiff)]
pub trait Conv2dBackend: Backend {
    /// `x (N, C, H, W)`, `weight (O, C, k, k)`, `bias (O)` -> `(N, O, H', W')` with `stride`
    /// and `padding` zeros on every side.
    fn square_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options(stride, padding))
    }

    /// The gradients `(dx, dweight, dbias)` of `square_conv2d` for the output gradient `grad`.
    fn square_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed_backward::<Self>(x, weight, bias, grad, stride, padding)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl Conv2dBackend for burn::backend::Cube {}

fn options(stride: usize, padding: usize) -> ConvOptions<2> {
    ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1)
}

fn composed_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    grad: FloatTensor<B>,
    stride: usize,
    padding: usize,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let o = options(stride, padding);
    let dx = B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), o.clone());
    let dweight = B::conv2d_weight_backward(x.clone(), weight, grad.clone(), o);
    (dx, dweight, B::conv2d_bias_backward(x, bias, grad))
}

/// `conv.forward(x)` for `x (N, C, H, W)`, through [`Conv2dBackend`] when the convolution is
/// one it covers (square kernel, one stride, equal padding on every side, a bias, no groups or
/// dilation), Burn's module otherwise.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [k, kw] = conv.kernel_size;
    let [stride, stride_w] = conv.stride;
    let padding = match conv.padding {
        PaddingConfig2d::Valid => Some(0),
        PaddingConfig2d::Explicit(top, left, bottom, right) if [left, bottom, right] == [top; 3] => Some(top),
        _ => None,
    };
    let square = k == kw && stride == stride_w && conv.groups == 1 && conv.dilation == [1, 1];
    match (&conv.bias, padding) {
        (Some(bias), Some(padding)) if square => Tensor::from_dispatch(Dispatch::square_conv2d(
            x.into_dispatch(),
            conv.weight.val().into_dispatch(),
            bias.val().into_dispatch(),
            stride,
            padding,
        )),
        _ => conv.forward(x),
    }
}

impl<B: Conv2dBackend, C: CheckpointStrategy> Conv2dBackend for Autodiff<B, C> {
    fn square_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let inputs = [x.primitive().clone(), weight.primitive().clone(), bias.primitive().clone()];
        match ConvBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let [x, weight, bias] = inputs;
                let out = B::square_conv2d(x.clone(), weight.clone(), bias.clone(), stride, padding);
                prep.finish(ConvState { x, weight, bias, stride, padding }, out)
            }
            OpsKind::UnTracked(prep) => {
                let [x, weight, bias] = inputs;
                prep.finish(B::square_conv2d(x, weight, bias, stride, padding))
            }
        }
    }
}

/// What the backward pass keeps: the inputs.
#[derive(Debug, Clone)]
struct ConvState<B: Backend> {
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    stride: usize,
    padding: usize,
}

#[derive(Debug)]
struct ConvBackward;

impl<B: Conv2dBackend> Backward<B, 3> for ConvBackward {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        #[cfg(test)]
        tests::BACKWARD_PASSES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let ConvState { x, weight, bias, stride, padding } = ops.state;
        let (dx, dweight, dbias) = B::square_conv2d_backward(x, weight, bias, grad, stride, padding);
        for (node, grad) in [(node_x, dx), (node_weight, dweight), (node_bias, dbias)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

// ---- The CPU kernels (f32). ----

impl Conv2dBackend for Flex {
    fn square_conv2d(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, stride: usize, padding: usize) -> FlexTensor {
        if !all_f32(&[&x, &weight, &bias]) {
            return Self::conv2d(x, weight, Some(bias), options(stride, padding));
        }
        let [x, weight, bias] = [x, weight, bias].map(contiguous);
        let (samples, g) = Geometry::of(&x, &weight, stride, padding);
        let out = forward(f32_slice(&x), f32_slice(&weight), f32_slice(&bias), samples, g);
        FlexTensor::from_data(TensorData::new(out, [samples, g.out_channels, g.out_height, g.out_width]))
    }

    fn square_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        grad: FlexTensor,
        stride: usize,
        padding: usize,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if !all_f32(&[&x, &weight, &bias, &grad]) {
            return composed_backward::<Self>(x, weight, bias, grad, stride, padding);
        }
        let [x, weight, grad] = [x, weight, grad].map(contiguous);
        let (samples, g) = Geometry::of(&x, &weight, stride, padding);
        let (dx, dweight, dbias) = backward(f32_slice(&x), f32_slice(&weight), f32_slice(&grad), samples, g);
        let tensor =
            |data: Vec<f32>, like: &FlexTensor| FlexTensor::from_data(TensorData::new(data, like.shape().to_vec()));
        (tensor(dx, &x), tensor(dweight, &weight), tensor(dbias, &bias))
    }
}

/// Output pixels per tile of columns (whole output rows, at least one).
const TILE_PIXELS: usize = 1024;

/// The sizes of one sample's convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    out_height: usize,
    out_width: usize,
}

impl Geometry {
    /// The batch size and the geometry of `x (N, C, H, W)` and `weight (O, C, k, k)`.
    fn of(x: &FlexTensor, weight: &FlexTensor, stride: usize, padding: usize) -> (usize, Self) {
        let dims = |t: &FlexTensor| -> [usize; 4] {
            t.shape().to_vec().try_into().unwrap_or_else(|d| panic!("conv2d: a 4-D tensor, got {d:?}"))
        };
        let ([n, c, h, w], [o, wc, k, kw]) = (dims(x), dims(weight));
        assert!(
            wc == c && kw == k && stride > 0,
            "conv2d: x {:?}, weight {:?}, stride {stride}",
            dims(x),
            dims(weight)
        );
        assert!(h + 2 * padding >= k && w + 2 * padding >= k, "conv2d: a {k}x{k} kernel over {h}x{w} + {padding}");
        let out = |size: usize| (size + 2 * padding - k) / stride + 1;
        let g = Self {
            channels: c,
            height: h,
            width: w,
            out_channels: o,
            kernel: k,
            stride,
            padding,
            out_height: out(h),
            out_width: out(w),
        };
        (n, g)
    }

    fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    fn out_pixels(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Rows of the columns matrix: one per (channel, kernel row, kernel column).
    fn taps(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    /// A 1x1 kernel, stride 1, no padding: the input is its own columns matrix.
    fn pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }

    /// The tiles: `(first output row, output rows)`.
    fn tiles(&self) -> impl Iterator<Item = (usize, usize)> {
        let rows = (TILE_PIXELS / self.out_width.max(1)).clamp(1, self.out_height.max(1));
        let height = self.out_height;
        (0..height).step_by(rows).map(move |first| (first, rows.min(height - first)))
    }

    /// For each (channel, kernel row, kernel column) and each of output rows
    /// `[first, first + rows)`: the output columns whose input element is inside the input
    /// (the others read padding zeros), `visit(tap, tile row, Run)`.
    fn for_each_run(&self, first: usize, rows: usize, mut visit: impl FnMut(usize, usize, Run)) {
        let (k, wo, s) = (self.kernel, self.out_width, self.stride as isize);
        for c in 0..self.channels {
            for ki in 0..k {
                for kj in 0..k {
                    let tap = (c * k + ki) * k + kj;
                    // Output column `ox` reads input column `ox * stride + shift`.
                    let shift = kj as isize - self.padding as isize;
                    let lo = ((-shift).max(0) as usize).div_ceil(self.stride).min(wo);
                    let hi = ((self.width as isize - shift + s - 1) / s).clamp(lo as isize, wo as isize) as usize;
                    for (t, oy) in (first..first + rows).enumerate() {
                        let iy = (oy * self.stride + ki) as isize - self.padding as isize;
                        let run = if (0..self.height as isize).contains(&iy) {
                            let row_start = (c * self.height + iy as usize) * self.width;
                            let input = (row_start as isize + lo as isize * s + shift) as usize;
                            Run { lo, hi, input, stride: self.stride }
                        } else {
                            Run { lo: 0, hi: 0, input: 0, stride: self.stride }
                        };
                        visit(tap, t, run);
                    }
                }
            }
        }
    }
}

/// Output columns `[lo, hi)` of a row read input elements `input`, `input + stride`, ...; the
/// row's other columns read padding zeros.
#[derive(Clone, Copy)]
struct Run {
    lo: usize,
    hi: usize,
    input: usize,
    stride: usize,
}

/// The columns `(taps, rows x W')` of output rows `[first, first + rows)` of one sample
/// `x (C, H, W)`, padding zeros included.
fn im2col(columns: &mut [f32], x: &[f32], g: &Geometry, first: usize, rows: usize) {
    let (width, wo) = (rows * g.out_width, g.out_width);
    g.for_each_run(first, rows, |tap, t, run| {
        let out = &mut columns[tap * width + t * wo..][..wo];
        out[..run.lo].fill(0.0);
        out[run.hi..].fill(0.0);
        let out = &mut out[run.lo..run.hi];
        if run.stride == 1 {
            out.copy_from_slice(&x[run.input..][..out.len()]);
        } else {
            out.iter_mut().zip(x[run.input..].iter().step_by(run.stride)).for_each(|(o, &v)| *o = v);
        }
    });
}

/// The transpose of [`im2col`]: each column's gradient added to the input element it read.
fn col2im(dx: &mut [f32], columns: &[f32], g: &Geometry, first: usize, rows: usize) {
    let (width, wo) = (rows * g.out_width, g.out_width);
    g.for_each_run(first, rows, |tap, t, run| {
        let grads = &columns[tap * width + t * wo..][run.lo..run.hi];
        if run.stride == 1 {
            dx[run.input..][..grads.len()].iter_mut().zip(grads).for_each(|(d, &v)| *d += v);
        } else if !grads.is_empty() {
            dx[run.input..].iter_mut().step_by(run.stride).zip(grads).for_each(|(d, &v)| *d += v);
        }
    });
}

/// `(N, O, H', W')` for `x (N, C, H, W)`, `weight (O, C k k)` and `bias (O)`.
fn forward(x: &[f32], weight: &[f32], bias: &[f32], samples: usize, g: Geometry) -> Vec<f32> {
    let (pixels, taps) = (g.out_pixels(), g.taps());
    let mut out = vec![0.0f32; samples * g.out_channels * pixels];
    if out.is_empty() {
        return out;
    }
    let weights = Matrix::dense(weight, g.out_channels, taps);
    out.par_chunks_mut(g.out_channels * pixels).enumerate().with_min_len(per_thread(samples)).for_each_init(
        || vec![0.0f32; if g.pointwise() { 0 } else { taps * TILE_PIXELS.max(g.out_width) }],
        |columns, (n, out)| {
            let x = &x[n * g.input_len()..][..g.input_len()];
            for (first, rows) in g.tiles() {
                let width = rows * g.out_width;
                let cols = if g.pointwise() {
                    Matrix::dense(x, taps, pixels).column_block(first * g.out_width, width)
                } else {
                    im2col(columns, x, &g, first, rows);
                    Matrix::dense(&columns[..taps * width], taps, width)
                };
                matmul(&mut out[first * g.out_width..], pixels, false, weights, cols);
            }
            for (plane, &b) in out.chunks_exact_mut(pixels).zip(bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        },
    );
    out
}

/// Samples per piece of work: one piece per thread, so that each thread fills its scratch
/// buffers once (rayon would otherwise split the samples finer and allocate for each piece).
fn per_thread(samples: usize) -> usize {
    samples.div_ceil(rayon::current_num_threads()).max(1)
}

/// One thread's share of the weight's and the bias's gradients, and its scratch.
struct Partial {
    dweight: Vec<f32>,
    dbias: Vec<f64>,
    columns: Vec<f32>,
    dcolumns: Vec<f32>,
}

/// `(dx, dweight, dbias)` for the output gradient `grad (N, O, H', W')`.
fn backward(x: &[f32], weight: &[f32], grad: &[f32], samples: usize, g: Geometry) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (pixels, taps, o) = (g.out_pixels(), g.taps(), g.out_channels);
    let mut dx = vec![0.0f32; samples * g.input_len()];
    let weights = Matrix::dense(weight, o, taps);
    let scratch = taps * TILE_PIXELS.max(g.out_width);
    let new = || Partial {
        dweight: vec![0.0; o * taps],
        dbias: vec![0.0; o],
        columns: vec![0.0; scratch],
        dcolumns: vec![0.0; scratch],
    };
    let total = dx
        .par_chunks_mut(g.input_len().max(1))
        .enumerate()
        .with_min_len(per_thread(samples))
        .fold(new, |mut acc, (n, dx)| {
            let x = &x[n * g.input_len()..][..g.input_len()];
            let grad = &grad[n * o * pixels..][..o * pixels];
            for (first, rows) in g.tiles() {
                let width = rows * g.out_width;
                let dy = Matrix::dense(grad, o, pixels).column_block(first * g.out_width, width);
                let cols = if g.pointwise() {
                    Matrix::dense(x, taps, pixels).column_block(first * g.out_width, width)
                } else {
                    im2col(&mut acc.columns, x, &g, first, rows);
                    Matrix::dense(&acc.columns[..taps * width], taps, width)
                };
                matmul(&mut acc.dweight, taps, true, dy, cols.transposed());
                if g.pointwise() {
                    matmul(&mut dx[first * g.out_width..], pixels, false, weights.transposed(), dy);
                } else {
                    matmul(&mut acc.dcolumns, width, false, weights.transposed(), dy);
                    col2im(dx, &acc.dcolumns[..taps * width], &g, first, rows);
                }
            }
            for (db, plane) in acc.dbias.iter_mut().zip(grad.chunks_exact(pixels.max(1))) {
                *db += plane.iter().map(|&v| v as f64).sum::<f64>();
            }
            acc
        })
        .reduce_with(|mut a, b| {
            a.dweight.iter_mut().zip(&b.dweight).for_each(|(x, y)| *x += y);
            a.dbias.iter_mut().zip(&b.dbias).for_each(|(x, y)| *x += y);
            a
        });
    let (dweight, dbias) = match total {
        Some(p) => (p.dweight, p.dbias.into_iter().map(|v| v as f32).collect()),
        None => (vec![0.0; o * taps], vec![0.0; o]),
    };
    (dx, dweight, dbias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{DType, Distribution, FloatDType};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs of [`ConvBackward`]: the gradients must come from it.
    pub(super) static BACKWARD_PASSES: AtomicUsize = AtomicUsize::new(0);

    fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// The UNet's and the VAE's convolutions: 3x3 padded, 3x3 stride 2 (even and odd sizes),
    /// 1x1, and a 3x3 unpadded one; an input wider than a tile.
    fn cases(device: &Device) -> Vec<(Conv2d, [usize; 4])> {
        let conv = |k: usize, stride: usize, padding: usize| {
            Conv2dConfig::new([5, 7], [k, k])
                .with_stride([stride; 2])
                .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
                .init(device)
        };
        vec![
            (conv(3, 1, 1), [3, 5, 9, 11]),
            (conv(3, 2, 1), [2, 5, 8, 8]),
            (conv(3, 2, 1), [2, 5, 7, 9]),
            (conv(1, 1, 0), [2, 5, 6, 4]),
            (conv(3, 1, 0), [2, 5, 6, 7]),
            (conv(3, 1, 1), [1, 5, 40, 1100]),
        ]
    }

    #[test]
    fn equals_burn_s_convolution() {
        let device = Device::flex();
        for (conv, dims) in cases(&device) {
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let diff = max_abs_diff(conv2d(&conv, x.clone()), conv.forward(x));
            assert!(diff < 1e-5, "{:?} stride {:?} over {dims:?}: {diff}", conv.kernel_size, conv.stride);
        }
    }

    #[test]
    fn gradients_equal_those_of_burn_s_convolution() {
        let device = Device::flex().autodiff();
        let passes = BACKWARD_PASSES.load(Ordering::SeqCst);
        for (conv, dims) in cases(&device).into_iter().take(5) {
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device).require_grad();
            let run = |fused: bool| {
                let out = if fused { conv2d(&conv, x.clone()) } else { conv.forward(x.clone()) };
                let weight = Tensor::<4>::ones(out.dims(), &device).mul_scalar(0.5) + out.clone().detach();
                let grads = (out * weight).sum().backward();
                let bias = conv.bias.as_ref().unwrap();
                (x.grad(&grads).unwrap(), conv.weight.grad(&grads).unwrap(), bias.grad(&grads).unwrap())
            };
            let ((dx, dw, db), (want_dx, want_dw, want_db)) = (run(true), run(false));
            let what = format!("{:?} stride {:?} over {dims:?}", conv.kernel_size, conv.stride);
            assert!(max_abs_diff(dx, want_dx) < 1e-4, "{what}: dx");
            assert!(max_abs_diff(dw, want_dw) < 1e-3, "{what}: dweight");
            assert!((db - want_db).abs().max().into_scalar::<f32>() < 1e-3, "{what}: dbias");
        }
        assert!(BACKWARD_PASSES.load(Ordering::SeqCst) >= passes + 5, "the hand-written backward pass ran");
    }

    #[test]
    fn bf16_runs_burn_s_convolution() {
        let device = Device::flex();
        let (conv, dims) = cases(&device).remove(0);
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let half = crate::precision::with_float_dtype(conv.clone(), FloatDType::BF16);
        let out = conv2d(&half, x.clone().cast(FloatDType::BF16));
        assert_eq!(out.dtype(), DType::BF16);
        let want = conv.forward(x);
        let scale = want.clone().abs().max().into_scalar::<f32>();
        assert!(max_abs_diff(out.cast(FloatDType::F32), want) / scale < 0.02);
    }
}
