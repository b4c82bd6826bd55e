//! FVD as the original protocol computes it: each video's first 16 frames, the short side
//! resized (bilinear, as `F.interpolate` without antialiasing) to 224 and centre-cropped, in
//! `[-1, 1]`, through the Kinetics-400 I3D; the 400 logits are the features, and the Fréchet
//! distance of the two feature sets is computed in f64 ([`super::frechet`]). So few videos
//! make the covariances rank-deficient and the number noisy: report the counts with it.

use avdm_model::i3d::InceptionI3d;
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::frechet::{Gaussian, frechet_distance};
use crate::error::TrainError;

/// Frames per video the I3D sees.
pub const FVD_FRAMES: usize = 16;
/// Side of the I3D's input frames.
pub const FVD_SIZE: usize = 224;
/// Fewer videos than this give an FVD dominated by estimation noise (a warning is due).
pub const FVD_ADVISED_VIDEOS: usize = 256;

/// Videos `(N, 3, F, H, W)` in `[-1, 1]` with `F >= 16` -> the I3D's input
/// `(N, 3, 16, 224, 224)`.
pub fn fvd_input(videos: Tensor<5>) -> Result<Tensor<5>, TrainError> {
    let [n, c, f, h, w] = videos.dims();
    if f < FVD_FRAMES {
        return Err(TrainError::setting("fvd", format!("videos of {f} frames; FVD takes the first {FVD_FRAMES}")));
    }
    let frames = videos.narrow(2, 0, FVD_FRAMES).permute([0, 2, 1, 3, 4]).reshape([n * FVD_FRAMES, c, h, w]);
    let scale = |long: usize, short: usize| ((long * FVD_SIZE) as f64 / short as f64).round() as usize;
    let (rh, rw) = if h <= w { (FVD_SIZE, scale(w, h).max(FVD_SIZE)) } else { (scale(h, w).max(FVD_SIZE), FVD_SIZE) };
    let options =
        InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size([rh, rw]);
    let resized = interpolate(frames, options);
    let (top, left) = ((rh - FVD_SIZE) / 2, (rw - FVD_SIZE) / 2);
    let cropped = resized.narrow(2, top, FVD_SIZE).narrow(3, left, FVD_SIZE);
    Ok(cropped.reshape([n, FVD_FRAMES, c, FVD_SIZE, FVD_SIZE]).permute([0, 2, 1, 3, 4]))
}

/// I3D logits `(N)` x 400 of videos `(N, 3, F, H, W)` in `[-1, 1]`.
pub fn i3d_features(i3d: &InceptionI3d, videos: Tensor<5>) -> Result<Vec<Vec<f32>>, TrainError> {
    let logits = i3d.forward(fvd_input(videos)?);
    let [n, classes] = logits.dims();
    let values: Vec<f32> = logits.into_data().convert::<f32>().iter::<f32>().collect();
    Ok((0..n).map(|i| values[i * classes..(i + 1) * classes].to_vec()).collect())
}

/// An FVD and the numbers of videos behind it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fvd {
    pub fvd: f64,
    pub real_videos: usize,
    pub generated_videos: usize,
}

impl Fvd {
    /// The Fréchet distance of two feature sets (at least two each).
    pub fn between<T: Copy + Into<f64>>(real: &[Vec<T>], generated: &[Vec<T>]) -> Result<Self, TrainError> {
        let fvd = frechet_distance(&Gaussian::fit(real)?, &Gaussian::fit(generated)?);
        Ok(Self { fvd, real_videos: real.len(), generated_videos: generated.len() })
    }

    /// A warning when either set is smaller than [`FVD_ADVISED_VIDEOS`].
    pub fn warning(&self) -> Option<String> {
        let fewest = self.real_videos.min(self.generated_videos);
        (fewest < FVD_ADVISED_VIDEOS).then(|| {
            format!(
                "FVD from {} real and {} generated videos: under {FVD_ADVISED_VIDEOS} the covariances are rank-deficient and the value noisy; compare only FVDs of the same counts",
                self.real_videos, self.generated_videos
            )
        })
    }
}

impl std::fmt::Display for Fvd {
    /// `123.4 (N real / M generated)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} ({} real / {} generated)", self.fvd, self.real_videos, self.generated_videos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_takes_16_frames_at_224_from_the_centre() {
        let device = Device::flex();
        // A landscape video whose columns count up: the crop keeps the middle columns.
        let column = Tensor::<1, Int>::arange(0..448, &device).float() / 447.0 * 2.0 - 1.0;
        let video = column.reshape([1, 1, 1, 1, 448]).expand([1, 3, 20, 224, 448]);
        let input = fvd_input(video).unwrap();
        assert_eq!(input.dims(), [1, 3, 16, 224, 224]);
        let row: Vec<f32> = input.slice([0..1, 0..1, 0..1, 0..1, 0..224]).into_data().iter::<f32>().collect();
        assert!((row[0] - (-0.5)).abs() < 0.01 && (row[223] - 0.5).abs() < 0.01, "{} {}", row[0], row[223]);
        let short = Tensor::<5>::zeros([1, 3, 15, 224, 224], &device);
        assert!(fvd_input(short).unwrap_err().to_string().contains("15 frames"));
    }

    #[test]
    fn few_videos_are_warned_about() {
        let rows: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32, (i * i) as f32]).collect();
        let fvd = Fvd::between(&rows, &rows).unwrap();
        assert!(fvd.fvd < 1e-9);
        assert!(fvd.warning().unwrap().contains("10 real and 10 generated"));
        assert_eq!(format!("{fvd}"), "0.0 (10 real / 10 generated)");
    }
}
