//! 3D pooling, which Burn lacks, composed of two 2D poolings: the max (or mean) over a
//! `kt x kh x kw` box is the max (mean) over `kt` frames of each frame's `kh x kw` max (mean).
//! Both reductions are separable, so the result is exact. Padding follows TensorFlow's "SAME"
//! (as I3D and Flax use it): padded positions never win a max.

use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};

/// TensorFlow's "SAME" padding of one dimension of length `len`: `(before, after)` such that a
/// window of `kernel` at `stride` gives `ceil(len / stride)` positions; the odd pixel goes after.
pub fn same_padding(len: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = len.div_ceil(stride).max(1);
    let total = ((out - 1) * stride + kernel).saturating_sub(len);
    (total / 2, total - total / 2)
}

/// "SAME" padding of the three dimensions `(T, H, W)` of a `(B, C, T, H, W)` tensor.
pub fn same_padding_3d(x: &Tensor<5>, kernel: [usize; 3], stride: [usize; 3]) -> [(usize, usize); 3] {
    let [_, _, t, h, w] = x.dims();
    [
        same_padding(t, kernel[0], stride[0]),
        same_padding(h, kernel[1], stride[1]),
        same_padding(w, kernel[2], stride[2]),
    ]
}

/// A 2D pooling `(N, C, H, W) -> (N, C, H', W')` with its kernel, stride and padding.
type Pool2d = fn(Tensor<4>, [usize; 2], [usize; 2], [(usize, usize); 2]) -> Tensor<4>;

fn max2d(x: Tensor<4>, kernel: [usize; 2], stride: [usize; 2], padding: [(usize, usize); 2]) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new(kernel).with_stride(stride).with_padding_pairs(padding))
}

fn avg2d(x: Tensor<4>, kernel: [usize; 2], stride: [usize; 2], padding: [(usize, usize); 2]) -> Tensor<4> {
    avg_pool2d(x, AvgPoolOptions::new(kernel).with_stride(stride).with_padding_pairs(padding))
}

/// Pools `(B, C, T, H, W)` frame by frame over `(H, W)`, then over `T` (a `(kt, 1)` 2D pooling of
/// `(B, C, T, H' W')`).
fn pool3d(
    x: Tensor<5>,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [(usize, usize); 3],
    pool: Pool2d,
) -> Tensor<5> {
    let [b, c, t, h, w] = x.dims();
    let frames = x.permute([0, 2, 1, 3, 4]).reshape([b * t, c, h, w]);
    let frames = pool(frames, [kernel[1], kernel[2]], [stride[1], stride[2]], [padding[1], padding[2]]);
    let [_, _, h2, w2] = frames.dims();
    let clips = frames.reshape([b, t, c, h2 * w2]).permute([0, 2, 1, 3]);
    let clips = pool(clips, [kernel[0], 1], [stride[0], 1], [padding[0], (0, 0)]);
    let t2 = clips.dims()[2];
    clips.reshape([b, c, t2, h2, w2])
}

/// Max pooling of `(B, C, T, H, W)` with "SAME" padding: `(B, C, ceil(T/st), ceil(H/sh), ceil(W/sw))`.
pub fn max_pool3d_same(x: Tensor<5>, kernel: [usize; 3], stride: [usize; 3]) -> Tensor<5> {
    let padding = same_padding_3d(&x, kernel, stride);
    pool3d(x, kernel, stride, padding, max2d)
}

/// Average pooling of `(B, C, T, H, W)` without padding ("VALID").
pub fn avg_pool3d_valid(x: Tensor<5>, kernel: [usize; 3], stride: [usize; 3]) -> Tensor<5> {
    pool3d(x, kernel, stride, [(0, 0); 3], avg2d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The pooling computed box by box, with "SAME" padding when `same` (max only).
    fn direct(x: &Tensor<5>, kernel: [usize; 3], stride: [usize; 3], same: bool, max: bool) -> Vec<f32> {
        let [b, c, t, h, w] = x.dims();
        let values = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let dims = [t, h, w];
        let (mut out_len, mut before) = ([0; 3], [0; 3]);
        for i in 0..3 {
            (out_len[i], before[i]) = if same {
                (dims[i].div_ceil(stride[i]), same_padding(dims[i], kernel[i], stride[i]).0)
            } else {
                ((dims[i] - kernel[i]) / stride[i] + 1, 0)
            };
        }
        let mut out = Vec::new();
        for n in 0..b * c {
            for ot in 0..out_len[0] {
                for oh in 0..out_len[1] {
                    for ow in 0..out_len[2] {
                        let (mut best, mut sum, mut count) = (f32::NEG_INFINITY, 0.0, 0);
                        for kt in 0..kernel[0] {
                            for kh in 0..kernel[1] {
                                for kw in 0..kernel[2] {
                                    let at = [ot * stride[0] + kt, oh * stride[1] + kh, ow * stride[2] + kw];
                                    let pos: Vec<isize> = (0..3).map(|i| at[i] as isize - before[i] as isize).collect();
                                    if (0..3).any(|i| pos[i] < 0 || pos[i] >= dims[i] as isize) {
                                        continue;
                                    }
                                    let v =
                                        values[((n * t + pos[0] as usize) * h + pos[1] as usize) * w + pos[2] as usize];
                                    best = best.max(v);
                                    sum += v;
                                    count += 1;
                                }
                            }
                        }
                        out.push(if max { best } else { sum / count as f32 });
                    }
                }
            }
        }
        out
    }

    fn close(a: Vec<f32>, b: Vec<f32>) {
        assert_eq!(a.len(), b.len());
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-5, "differs by {diff}");
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_padding(16, 7, 2), (2, 3));
        assert_eq!(same_padding(224, 7, 2), (2, 3));
        assert_eq!(same_padding(112, 3, 2), (0, 1));
        assert_eq!(same_padding(8, 3, 1), (1, 1));
        assert_eq!(same_padding(4, 2, 2), (0, 0));
        assert_eq!(same_padding(7, 2, 2), (0, 1));
    }

    #[test]
    fn pooling_equals_the_direct_computation() {
        let device = Device::flex();
        let x = Tensor::<5>::random([2, 3, 7, 9, 6], Distribution::Normal(0.0, 1.0), &device);
        for (kernel, stride) in
            [([1, 3, 3], [1, 2, 2]), ([3, 3, 3], [2, 2, 2]), ([2, 2, 2], [2, 2, 2]), ([3, 3, 3], [1, 1, 1])]
        {
            let pooled = max_pool3d_same(x.clone(), kernel, stride);
            let [_, _, t, h, w] = x.dims();
            assert_eq!(pooled.dims(), [2, 3, t.div_ceil(stride[0]), h.div_ceil(stride[1]), w.div_ceil(stride[2])]);
            close(pooled.into_data().try_to_vec::<f32>().unwrap(), direct(&x, kernel, stride, true, true));
        }
        let pooled = avg_pool3d_valid(x.clone(), [2, 7, 5], [1, 1, 1]);
        assert_eq!(pooled.dims(), [2, 3, 6, 3, 2]);
        close(pooled.into_data().try_to_vec::<f32>().unwrap(), direct(&x, [2, 7, 5], [1, 1, 1], false, false));
    }
}
