//! CLIP and CLIPScore against transformers and torchmetrics on a tiny random `CLIPModel`
//! (`tools/fixtures/make_clip_fixtures.py`): the processor's pixels (Pillow's bicubic resize
//! reproduced), image and text embeddings (<= 1e-4) and torchmetrics' `clip_score` per image
//! and prompt.

use std::path::{Path, PathBuf};

use avdm_import::LoadOptions;
use avdm_import::clip_model::load_clip_model;
use avdm_train::metrics::clip_score::{ClipScorer, clip_pixels};
use avdm_train::metrics::pil_resize::Rgb8;
use burn::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn clip_score_matches_torchmetrics_on_a_tiny_clip_model() {
    let device = Device::flex();
    let loaded = load_clip_model(&fixtures().join("tiny_clip"), &LoadOptions::default(), &device).unwrap();
    assert!(loaded.report.unused.is_empty(), "unused weights: {:?}", loaded.report.unused);
    let bytes = std::fs::read(fixtures().join("tiny_clip_io.safetensors")).unwrap();
    let io = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let floats = |name: &str| -> Vec<f32> {
        io.tensor(name).unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny_clip_scores.json")).unwrap()).unwrap();
    let prompts: Vec<String> =
        scores["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    let scorer = ClipScorer { model: loaded.model, tokenizer: loaded.tokenizer, image: loaded.image_processor };

    let ids = avdm_train::teacher::caption_ids(&scorer.tokenizer, &prompts, &device).unwrap();
    let text = scorer.model.text_features(ids).unwrap();
    let err = max_diff(&text.into_data().iter::<f32>().collect::<Vec<_>>(), &floats("text_embeds"));
    println!("text embeddings: max abs error {err:.2e}");
    assert!(err <= 1e-4, "text embeddings differ by {err}");
    let prompt_embeddings = scorer.prompt_embeddings(&prompts, &device).unwrap();
    for i in 0..3 {
        let view = io.tensor(&format!("image{i}")).unwrap();
        let [h, w, _] = <[usize; 3]>::try_from(view.shape()).unwrap();
        let image = Rgb8 { height: h, width: w, data: view.data().to_vec() };
        let pixels = clip_pixels(&image, &scorer.image).unwrap();
        let err = max_diff(&pixels, &floats(&format!("pixel_values{i}")));
        println!("image {i} ({h}x{w}): pixels max abs error {err:.2e}");
        assert!(err <= 1e-5, "image {i} ({h}x{w}): pixels differ by {err}");
        let input = Tensor::<1>::from_floats(pixels.as_slice(), &device).reshape([1, 3, 32, 32]);
        let embedding: Vec<f32> = scorer.model.image_features(input).into_data().iter::<f32>().collect();
        let err = max_diff(&embedding, &floats(&format!("image_embeds{i}")));
        println!("image {i}: embeddings max abs error {err:.2e}");
        assert!(err <= 1e-4, "image {i}: embeddings differ by {err}");
        for (j, want) in scores["scores"][i].as_array().unwrap().iter().enumerate() {
            let prompt = prompt_embeddings.clone().narrow(0, j, 1);
            let got = scorer.video_score(std::slice::from_ref(&image), prompt, &device).unwrap();
            let want = want.as_f64().unwrap();
            println!("image {i}, prompt {j}: CLIPScore {got:.5} vs torchmetrics {want:.5}");
            assert!((got - want).abs() <= 1e-3, "image {i}, prompt {j}: CLIPScore {got} vs torchmetrics {want}");
        }
    }
}
