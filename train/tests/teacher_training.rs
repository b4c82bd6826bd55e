//! Teacher training on the toy world: the loss falls, a resumed run equals an uninterrupted
//! one, the motion stage trains only the motion modules, and a damaged checkpoint is named.

use std::path::Path;

use avdm_import::ClipTokenizer;
use avdm_train::teacher::{
    Stage, StageState, TeacherConfig, TextToVideo, caption_ids, denoising_loss, image_model_of, init_image_model,
    init_motion_model, stage_dir, step_data, train_stage,
};
use avdm_train::toy::preset;
use avdm_train::toy::vocabulary::write_tokenizer;
use burn::prelude::*;

fn device() -> Device {
    Device::flex().autodiff()
}

/// The toy preset with `steps` steps of small batches and no warm-up, each batch split over
/// two threads.
fn config(image_steps: usize, motion_steps: usize) -> TeacherConfig {
    let mut config = TeacherConfig { threads: 2, ..TeacherConfig::toy() };
    for (stage, steps, batch) in [(Stage::Image, image_steps, 4), (Stage::Motion, motion_steps, 1)] {
        let c = config.stage_mut(stage);
        (c.steps, c.batch, c.warmup, c.checkpoint_every) = (steps, batch, 1, 2);
    }
    config
}

fn tokenizer(dir: &Path) -> ClipTokenizer {
    write_tokenizer(&dir.join("tokenizer")).expect("tokenizer written");
    ClipTokenizer::from_folder(&dir.join("tokenizer")).expect("tokenizer read")
}

/// The denoising loss of `model` on the data of a step no run reaches (fixed batch, timesteps
/// and noise).
fn held_out_loss(model: &TextToVideo, config: &TeacherConfig, stage: Stage, tokenizer: &ClipTokenizer) -> f32 {
    let device = device();
    let data = step_data(config, stage, 10_000, &device);
    let ids = caption_ids(tokenizer, &data.captions, &device).expect("captions tokenize");
    let schedule = stage.schedule();
    denoising_loss(model, &schedule, config.prediction_type, data.x0, ids, &data.timesteps, data.noise)
        .expect("loss")
        .into_scalar::<f32>()
}

fn train(
    config: &TeacherConfig,
    stage: Stage,
    init: TextToVideo,
    tokenizer: &ClipTokenizer,
    run: &Path,
    resume: bool,
) -> (TextToVideo, StageState) {
    train_stage(config, stage, init, tokenizer, run, resume, &device(), &|| true).expect("training runs")
}

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn image_steps_lower_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = tokenizer(tmp.path());
    let config = config(12, 0);
    let init = init_image_model(&device());
    let before = held_out_loss(&init, &config, Stage::Image, &tokenizer);
    let (model, state) = train(&config, Stage::Image, init, &tokenizer, tmp.path(), false);
    let after = held_out_loss(&model, &config, Stage::Image, &tokenizer);
    println!("held-out loss {before:.4} -> {after:.4}");
    assert_eq!(state.step, 12);
    assert!(after < 0.7 * before, "12 steps did not lower the loss enough: {before} -> {after}");
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = tokenizer(tmp.path());
    let init = init_image_model(&device());
    let whole = tmp.path().join("whole");
    let (uninterrupted, _) = train(&config(4, 0), Stage::Image, init.clone(), &tokenizer, &whole, false);

    let parts = tmp.path().join("parts");
    // A stop asked for after the second step (Ctrl-C) checkpoints there and returns.
    let asked = std::cell::Cell::new(0);
    let keep_going = || {
        asked.set(asked.get() + 1);
        asked.get() < 2
    };
    let (_, first) =
        train_stage(&config(4, 0), Stage::Image, init.clone(), &tokenizer, &parts, false, &device(), &keep_going)
            .expect("training runs");
    assert_eq!(first.step, 2);
    // Resuming ignores the fresh init it is given: the checkpoint wins.
    let (resumed, state) = train(&config(4, 0), Stage::Image, init_image_model(&device()), &tokenizer, &parts, true);
    assert_eq!(state.step, 4);
    let weight = |m: &TextToVideo| m.unet.conv_out.weight.val();
    let diff = max_diff(weight(&uninterrupted), weight(&resumed));
    assert!(diff < 1e-6, "resumed run drifted from the uninterrupted one by {diff}");
    let text = |m: &TextToVideo| m.text_encoder.final_layer_norm.gamma.val();
    assert!(max_diff(text(&uninterrupted), text(&resumed)) < 1e-6);

    // A damaged checkpoint stops the resume with its path, instead of restarting silently.
    let module = stage_dir(&parts, Stage::Image).join("model.module.bpk");
    let bytes = std::fs::read(&module).unwrap();
    std::fs::write(&module, &bytes[..bytes.len() / 2]).unwrap();
    let error = train_stage(&config(6, 0), Stage::Image, init, &tokenizer, &parts, true, &device(), &|| true)
        .expect_err("a truncated checkpoint is an error")
        .to_string();
    assert!(error.contains("model.module.bpk"), "error does not name the file: {error}");
}

#[test]
fn motion_stage_trains_only_the_motion_modules() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = tokenizer(tmp.path());
    let device = device();
    let image = init_image_model(&device);
    let init = init_motion_model(&image, &preset::unet_config(true), &device).expect("image UNet fits");
    let motion_out = |m: &TextToVideo| m.unet.down_blocks[0].motion_modules[0].proj_out.weight.val();
    // Zero-initialised outputs: the motion UNet starts as the image UNet, frame by frame.
    assert_eq!(motion_out(&init).abs().max().into_scalar::<f32>(), 0.0);
    let (model, _) = train(&config(0, 2), Stage::Motion, init.clone(), &tokenizer, tmp.path(), false);
    assert!(motion_out(&model).abs().max().into_scalar::<f32>() > 0.0, "motion modules did not train");
    let conv = |m: &TextToVideo| m.unet.down_blocks[0].resnets[0].conv1.weight.val();
    assert_eq!(max_diff(conv(&init), conv(&model)), 0.0, "the frozen 2D UNet changed");
    let text = |m: &TextToVideo| m.text_encoder.final_layer_norm.gamma.val();
    assert_eq!(max_diff(text(&init), text(&model)), 0.0, "the frozen text encoder changed");
}

#[test]
fn the_video_unet_without_motion_modules_is_the_image_unet() {
    use burn::tensor::Distribution;
    let device = Device::flex();
    let image = init_image_model(&device);
    let video = init_motion_model(&image, &preset::unet_config(true), &device).unwrap();
    let stripped = video.unet.without_motion_modules();
    assert!(!stripped.has_motion_modules() && video.unet.has_motion_modules());
    assert_eq!(stripped.conv_in.weight.id, video.unet.conv_in.weight.id, "shared, not copied");
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let text = Tensor::<3>::random([2, 8, preset::TEXT_WIDTH], Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<1>::from_floats([900.0, 40.0], &device);
    let expected = image.unet.forward_2d(x.clone(), t.clone(), text.clone()).unwrap();
    let got = stripped.forward_2d(x, t, text).unwrap();
    let diff = (expected - got).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-6, "the 2D UNet inside the video UNet differs by {diff}");
}

/// A restyled image model (the toy's counterpart of an SD1.5 fine-tune): the image stage
/// started from the shipped teacher's image model on the outline world trains its UNet only,
/// and written as an image pipeline folder it is a 2D teacher the toy teacher's distillation
/// accepts, queried with SD1.5's `scaled_linear` schedule.
#[test]
fn an_image_stage_from_the_shipped_teacher_fine_tunes_its_unet_into_a_2d_teacher() {
    use avdm_import::{LoadOptions, load_pipeline};
    use avdm_model::sched::BetaSchedule;
    use avdm_train::distill::config::DistillConfig;
    use avdm_train::distill::run::load_teacher_2d;
    use avdm_train::toy::Style;
    use avdm_train::toy::assets::{PipelineKind, default_assets_dir, write_pipeline_folder};

    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = tokenizer(tmp.path());
    let teacher = default_assets_dir().join("teacher");
    let mut config = config(2, 0);
    config.world.style = Style::Outline;
    config.image_init = Some(teacher.clone());
    let init = image_model_of(&teacher, &device()).expect("the shipped teacher's image model");
    let (model, _) = train(&config, Stage::Image, init.clone(), &tokenizer, tmp.path(), false);
    let conv = |m: &TextToVideo| m.unet.down_blocks[0].resnets[0].conv1.weight.val();
    assert!(max_diff(conv(&init), conv(&model)) > 0.0, "the UNet did not train");
    let text = |m: &TextToVideo| m.text_encoder.final_layer_norm.gamma.val();
    assert_eq!(max_diff(text(&init), text(&model)), 0.0, "the text encoder of the family changed");

    let folder = tmp.path().join("image-teacher");
    write_pipeline_folder(&model, config.prediction_type, PipelineKind::Image, &folder).expect("written");
    let plain = Device::flex();
    let video = load_pipeline(&teacher, None, &LoadOptions::default(), &plain).unwrap();
    let distill = DistillConfig {
        models: avdm_train::distill::config::ModelPaths { teacher_2d: Some(folder.clone()), ..Default::default() },
        ..DistillConfig::toy()
    };
    let (unet, schedule) = load_teacher_2d(&distill, &video, &plain).expect("a 2D teacher of the toy teacher");
    let unet = unet.expect("the folder's UNet");
    assert!(!unet.has_motion_modules());
    let weight = |u: &avdm_model::UNetMotionModel| u.down_blocks[0].resnets[0].conv1.weight.val();
    assert_eq!(max_diff(weight(&unet), conv(&model).inner()), 0.0, "the written weights");
    assert_eq!(schedule.beta_schedule, BetaSchedule::ScaledLinear, "queried with the image stage's schedule");
    assert_eq!(schedule.prediction_type, config.prediction_type);

    // A run folder with another init is not resumed as this one.
    let other = TeacherConfig { image_init: None, ..config.clone() };
    let err = train_stage(&other, Stage::Image, init, &tokenizer, tmp.path(), true, &device(), &|| true)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("image init"), "{err}");
}
