//! Distillation runs on the shipped toy teacher, a few tiny iterations each: a resumed run
//! equals an uninterrupted one, a damaged checkpoint or other settings are named, a diverging
//! run stops with its last good checkpoint intact, and the student is exported as a pipeline.

use std::path::Path;

use avdm_import::{LoadOptions, load_pipeline};
use avdm_model::sched::{BetaSchedule, PredictionType, VideoSchedule};
use avdm_train::checkpoint::Checkpoint;
use avdm_train::distill::config::DistillConfig;
use avdm_train::distill::run::{DistillState, distill, load_teacher_2d};
use avdm_train::error::TrainError;
use avdm_train::method::discriminator::HeadConfig;
use burn::prelude::*;

mod resume;

fn config(steps: usize) -> DistillConfig {
    let mut c = DistillConfig {
        steps,
        batch: 1,
        critic_updates: 1,
        checkpoint_every: 2,
        head: HeadConfig { channels: 8, groups: 4 },
        ..DistillConfig::default()
    };
    c.sdm.frames = 2;
    c.optim.warmup = 1;
    c.optim.lr_motion = 1e-4;
    c.optim.lr_backbone = 1e-4;
    c.optim.lr_fake = 1e-4;
    c.optim.lr_head = 1e-4;
    c
}

fn run(config: &DistillConfig, out: &Path, resume: bool) -> Result<DistillState, TrainError> {
    distill(config, out, resume, &[Device::flex().autodiff()], &avdm_train::cluster::SingleRank, |_| true)
}

/// A weight of the pipeline folder `dir`'s UNet.
fn unet_weight(dir: &Path) -> Tensor<4> {
    let loaded = load_pipeline(dir, None, &LoadOptions::default(), &Device::flex()).unwrap();
    loaded.pipeline.unet.down_blocks[0].resnets[0].conv1.weight.val()
}

/// A weight of the student that the run in `out` exported.
fn student_weight(out: &Path) -> Tensor<4> {
    unet_weight(&out.join("student"))
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one_and_exports_the_student() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    assert_eq!(run(&config(4), &whole, false).unwrap().step, 4);
    let parts = tmp.path().join("parts");
    assert_eq!(run(&config(2), &parts, false).unwrap().step, 2);
    assert_eq!(run(&config(4), &parts, true).unwrap().step, 4);
    let diff = (student_weight(&whole) - student_weight(&parts)).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-6, "the resumed student drifted by {diff}");
    let metrics = std::fs::read_to_string(parts.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4, "one metrics line per iteration, none twice");
    assert!(parts.join("config.toml").is_file());
    // The plots of the run's metrics, rewritten at the resume's checkpoint: all 4 iterations.
    let plots = std::fs::read_to_string(parts.join("plots/plots.md")).unwrap();
    for metric in ["loss_adm", "loss_sdm", "loss_fake", "loss_disc", "grad_norm_student", "disc_accuracy_real"] {
        assert!(parts.join(format!("plots/{metric}.png")).is_file(), "no plot of {metric}");
        assert!(plots.contains(&format!("![{metric}]({metric}.png)")), "{plots}");
    }
    assert!(plots.contains("Iterations 1 to 4"), "{plots}");
    let trained = avdm_import::read_student_config(&parts.join("student")).unwrap().unwrap();
    assert_eq!(trained.beta_schedule, Some(BetaSchedule::Linear), "student.json records the video schedule");
    let teacher = avdm_train::toy::assets::default_assets_dir().join("teacher");
    let moved = (student_weight(&whole) - unet_weight(&teacher)).abs().max().into_scalar::<f32>();
    assert!(moved > 0.0, "the exported student is the teacher");

    // Other settings, or a damaged checkpoint, are named instead of silently restarting.
    let mut other = config(6);
    other.loss.lambda_adm = 0.5;
    let err = run(&other, &parts, true).unwrap_err().to_string();
    assert!(err.contains("checkpoint") && err.contains("other settings") && err.contains("loss.lambda_adm"), "{err}");
    let folder = DistillConfig { video_schedule: VideoSchedule::Folder, ..config(6) };
    let err = run(&folder, &parts, true).unwrap_err().to_string();
    assert!(err.contains("video_schedule changed"), "a resume may not change the video schedule: {err}");
    let module = parts.join("checkpoint/head.module.bpk");
    let bytes = std::fs::read(&module).unwrap();
    std::fs::write(&module, &bytes[..bytes.len() / 2]).unwrap();
    let err = run(&config(6), &parts, true).unwrap_err().to_string();
    assert!(err.contains("head.module.bpk"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_its_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(8);
    c.checkpoint_every = 1;
    c.optim.lr_motion = 1e30;
    c.optim.lr_backbone = 1e30;
    let err = run(&c, tmp.path(), false).unwrap_err();
    let TrainError::NonFinite { step, .. } = err else { panic!("expected a non-finite stop, got {err}") };
    let saved: DistillState = Checkpoint::find(&tmp.path().join("checkpoint")).unwrap().state().unwrap();
    assert_eq!(saved.step, step, "the checkpoint is the last good step");
    assert!(!tmp.path().join("student").exists(), "no student is exported from a failed run");
}

/// The diffusers-made tiny SD pipeline of the parity fixtures (latent space, epsilon, linear).
fn fixture(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(path)
}

#[test]
fn a_2d_teacher_folder_is_queried_with_its_own_scheduler_and_must_fit_the_video_teacher() {
    let device = Device::flex();
    let sd = fixture("tiny_pipeline/sd");
    let adapter = avdm_import::AdapterSource::from_path(&fixture("tiny_pipeline/motion_adapter"));
    let video = load_pipeline(&sd, Some(&adapter), &LoadOptions::default(), &device).unwrap();
    let mut config = config(1);
    config.models.teacher_2d = Some(sd.clone());
    let (unet, image) = load_teacher_2d(&config, &video, &device).unwrap();
    let unet = unet.expect("the folder's UNet");
    assert!(!unet.has_motion_modules());
    let weight = |u: &avdm_model::UNetMotionModel| u.conv_in.weight.val();
    assert_eq!((weight(&unet) - weight(&video.pipeline.unet)).abs().max().into_scalar::<f32>(), 0.0);
    assert_eq!(image.prediction_type, PredictionType::Epsilon);
    // Its own `linear` betas, not the scaled_linear the video teacher's own 2D UNet gets.
    assert_eq!(image.beta_schedule, BetaSchedule::Linear);
    let (none, default) =
        load_teacher_2d(&DistillConfig { models: Default::default(), ..config.clone() }, &video, &device).unwrap();
    assert!(none.is_none());
    assert_eq!(default.beta_schedule, BetaSchedule::ScaledLinear, "the default 2D teacher uses scaled_linear");
    assert_eq!((default.beta_start, default.beta_end), (0.00085, 0.012));

    // A 2D teacher that does not fit the toy teacher is named before any training.
    let toy = load_pipeline(
        &avdm_train::toy::assets::default_assets_dir().join("teacher"),
        None,
        &LoadOptions::default(),
        &device,
    )
    .unwrap();
    let err = load_teacher_2d(&config, &toy, &device).unwrap_err().to_string();
    assert!(err.contains("models.teacher_2d") && err.contains("in_channels 4"), "{err}");
    config.models.teacher_2d = Some(fixture("absent"));
    let err = load_teacher_2d(&config, &toy, &device).unwrap_err().to_string();
    assert!(err.contains("absent"), "{err}");
}

#[test]
fn a_run_with_a_lora_fake_score_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let lora = |steps| {
        let mut c = config(steps);
        c.fake_score.lora_rank = 2;
        c.checkpoint_every = 1;
        c
    };
    let (whole, parts) = (tmp.path().join("whole"), tmp.path().join("parts"));
    run(&lora(2), &whole, false).unwrap();
    run(&lora(1), &parts, false).unwrap();
    run(&lora(2), &parts, true).unwrap();
    let diff = (student_weight(&whole) - student_weight(&parts)).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-6, "the resumed student drifted by {diff}");
    let err = run(&config(3), &parts, true).unwrap_err().to_string();
    assert!(err.contains("other settings"), "a full fake score does not resume a LoRA run: {err}");
}

/// With `ema`, the exported student is the moving average of the student after each update:
/// at decay 0.5 over two updates, 0.25 teacher + 0.25 (student after one) + 0.5 (after two),
/// the students taken from runs without it; a resumed run continues the same average.
#[test]
fn an_ema_run_exports_the_moving_average_and_resumes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ema = |steps| DistillConfig { ema: 0.5, checkpoint_every: 1, ..config(steps) };
    let dir = |name: &str| tmp.path().join(name);
    run(&config(1), &dir("one"), false).unwrap();
    run(&config(2), &dir("two"), false).unwrap();
    run(&ema(2), &dir("whole"), false).unwrap();
    run(&ema(1), &dir("parts"), false).unwrap();
    run(&ema(2), &dir("parts"), true).unwrap();
    let teacher = unet_weight(&avdm_train::toy::assets::default_assets_dir().join("teacher"));
    let want = teacher.clone() * 0.25 + student_weight(&dir("one")) * 0.25 + student_weight(&dir("two")) * 0.5;
    let diff = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
    assert!(diff(student_weight(&dir("whole")), want.clone()) < 1e-6, "the exported student is the average");
    assert!(diff(student_weight(&dir("two")), want) > 1e-5, "the average differs from the last student");
    assert!(diff(student_weight(&dir("parts")), student_weight(&dir("whole"))) < 1e-6, "the resumed average drifted");
    let err = run(&config(3), &dir("parts"), true).unwrap_err().to_string();
    assert!(err.contains("ema"), "a resume may not drop the average: {err}");
}

/// The toy preset's settings (two critic updates, batch 2 over two threads) stopped at a
/// checkpoint and resumed give the uninterrupted run's metrics, networks and optimizer states,
/// bit for bit; so do a LoRA fake score and the video-SDM ablation.
#[test]
fn a_resumed_run_with_the_toy_presets_settings_is_exact() {
    let preset = |steps| {
        let mut c = DistillConfig { steps, checkpoint_every: 2, sample_every: 0, threads: 2, ..DistillConfig::toy() };
        c.eval.clips = 0;
        c
    };
    resume::assert_resume_is_exact(preset);
    resume::assert_resume_is_exact(|steps| {
        let mut c = preset(steps);
        c.fake_score.lora_rank = 2;
        c.loss.losses = avdm_train::distill::config::Losses::AdmSdmVideo;
        c
    });
}
