//! Random streams of one sample: what each sample of a batch draws (noise, timesteps, frame
//! picks) depends only on the seed, the step, the sample's index and the purpose of the draw,
//! so a batch split over any number of threads draws exactly what it draws whole.
//!
//! The draws may also be read from a file ([`RecordedDraws`]): the learner's oracle
//! (`tools/fixtures/make_learner_oracle.py`) writes the draws it used, and the learner consumes
//! the same ones.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use avdm_model::noise::NoiseSource;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::index::sample as distinct;
use rand::{RngExt, SeedableRng};

use crate::error::TrainError;

/// What a step's draws are for; each purpose has streams of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The generator update's rollout (backward simulation).
    Rollout,
    /// The generator's ADM term.
    Adm,
    /// The generator's SDM term.
    Sdm,
    /// Fake-score update `k`.
    FakeScore(usize),
    /// Discriminator update `k`.
    Discriminator(usize),
    /// The fresh rollout of critic update `k >= 1`.
    CriticRollout(usize),
}

impl Purpose {
    fn key(self) -> u64 {
        match self {
            Purpose::Rollout => 1,
            Purpose::Adm => 2,
            Purpose::Sdm => 3,
            Purpose::FakeScore(k) => (1 << 16) + k as u64,
            Purpose::Discriminator(k) => (1 << 32) + k as u64,
            Purpose::CriticRollout(k) => (1 << 40) + k as u64,
        }
    }

    /// The name the oracle's file uses: `rollout`, `adm`, `sdm`, `fake_score.K`,
    /// `discriminator.K`, `critic_rollout.K`.
    pub fn name(self) -> String {
        match self {
            Purpose::Rollout => "rollout".into(),
            Purpose::Adm => "adm".into(),
            Purpose::Sdm => "sdm".into(),
            Purpose::FakeScore(k) => format!("fake_score.{k}"),
            Purpose::Discriminator(k) => format!("discriminator.{k}"),
            Purpose::CriticRollout(k) => format!("critic_rollout.{k}"),
        }
    }
}

/// Where a learner's random draws come from.
#[derive(Debug, Clone, Default)]
pub enum Draws {
    /// From the seed (every run).
    #[default]
    Seeded,
    /// From a file of recorded draws (the learner's oracle test).
    Recorded(Arc<RecordedDraws>),
}

impl Draws {
    /// The streams of `samples` for `purpose` at `step`.
    pub fn streams(&self, seed: u64, step: usize, purpose: Purpose, samples: Range<usize>) -> SampleStreams {
        match self {
            Draws::Seeded => SampleStreams::new(seed, step, purpose, samples),
            Draws::Recorded(file) => SampleStreams::recorded(file, purpose, samples),
        }
    }

    /// The step of the student's sampler at which the rollout of `purpose` (the generator's, or
    /// a critic update's) stops, drawn below `steps`.
    pub fn rollout_stop(&self, seed: u64, step: usize, purpose: Purpose, steps: usize) -> usize {
        match self {
            Draws::Seeded => {
                let k = match purpose {
                    Purpose::CriticRollout(k) => k as u64,
                    _ => 0,
                };
                let key = (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k.wrapping_mul(0xD6E8_FEB8_6659_FD93);
                StdRng::seed_from_u64(seed ^ key).random_range(0..steps)
            }
            Draws::Recorded(file) => {
                let name = match purpose {
                    Purpose::CriticRollout(_) => purpose.name(),
                    _ => "generator".into(),
                };
                let stop = file.ints(&format!("draws.stop.{name}"))[0] as usize;
                assert!(stop < steps, "recorded stop {stop} of a {steps}-step sampler");
                stop
            }
        }
    }
}

/// Draws read from a safetensors file: per purpose `P` and sample `i`, `draws.P.i.normal`
/// (every standard normal in draw order, each draw flattened), `draws.P.i.timesteps` and
/// `draws.P.i.picks`; the rollouts' stops as `draws.stop.generator` and
/// `draws.stop.critic_rollout.K`. A step that asks for a draw the file does not hold is a bug of
/// the fixture and panics, naming the key.
#[derive(Debug, Default)]
pub struct RecordedDraws {
    floats: HashMap<String, Vec<f32>>,
    ints: HashMap<String, Vec<i64>>,
}

impl RecordedDraws {
    /// Every f32 and i64 tensor of a safetensors file, by name.
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
        let bad = |message: String| TrainError::setting("draws", format!("{}: {message}", path.display()));
        let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut draws = Self::default();
        for (name, view) in file.tensors() {
            let data = view.data();
            match view.dtype() {
                safetensors::Dtype::F32 => {
                    let values = data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")));
                    draws.floats.insert(name, values.collect());
                }
                safetensors::Dtype::I64 => {
                    let values = data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
                    draws.ints.insert(name, values.collect());
                }
                other => return Err(bad(format!("{name} is {other:?}, not f32 or i64"))),
            }
        }
        Ok(draws)
    }

    fn floats(&self, key: &str) -> &[f32] {
        self.floats.get(key).map_or(&[], Vec::as_slice)
    }

    fn ints(&self, key: &str) -> &[i64] {
        self.ints.get(key).map_or(&[], Vec::as_slice)
    }
}

/// The recorded draws of one sample for one purpose, consumed in order.
struct Recorded {
    key: String,
    normal: Vec<f32>,
    timesteps: Vec<i64>,
    picks: Vec<i64>,
    used: [usize; 3],
}

impl Recorded {
    fn take<T: Copy>(values: &[T], used: &mut usize, n: usize, what: &str, key: &str) -> Vec<T> {
        let taken = values.get(*used..*used + n).unwrap_or_else(|| {
            panic!("{key}.{what}: the file holds {} values, the step asks for {}", values.len(), *used + n)
        });
        *used += n;
        taken.to_vec()
    }
}

enum Source {
    Seeded { rngs: Vec<StdRng>, noises: Vec<NoiseSource> },
    Recorded(Vec<Recorded>),
}

/// The streams of samples `samples` of a batch for one purpose of one step.
pub struct SampleStreams {
    source: Source,
}

impl SampleStreams {
    pub fn new(seed: u64, step: usize, purpose: Purpose, samples: Range<usize>) -> Self {
        let key = |i: usize| {
            seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (i as u64 + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
                ^ purpose.key().wrapping_mul(0x1656_67B1_9E37_79F9)
        };
        Self {
            source: Source::Seeded {
                rngs: samples.clone().map(|i| StdRng::seed_from_u64(key(i))).collect(),
                noises: samples.map(|i| NoiseSource::new(key(i) ^ 0x00D1_5EA5_E000)).collect(),
            },
        }
    }

    fn recorded(file: &RecordedDraws, purpose: Purpose, samples: Range<usize>) -> Self {
        let streams = samples
            .map(|i| {
                let key = format!("draws.{}.{i}", purpose.name());
                Recorded {
                    normal: file.floats(&format!("{key}.normal")).to_vec(),
                    timesteps: file.ints(&format!("{key}.timesteps")).to_vec(),
                    picks: file.ints(&format!("{key}.picks")).to_vec(),
                    used: [0; 3],
                    key,
                }
            })
            .collect();
        Self { source: Source::Recorded(streams) }
    }

    /// `per` timesteps in `lo..=hi` for each sample, sample-major.
    pub fn timesteps(&mut self, per: usize, lo: usize, hi: usize) -> Vec<usize> {
        match &mut self.source {
            Source::Seeded { rngs, .. } => rngs
                .iter_mut()
                .flat_map(|rng| (0..per).map(|_| rng.random_range(lo..=hi)).collect::<Vec<_>>())
                .collect(),
            Source::Recorded(samples) => samples
                .iter_mut()
                .flat_map(|r| {
                    let taken = Recorded::take(&r.timesteps, &mut r.used[1], per, "timesteps", &r.key);
                    taken.into_iter().map(|t| {
                        assert!((lo as i64..=hi as i64).contains(&t), "{}: timestep {t} outside [{lo}, {hi}]", r.key);
                        t as usize
                    })
                })
                .collect(),
        }
    }

    /// `k` distinct indices below `n` for each sample.
    pub fn picks(&mut self, n: usize, k: usize) -> Vec<Vec<usize>> {
        match &mut self.source {
            Source::Seeded { rngs, .. } => rngs.iter_mut().map(|rng| distinct(rng, n, k).into_vec()).collect(),
            Source::Recorded(samples) => samples
                .iter_mut()
                .map(|r| {
                    let taken = Recorded::take(&r.picks, &mut r.used[2], k, "picks", &r.key);
                    taken
                        .into_iter()
                        .map(|p| p as usize)
                        .inspect(|&p| assert!(p < n, "{}: pick {p} of {n}", r.key))
                        .collect()
                })
                .collect(),
        }
    }

    /// Standard normal noise: each sample's draw of shape `per_sample`, concatenated along the
    /// first axis (`(S * per_sample[0], ...)`).
    pub fn normal<const D: usize>(&mut self, per_sample: [usize; D], device: &Device) -> Tensor<D> {
        let parts = match &mut self.source {
            Source::Seeded { noises, .. } => noises.iter_mut().map(|noise| noise.normal(per_sample, device)).collect(),
            Source::Recorded(samples) => samples
                .iter_mut()
                .map(|r| {
                    let n = per_sample.iter().product();
                    let values = Recorded::take(&r.normal, &mut r.used[0], n, "normal", &r.key);
                    Tensor::from_data(TensorData::new(values, per_sample), device)
                })
                .collect(),
        };
        Tensor::cat(parts, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_batch_draws_what_the_whole_batch_draws() {
        let device = Device::flex();
        let mut whole = SampleStreams::new(3, 7, Purpose::Rollout, 0..4);
        let (mut head, mut tail) =
            (SampleStreams::new(3, 7, Purpose::Rollout, 0..1), SampleStreams::new(3, 7, Purpose::Rollout, 1..4));
        let split_noise = Tensor::cat(vec![head.normal([2, 3], &device), tail.normal([2, 3], &device)], 0);
        let whole_noise = whole.normal([2, 3], &device);
        assert_eq!(whole_noise.dims(), [8, 3]);
        assert_eq!(whole_noise.into_data(), split_noise.into_data());
        let split_steps = [head.timesteps(2, 0, 999), tail.timesteps(2, 0, 999)].concat();
        assert_eq!(whole.timesteps(2, 0, 999), split_steps);
        assert_eq!(whole.picks(8, 3), [head.picks(8, 3), tail.picks(8, 3)].concat());
        let other = SampleStreams::new(3, 7, Purpose::Adm, 0..4).timesteps(2, 0, 999);
        assert_ne!(other, SampleStreams::new(3, 7, Purpose::Rollout, 0..4).timesteps(2, 0, 999), "purposes draw apart");
    }

    #[test]
    fn recorded_draws_are_consumed_in_order_per_sample() {
        use safetensors::tensor::{Dtype, TensorView};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("draws.safetensors");
        let floats: Vec<u8> = [0.5f32, -1.0, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ints = |v: &[i64]| -> Vec<u8> { v.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let (steps, picks, stop) = (ints(&[7, 9]), ints(&[2, 0]), ints(&[1]));
        let tensors = [
            ("draws.sdm.1.normal", TensorView::new(Dtype::F32, vec![4], &floats).unwrap()),
            ("draws.sdm.1.timesteps", TensorView::new(Dtype::I64, vec![2], &steps).unwrap()),
            ("draws.sdm.1.picks", TensorView::new(Dtype::I64, vec![2], &picks).unwrap()),
            ("draws.stop.generator", TensorView::new(Dtype::I64, vec![1], &stop).unwrap()),
        ];
        safetensors::serialize_to_file(tensors, None, &path).unwrap();
        let draws = Draws::Recorded(Arc::new(RecordedDraws::open(&path).unwrap()));
        let device = Device::flex();
        // Sample 1 alone (a shard starting at 1) reads the file's sample 1.
        let mut streams = draws.streams(0, 0, Purpose::Sdm, 1..2);
        assert_eq!(streams.picks(3, 2), vec![vec![2, 0]]);
        assert_eq!(streams.timesteps(1, 0, 10), vec![7]);
        assert_eq!(streams.timesteps(1, 0, 10), vec![9]);
        let first = streams.normal([1, 2], &device).into_data().try_to_vec::<f32>().unwrap();
        let second = streams.normal([2], &device).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!((first, second), (vec![0.5, -1.0], vec![2.0, 3.0]));
        assert_eq!(draws.rollout_stop(0, 0, Purpose::Rollout, 4), 1);
        assert!(RecordedDraws::open(&dir.path().join("absent")).unwrap_err().to_string().contains("absent"));
    }
}
