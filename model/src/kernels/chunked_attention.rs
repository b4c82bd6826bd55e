//! Exact softmax attention that never holds a whole score matrix, forward or backward.
//!
//! Burn's `attention` op materialises `q kᵀ` and the softmax under autodiff and keeps them for
//! the backward pass: at 512x512 (4096 tokens), 16 frames and 8 heads that is 8.6 GB per
//! attention layer in f32. Here the queries go through in chunks of rows; the forward pass keeps
//! only the output and each row's log-sum-exp, and the backward pass recomputes every chunk's
//! probabilities from them (flash attention's scheme, written with the backend's own matmul and
//! elementwise ops, so it runs on every backend). Memory: `chunk x L` scores per chunk instead of
//! `S x L`, for one extra `q kᵀ` matmul per chunk in the backward pass.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{FloatDType, Slice};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{all_f32, attention_cpu};

/// Score elements (`batch x heads x rows x keys`) one chunk may hold by default: 2^26,
/// 256 MiB in f32.
pub const SCORE_BUDGET: usize = 1 << 26;

static SCORE_BUDGET_NOW: AtomicUsize = AtomicUsize::new(SCORE_BUDGET);

/// Sets the score budget of every attention that follows, process-wide (`usize::MAX`: always
/// Burn's op, as before this module existed; for memory benchmarks and tuning).
pub fn set_score_budget(elements: usize) {
    SCORE_BUDGET_NOW.store(elements.max(1), Ordering::Relaxed);
}

/// The score budget now ([`set_score_budget`]).
pub fn score_budget() -> usize {
    SCORE_BUDGET_NOW.load(Ordering::Relaxed)
}

/// The backend operations behind [`chunked_attention`]: the default bodies compose the
/// backend's primitives (inference: its own attention op); autodiff gets its own backward pass
/// below, and the CPU backend fused kernels ([`super::attention_cpu`]).
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")), Autodiff)]
pub trait ChunkedAttentionBackend: Backend {
    /// `q (N, H, S, D)`, `k, v (N, H, L, D)` -> `(N, H, S, D)`, `chunk` query rows at a time
    /// where a backward pass is recorded. Without one, the backend's own attention op (fused or
    /// tiled for inference on every backend).
    fn chunked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        _chunk: usize,
    ) -> FloatTensor<Self> {
        Self::attention(q, k, v, None, None, AttentionModuleOptions::default())
    }

    /// The output and the log-sum-exp of each row's scores `(N, H, S, 1)` (f32), which is all
    /// that [`ChunkedAttentionBackend::attention_backward`] needs besides the inputs.
    fn attention_with_lse(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        chunk: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        forward_with_lse::<Self>(q, k, v, chunk)
    }

    /// The gradients `(dq, dk, dv)` for the output gradient `grad (N, H, S, D)`.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        chunk: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        backward::<Self>(AttentionState { q, k, v, out, lse, chunk }, grad)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl ChunkedAttentionBackend for burn::backend::Cube {}

impl<B: ChunkedAttentionBackend, C: CheckpointStrategy> ChunkedAttentionBackend for Autodiff<B, C> {
    fn chunked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        chunk: usize,
    ) -> FloatTensor<Self> {
        let inputs = [q.primitive().clone(), k.primitive().clone(), v.primitive().clone()];
        match ChunkedAttentionBackward.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let [q, k, v] = inputs;
                let (out, lse) = B::attention_with_lse(q.clone(), k.clone(), v.clone(), chunk);
                let state = AttentionState { q, k, v, out: out.clone(), lse, chunk };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => {
                let [q, k, v] = inputs;
                prep.finish(B::chunked_attention(q, k, v, chunk))
            }
        }
    }
}

/// Exact softmax attention over `q (N, H, S, D)`, `k, v (N, H, L, D)`, scaled by
/// `1/sqrt(D)`, with `chunk` query rows at a time -> `(N, H, S, D)`. Differentiable on autodiff
/// devices with the same memory bound in the backward pass.
pub fn chunked_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, chunk: usize) -> Tensor<4> {
    let out = Dispatch::chunked_attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch(), chunk.max(1));
    Tensor::from_dispatch(out)
}

/// Query rows per chunk so that `N x H x rows x L` stays within the score budget
/// ([`SCORE_BUDGET`] unless [`set_score_budget`] changed it); `None` when the whole score
/// matrix fits at once.
pub fn chunk_rows(q_dims: [usize; 4], keys: usize) -> Option<usize> {
    let budget = score_budget();
    let [n, h, s, _] = q_dims;
    let per_row = (n * h * keys).max(1);
    (per_row.saturating_mul(s) > budget).then(|| (budget / per_row).max(1))
}

/// What the backward pass keeps: the inputs, the output and each row's log-sum-exp
/// `(N, H, S, 1)` (f32).
#[derive(Debug, Clone)]
struct AttentionState<B: Backend> {
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    out: FloatTensor<B>,
    lse: FloatTensor<B>,
    chunk: usize,
}

#[derive(Debug)]
struct ChunkedAttentionBackward;

impl<B: ChunkedAttentionBackend> Backward<B, 3> for ChunkedAttentionBackward {
    type State = AttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        #[cfg(test)]
        tests::BACKWARD_PASSES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let AttentionState { q, k, v, out, lse, chunk } = ops.state;
        let (dq, dk, dv) = B::attention_backward(q, k, v, out, lse, grad, chunk);
        for (node, grad) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

fn scale_of<B: Backend>(q: &FloatTensor<B>) -> f32 {
    let head_dim = q.shape()[3];
    1.0 / (head_dim as f32).sqrt()
}

/// Rows `[start, end)` of dim 2.
fn rows<B: Backend>(x: &FloatTensor<B>, start: usize, end: usize) -> FloatTensor<B> {
    B::float_slice(x.clone(), &[Slice::from(..), Slice::from(..), Slice::from(start..end), Slice::from(..)])
}

fn chunk_starts(total: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..total).step_by(chunk).map(move |start| (start, (start + chunk).min(total)))
}

/// `scale * q kᵀ` for one chunk of rows, in f32: `(N, H, c, L)`.
fn scores<B: Backend>(q: FloatTensor<B>, k: &FloatTensor<B>, scale: f32) -> FloatTensor<B> {
    f32_of::<B>(B::float_mul_scalar(B::float_matmul(q, B::float_transpose(k.clone())), scale.into()))
}

/// The softmax statistics (max, exponentials, sums, log-sum-exp) are kept in f32 whatever the
/// inputs' dtype, as flash attention accumulates: a bf16 log-sum-exp of ~10 is off by 0.03,
/// which would put every recomputed probability off by 3 %.
fn f32_of<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_cast(x, FloatDType::F32)
}

fn dtype_of<B: Backend>(x: &FloatTensor<B>) -> FloatDType {
    x.dtype().into()
}

/// The output `(N, H, S, D)` in the inputs' dtype and the log-sum-exp of each row's scores
/// `(N, H, S, 1)` in f32.
fn forward_with_lse<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    chunk: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (scale, dtype) = (scale_of::<B>(&q), dtype_of::<B>(&v));
    let (outs, lses): (Vec<_>, Vec<_>) = chunk_starts(q.shape()[2], chunk)
        .map(|(start, end)| {
            let s = scores::<B>(rows::<B>(&q, start, end), &k, scale);
            let max = B::float_max_dim(s.clone(), 3);
            let p = B::float_exp(B::float_sub(s, max.clone()));
            let sum = B::float_sum_dim(p.clone(), 3);
            let probabilities = B::float_cast(B::float_div(p, sum.clone()), dtype);
            (B::float_matmul(probabilities, v.clone()), B::float_add(max, B::float_log(sum)))
        })
        .unzip();
    (B::float_cat(outs, 2), B::float_cat(lses, 2))
}

/// Gradients `[dq, dk, dv]` for the upstream gradient `grad (N, H, S, D)`:
/// `P = exp(scale q kᵀ - lse)`, `dv = Pᵀ grad`, `dS = P (grad vᵀ - rowsum(grad out))`,
/// `dq = scale dS k`, `dk = scale dSᵀ q`, one chunk of rows at a time.
fn backward<B: Backend>(
    state: AttentionState<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let AttentionState { q, k, v, out, lse, chunk } = state;
    let (scale, dtype) = (scale_of::<B>(&q), dtype_of::<B>(&v));
    let delta = B::float_sum_dim(B::float_mul(f32_of::<B>(grad.clone()), f32_of::<B>(out)), 3);
    let mut dk = None;
    let mut dv = None;
    let mut dqs = Vec::new();
    for (start, end) in chunk_starts(q.shape()[2], chunk) {
        let q_rows = rows::<B>(&q, start, end);
        let grad_rows = rows::<B>(&grad, start, end);
        let p = B::float_exp(B::float_sub(scores::<B>(q_rows.clone(), &k, scale), rows::<B>(&lse, start, end)));
        let p_in = B::float_cast(p.clone(), dtype);
        dv = accumulate::<B>(dv, B::float_matmul(B::float_transpose(p_in), grad_rows.clone()));
        let dp = f32_of::<B>(B::float_matmul(grad_rows, B::float_transpose(v.clone())));
        let ds = B::float_mul(p, B::float_sub(dp, rows::<B>(&delta, start, end)));
        let ds = B::float_cast(B::float_mul_scalar(ds, scale.into()), dtype);
        dqs.push(B::float_matmul(ds.clone(), k.clone()));
        dk = accumulate::<B>(dk, B::float_matmul(B::float_transpose(ds), q_rows));
    }
    let sum = |x: Option<FloatTensor<B>>| x.expect("attention over at least one query row");
    (B::float_cat(dqs, 2), sum(dk), sum(dv))
}

fn accumulate<B: Backend>(sum: Option<FloatTensor<B>>, x: FloatTensor<B>) -> Option<FloatTensor<B>> {
    Some(match sum {
        Some(sum) => B::float_add(sum, x),
        None => x,
    })
}

// ---- The CPU kernels (f32). ----

impl ChunkedAttentionBackend for Flex {
    fn chunked_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, _chunk: usize) -> FlexTensor {
        if !all_f32(&[&q, &k, &v]) {
            return <Self as ModuleOps<Self>>::attention(q, k, v, None, None, AttentionModuleOptions::default());
        }
        cpu_forward(q, k, v).0
    }

    fn attention_with_lse(q: FlexTensor, k: FlexTensor, v: FlexTensor, chunk: usize) -> (FlexTensor, FlexTensor) {
        if !all_f32(&[&q, &k, &v]) {
            return forward_with_lse::<Self>(q, k, v, chunk);
        }
        cpu_forward(q, k, v)
    }

    fn attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        out: FlexTensor,
        lse: FlexTensor,
        grad: FlexTensor,
        chunk: usize,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if !all_f32(&[&q, &k, &v, &out, &lse, &grad]) {
            return backward::<Self>(AttentionState { q, k, v, out, lse, chunk }, grad);
        }
        let [q, k, v, out, lse, grad] = [q, k, v, out, lse, grad].map(readable);
        let sizes = sizes_of(&q, &k, &v);
        let saved = attention_cpu::Saved { out: strided(&out), lse: strided(&lse) };
        let (dq, dk, dv) = attention_cpu::backward([&q, &k, &v].map(strided), saved, strided(&grad), sizes);
        let (n, h, d, dv_dim) = (sizes.samples, sizes.heads, sizes.dim, sizes.value_dim);
        let (s, l) = (sizes.queries, sizes.keys);
        (heads_view(dq, [n, s, h, d]), heads_view(dk, [n, l, h, d]), heads_view(dv, [n, l, h, dv_dim]))
    }
}

/// `t` itself when the kernels can read it in place (its last dim one run, no negative
/// strides), else a contiguous copy.
fn readable(t: FlexTensor) -> FlexTensor {
    let layout = t.layout();
    let dims = layout.shape().to_vec();
    let in_place = layout.strides().iter().all(|&s| s >= 0) && (layout.strides()[3] == 1 || dims[3] <= 1);
    if in_place { t } else { t.to_contiguous() }
}

/// A [`readable`] 4-D f32 tensor as the kernels read it.
fn strided(t: &FlexTensor) -> attention_cpu::Strided<'_> {
    let layout = t.layout();
    let stride = |dim: usize| layout.strides()[dim] as usize;
    let data = t.storage::<f32>();
    attention_cpu::Strided { data, offset: layout.start_offset(), sample: stride(0), head: stride(1), row: stride(2) }
}

/// `(N, H, S, D)` viewed over data laid out `(N, S, H, D)`, `dims` being the latter.
fn heads_view(data: Vec<f32>, dims: [usize; 4]) -> FlexTensor {
    Flex::float_swap_dims(FlexTensor::from_data(TensorData::new(data, dims)), 1, 2)
}

/// The kernel's sizes for `q (N, H, S, D)`, `k (N, H, L, D)`, `v (N, H, L, Dv)`.
fn sizes_of(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> attention_cpu::Sizes {
    let dims = |t: &FlexTensor| -> [usize; 4] {
        t.shape().to_vec().try_into().unwrap_or_else(|d| panic!("attention: a 4-D tensor, got {d:?}"))
    };
    let ([n, h, s, d], [kn, kh, l, kd], [vn, vh, vl, dv]) = (dims(q), dims(k), dims(v));
    assert!(
        [kn, vn] == [n, n] && [kh, vh] == [h, h] && kd == d && vl == l,
        "attention: q {:?}, k {:?}, v {:?}",
        dims(q),
        dims(k),
        dims(v)
    );
    attention_cpu::Sizes { samples: n, heads: h, queries: s, keys: l, dim: d, value_dim: dv }
}

/// The output `(N, H, S, Dv)` and the log-sum-exp `(N, H, S, 1)`, both views of `(N, S, H, .)`.
fn cpu_forward(q: FlexTensor, k: FlexTensor, v: FlexTensor) -> (FlexTensor, FlexTensor) {
    let [q, k, v] = [q, k, v].map(readable);
    let sizes = sizes_of(&q, &k, &v);
    let (out, lse) = attention_cpu::forward(strided(&q), strided(&k), strided(&v), sizes);
    let (n, s, h) = (sizes.samples, sizes.queries, sizes.heads);
    (heads_view(out, [n, s, h, sizes.value_dim]), heads_view(lse, [n, s, h, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax;

    /// Runs of [`ChunkedAttentionBackward`]: the gradients must come from it, not from autodiff
    /// recording the forward pass's primitives (which would keep every chunk's scores).
    pub(super) static BACKWARD_PASSES: AtomicUsize = AtomicUsize::new(0);

    /// `softmax(q kᵀ / sqrt(D)) v` written out, the whole score matrix at once.
    fn reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let scale = 1.0 / (q.dims()[3] as f32).sqrt();
        softmax(q.matmul(k.swap_dims(2, 3)) * scale, 3).matmul(v)
    }

    fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    fn inputs(device: &Device) -> [Tensor<4>; 4] {
        // Seeded, so that every run checks the same values (the bf16 test's error depends on
        // them). Scores of a few units, so the softmax is far from uniform; L != S
        // (cross-attention).
        let mut noise = crate::noise::NoiseSource::new(11);
        let q = noise.normal([2, 3, 37, 8], device).mul_scalar(2.0);
        let k = noise.normal([2, 3, 29, 8], device).mul_scalar(2.0);
        let v = noise.normal([2, 3, 29, 8], device);
        let weight = noise.normal([2, 3, 37, 8], device);
        [q, k, v, weight]
    }

    #[test]
    fn equals_softmax_attention_for_every_chunk_size() {
        let device = Device::flex();
        let [q, k, v, _] = inputs(&device);
        let expected = reference(q.clone(), k.clone(), v.clone());
        for chunk in [1, 5, 36, 37, 100] {
            let out = chunked_attention(q.clone(), k.clone(), v.clone(), chunk);
            let diff = max_abs_diff(out, expected.clone());
            assert!(diff < 1e-5, "chunk {chunk}: {diff}");
        }
    }

    #[test]
    fn gradients_equal_those_of_softmax_attention() {
        let device = Device::flex().autodiff();
        let [q, k, v, weight] = inputs(&device);
        let track = |x: &Tensor<4>| x.clone().detach().require_grad();
        let grads_of = |chunk: Option<usize>| {
            let (q, k, v) = (track(&q), track(&k), track(&v));
            let out = match chunk {
                Some(chunk) => chunked_attention(q.clone(), k.clone(), v.clone(), chunk),
                None => reference(q.clone(), k.clone(), v.clone()),
            };
            let grads = (out * weight.clone()).sum().backward();
            [q, k, v].map(|x| x.grad(&grads).expect("a gradient for every input"))
        };
        let expected = grads_of(None);
        let passes = BACKWARD_PASSES.load(Ordering::SeqCst);
        for chunk in [1, 7, 37] {
            for (name, (got, want)) in
                ["q", "k", "v"].iter().zip(grads_of(Some(chunk)).into_iter().zip(expected.clone()))
            {
                let diff = max_abs_diff(got, want);
                assert!(diff < 1e-4, "chunk {chunk}, d{name}: {diff}");
            }
        }
        assert!(BACKWARD_PASSES.load(Ordering::SeqCst) >= passes + 3, "the hand-written backward pass ran");
    }

    use crate::kernels::{contiguous, f32_slice};

    /// The largest difference of two f32 tensors of one shape.
    fn flex_diff(a: &FlexTensor, b: &FlexTensor) -> f32 {
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (contiguous(a.clone()), contiguous(b.clone()));
        f32_slice(&a).iter().zip(f32_slice(&b)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn cpu_kernels_equal_the_composed_bodies_for_every_chunk() {
        let device = Device::flex();
        let data = |dims: [usize; 4], std: f64| {
            FlexTensor::from_data(Tensor::<4>::random(dims, Distribution::Normal(0.0, std), &device).into_data())
        };
        // Several blocks of query rows and a partial last one; q a view of (N, S, H, D) as the
        // attention layers make it (read in place), k transposed in its last two dims (copied);
        // a value width other than the key width.
        let q = Flex::float_swap_dims(data([2, 150, 3, 8], 2.0), 1, 2);
        let k = Flex::float_swap_dims(data([2, 3, 8, 70], 2.0), 2, 3);
        let (v, grad) = (data([2, 3, 70, 6], 1.0), data([2, 3, 150, 6], 1.0));
        let (out, lse) = Flex::attention_with_lse(q.clone(), k.clone(), v.clone(), 150);
        assert_eq!(flex_diff(&Flex::chunked_attention(q.clone(), k.clone(), v.clone(), 7), &out), 0.0);
        let (dq, dk, dv) =
            Flex::attention_backward(q.clone(), k.clone(), v.clone(), out.clone(), lse.clone(), grad.clone(), 150);
        for chunk in [1, 64, 150] {
            let (want_out, want_lse) = forward_with_lse::<Flex>(q.clone(), k.clone(), v.clone(), chunk);
            assert!(flex_diff(&out, &want_out) < 1e-5, "chunk {chunk}: out {}", flex_diff(&out, &want_out));
            assert!(flex_diff(&lse, &want_lse) < 1e-5, "chunk {chunk}: lse {}", flex_diff(&lse, &want_lse));
            let state =
                AttentionState { q: q.clone(), k: k.clone(), v: v.clone(), out: out.clone(), lse: lse.clone(), chunk };
            let (want_dq, want_dk, want_dv) = backward::<Flex>(state, grad.clone());
            for (name, got, want) in [("q", &dq, &want_dq), ("k", &dk, &want_dk), ("v", &dv, &want_dv)] {
                let diff = flex_diff(got, want);
                assert!(diff < 1e-4, "chunk {chunk}: d{name} {diff}");
            }
        }
    }

    #[test]
    fn bf16_inputs_give_bf16_results_close_to_f32() {
        let device = Device::flex().autodiff();
        let [q, k, v, weight] = inputs(&device);
        let half = |x: &Tensor<4>| x.clone().cast(FloatDType::BF16).detach().require_grad();
        let (qh, kh, vh) = (half(&q), half(&k), half(&v));
        let out = chunked_attention(qh.clone(), kh.clone(), vh.clone(), 5);
        assert_eq!(out.dtype(), burn::tensor::DType::BF16);
        let grads = (out.clone() * weight.clone().cast(FloatDType::BF16)).sum().backward();
        let (q, k, v) = (q.require_grad(), k.require_grad(), v.require_grad());
        let expected = reference(q.clone(), k.clone(), v.clone());
        let expected_grads = (expected.clone() * weight).sum().backward();
        // Relative to the largest value: bf16 rounds the inputs by up to 2^-9.
        let relative = |got: Tensor<4>, want: Tensor<4>| {
            let scale = want.clone().abs().max().into_scalar::<f32>();
            max_abs_diff(got.cast(FloatDType::F32), want) / scale
        };
        let worst = relative(out.inner(), expected.inner());
        eprintln!("bf16 chunked attention: output {worst:.1e} of its largest value");
        assert!(worst < 0.03, "output: {worst}");
        for (name, half, full) in [("q", &qh, &q), ("k", &kh, &k), ("v", &vh, &v)] {
            let got = half.grad(&grads).expect("a gradient");
            assert_eq!(got.dtype(), burn::tensor::DType::BF16, "d{name}");
            let worst = relative(got, full.grad(&expected_grads).expect("a gradient"));
            eprintln!("bf16 chunked attention: d{name} {worst:.1e} of its largest value");
            assert!(worst < 0.06, "d{name}: {worst}");
        }
    }

    #[test]
    fn only_inputs_that_need_it_get_a_gradient() {
        let device = Device::flex().autodiff();
        let [q, k, v, _] = inputs(&device);
        let q = q.require_grad();
        let grads = chunked_attention(q.clone(), k.clone(), v.clone(), 4).sum().backward();
        assert!(q.grad(&grads).is_some());
        assert!(k.grad(&grads).is_none() && v.grad(&grads).is_none());
    }

    #[test]
    fn chunks_keep_the_scores_within_the_budget() {
        // Full size: 16 frames x 8 heads, 4096 tokens attending to 4096.
        let rows = chunk_rows([16, 8, 4096, 40], 4096).expect("over the budget");
        assert_eq!(rows, 128);
        assert!(16 * 8 * rows * 4096 <= SCORE_BUDGET);
        // The toy and tiny configs' score matrices fit whole.
        assert_eq!(chunk_rows([4, 2, 64, 8], 64), None);
    }
}
