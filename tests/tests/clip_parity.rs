//! The CLIP text encoder against transformers 5.23 `CLIPTextModel` on the same tiny weights
//! (tests/fixtures/tiny_pipeline: `sd/text_encoder`, `text_encoder_hub`, `clip_io.safetensors`).

use std::fs;
use std::path::Path;

use avdm_import::{ImportError, LoadOptions, LoadedClipText, load_clip_text};
use avdm_model::clip::{ClipInputError, ClipTextConfig};
use avdm_tests::{assert_close, device, fixture, fixture_tensors, tensor};
use burn::prelude::*;
use burn::store::bridge;

const TOLERANCE: f32 = 1e-4;

fn load(rel: &str) -> LoadedClipText {
    load_clip_text(&fixture(rel), &LoadOptions::default(), &device()).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The reference prompts' token ids `(N, 77)`.
fn input_ids() -> Tensor<2, Int> {
    let io = fixture_tensors("tiny_pipeline/clip_io.safetensors");
    let data = bridge::to_data(&io.entries["input_ids"].tensor).expect("readable fixture").convert::<i64>();
    Tensor::from_data(data, &device())
}

fn expected<const D: usize>(key: &str) -> Tensor<D> {
    tensor(&fixture_tensors("tiny_pipeline/clip_io.safetensors"), key)
}

fn check_outputs(clip: &LoadedClipText, layout: &str) {
    let out = clip.model.forward(input_ids()).expect("valid ids");
    assert_close(
        &format!("{layout}: last_hidden_state"),
        out.last_hidden_state,
        expected("last_hidden_state"),
        TOLERANCE,
    );
    assert_close(&format!("{layout}: hidden_states[-2]"), out.penultimate, expected("penultimate"), TOLERANCE);
    assert_close(&format!("{layout}: pooler_output"), out.pooled, expected("pooled"), TOLERANCE);
}

#[test]
fn transformers5_folder_matches_transformers() {
    let clip = load("tiny_pipeline/sd/text_encoder");
    println!("{}", clip.report);
    assert!(clip.report.unused.is_empty(), "unused keys: {:?}", clip.report.unused);
    assert_eq!(clip.report.applied, 52);
    assert_eq!(clip.model.max_positions(), 77);
    check_outputs(&clip, "transformers 5 layout");
}

#[test]
fn hub_layout_with_prefix_and_position_ids_matches_transformers() {
    let clip = load("tiny_pipeline/text_encoder_hub");
    assert!(clip.report.unused.is_empty(), "position_ids must be ignored: {:?}", clip.report.unused);
    assert_eq!(clip.report.applied, 52);
    assert_eq!(clip.config, load("tiny_pipeline/sd/text_encoder").config);
    check_outputs(&clip, "hub layout");
}

#[test]
fn embed_follows_diffusers_clip_skip() {
    let clip = load("tiny_pipeline/sd/text_encoder");
    let plain = clip.model.embed(input_ids(), 0).expect("valid ids");
    assert_close("clip_skip 0 = last_hidden_state", plain, expected("last_hidden_state"), TOLERANCE);
    let skipped = clip.model.embed(input_ids(), 1).expect("valid ids");
    let want = clip.model.final_layer_norm.forward(expected::<3>("penultimate"));
    assert_close("clip_skip 1 = final_layer_norm(hidden_states[-2])", skipped, want, TOLERANCE);
    let err = clip.model.embed(input_ids(), 4).unwrap_err();
    assert_eq!(err.to_string(), "clip_skip 4 exceeds the text encoder's 3 layers");
}

#[test]
fn bad_ids_are_errors() {
    let clip = load("tiny_pipeline/sd/text_encoder");
    let err = clip.model.forward(Tensor::zeros([2, 78], &device())).unwrap_err();
    assert_eq!(err, ClipInputError::TooLong { got: 78, max: 77 });
    assert_eq!(err.to_string(), "78 tokens exceed the text encoder's 77 positions");
    let ids = input_ids().slice_assign([1..2, 5..6], Tensor::from_data([[1514i64]], &device()));
    let err = clip.model.forward(ids).unwrap_err();
    assert_eq!(err.to_string(), "token id 1514 (sequence 1, position 5) is outside the vocabulary of 1514 tokens");
}

/// Copies `text_encoder` into `dir` with the keys renamed by `rename` and `extra` f32 tensors added.
fn write_variant(dir: &Path, rename: impl Fn(&str) -> String, extra: &[(&str, Vec<usize>)]) {
    fs::create_dir_all(dir).unwrap();
    let src = fixture("tiny_pipeline/sd/text_encoder");
    fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let zeros: Vec<Vec<u8>> = extra.iter().map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()]).collect();
    let mut views: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().map(|(name, view)| (rename(&name), view)).collect();
    for ((name, shape), data) in extra.iter().zip(&zeros) {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap();
        views.push((name.to_string(), view));
    }
    fs::write(dir.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn full_clip_model_file_reports_the_other_towers_as_unused() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = [
        ("vision_model.post_layernorm.weight", vec![16]),
        ("visual_projection.weight", vec![8, 16]),
        ("text_projection.weight", vec![8, 32]),
        ("logit_scale", vec![]),
    ];
    write_variant(tmp.path(), |k| format!("text_model.{k}"), &extra);
    let clip = load_clip_text(tmp.path(), &LoadOptions::default(), &device()).expect("CLIPModel file");
    let mut unused = clip.report.unused.clone();
    unused.sort();
    assert_eq!(
        unused,
        ["logit_scale", "text_projection.weight", "vision_model.post_layernorm.weight", "visual_projection.weight"]
    );
    check_outputs(&clip, "CLIPModel file");
}

#[test]
fn missing_weights_and_wrong_configs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    write_variant(tmp.path(), |k| k.replace("final_layer_norm", "final_norm"), &[]);
    let err = load_clip_text(tmp.path(), &LoadOptions::default(), &device()).unwrap_err();
    assert!(
        matches!(&err, ImportError::MissingKeys { keys, .. } if keys == &["final_layer_norm.bias", "final_layer_norm.weight"]),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    let config = fs::read_to_string(tmp.path().join("config.json"))
        .unwrap()
        .replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5");
    fs::write(tmp.path().join("config.json"), config).unwrap();
    let err = load_clip_text(tmp.path(), &LoadOptions::default(), &device()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "config {}: config field `num_attention_heads`: 5 heads do not divide hidden_size 32",
            tmp.path().join("config.json").display()
        )
    );
    fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    fs::copy(fixture("tiny_pipeline/sd/text_encoder/config.json"), tmp.path().join("config.json")).unwrap();
    let err = load_clip_text(tmp.path(), &LoadOptions::default(), &device()).unwrap_err();
    assert!(err.to_string().contains("weights") && err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn vit_l14_builds_sd15_text_encoder_shapes() {
    let config = ClipTextConfig::vit_l14();
    config.validate().expect("valid");
    assert_eq!((config.head_dim(), config.eos_token_id), (64, 2));
}
