//! Which frames of a video make a clip: `frames` frames `stride` apart (the paper: 16 at
//! stride 4), from the first frame or from a random start.

use serde::{Deserialize, Serialize};

/// What to do with a video too short for `frames` frames at the full stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShortVideos {
    /// Use the largest stride that fits (down to 1); skip the video if even that does not.
    ReduceStride,
    /// Skip the video.
    Skip,
}

impl std::str::FromStr for ShortVideos {
    type Err = String;

    /// The settings' names: `reduce-stride`, `skip`.
    fn from_str(name: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(name.into()))
            .map_err(|_| format!("{name}: not one of reduce-stride, skip"))
    }
}

/// Where a clip starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipStart {
    /// At the first frame (evaluation, caching a fixed clip).
    First,
    /// Uniformly among the starts that fit, chosen by a random draw (training).
    Random(u64),
}

/// How clips are cut from videos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClipSampling {
    pub frames: usize,
    pub stride: usize,
    pub short_videos: ShortVideos,
}

impl Default for ClipSampling {
    /// The paper's 16 frames at temporal stride 4; short videos use a smaller stride.
    fn default() -> Self {
        Self { frames: 16, stride: 4, short_videos: ShortVideos::ReduceStride }
    }
}

impl ClipSampling {
    /// The stride used for a video of `total` frames, or `None` when it is too short.
    pub fn stride_for(&self, total: usize) -> Option<usize> {
        let fits = |stride: usize| span(self.frames, stride) <= total;
        match self.short_videos {
            _ if self.frames == 0 || total == 0 => None,
            _ if fits(self.stride) => Some(self.stride),
            ShortVideos::Skip => None,
            ShortVideos::ReduceStride => (1..self.stride).rev().find(|&s| fits(s)),
        }
    }

    /// The frame indices of the clip cut from a video of `total` frames, or `None` when the
    /// video is too short.
    pub fn indices(&self, total: usize, start: ClipStart) -> Option<Vec<usize>> {
        let stride = self.stride_for(total)?;
        let room = total - span(self.frames, stride);
        let first = match start {
            ClipStart::First => 0,
            ClipStart::Random(draw) => (draw % (room as u64 + 1)) as usize,
        };
        Some((0..self.frames).map(|i| first + i * stride).collect())
    }
}

/// Frames covered by `frames` frames `stride` apart.
fn span(frames: usize, stride: usize) -> usize {
    (frames - 1) * stride + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_stride_and_stay_inside_the_video() {
        let sampling = ClipSampling::default();
        assert_eq!(sampling.indices(100, ClipStart::First).unwrap(), (0..16).map(|i| 4 * i).collect::<Vec<_>>());
        // 61 frames is exactly 16 at stride 4: one start only.
        assert_eq!(sampling.indices(61, ClipStart::Random(12345)).unwrap().last(), Some(&60));
        for draw in [0, 1, 7, 38, 39, u64::MAX] {
            let clip = sampling.indices(100, ClipStart::Random(draw)).unwrap();
            assert!(clip.windows(2).all(|w| w[1] - w[0] == 4), "{clip:?}");
            assert!(*clip.last().unwrap() < 100, "{clip:?}");
        }
        // Every start that fits is reachable: 100 - 61 + 1 = 40 of them.
        let starts: std::collections::BTreeSet<_> =
            (0..200).map(|d| sampling.indices(100, ClipStart::Random(d)).unwrap()[0]).collect();
        assert_eq!(starts, (0..40).collect());
    }

    #[test]
    fn short_videos_get_the_largest_stride_that_fits_or_are_skipped() {
        let reduce = ClipSampling::default();
        assert_eq!(reduce.stride_for(60), Some(3)); // 46 frames at stride 3; 61 would be needed at 4
        assert_eq!(reduce.stride_for(31), Some(2));
        assert_eq!(reduce.stride_for(16), Some(1));
        assert_eq!(reduce.stride_for(15), None);
        assert_eq!(reduce.stride_for(0), None);
        assert_eq!(reduce.indices(20, ClipStart::First).unwrap(), (0..16).collect::<Vec<_>>());
        let skip = ClipSampling { short_videos: ShortVideos::Skip, ..ClipSampling::default() };
        assert_eq!(skip.stride_for(60), None);
        assert_eq!(skip.stride_for(61), Some(4));
        assert_eq!("skip".parse(), Ok(ShortVideos::Skip));
        assert!("sometimes".parse::<ShortVideos>().unwrap_err().contains("reduce-stride, skip"));
    }
}
