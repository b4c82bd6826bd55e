//! Distillation data from a latent cache and from videos decoded at every step, on small mp4
//! files made by ffmpeg and the shipped (pixel-space) toy teacher: the real clips are the
//! data's with their own captions, a step's draws depend on the step alone, broken videos are
//! skipped and logged, and data that does not fit the teacher is named.

mod common;
mod resume;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use avdm_import::{LoadOptions, LoadedPipeline, load_pipeline};
use avdm_train::cluster::SingleRank;
use avdm_train::data::cache_reader::CacheReader;
use avdm_train::data::clip_frames::ClipSampling;
use avdm_train::data::dataset::DatasetSource;
use avdm_train::data::latent_cache::{CacheEncoders, CacheSettings, build_cache};
use avdm_train::distill::config::DistillConfig;
use avdm_train::distill::data::{DataConfig, DistillData, StepData, TeacherInput};
use avdm_train::distill::run::distill;
use avdm_train::error::TrainError;
use avdm_train::method::discriminator::HeadConfig;
use avdm_train::toy::assets::default_assets_dir;
use burn::prelude::*;

fn toy_teacher() -> (PathBuf, LoadedPipeline) {
    let dir = default_assets_dir().join("teacher");
    let loaded = load_pipeline(&dir, None, &LoadOptions::default(), &Device::flex()).unwrap();
    (dir, loaded)
}

fn open(config: &DataConfig, loaded: &LoadedPipeline) -> Result<DistillData, TrainError> {
    DistillData::open(config, &TeacherInput { unet: &loaded.unet_config, vae: None, vae_scale: 1 })
}

/// The toy world's clip: 8 frames of 32x32.
fn toy_clip() -> ClipSampling {
    ClipSampling { frames: 8, stride: 1, ..ClipSampling::default() }
}

/// A short run (two tiny iterations, no eval) on `data`.
fn run_config(data: DataConfig) -> DistillConfig {
    let mut c = DistillConfig {
        steps: 2,
        batch: 2,
        critic_updates: 2,
        checkpoint_every: 2,
        head: HeadConfig { channels: 8, groups: 4 },
        data,
        ..DistillConfig::default()
    };
    c.sdm.frames = 2;
    c.eval.clips = 0;
    c
}

fn videos(tmp: &Path, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir(&dir).unwrap();
    common::make_videos(&dir, "48x40", 10);
    dir
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Two ranks' shares of step `step` (rows `0..1` and `1..2`) are the rows of the whole batch:
/// every draw is keyed by the global row.
fn assert_rank_shares_are_the_batch_rows(
    data: &DistillData,
    config: &DistillConfig,
    step: usize,
    embed: &dyn Fn(&[String]) -> Result<Tensor<3>, TrainError>,
) {
    let device = Device::flex();
    let whole = data.iteration(config, step, 0..2, embed, &device).unwrap().data;
    let shares = [0..1, 1..2].map(|rows| data.iteration(config, step, rows, embed, &device).unwrap().data);
    let cat = |pick: &dyn Fn(&avdm_train::distill::learner::IterationData) -> Tensor<5>| {
        values(Tensor::cat(shares.iter().map(pick).collect(), 0))
    };
    for k in 0..whole.real.len() {
        assert_eq!(cat(&|d| d.real[k].clips.clone()), values(whole.real[k].clips.clone()), "real batch {k}");
    }
    let prompts = values(Tensor::cat(shares.iter().map(|d| d.prompts.clone()).collect(), 0));
    assert_eq!(prompts, values(whole.prompts.clone()));
}

#[test]
fn a_run_trains_on_the_clips_and_text_of_a_latent_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dataset = DatasetSource::Folder { dir: videos(tmp.path(), "videos") }.load().unwrap();
    let (teacher, loaded) = toy_teacher();
    let device = Device::flex();
    let encoders = CacheEncoders::load(&teacher, &LoadOptions::default(), &device).unwrap();
    let cache = tmp.path().join("cache");
    let settings = CacheSettings { clip: toy_clip(), size: 32, shard_clips: 2, ..CacheSettings::default() };
    build_cache(&dataset, &encoders, &settings, &cache, 1, &device, &|| true).unwrap();
    let reader = CacheReader::open(&cache).unwrap();
    assert_eq!(reader.len(), 5);

    let config = run_config(DataConfig::Cache { dir: cache.clone() });
    let data = open(&config.data, &loaded).unwrap();
    let no_text_encoder = |_: &[String]| -> Result<Tensor<3>, TrainError> { panic!("the cache holds the text") };
    let step = |s| data.iteration(&config, s, 0..config.batch, &no_text_encoder, &device).unwrap();
    let StepData { data: first, skipped } = step(3);
    assert!(skipped.is_empty());
    assert_rank_shares_are_the_batch_rows(&data, &config, 3, &no_text_encoder);
    assert_eq!(first.real.len(), 2, "one real batch per critic update");
    assert_eq!(first.prompts.dims()[0], 2);
    let cached: Vec<(Vec<f32>, Vec<f32>)> = (0..reader.len())
        .map(|i| {
            let (clips, text) = reader.batch(&[i], &device).unwrap();
            (values(clips), values(text))
        })
        .collect();
    for real in &first.real {
        assert_eq!(real.clips.dims(), [2, 3, 8, 32, 32]);
        for row in 0..2 {
            let clip = values(real.clips.clone().narrow(0, row, 1));
            let text = values(real.text.clone().narrow(0, row, 1));
            assert!(cached.contains(&(clip, text)), "a real clip that is not a cached clip with its own text");
        }
    }
    let again = step(3).data;
    assert_eq!(values(again.real[1].clips.clone()), values(first.real[1].clips.clone()), "a step's draws vary");
    let draws = |d: &avdm_train::distill::learner::IterationData| values(d.real[0].clips.clone());
    assert!((4..8).any(|s| draws(&step(s).data) != draws(&first)), "every step draws the same clips");

    let state =
        distill(&config, &tmp.path().join("run"), false, &[device.clone().autodiff()], &SingleRank, |_| true).unwrap();
    assert_eq!(state.step, 2);
    assert!(tmp.path().join("run/student/unet").is_dir());
    // A resumed run reads the same clips: it ends where an uninterrupted one does.
    resume::assert_resume_is_exact(|steps| DistillConfig { steps, ..config.clone() });
}

#[test]
fn videos_are_decoded_at_every_step_and_broken_ones_skipped_and_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = videos(tmp.path(), "videos");
    // Two videos, one broken: most steps draw the broken one at least once.
    for name in ["clip1", "clip2", "clip3", "clip4"] {
        std::fs::remove_file(dir.join(format!("{name}.mp4"))).unwrap();
    }
    let (_, loaded) = toy_teacher();
    let config = run_config(DataConfig::Videos {
        dataset: DatasetSource::Folder { dir: dir.clone() },
        clip: toy_clip(),
        size: 32,
    });
    let data = open(&config.data, &loaded).unwrap();
    let device = Device::flex();
    let captions = RefCell::new(Vec::new());
    let embed = |c: &[String]| -> Result<Tensor<3>, TrainError> {
        captions.borrow_mut().extend(c.iter().cloned());
        Ok(Tensor::zeros([c.len(), 1, 1], &device))
    };
    let mut logged = Vec::new();
    for step in 0..2 {
        let StepData { data, skipped } = data.iteration(&config, step, 0..config.batch, &embed, &device).unwrap();
        logged.extend(skipped.iter().map(|s| format!("step {step}: {s}")));
        for real in &data.real {
            assert_eq!(real.clips.dims(), [2, 3, 8, 32, 32]);
            // Only the red video decodes: its first pixel is red, its caption says so.
            let pixel = values(real.clips.clone().slice([0..2, 0..3, 0..1, 0..1, 0..1]));
            assert!(pixel[0] > 0.9 && pixel[1] < -0.9 && pixel[2] < -0.9, "{pixel:?}");
        }
    }
    assert!(captions.borrow().iter().any(|c| c == "a broken file"), "a broken video's caption can still be a prompt");
    assert_rank_shares_are_the_batch_rows(&data, &config, 1, &embed);
    assert!(!logged.is_empty() && logged.iter().all(|l| l.contains("broken.mp4")), "{logged:?}");

    let out = tmp.path().join("run");
    distill(&config, &out, false, &[device.clone().autodiff()], &SingleRank, |_| true).unwrap();
    let log = std::fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert_eq!(log.lines().collect::<Vec<_>>(), logged, "the run's skipped.txt lists what its steps skipped");

    // Nothing readable: the step fails with the reasons, not a crash.
    std::fs::remove_file(dir.join("clip0.mp4")).unwrap();
    std::fs::write(dir.join("clip0.mp4"), b"").unwrap();
    let err = match open(&config.data, &loaded).unwrap().iteration(&config, 0, 0..config.batch, &embed, &device) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a step on unreadable videos"),
    };
    assert!(err.contains("could not be decoded") && err.contains("clip0.mp4"), "{err}");
}

#[test]
fn data_that_does_not_fit_the_teacher_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, loaded) = toy_teacher();
    let message = |config: DataConfig| match open(&config, &loaded) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{config:?} was accepted"),
    };
    let dir = videos(tmp.path(), "videos");
    let folder = DatasetSource::Folder { dir };

    // A cache of latents (the tiny diffusers pipeline's VAE: 4 channels) for a pixel teacher.
    let sd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_pipeline/sd");
    let device = Device::flex();
    let encoders = CacheEncoders::load(&sd, &LoadOptions::default(), &device).unwrap();
    let latents = tmp.path().join("latents");
    let settings = CacheSettings { clip: toy_clip(), size: 16, ..CacheSettings::default() };
    build_cache(&folder.load().unwrap(), &encoders, &settings, &latents, 1, &device, &|| true).unwrap();
    let err = message(DataConfig::Cache { dir: latents.clone() });
    assert!(err.contains("4 channels") && err.contains("takes 3"), "{err}");

    let err = message(DataConfig::Videos {
        dataset: folder.clone(),
        clip: ClipSampling { frames: 40, ..toy_clip() },
        size: 32,
    });
    assert!(err.contains("40 frames") && err.contains("1 to 16"), "{err}");
    let err = message(DataConfig::Videos { dataset: folder, clip: toy_clip(), size: 30 });
    assert!(err.contains("30x30") && err.contains("multiples of"), "{err}");

    let err = message(DataConfig::Cache { dir: tmp.path().join("videos") });
    assert!(err.contains("not a latent cache"), "{err}");
    let shard = latents.join("shard-000000.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 100]).unwrap();
    let err = message(DataConfig::Cache { dir: latents });
    assert!(err.contains("shard-000000") && err.contains("truncated or damaged"), "{err}");
}
