//! How well a teacher run's image stage estimates clean frames across noise levels, and what
//! its 25-step DDIM samples look like on average (the measurement behind the toy teacher's
//! v-prediction, book/src/toy-world.md); and whether it reads the direction words (the
//! measurement behind the toy world's streaks). Runs only when `AVDM_TEACHER_RUN` names a
//! `avdm train-teacher` run folder with a finished image stage; otherwise it says it was skipped:
//!
//! `AVDM_TEACHER_RUN=$PWD/runs/toy-teacher cargo test --workspace --test image_stage_x0 -- --nocapture`

use std::path::PathBuf;

use avdm_import::ClipTokenizer;
use avdm_model::noise::NoiseSource;
use avdm_model::sched::{BetaSchedule, DdimConfig, DdimScheduler, NoiseSchedule};
use avdm_train::checkpoint::Checkpoint;
use avdm_train::teacher::{Stage, TeacherConfig, TextToVideo, caption_ids, init_image_model, stage_dir};
use avdm_train::toy::world::{Attributes, Split, ToyWorld};
use burn::prelude::*;

/// Root mean square of a tensor.
fn rms<const D: usize>(x: Tensor<D>) -> f32 {
    x.square().mean().sqrt().into_scalar::<f32>()
}

/// The image stage of the run named by `AVDM_TEACHER_RUN`: its config, tokenizer and model.
fn image_stage(device: &Device) -> Option<(TeacherConfig, ClipTokenizer, TextToVideo)> {
    let Some(run) = std::env::var_os("AVDM_TEACHER_RUN").map(PathBuf::from) else {
        println!("skipped: set AVDM_TEACHER_RUN to an `avdm train-teacher` run folder");
        return None;
    };
    let config: TeacherConfig =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).expect("run config")).expect("config");
    let tokenizer = ClipTokenizer::from_folder(&run.join("tokenizer")).expect("run tokenizer");
    let checkpoint = Checkpoint::find(&stage_dir(&run, Stage::Image)).expect("an image-stage checkpoint");
    let model = checkpoint.module("model", init_image_model(device)).expect("image model");
    Some((config, tokenizer, model))
}

#[test]
fn image_stage_reads_the_direction_words() {
    let device = Device::flex();
    let Some((config, tokenizer, model)) = image_stage(&device) else { return };
    // The last frames of 32 real clips, captioned right and with the direction word turned by
    // one, two and three places: the loss is lowest with the right word if the model reads it.
    let world = config.world;
    let (clips, specs) = world.batch(3, Split::Eval, 0, 32, &device);
    let f = world.frames;
    let x0 = clips.slice([0..32, 0..3, f - 1..f]);
    let schedule = NoiseSchedule::stable_diffusion();
    let mut totals = [0.0f32; 4];
    for t in [200, 400, 600, 800] {
        let timesteps = vec![t; 32];
        let noise = NoiseSource::new(t as u64).normal(x0.dims(), &device);
        let noised = schedule.noise_batch(x0.clone(), noise.clone(), &timesteps);
        let target = config.prediction_type.target(x0.clone(), noise, noised.signal, noised.sigma);
        let mut losses = [0.0f32; 4];
        for (turn, loss) in losses.iter_mut().enumerate() {
            let captions: Vec<String> = specs
                .iter()
                .map(|s| Attributes { direction: (s.attributes.direction + turn) % 4, ..s.attributes }.caption())
                .collect();
            let text = model.text_encoder.embed(caption_ids(&tokenizer, &captions, &device).unwrap(), 0).unwrap();
            let t_column = Tensor::<1>::from_floats(vec![t as f32; 32].as_slice(), &device);
            let output = model.unet.forward(noised.x_t.clone(), t_column, text).unwrap();
            *loss = (output - target.clone()).square().mean().into_scalar::<f32>();
        }
        println!(
            "t {t}: loss with the right direction {:.5}, turned 1/2/3: {:.5} {:.5} {:.5}",
            losses[0], losses[1], losses[2], losses[3]
        );
        for (total, loss) in totals.iter_mut().zip(losses) {
            *total += loss;
        }
    }
    assert!(totals[1..].iter().all(|&wrong| totals[0] < wrong), "the direction words do not help: {totals:?}");
}

#[test]
fn image_stage_clean_frame_estimates() {
    let device = Device::flex();
    let Some((config, tokenizer, model)) = image_stage(&device) else { return };
    let prediction = config.prediction_type;

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
