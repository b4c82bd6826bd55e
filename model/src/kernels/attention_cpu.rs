//! The CPU (flex, f32) kernels of [`super::chunked_attention`]: softmax attention per
//! `(sample, head)` and block of query rows, forward with each row's log-sum-exp and backward
//! from it, with the softmax on the vectorised `exp` of [`super::fast_math`] (flex's own
//! attention calls libm's scalar `expf` per score, and under autodiff Burn composes the softmax
//! and its gradient from separate passes that each keep a buffer).
//!
//! The heads are read where they lie: `q (N, H, S, D)` is usually the view `(N, S, H, D)` of a
//! projection's output `(N, S, H*D)`, and each head's rows are read with their stride instead
//! of being copied out. The results are written the same way, `(N, S, H, D)` in memory, so
//! that merging the heads back (and the gradients' way back to the projections) copies nothing.
//!
//! A block holds `ROWS x L` scores whatever the sequence lengths, so the kernels need no
//! chunking for memory; samples (and, forward, blocks) run on all cores, each matrix product on
//! one (`gemm`, as flex's own attention).

use rayon::prelude::*;

use super::fast_math::{exp, simd_fn};
use super::matmul::{Matrix, matmul};

/// Query rows per block.
const ROWS: usize = 64;

/// The sizes of `q (N, H, S, D)`, `k (N, H, L, D)`, `v (N, H, L, Dv)`.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub samples: usize,
    pub heads: usize,
    /// `S`.
    pub queries: usize,
    /// `L`.
    pub keys: usize,
    /// `D`.
    pub dim: usize,
    /// `Dv`.
    pub value_dim: usize,
}

impl Sizes {
    fn scale(&self) -> f32 {
        1.0 / (self.dim as f32).sqrt()
    }
}

/// A 4-D tensor `(N, H, rows, cols)` in a slice whose last dim has stride 1: element
/// `(n, h, i, j)` at `offset + n * sample + h * head + i * row + j`.
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub sample: usize,
    pub head: usize,
    pub row: usize,
}

impl<'a> Strided<'a> {
    /// The `(rows, cols)` matrix of head `(n, h)`.
    fn matrix(&self, n: usize, h: usize, rows: usize, cols: usize) -> Matrix<'a> {
        let start = self.offset + n * self.sample + h * self.head;
        Matrix { data: &self.data[start..], rows, cols, row_stride: self.row, col_stride: 1 }
    }
}

/// `softmax(scale q kᵀ) v` -> the output, `(N, S, H, Dv)` in memory, and the log-sum-exp of
/// each row's scaled scores, `(N, S, H)` in memory.
pub fn forward(q: Strided, k: Strided, v: Strided, sz: Sizes) -> (Vec<f32>, Vec<f32>) {
    let (h_count, s, l, d, dv) = (sz.heads, sz.queries, sz.keys, sz.dim, sz.value_dim);
    let mut out = vec![0.0f32; sz.samples * s * h_count * dv];
    let mut lse = vec![0.0f32; sz.samples * s * h_count];
    if out.is_empty() {
        return (out, lse);
    }
    let samples = out.par_chunks_mut(s * h_count * dv).zip(lse.par_chunks_mut(s * h_count));
    samples.enumerate().for_each(|(n, (out, lse))| {
        // Blocks of rows, every head of each: contiguous runs of the sample's output.
        let blocks = out.par_chunks_mut(ROWS * h_count * dv).zip(lse.par_chunks_mut(ROWS * h_count));
        blocks.enumerate().for_each_init(
            || (vec![0.0f32; ROWS * l], [0.0f32; ROWS]),
            |(scores, row_lse), (block, (out, lse))| {
                let (start, rows) = (block * ROWS, lse.len() / h_count);
                for h in 0..h_count {
                    let p = &mut scores[..rows * l];
                    matmul(p, l, false, q.matrix(n, h, s, d).row_block(start, rows), k.matrix(n, h, l, d).transposed());
                    softmax_rows(p, l, sz.scale(), &mut row_lse[..rows]);
                    matmul(&mut out[h * dv..], h_count * dv, false, Matrix::dense(p, rows, l), v.matrix(n, h, l, dv));
                    for (i, &x) in row_lse[..rows].iter().enumerate() {
                        lse[i * h_count + h] = x;
                    }
                }
            },
        );
    });
    (out, lse)
}

/// The forward pass's output and log-sum-exp, read back as [`Strided`] `(N, H, S, Dv)` and
/// `(N, H, S, 1)`.
pub struct Saved<'a> {
    pub out: Strided<'a>,
    pub lse: Strided<'a>,
}

/// The gradients `(dq, dk, dv)`, `(N, S, H, D)`, `(N, L, H, D)`, `(N, L, H, Dv)` in memory,
/// for the output gradient `grad (N, H, S, Dv)`: `P = exp(scale q kᵀ - lse)`, `dv = Pᵀ grad`,
/// `dS = P (grad vᵀ - rowsum(grad out))`, `dq = scale dS k`, `dk = scale dSᵀ q`.
pub fn backward([q, k, v]: [Strided; 3], saved: Saved, grad: Strided, sz: Sizes) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (h_count, s, l, d, dv) = (sz.heads, sz.queries, sz.keys, sz.dim, sz.value_dim);
    let mut dq = vec![0.0f32; sz.samples * s * h_count * d];
    let mut dk = vec![0.0f32; sz.samples * l * h_count * d];
    let mut dvs = vec![0.0f32; sz.samples * l * h_count * dv];
    if dq.is_empty() || dk.is_empty() || dvs.is_empty() {
        return (dq, dk, dvs);
    }
    let samples = dq.par_chunks_mut(s * h_count * d).zip(dk.par_chunks_mut(l * h_count * d));
    samples.zip(dvs.par_chunks_mut(l * h_count * dv)).enumerate().for_each_init(
        || (vec![0.0f32; ROWS * l], vec![0.0f32; ROWS * l], [0.0f32; ROWS], [0.0f32; ROWS]),
        |(p, dp, lse, delta), (n, ((dq, dk), dv_out))| {
            for h in 0..h_count {
                let (q, k, v) = (q.matrix(n, h, s, d), k.matrix(n, h, l, d), v.matrix(n, h, l, dv));
                let (grad, out) = (grad.matrix(n, h, s, dv), saved.out.matrix(n, h, s, dv));
                let lse_column = saved.lse.matrix(n, h, s, 1);
                for start in (0..s).step_by(ROWS) {
                    let rows = ROWS.min(s - start);
                    let (p, dp) = (&mut p[..rows * l], &mut dp[..rows * l]);
                    let (q_rows, grad_rows, out_rows) =
                        (q.row_block(start, rows), grad.row_block(start, rows), out.row_block(start, rows));
                    for i in 0..rows {
                        lse[i] = lse_column.data[(start + i) * lse_column.row_stride];
                        delta[i] = row_dot(grad_rows, out_rows, i);
                    }
                    matmul(p, l, false, q_rows, k.transposed());
                    probabilities(p, l, sz.scale(), &lse[..rows]);
                    let p_t = Matrix::dense(p, rows, l).transposed();
                    matmul(&mut dv_out[h * dv..], h_count * dv, start > 0, p_t, grad_rows);
                    matmul(dp, l, false, grad_rows, v.transposed());
                    score_gradients(dp, p, &delta[..rows], l, sz.scale());
                    let ds = Matrix::dense(dp, rows, l);
                    matmul(&mut dq[(start * h_count + h) * d..], h_count * d, false, ds, k);
                    matmul(&mut dk[h * d..], h_count * d, start > 0, ds.transposed(), q_rows);
                }
            }
        },
    );
    (dq, dk, dvs)
}

/// `Σ_j a[i, j] b[i, j]` for row `i` of two matrices of one width.
fn row_dot(a: Matrix, b: Matrix, i: usize) -> f32 {
    let (a, b) = (&a.data[i * a.row_stride..][..a.cols], &b.data[i * b.row_stride..][..b.cols]);
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The largest element and the sum of a slice, eight lanes at a time (so that they vectorise).
#[inline(always)]
fn max_of(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for chunk in chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = m.max(x);
        }
    }
    lanes.iter().fold(tail, |m, &x| m.max(x))
}

#[inline(always)]
fn sum_of(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (s, &x) in lanes.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

simd_fn! {
    /// Each row of `scores (rows, keys)` becomes `softmax(scale x row)`, and `lse[row]` the
    /// log-sum-exp of `scale x row`.
    fn softmax_rows(scores: &mut [f32], keys: usize, scale: f32, lse: &mut [f32]) {
        for (row, lse) in scores.chunks_exact_mut(keys).zip(lse) {
            // scale > 0, so the largest scaled score is the scaled largest one.
            let max = max_of(row) * scale;
            row.iter_mut().for_each(|x| *x = exp(*x * scale - max));
            let sum = sum_of(row);
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|x| *x *= inv);
            *lse = max + sum.ln();
        }
    }
}

simd_fn! {
    /// Each row of `scores (rows, keys)` becomes `exp(scale x row - lse[row])`.
    fn probabilities(scores: &mut [f32], keys: usize, scale: f32, lse: &[f32]) {
        for (row, &lse) in scores.chunks_exact_mut(keys).zip(lse) {
            row.iter_mut().for_each(|x| *x = exp(*x * scale - lse));
        }
    }
}

simd_fn! {
    /// `dp (rows, keys)` (`grad vᵀ`) becomes `scale P (dp - delta)` for the block's
    /// probabilities `p` and `delta = rowsum(grad out)`.
    fn score_gradients(dp: &mut [f32], p: &[f32], delta: &[f32], keys: usize, scale: f32) {
        for ((dp, p), &delta) in dp.chunks_exact_mut(keys).zip(p.chunks_exact(keys)).zip(delta) {
            for (dp, &p) in dp.iter_mut().zip(p) {
                *dp = scale * p * (*dp - delta);
            }
        }
    }
}
