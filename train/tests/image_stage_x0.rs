//! How well a teacher run's image stage estimates clean frames across noise levels, and what
//! its 25-step DDIM samples look like on average (the measurement behind the toy teacher's
//! v-prediction, book/src/toy-world.md). Runs only when `AVDM_TEACHER_RUN` names a
//! `avdm train-teacher` run folder with a finished image stage; otherwise it says it was skipped:
//!
//! `AVDM_TEACHER_RUN=$PWD/runs/toy-teacher cargo test --workspace --test image_stage_x0 -- --nocapture`

use std::path::PathBuf;

use avdm_import::ClipTokenizer;
use avdm_model::noise::NoiseSource;
use avdm_model::sched::{BetaSchedule, DdimConfig, DdimScheduler, NoiseSchedule};
use avdm_train::checkpoint::Checkpoint;
use avdm_train::teacher::{Stage, TeacherConfig, caption_ids, init_image_model, stage_dir};
use avdm_train::toy::world::{Split, ToyWorld};
use burn::prelude::*;

/// Root mean square of a tensor.
fn rms<const D: usize>(x: Tensor<D>) -> f32 {
    x.square().mean().sqrt().into_scalar::<f32>()
}

#[test]
fn image_stage_clean_frame_estimates() {
    let Some(run) = std::env::var_os("AVDM_TEACHER_RUN").map(PathBuf::from) else {
        println!("skipped: set AVDM_TEACHER_RUN to an `avdm train-teacher` run folder");
        return;
    };
    let device = Device::flex();
    let config: TeacherConfig =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).expect("run config")).expect("config");
    let prediction = config.prediction_type;
    let tokenizer = ClipTokenizer::from_folder(&run.join("tokenizer")).expect("run tokenizer");
    let checkpoint = Checkpoint::find(&stage_dir(&run, Stage::Image)).expect("an image-stage checkpoint");
    let model = checkpoint.module("model", init_image_model(&device)).expect("image model");

    // 16 real frames (the first of 16 eval clips) and their captions.
    let world = ToyWorld::default();
    let (clips, specs) = world.batch(3, Split::Eval, 0, 16, &device);
    let x0 = clips.slice([0..16, 0..3, 0..1]);
    let captions: Vec<String> = specs.iter().map(|s| s.attributes.caption()).collect();
    let text = model.text_encoder.embed(caption_ids(&tokenizer, &captions, &device).unwrap(), 0).unwrap();
    let timestep = |t: usize| Tensor::<1>::from_floats([t as f32], &device);

    println!("{prediction:?}: RMS error of x0_hat (all values / per-channel means)");
    let schedule = NoiseSchedule::stable_diffusion();
    for t in [999, 900, 800, 600, 400, 200] {
        let (alpha, sigma) = schedule.scales(t);
        let noise = NoiseSource::new(5).normal(x0.dims(), &device);
        let x_t = x0.clone() * alpha + noise * sigma;
        let output = model.unet.forward(x_t.clone(), timestep(t), text.clone()).unwrap();
        let error = prediction.x0_and_eps(output, x_t, alpha, sigma).0 - x0.clone();
        println!("t {t}: {:.3} / {:.3}", rms(error.clone()), rms(error.mean_dim(3).mean_dim(4)));
    }

    let mut scheduler = DdimScheduler::new(DdimConfig {
        beta_schedule: BetaSchedule::ScaledLinear,
        prediction_type: prediction,
        ..DdimConfig::animatediff()
    })
    .unwrap();
    scheduler.set_timesteps(25).unwrap();
    let mut x = NoiseSource::new(1).normal([16, 3, 1, 32, 32], &device);
    for t in scheduler.timesteps.clone() {
        let output = model.unet.forward(x.clone(), timestep(t), text.clone()).unwrap();
        x = scheduler.step(output, t, x).prev_sample;
    }
    let mean = |x: &Tensor<5>| x.clone().mean().into_scalar::<f32>();
    println!("25-step DDIM samples: mean {:.3}, real frames {:.3}", mean(&x), mean(&x0));
    assert!(mean(&x).is_finite());
}
