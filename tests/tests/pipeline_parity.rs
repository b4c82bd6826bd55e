//! A whole tiny AnimateDiff pipeline (tokenizer, CLIP, UNet + motion adapter, DDIM with
//! classifier-free guidance, VAE) against diffusers' `AnimateDiffPipeline` on the same weights
//! and initial latents (tests/fixtures/tiny_pipeline, made by tools/fixtures/make_pipeline_fixtures.py).

use avdm_import::{AdapterSource, LoadOptions, LoadedPipeline, load_pipeline};
use avdm_model::noise::NoiseSource;
use avdm_model::pipeline::Sampler;
use avdm_model::sched::DdimScheduler;
use avdm_tests::{assert_close, device, fixture, fixture_tensors, tensor};
use burn::prelude::*;

fn run_config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("tiny_pipeline/pipeline_run.json")).unwrap()).unwrap()
}

fn load() -> LoadedPipeline {
    let adapter = AdapterSource::Folder(fixture("tiny_pipeline/motion_adapter"));
    load_pipeline(&fixture("tiny_pipeline/sd"), Some(&adapter), &LoadOptions::default(), &device())
        .expect("tiny pipeline folder")
}

fn ids(loaded: &LoadedPipeline, text: &str) -> Tensor<2, Int> {
    loaded.tokenizer.encode_tensor(text, &device()).expect("tokenizes")
}

#[test]
fn tiny_animatediff_pipeline_matches_diffusers() {
    let run = run_config();
    let loaded = load();
    for (name, report) in &loaded.reports {
        assert!(report.unused.is_empty(), "{name}: unused keys {:?}", report.unused);
    }
    let io = fixture_tensors("tiny_pipeline/pipeline_io.safetensors");
    let prompt = ids(&loaded, run["prompt"].as_str().unwrap());
    let negative = ids(&loaded, run["negative_prompt"].as_str().unwrap());
    let text = loaded.pipeline.encode_prompts(prompt, Some(negative)).expect("valid ids");
    assert_close("prompt embeddings", text.cond.clone(), tensor(&io, "prompt_embeds"), 1e-4);
    assert_close(
        "negative prompt embeddings",
        text.uncond.clone().expect("guidance"),
        tensor(&io, "negative_prompt_embeds"),
        1e-4,
    );

    let mut scheduler = DdimScheduler::new(loaded.scheduler.clone()).unwrap();
    scheduler.set_timesteps(run["num_inference_steps"].as_u64().unwrap() as usize).unwrap();
    let expected_timesteps: Vec<usize> =
        run["timesteps"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as usize).collect();
    assert_eq!(scheduler.timesteps, expected_timesteps);
    let guidance_scale = run["guidance_scale"].as_f64().unwrap() as f32;
    let sampler = Sampler::Ddim { scheduler, guidance_scale };
    assert_eq!(sampler.nfe(), 4, "two guided steps cost four evaluations");

    let mut steps = Vec::new();
    let latents = loaded
        .pipeline
        .denoise(tensor(&io, "latents"), &text, &sampler, &mut NoiseSource::new(0), |i, n| steps.push((i, n)))
        .expect("valid shapes");
    assert_eq!(steps, vec![(1, 2), (2, 2)]);
    // The latents reach |x| ~ 40 with random weights and guidance 7.5: compare relative to that.
    let expected = tensor::<5>(&io, "out_latents");
    let scale = expected.clone().abs().max().into_scalar::<f32>();
    assert_close("denoised latents / max |latent|", latents.clone() / scale, expected / scale, 1e-4);
    let frames = loaded.pipeline.decode(latents);
    assert_close("frames in [0, 1]", frames, tensor(&io, "frames"), 1e-3);
}

#[test]
fn decoding_in_chunks_changes_nothing() {
    let mut loaded = load();
    let latents = tensor::<5>(&fixture_tensors("tiny_pipeline/pipeline_io.safetensors"), "latents");
    let whole = loaded.pipeline.decode(latents.clone());
    loaded.pipeline.decode_chunk = 3;
    let chunked = loaded.pipeline.decode(latents);
    assert_close("chunked decode", chunked, whole, 1e-6);
}

#[test]
fn a_2d_unet_without_adapter_is_a_clear_error() {
    let err = load_pipeline(&fixture("tiny_pipeline/sd"), None, &LoadOptions::default(), &device()).unwrap_err();
    assert!(err.to_string().contains("no motion adapter was given"), "{err}");
    let err = load_pipeline(&fixture("tiny_pipeline"), None, &LoadOptions::default(), &device()).unwrap_err();
    assert!(err.to_string().contains("model_index.json"), "{err}");
}
