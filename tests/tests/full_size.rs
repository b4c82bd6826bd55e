//! Full-size SD1.5 + motion adapter v1-5-2 (random weights saved by diffusers with
//! `tools/fixtures/make_full_size.py`, never committed). Runs only when
//! `AVDM_FULL_SIZE_DIR` points at those folders; otherwise it says it was skipped.

use std::time::Instant;

use avdm_import::{AdapterSource, LoadOptions, load_unet_motion};
use avdm_model::UNetConfig;
use avdm_tests::device;
use burn::prelude::*;

#[test]
fn full_size_sd15_with_v1_5_2_loads_and_runs() {
    let Some(dir) = std::env::var_os("AVDM_FULL_SIZE_DIR").map(std::path::PathBuf::from) else {
        println!("skipped: set AVDM_FULL_SIZE_DIR (see tools/fixtures/make_full_size.py)");
        return;
    };
    let start = Instant::now();
    let adapter = AdapterSource::Folder(dir.join("motion_adapter"));
    let unet =
        load_unet_motion(&dir.join("unet"), &adapter, &LoadOptions::default(), &device()).expect("full-size load");
    println!("{} in {:.1}s", unet.report, start.elapsed().as_secs_f32());
    assert_eq!(unet.config, UNetConfig::sd15_motion_v1_5_2());
    assert!(unet.report.unused.is_empty(), "{:?}", unet.report.unused);

    // 64x64 pixels = 8x8 latents, 4 frames.
    let d = device();
    let sample = Tensor::<5>::random([1, 4, 4, 8, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &d);
    let text = Tensor::<3>::random([4, 77, 768], burn::tensor::Distribution::Normal(0.0, 1.0), &d);
    let start = Instant::now();
    let out = unet.model.forward(sample, Tensor::from_floats([500.0], &d), text).expect("valid inputs");
    let mean_abs = out.clone().abs().mean().into_scalar::<f32>();
    println!("forward (1, 4, 4, 8, 8) in {:.1}s, mean |out| {mean_abs:.4}", start.elapsed().as_secs_f32());
    assert_eq!(out.dims(), [1, 4, 4, 8, 8]);
    assert!(mean_abs.is_finite() && mean_abs > 0.0);
}
