//! Full-size SD1.5 pipeline + motion adapter v1-5-2 (random weights saved by diffusers and
//! transformers with `tools/fixtures/make_full_size.py`, never committed). Runs only when
//! `AVDM_FULL_SIZE_DIR` points at those folders; otherwise it says it was skipped.

use std::time::Instant;

use avdm_import::{AdapterSource, LoadOptions, load_pipeline};
use avdm_model::noise::NoiseSource;
use avdm_model::pipeline::Sampler;
use avdm_model::sched::DdimScheduler;
use avdm_model::{ClipTextConfig, UNetConfig, VaeConfig};
use avdm_tests::device;

#[test]
fn full_size_sd15_pipeline_with_v1_5_2_loads_and_runs() {
    let Some(dir) = std::env::var_os("AVDM_FULL_SIZE_DIR").map(std::path::PathBuf::from) else {
        println!("skipped: set AVDM_FULL_SIZE_DIR (see tools/fixtures/make_full_size.py)");
        return;
    };
    let start = Instant::now();
    let adapter = AdapterSource::Folder(dir.join("motion_adapter"));
    let loaded = load_pipeline(&dir.join("sd15"), Some(&adapter), &LoadOptions::default(), &device())
        .expect("full-size pipeline load");
    println!("loaded in {:.1}s", start.elapsed().as_secs_f32());
    for (name, report) in &loaded.reports {
        println!("{name}: {report}");
        assert!(report.unused.is_empty(), "{name}: {:?}", report.unused);
    }
    assert_eq!(loaded.unet_config, UNetConfig::sd15_motion_v1_5_2());
    assert_eq!(loaded.vae_config, Some(VaeConfig::sd15()));
    let (text, l14) = (&loaded.text_config, ClipTextConfig::vit_l14());
    assert_eq!(
        (text.vocab_size, text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.eos_token_id),
        (l14.vocab_size, l14.hidden_size, l14.num_hidden_layers, l14.num_attention_heads, l14.eos_token_id)
    );

    // One guided DDIM step on 4 frames of 64x64 pixels (8x8 latents), then the VAE decode.
    let d = device();
    let ids = |text: &str| loaded.tokenizer.encode_tensor(text, &d).expect("tokenizes");
    let start = Instant::now();
    let text = loaded.pipeline.encode_prompts(ids("a corgi on the beach"), Some(ids(""))).expect("prompts");
    let mut scheduler = DdimScheduler::new(loaded.scheduler.clone()).unwrap();
    scheduler.set_timesteps(1).unwrap();
    let sampler = Sampler::Ddim { scheduler, guidance_scale: 7.5 };
    let mut noise = NoiseSource::new(0);
    let latents = noise.normal([1, 4, 4, 8, 8], &d);
    let clean = loaded.pipeline.denoise(latents, &text, &sampler, &mut noise, |_, _| ()).expect("valid shapes");
    println!("text encoder + 1 guided step (1, 4, 4, 8, 8) in {:.1}s", start.elapsed().as_secs_f32());
    let start = Instant::now();
    let frames = loaded.pipeline.decode(clean);
    println!("VAE decode of 4 frames to 64x64 in {:.1}s", start.elapsed().as_secs_f32());
    assert_eq!(frames.dims(), [1, 4, 3, 64, 64]);
    let mean = frames.mean().into_scalar::<f32>();
    assert!(mean.is_finite() && (0.0..=1.0).contains(&mean), "mean frame value {mean}");
}
