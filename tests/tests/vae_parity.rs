//! The VAE against diffusers 0.42.1 `AutoencoderKL` on the same tiny weights
//! (tests/fixtures/tiny_pipeline: `sd/vae`, `vae_legacy`, `vae_io.safetensors`).

use avdm_import::{ImportError, LoadOptions, LoadedVae, TensorSet, load_vae, load_vae_weights};
use avdm_model::VaeConfig;
use avdm_tests::{assert_close, device, fixture, fixture_tensors, max_abs_diff, tensor};
use burn::prelude::*;

const TOLERANCE: f32 = 1e-4;
const IO: &str = "tiny_pipeline/vae_io.safetensors";
const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

fn load(rel: &str) -> LoadedVae {
    load_vae(&fixture(rel), &LoadOptions::default(), &device()).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn io(key: &str) -> Tensor<4> {
    tensor(&fixture_tensors(IO), key)
}

fn weights() -> TensorSet {
    TensorSet::from_safetensors(&fixture("tiny_pipeline/sd/vae").join(WEIGHTS)).expect("fixture weights")
}

fn tiny_config() -> VaeConfig {
    load("tiny_pipeline/sd/vae").config
}

#[test]
fn encode_matches_diffusers() {
    let vae = load("tiny_pipeline/sd/vae");
    println!("{}", vae.report);
    assert!(vae.report.unused.is_empty(), "unused keys: {:?}", vae.report.unused);
    assert_eq!((vae.model.latent_channels(), vae.model.downscale_factor()), (4, 2));
    assert_eq!((vae.model.scaling_factor, vae.model.shift_factor), (0.18215, 0.0));
    let dist = vae.model.encode(io("image"));
    assert_close("latent mean", dist.mean.clone(), io("latent_mean"), TOLERANCE);
    assert_close("latent logvar", dist.logvar.clone(), io("latent_logvar"), TOLERANCE);
    assert_close("latent sample", dist.sample(io("noise")), io("latent_sample"), TOLERANCE);
    assert_eq!(max_abs_diff(dist.mode(), dist.mean.clone()), 0.0);
    let std = (io("latent_logvar") * 0.5).exp();
    assert_close("std", dist.std(), std, TOLERANCE);
}

#[test]
fn decode_matches_diffusers() {
    let vae = load("tiny_pipeline/sd/vae").model;
    assert_close("decode(mean)", vae.decode(io("latent_mean")), io("decoded"), TOLERANCE);
    assert_close("decode 5 frames", vae.decode(io("latents")), io("decoded_latents"), TOLERANCE);
    let chunked = vae.decode_chunked(io("latents"), 2);
    assert_close("decode 5 frames, 2 at a time", chunked, io("decoded_latents"), TOLERANCE);
    let whole = vae.decode_chunked(io("latents"), 16);
    assert_close("decode 5 frames, chunk 16", whole, io("decoded_latents"), TOLERANCE);
}

#[test]
fn legacy_attention_names_give_identical_outputs() {
    let legacy = load("tiny_pipeline/vae_legacy");
    assert!(legacy.report.unused.is_empty(), "unused keys: {:?}", legacy.report.unused);
    let current = load("tiny_pipeline/sd/vae");
    assert_eq!(legacy.config, current.config);
    let (a, b) = (legacy.model.encode(io("image")), current.model.encode(io("image")));
    assert_eq!(max_abs_diff(a.mean, b.mean), 0.0);
    assert_eq!(max_abs_diff(a.logvar, b.logvar), 0.0);
    assert_eq!(max_abs_diff(legacy.model.decode(io("latents")), current.model.decode(io("latents"))), 0.0);
}

#[test]
fn conv_shaped_attention_weights_load() {
    // LDM checkpoints store the attention's projections as 1x1 convs `[C, C, 1, 1]`.
    let mut set = weights();
    let mut reshaped = 0;
    for (key, entry) in set.entries.iter_mut() {
        let dims = entry.tensor.shape.to_vec();
        if key.contains(".attentions.") && key.ends_with(".weight") && dims.len() == 2 {
            entry.tensor.shape = [dims[0], dims[1], 1, 1].into();
            reshaped += 1;
        }
    }
    assert_eq!(reshaped, 8, "to_q, to_k, to_v, to_out.0 in the encoder and the decoder");
    let vae = load_vae_weights(tiny_config(), set, &LoadOptions::default(), &device()).expect("1x1 conv weights");
    assert_close("decode(mean), conv-shaped weights", vae.model.decode(io("latent_mean")), io("decoded"), TOLERANCE);
}

#[test]
fn sd15_config_equals_the_released_config_json() {
    // runwayml/stable-diffusion-v1-5 vae/config.json (diffusers AutoencoderKL).
    let json = r#"{
      "_class_name": "AutoencoderKL",
      "_diffusers_version": "0.6.0",
      "act_fn": "silu",
      "block_out_channels": [128, 256, 512, 512],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
      "in_channels": 3,
      "latent_channels": 4,
      "layers_per_block": 2,
      "norm_num_groups": 32,
      "out_channels": 3,
      "sample_size": 512,
      "scaling_factor": 0.18215,
      "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
    }"#;
    assert_eq!(VaeConfig::from_json(json).expect("SD1.5 config"), VaeConfig::sd15());
    let vae = avdm_model::AutoencoderKL::new(&VaeConfig::sd15(), &device());
    assert_eq!((vae.latent_channels(), vae.downscale_factor()), (4, 8));
}

#[test]
fn missing_key_is_named() {
    let key = "decoder.up_blocks.1.resnets.1.conv2.bias";
    let mut set = weights();
    assert!(set.entries.remove(key).is_some());
    let err = load_vae_weights(tiny_config(), set, &LoadOptions::default(), &device()).unwrap_err();
    assert!(matches!(&err, ImportError::MissingKeys { keys, .. } if keys == &[key]), "{err}");
    assert!(err.to_string().contains(WEIGHTS), "{err}");
}

#[test]
fn wrong_shape_is_named() {
    let key = "encoder.mid_block.attentions.0.to_k.weight";
    let mut set = weights();
    set.entries.get_mut(key).expect("fixture key").tensor.shape = [16, 64].into();
    let err = load_vae_weights(tiny_config(), set, &LoadOptions::default(), &device()).unwrap_err();
    let file = fixture("tiny_pipeline/sd/vae").join(WEIGHTS);
    assert_eq!(
        err.to_string(),
        format!("tensor `{key}` in {} has shape [16, 64], the model expects [32, 32]", file.display())
    );
}

#[test]
fn unsupported_config_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("tiny_pipeline/sd/vae/config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["act_fn"] = "gelu".into();
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    let err = load_vae(tmp.path(), &LoadOptions::default(), &device()).unwrap_err();
    assert!(matches!(err, ImportError::Config { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "config {}: config field `act_fn`: `gelu` is not supported (silu only)",
            tmp.path().join("config.json").display()
        )
    );
    let err = load_vae(&tmp.path().join("nope"), &LoadOptions::default(), &device()).unwrap_err();
    assert!(err.to_string().starts_with("model folder not found"), "{err}");
}
