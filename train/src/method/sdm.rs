//! Frame-level score distribution matching (2D SDM): DMD's gradient on `K` random frames of the
//! student's clip, from a frozen 2D teacher (the real score) and a 2D fake score trained online
//! on the student's frames.
//!
//! With `x_0` the student's frames and `x̂_real`, `x̂_fake` the two models' clean-frame
//! estimates at the same noised input, the gradient pushed into the student is DMD2's
//! `(x̂_fake - x̂_real) / mean|x_0 - x̂_real|` (normalised per frame), applied through the
//! stop-gradient surrogate `0.5 * mean((x_0 - stopgrad(x_0 - grad))^2)`.

use burn::prelude::*;
use burn::tensor::{Int, TensorData};

/// The surrogate loss: its gradient with respect to `x0 (N, C, H, W)` is
/// `(x0_fake - x0_real) / (w * numel)` with `w = mean(|x0 - x0_real|)` per frame.
pub fn dmd_loss(x0: Tensor<4>, x0_real: Tensor<4>, x0_fake: Tensor<4>) -> Tensor<1> {
    let [n, _, _, _] = x0.dims();
    let (x0_real, x0_fake) = (x0_real.detach(), x0_fake.detach());
    let normaliser = (x0.clone().detach() - x0_real.clone()).abs().reshape([n as i32, -1]).mean_dim(1);
    let normaliser = normaliser.clamp_min(1e-8).reshape([n, 1, 1, 1]);
    let grad = (x0_fake - x0_real) / normaliser;
    let target = (x0.clone() - grad).detach();
    (x0 - target).square().mean() * 0.5
}

/// Frames `frames[b]` of each clip `b` of `clips (B, C, F, H, W)`, as `(B*K, C, H, W)`
/// (clip-major: clip `b`'s `K` frames are rows `b*K..(b+1)*K`).
pub fn pick_frames(clips: Tensor<5>, frames: &[Vec<usize>]) -> Tensor<4> {
    let [b, c, f, h, w] = clips.dims();
    let k = frames.first().map_or(0, Vec::len);
    assert!(frames.len() == b && frames.iter().all(|p| p.len() == k), "K frames for each of the {b} clips");
    let rows: Vec<i64> =
        frames.iter().enumerate().flat_map(|(i, p)| p.iter().map(move |&j| (i * f + j) as i64)).collect();
    let device = clips.device();
    let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [b * k]), &device);
    clips.permute([0, 2, 1, 3, 4]).reshape([b * f, c, h, w]).select(0, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_is_dmd2s_and_moves_the_student_towards_the_teacher() {
        let device = Device::flex().autodiff();
        let x0 = Tensor::<1>::from_floats([0.5, -0.5, 1.0, 0.0, 2.0, -1.0, 0.25, 0.75], &device)
            .reshape([2, 1, 2, 2])
            .require_grad();
        let real = Tensor::<1>::from_floats([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], &device).reshape([2, 1, 2, 2]);
        // A fake score that has learned the student exactly: the gradient is (x0 - real) / w.
        let fake = x0.clone().detach();
        let grads = dmd_loss(x0.clone(), real.clone(), fake).backward();
        let g: Vec<f32> = x0.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let x: Vec<f32> = x0.clone().into_data().try_to_vec::<f32>().unwrap();
        let r: Vec<f32> = real.clone().into_data().try_to_vec::<f32>().unwrap();
        for frame in 0..2 {
            let idx = frame * 4..frame * 4 + 4;
            let w = idx.clone().map(|i| (x[i] - r[i]).abs()).sum::<f32>() / 4.0;
            for i in idx {
                let expected = (x[i] - r[i]) / (w * 8.0);
                assert!((g[i] - expected).abs() < 1e-6, "element {i}: {} vs {expected}", g[i]);
            }
        }
        // A descent step on the surrogate brings the student closer to the teacher's estimate.
        let before = (x0.clone() - real.clone()).abs().sum().into_scalar::<f32>();
        let stepped = x0.clone().detach() - x0.grad(&grads).unwrap().autodiff() * 0.5;
        let after = (stepped - real).abs().sum().into_scalar::<f32>();
        assert!(after < before, "{before} -> {after}");
    }

    #[test]
    fn frames_are_picked_per_clip() {
        let device = Device::flex();
        // Value = 10 * clip + frame, broadcast over channels and pixels.
        let values: Vec<f32> = (0..2).flat_map(|b| (0..3).map(move |f| (10 * b + f) as f32)).collect();
        let clips = Tensor::<1>::from_floats(values.as_slice(), &device)
            .reshape([2, 1, 3, 1, 1])
            .repeat_dim(1, 2)
            .repeat_dim(3, 2)
            .repeat_dim(4, 2);
        let picked = pick_frames(clips, &[vec![2, 0], vec![1, 2]]);
        assert_eq!(picked.dims(), [4, 2, 2, 2]);
        let firsts: Vec<f32> = picked.slice([0..4, 0..1, 0..1, 0..1]).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(firsts, vec![2.0, 0.0, 11.0, 12.0]);
    }
}
