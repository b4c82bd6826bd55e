//! Temporal flicker: the mean absolute change between consecutive frames, compared with the
//! same measure on real clips (a ratio near 1 moves like the data; far above, it flickers).

use burn::prelude::*;

/// Mean `|x[f+1] - x[f]|` over all values of clips `(B, C, F, H, W)` (0 for one frame).
pub fn frame_change(clips: &Tensor<5>) -> f64 {
    let [b, c, f, h, w] = clips.dims();
    if f < 2 {
        return 0.0;
    }
    let next = clips.clone().slice([0..b, 0..c, 1..f, 0..h, 0..w]);
    let prev = clips.clone().slice([0..b, 0..c, 0..f - 1, 0..h, 0..w]);
    (next - prev).abs().mean().into_scalar::<f32>() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_change_is_the_mean_step() {
        let device = Device::flex();
        // One clip, one channel, 3 frames of 1x2 pixels: steps |1-0|,|2-0| then |1-1|,|0-2|.
        let clips = Tensor::<1>::from_floats([0.0, 0.0, 1.0, 2.0, 1.0, 0.0], &device).reshape([1, 1, 3, 1, 2]);
        assert!((frame_change(&clips) - 1.25).abs() < 1e-6);
    }
}
