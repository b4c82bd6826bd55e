//! The tiny AnimateDiff pipeline loaded in bf16 on a bf16 device (UNet and text encoder in
//! bf16, the VAE decoding in f32), against diffusers' f32 run (tests/fixtures/tiny_pipeline). Its own test
//! binary: a device's default dtype is set once per process.

use avdm_import::{AdapterSource, LoadOptions, load_pipeline};
use avdm_model::noise::NoiseSource;
use avdm_model::pipeline::Sampler;
use avdm_model::sched::DdimScheduler;
use avdm_tests::{device, fixture, fixture_tensors, tensor};
use burn::tensor::{DType, DeviceConfig, FloatDType};

#[test]
fn the_tiny_pipeline_in_bf16_stays_close_to_diffusers_in_f32() {
    let mut device = device();
    device.configure(DeviceConfig::default().float_dtype(FloatDType::BF16)).expect("flex has bf16");
    let adapter = AdapterSource::Folder(fixture("tiny_pipeline/motion_adapter"));
    let options = LoadOptions { dtype: DType::BF16, ..LoadOptions::default() };
    let loaded = load_pipeline(&fixture("tiny_pipeline/sd"), Some(&adapter), &options, &device).expect("tiny pipeline");
    // The UNet and the text encoder in bf16; the VAE stays f32 (diffusers' upcast_vae).
    let pipeline = &loaded.pipeline;
    assert_eq!(pipeline.unet.conv_in.weight.val().dtype(), DType::BF16);
    let vae = pipeline.vae.as_ref().expect("a VAE");
    assert_eq!(vae.decoder.conv_in.weight.val().dtype(), DType::F32);

    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_pipeline/pipeline_run.json")).unwrap()).unwrap();
    let io = fixture_tensors("tiny_pipeline/pipeline_io.safetensors");
    let ids = |key: &str| loaded.tokenizer.encode_tensor(run[key].as_str().unwrap(), &device).unwrap();
    let text = pipeline.encode_prompts(ids("prompt"), Some(ids("negative_prompt"))).unwrap();
    assert_eq!(text.cond.dtype(), DType::BF16);
    let mut scheduler = DdimScheduler::new(loaded.scheduler.clone()).unwrap();
    scheduler.set_timesteps(run["num_inference_steps"].as_u64().unwrap() as usize).unwrap();
    let sampler = Sampler::Ddim { scheduler, guidance_scale: run["guidance_scale"].as_f64().unwrap() as f32 };
    let latents =
        pipeline.denoise(tensor(&io, "latents"), &text, &sampler, &mut NoiseSource::new(0), |_, _| {}).unwrap();
    assert_eq!(latents.dtype(), DType::BF16);
    let frames = pipeline.decode(latents);
    assert_eq!(frames.dtype(), DType::F32);

    let expected = tensor::<5>(&io, "frames").cast(FloatDType::F32);
    let error = (frames - expected).abs();
    let (max, mean) = (error.clone().max().into_scalar::<f32>(), error.mean().into_scalar::<f32>());
    println!("bf16 pipeline against diffusers f32: frames max abs error {max:.2e}, mean {mean:.2e}");
    // bf16 keeps 8 bits of mantissa: with random weights and guidance 7.5 the latents reach
    // |x| ~ 40, where bf16's spacing is 0.25. Measured: max 7.4e-2, mean 1.0e-2 (an f32 run is
    // within 1e-3: pipeline_parity).
    assert!(max < 0.15 && mean < 0.02, "max {max}, mean {mean}");
}
