//! Bad weight files give a clear error naming the file and the key, never a panic.

use std::fs;
use std::path::{Path, PathBuf};

use avdm_import::{AdapterSource, ImportError, LoadOptions, load_unet_2d, load_unet_motion, load_unet_motion_folder};
use avdm_tests::{device, fixture};

/// A copy of a fixture folder in a fresh temporary directory.
fn copy_dir(rel: &str, tmp: &Path) -> PathBuf {
    let dst = tmp.join(rel.rsplit('/').next().unwrap());
    fs::create_dir_all(&dst).unwrap();
    for entry in fs::read_dir(fixture(rel)).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

fn load_2d(dir: &Path) -> ImportError {
    load_unet_2d(dir, &LoadOptions::default(), &device()).expect_err("must fail")
}

const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

#[test]
fn missing_folder_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load_2d(&tmp.path().join("nope"));
    assert_eq!(err.to_string(), format!("model folder not found: {}", tmp.path().join("nope").display()));
    let dir = copy_dir("tiny_unet/unet", tmp.path());
    fs::remove_file(dir.join("config.json")).unwrap();
    assert!(load_2d(&dir).to_string().starts_with("config.json not found"), "{}", load_2d(&dir));
    let dir = copy_dir("tiny_unet/motion_adapter", tmp.path());
    fs::remove_file(dir.join(WEIGHTS)).unwrap();
    let err = load_unet_motion(
        &fixture("tiny_unet/unet"),
        &AdapterSource::Folder(dir.clone()),
        &LoadOptions::default(),
        &device(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("weights") && err.to_string().contains(&dir.display().to_string()), "{err}");
}

#[test]
fn truncated_and_foreign_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_dir("tiny_unet/unet", tmp.path());
    let bytes = fs::read(dir.join(WEIGHTS)).unwrap();
    fs::write(dir.join(WEIGHTS), &bytes[..bytes.len() / 2]).unwrap();
    let err = load_2d(&dir);
    assert!(matches!(err, ImportError::NotSafetensors { .. }), "{err}");
    assert!(err.to_string().contains("truncated") && err.to_string().contains(WEIGHTS), "{err}");

    fs::write(dir.join(WEIGHTS), b"PK\x03\x04 this is a zip, not safetensors").unwrap();
    let err = load_2d(&dir);
    assert!(matches!(err, ImportError::NotSafetensors { .. }), "{err}");

    fs::write(dir.join(WEIGHTS), b"abc").unwrap();
    assert!(load_2d(&dir).to_string().contains("too short"), "{}", load_2d(&dir));

    let ckpt = tmp.path().join("broken.ckpt");
    fs::write(&ckpt, b"not a pickle at all").unwrap();
    let adapter = AdapterSource::Checkpoint { path: ckpt, config: None };
    let err = load_unet_motion(&fixture("tiny_unet/unet"), &adapter, &LoadOptions::default(), &device()).unwrap_err();
    assert!(matches!(err, ImportError::Checkpoint { .. }) && err.to_string().contains("broken.ckpt"), "{err}");
}

/// Rewrites a safetensors file through `edit` on its (name, shape, f32 data) entries.
fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) {
    let bytes = fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut entries: Vec<(String, Vec<usize>, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    edit(&mut entries);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> =
        entries.into_iter().map(|(n, s, d)| (n, s, d.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(n, s, d)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())
        })
        .collect();
    fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn missing_key_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_dir("tiny_unet/unet", tmp.path());
    rewrite(&dir.join(WEIGHTS), |e| e.retain(|(n, _, _)| n != "mid_block.attentions.0.proj_in.weight"));
    let err = load_2d(&dir);
    assert!(
        matches!(&err, ImportError::MissingKeys { keys, .. } if keys == &["mid_block.attentions.0.proj_in.weight"]),
        "{err}"
    );
    assert!(err.to_string().contains(WEIGHTS), "{err}");
}

#[test]
fn wrong_shape_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_dir("tiny_unet/unet", tmp.path());
    let key = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight";
    rewrite(&dir.join(WEIGHTS), |e| {
        let t = e.iter_mut().find(|(n, _, _)| n == key).unwrap();
        t.1 = vec![8, 32]; // was [16, 16]
    });
    let err = load_2d(&dir);
    assert_eq!(
        err.to_string(),
        format!("tensor `{key}` in {} has shape [8, 32], the model expects [16, 16]", dir.join(WEIGHTS).display())
    );
}

#[test]
fn bad_shard_index_and_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_dir("tiny_unet/unet_motion_fp16_sharded", tmp.path());
    fs::remove_file(dir.join("diffusion_pytorch_model-00002-of-00003.safetensors")).unwrap();
    let err = load_unet_motion_folder(&dir, &LoadOptions::default(), &device()).unwrap_err();
    assert!(matches!(err, ImportError::ShardIndex { .. }) && err.to_string().contains("00002-of-00003"), "{err}");
    fs::write(dir.join("diffusion_pytorch_model.safetensors.index.json"), "{\"metadata\": {}}").unwrap();
    let err = load_unet_motion_folder(&dir, &LoadOptions::default(), &device()).unwrap_err();
    assert!(err.to_string().contains("weight_map"), "{err}");

    let set = || avdm_import::TensorSet::from_safetensors(&fixture("tiny_unet/unet").join(WEIGHTS)).unwrap();
    let err = set().merge(set()).unwrap_err();
    assert!(matches!(err, ImportError::DuplicateKey { .. }) && err.to_string().contains("appears in both"), "{err}");

    let adapter = AdapterSource::Folder(fixture("tiny_unet/unet_motion"));
    let err = load_unet_motion(&fixture("tiny_unet/unet"), &adapter, &LoadOptions::default(), &device()).unwrap_err();
    assert!(err.to_string().contains("config"), "a UNetMotionModel config is not a MotionAdapter config: {err}");
}

#[test]
fn adapter_that_does_not_fit_the_unet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_dir("tiny_unet/motion_adapter", tmp.path());
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    config["motion_max_seq_length"] = 24.into();
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err =
        load_unet_motion(&fixture("tiny_unet/unet"), &AdapterSource::Folder(dir), &LoadOptions::default(), &device())
            .unwrap_err();
    assert!(matches!(err, ImportError::Positions { .. }) && err.to_string().contains("holds 32 positions"), "{err}");

    let err = load_unet_motion(
        &fixture("tiny_unet/unet"),
        &AdapterSource::Folder(fixture("tiny_unet/unet")),
        &LoadOptions::default(),
        &device(),
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::NoMotionModules { .. }), "{err}");
}
