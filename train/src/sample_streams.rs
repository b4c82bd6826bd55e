//! Random streams of one sample: what each sample of a batch draws (noise, timesteps, frame
//! picks) depends only on the seed, the step, the sample's index and the purpose of the draw,
//! so a batch split over any number of threads draws exactly what it draws whole.

use std::ops::Range;

use avdm_model::noise::NoiseSource;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::index::sample as distinct;
use rand::{RngExt, SeedableRng};

/// The streams of samples `samples` of a batch for one purpose of one step.
pub struct SampleStreams {
    rngs: Vec<StdRng>,
    noises: Vec<NoiseSource>,
}

impl SampleStreams {
    pub fn new(seed: u64, step: usize, purpose: u64, samples: Range<usize>) -> Self {
        let key = |i: usize| {
            seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (i as u64 + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
                ^ purpose.wrapping_mul(0x1656_67B1_9E37_79F9)
        };
        Self {
            rngs: samples.clone().map(|i| StdRng::seed_from_u64(key(i))).collect(),
            noises: samples.map(|i| NoiseSource::new(key(i) ^ 0x00D1_5EA5_E000)).collect(),
        }
    }

    /// `per` timesteps in `lo..=hi` for each sample, sample-major.
    pub fn timesteps(&mut self, per: usize, lo: usize, hi: usize) -> Vec<usize> {
        self.rngs.iter_mut().flat_map(|rng| (0..per).map(|_| rng.random_range(lo..=hi)).collect::<Vec<_>>()).collect()
    }

    /// `k` distinct indices below `n` for each sample.
    pub fn picks(&mut self, n: usize, k: usize) -> Vec<Vec<usize>> {
        self.rngs.iter_mut().map(|rng| distinct(rng, n, k).into_vec()).collect()
    }

    /// Standard normal noise: each sample's draw of shape `per_sample`, concatenated along the
    /// first axis (`(S * per_sample[0], ...)`).
    pub fn normal<const D: usize>(&mut self, per_sample: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::cat(self.noises.iter_mut().map(|noise| noise.normal(per_sample, device)).collect(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_batch_draws_what_the_whole_batch_draws() {
        let device = Device::flex();
        let mut whole = SampleStreams::new(3, 7, 1, 0..4);
        let (mut head, mut tail) = (SampleStreams::new(3, 7, 1, 0..1), SampleStreams::new(3, 7, 1, 1..4));
        let split_noise = Tensor::cat(vec![head.normal([2, 3], &device), tail.normal([2, 3], &device)], 0);
        let whole_noise = whole.normal([2, 3], &device);
        assert_eq!(whole_noise.dims(), [8, 3]);
        assert_eq!(whole_noise.into_data(), split_noise.into_data());
        let split_steps = [head.timesteps(2, 0, 999), tail.timesteps(2, 0, 999)].concat();
        assert_eq!(whole.timesteps(2, 0, 999), split_steps);
        assert_eq!(whole.picks(8, 3), [head.picks(8, 3), tail.picks(8, 3)].concat());
        let other = SampleStreams::new(3, 7, 2, 0..4).timesteps(2, 0, 999);
        assert_ne!(other, SampleStreams::new(3, 7, 1, 0..4).timesteps(2, 0, 999), "purposes draw apart");
    }
}
