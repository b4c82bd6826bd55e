//! The latent cache on a folder of small videos made by ffmpeg, with the tiny diffusers
//! pipeline's VAE and text encoder: shard layout, skipped videos, and an interrupted cache that
//! resumes to the same files as an uninterrupted one.

use std::path::Path;

mod common;

use avdm_import::LoadOptions;
use avdm_train::data::cache_reader::CacheReader;
use avdm_train::data::clip_frames::ClipSampling;
use avdm_train::data::dataset::DatasetSource;
use avdm_train::data::latent_cache::{CacheEncoders, CacheIndex, CacheSettings, build_cache};
use burn::prelude::*;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn an_interrupted_cache_resumes_to_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let videos = tmp.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    common::make_videos(&videos, "32x24", 12);
    let dataset = DatasetSource::Folder { dir: videos.clone() }.load().unwrap();
    assert_eq!(dataset.entries.len(), 6, "the broken file is only found out when decoded");
    let device = Device::flex();
    let sd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_pipeline/sd");
    let encoders = CacheEncoders::load(&sd, &LoadOptions::default(), &device).unwrap();
    let settings = CacheSettings {
        clip: ClipSampling { frames: 4, stride: 2, ..ClipSampling::default() },
        size: 16,
        shard_clips: 2,
        ..CacheSettings::default()
    };
    let build = |out: &Path, workers: usize, keep_going: &dyn Fn() -> bool| {
        build_cache(&dataset, &encoders, &settings, out, workers, &device, keep_going)
    };

    let whole = tmp.path().join("whole");
    let index = build(&whole, 2, &|| true).unwrap();
    assert!(index.complete);
    let sizes: Vec<usize> = index.shards.iter().map(|s| s.videos.len()).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(index.skipped.len(), 1);
    assert!(index.skipped[0].contains("broken.mp4") && index.skipped[0].contains("not a readable video"));
    let bytes = std::fs::read(whole.join("shard-000000.safetensors")).unwrap();
    let shard = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // 2 clips, 4 latent channels, 4 frames, 16 / 2 = 8 (the tiny VAE halves the size).
    assert_eq!(shard.tensor("latents").unwrap().shape(), [2, 4, 4, 8, 8]);
    let text = shard.tensor("text").unwrap().shape().to_vec();
    assert_eq!((text.len(), text[0]), (3, 2));
    assert_eq!(index.shards[0].captions, ["a red field", "a lime field"]);

    // Read back clip by clip: the rows of the shards, in dataset order across shards.
    let reader = CacheReader::open(&whole).unwrap();
    assert_eq!((reader.len(), reader.clip_dims), (5, [4, 4, 8, 8]));
    assert_eq!(reader.caption(2), "a blue field");
    let (latents, text) = reader.batch(&[1, 0], &device).unwrap();
    let stored = |name: &str| -> Vec<f32> {
        let view = shard.tensor(name).unwrap();
        view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let rows = |t: Vec<f32>, order: [usize; 2]| -> Vec<f32> {
        let row = t.len() / 2;
        order.iter().flat_map(|&r| t[r * row..(r + 1) * row].to_vec()).collect()
    };
    assert_eq!(latents.into_data().try_to_vec::<f32>().unwrap(), rows(stored("latents"), [1, 0]));
    assert_eq!(text.into_data().try_to_vec::<f32>().unwrap(), rows(stored("text"), [1, 0]));

    // Stopped after the first shard, then resumed with another worker count.
    let parts = tmp.path().join("parts");
    let stopped = build(&parts, 2, &|| false).unwrap();
    assert!(!stopped.complete);
    assert_eq!(stopped.shards.len(), 1);
    let resumed = build(&parts, 1, &|| true).unwrap();
    assert_eq!(resumed, index);
    assert_eq!(files(&parts), files(&whole), "the resumed cache differs from the uninterrupted one");
    assert_eq!(CacheIndex::read(&parts).unwrap().unwrap(), index);

    // Other settings on the same folder are refused.
    let other = CacheSettings { size: 32, ..settings.clone() };
    let err = build_cache(&dataset, &encoders, &other, &parts, 1, &device, &|| true).unwrap_err().to_string();
    assert!(err.contains("index.json") && err.contains("other settings"), "{err}");
    // So is another dataset.
    let mut fewer = dataset.clone();
    fewer.entries.pop();
    let err = build_cache(&fewer, &encoders, &settings, &parts, 1, &device, &|| true).unwrap_err().to_string();
    assert!(err.contains("dataset of 6 videos, this one lists 5"), "{err}");
}
