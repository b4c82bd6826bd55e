//! AVDM2 iterations on the tiny toy networks: the update counts follow the two-timescale
//! setting and the ablations, the frozen networks stay bit-identical, the trained ones move.

use avdm_import::ClipTokenizer;
use avdm_model::sched::{NoiseSchedule, PredictionType, StudentConfig, StudentSampler};
use avdm_train::distill::config::{DistillConfig, Losses};
use avdm_train::distill::learner::{
    FakeScoreBase, FrozenReplica, IterationData, Learner, Networks, Optimizers, Parameterisation, RealBatch,
};
use avdm_train::method::discriminator::HeadConfig;
use avdm_train::method::fake_score::{FakeScoreInit, trained_values};
use avdm_train::teacher::{TextToVideo, caption_ids, init_image_model, init_motion_model};
use avdm_train::toy::preset;
use avdm_train::toy::vocabulary::write_tokenizer;
use avdm_train::toy::world::{Split, ToyWorld};
use burn::prelude::*;

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn config(losses: Losses) -> DistillConfig {
    let mut c = DistillConfig { batch: 1, head: HeadConfig { channels: 8, groups: 4 }, ..DistillConfig::default() };
    c.loss.losses = losses;
    c.sdm.frames = 2;
    c.optim.warmup = 1;
    c.optim.lr_backbone = 1e-4;
    c.optim.lr_motion = 1e-4;
    // Without real-score guidance the fake score starts as the real score (SDM's gradient 0).
    c.sdm.guidance = 1.0;
    c
}

/// A tiny toy teacher (random weights) and what a learner needs beside it.
struct Fixture {
    _tmp: tempfile::TempDir,
    tokenizer: ClipTokenizer,
    video: TextToVideo,
    world: ToyWorld,
    device: Device,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        write_tokenizer(&tmp.path().join("tokenizer")).unwrap();
        let tokenizer = ClipTokenizer::from_folder(&tmp.path().join("tokenizer")).unwrap();
        let device = Device::flex().autodiff();
        let image = init_image_model(&device);
        let video = init_motion_model(&image, &preset::unet_config(true), &device).unwrap();
        Self { _tmp: tmp, tokenizer, video, world: ToyWorld { frames: 3, ..ToyWorld::default() }, device }
    }

    fn learner<'a>(&'a self, config: &'a DistillConfig) -> Learner<'a> {
        let parameterisation = |schedule| Parameterisation { schedule, prediction: PredictionType::VPrediction };
        let student_config = StudentConfig { prediction_type: PredictionType::VPrediction, ..StudentConfig::default() };
        Learner {
            config,
            tokenizer: &self.tokenizer,
            video: parameterisation(NoiseSchedule::animatediff()),
            image: parameterisation(NoiseSchedule::stable_diffusion()),
            sampler: StudentSampler::new(NoiseSchedule::animatediff(), &student_config).unwrap(),
            device: self.device.clone(),
            replicas: Vec::new(),
            draws: Default::default(),
            collective: &avdm_train::cluster::SingleRank,
        }
    }

    fn networks(&self, config: &DistillConfig) -> Networks {
        let (text, unet) = (self.video.text_encoder.clone(), self.video.unet.clone());
        Networks::new(text, unet, None, config, &self.device)
    }

    /// Text embeddings `(B, T, D)` of captions, without autodiff.
    fn embed(&self, captions: &[String]) -> Tensor<3> {
        let inner = self.device.clone().without_autodiff();
        let ids = caption_ids(&self.tokenizer, captions, &inner).unwrap();
        self.video.text_encoder.valid().embed(ids, 0).unwrap()
    }

    /// Step `step`'s data: `batch` prompts and two real batches.
    fn data(&self, step: usize, batch: usize) -> IterationData {
        let real = (0..2)
            .map(|k| {
                let index = (4 * step + k) * batch;
                let (clips, specs) = self.world.batch(0, Split::Train, index as u64, batch, &self.device);
                let captions: Vec<String> = specs.iter().map(|s| s.attributes.caption()).collect();
                RealBatch { clips, text: self.embed(&captions) }
            })
            .collect();
        let prompts = ["a red square moving left", "a blue circle moving up"];
        let prompts: Vec<String> = (0..batch).map(|i| prompts[i % 2].to_string()).collect();
        IterationData { prompts: self.embed(&prompts), real }
    }
}

#[test]
fn iterations_follow_the_two_timescale_setting_and_keep_the_teachers_frozen() {
    let fixture = Fixture::new();
    let video = &fixture.video;
    for (losses, updates) in [
        (Losses::AdmSdm2d, [1, 2, 2]),
        (Losses::AdmOnly, [1, 0, 2]),
        (Losses::SdmOnly, [1, 2, 0]),
        (Losses::AdmSdmVideo, [1, 2, 2]),
    ] {
        let config = config(losses);
        let learner = fixture.learner(&config);
        let mut nets = fixture.networks(&config);
        assert_eq!(nets.fake_score.has_motion_modules(), losses == Losses::AdmSdmVideo);
        let before = nets.clone();
        let mut optim = Optimizers::new(&config.optim);
        for step in 0..2 {
            let report = learner.iterate(step, &mut nets, &mut optim, &fixture.data(step, 1)).unwrap();
            assert_eq!(report.updates, updates, "{losses:?}");
            assert_eq!(report.loss_adm.is_some(), losses != Losses::SdmOnly);
            assert_eq!(report.loss_sdm.is_some(), losses != Losses::AdmOnly);
            // At step 0 the fake score is still the 2D teacher: SDM's gradient is exactly zero.
            if step > 0 || losses.uses_adm() {
                assert!(report.grad_norm_student > 0.0, "{losses:?}: the student got no gradient at {step}");
            } else {
                assert_eq!(report.grad_norm_student, 0.0, "the fake score starts as the real score");
            }
        }
        // Frozen networks are bit-identical; the trained ones moved.
        let conv = |u: &avdm_model::UNetMotionModel| u.down_blocks[0].resnets[0].conv1.weight.val();
        assert_eq!(max_diff(conv(&before.teacher), conv(&nets.teacher)), 0.0);
        assert_eq!(max_diff(conv(&before.teacher_2d), conv(&nets.teacher_2d)), 0.0);
        assert_eq!(max_diff(conv(&video.unet), conv(&nets.teacher)), 0.0);
        let text = |n: &Networks| n.text_encoder.final_layer_norm.gamma.val();
        assert_eq!(max_diff(text(&before), text(&nets)), 0.0);
        assert!(max_diff(conv(&before.student), conv(&nets.student)) > 0.0, "{losses:?}: the student did not move");
        let motion = |u: &avdm_model::UNetMotionModel| u.down_blocks[0].motion_modules[0].proj_in.weight.val();
        assert!(max_diff(motion(&before.student), motion(&nets.student)) > 0.0);
        assert_eq!(max_diff(motion(&video.unet), motion(&nets.teacher)), 0.0);
        let fake_moved = max_diff(conv(&before.fake_score), conv(&nets.fake_score)) > 0.0;
        assert_eq!(fake_moved, updates[1] > 0, "{losses:?}: fake score");
        let head_moved = max_diff(before.head.out.weight.val(), nets.head.out.weight.val()) > 0.0;
        assert_eq!(head_moved, updates[2] > 0, "{losses:?}: head");
    }
}

#[test]
fn a_batch_split_over_threads_trains_as_the_whole_batch() {
    let fixture = Fixture::new();
    let run = |threads: usize| {
        let config = DistillConfig { batch: 2, threads, ..config(Losses::AdmSdm2d) };
        let learner = fixture.learner(&config);
        let mut nets = fixture.networks(&config);
        let mut optim = Optimizers::new(&config.optim);
        let reports: Vec<_> =
            (0..2).map(|step| learner.iterate(step, &mut nets, &mut optim, &fixture.data(step, 2)).unwrap()).collect();
        (reports, nets)
    };
    let (whole, whole_nets) = run(1);
    let (split, split_nets) = run(2);
    for (a, b) in whole.iter().zip(&split) {
        assert_eq!(a.rollout_step, b.rollout_step);
        let close = |x: Option<f64>, y: Option<f64>| (x.unwrap() - y.unwrap()).abs() <= 1e-4 * (1.0 + x.unwrap().abs());
        assert!(close(a.loss_adm, b.loss_adm) && close(a.loss_sdm, b.loss_sdm), "{a:?}\nvs\n{b:?}");
        assert!(close(a.loss_fake, b.loss_fake) && close(a.loss_disc, b.loss_disc), "{a:?}\nvs\n{b:?}");
        assert!((a.grad_norm_student - b.grad_norm_student).abs() <= 1e-3 * a.grad_norm_student);
    }
    let conv = |u: &avdm_model::UNetMotionModel| u.down_blocks[0].resnets[0].conv1.weight.val();
    assert!(max_diff(conv(&whole_nets.student), conv(&split_nets.student)) < 1e-5);
    assert!(max_diff(conv(&whole_nets.fake_score), conv(&split_nets.fake_score)) < 1e-5);
    assert!(max_diff(whole_nets.head.out.weight.val(), split_nets.head.out.weight.val()) < 1e-5);
}

#[test]
fn a_batch_split_over_devices_trains_as_the_whole_batch() {
    // The same CPU twice stands in for two GPUs: the shards alternate between the devices,
    // each with its own replica of the networks, and the gradients meet on the first.
    let fixture = Fixture::new();
    let run = |replicas: usize| {
        let config = DistillConfig { batch: 3, threads: 1, ..config(Losses::AdmSdm2d) };
        let mut nets = fixture.networks(&config);
        let replicas = (0..replicas).map(|_| FrozenReplica::new(&nets, &fixture.device)).collect();
        let learner = Learner { replicas, ..fixture.learner(&config) };
        let mut optim = Optimizers::new(&config.optim);
        let report = learner.iterate(0, &mut nets, &mut optim, &fixture.data(0, 3)).unwrap();
        (report, nets)
    };
    let (whole, whole_nets) = run(0);
    let (split, split_nets) = run(1);
    let close = |x: Option<f64>, y: Option<f64>| (x.unwrap() - y.unwrap()).abs() <= 1e-4 * (1.0 + x.unwrap().abs());
    assert!(
        close(whole.loss_adm, split.loss_adm) && close(whole.loss_disc, split.loss_disc),
        "{whole:?}\nvs\n{split:?}"
    );
    assert!(
        close(whole.loss_sdm, split.loss_sdm) && close(whole.loss_fake, split.loss_fake),
        "{whole:?}\nvs\n{split:?}"
    );
    let conv = |u: &avdm_model::UNetMotionModel| u.down_blocks[0].resnets[0].conv1.weight.val();
    assert!(max_diff(conv(&whole_nets.student), conv(&split_nets.student)) < 1e-5);
    assert!(max_diff(conv(&whole_nets.fake_score), conv(&split_nets.fake_score)) < 1e-5);
    assert!(max_diff(whole_nets.head.out.weight.val(), split_nets.head.out.weight.val()) < 1e-5);
}

#[test]
fn a_lora_fake_score_starts_as_the_2d_teacher_and_trains_its_adapters_only() {
    let fixture = Fixture::new();
    let full_config = config(Losses::AdmSdm2d);
    let mut config = full_config.clone();
    config.fake_score.lora_rank = 2;
    let learner = fixture.learner(&config);
    let mut nets = fixture.networks(&config);
    let full = fixture.networks(&full_config);
    let (lora_values, full_values) = (trained_values(&nets.fake_score), trained_values(&full.fake_score));
    assert!(lora_values > 0 && lora_values * 10 < full_values, "LoRA trains {lora_values} of {full_values} values");
    let to_q =
        |u: &avdm_model::UNetMotionModel| u.down_blocks[2].attentions[0].transformer_blocks[0].attn2.to_q.weight.val();
    let conv = |u: &avdm_model::UNetMotionModel| u.down_blocks[0].resnets[0].conv1.weight.val();
    assert_eq!(max_diff(to_q(&nets.fake_score), to_q(&nets.teacher_2d)), 0.0, "B starts at zero");
    let mut optim = Optimizers::new(&config.optim);
    for step in 0..2 {
        let report = learner.iterate(step, &mut nets, &mut optim, &fixture.data(step, 1)).unwrap();
        assert_eq!(report.updates, [1, 2, 2]);
    }
    assert!(max_diff(to_q(&nets.fake_score), to_q(&nets.teacher_2d)) > 0.0, "the adapters moved");
    assert_eq!(max_diff(conv(&nets.fake_score), conv(&nets.teacher_2d)), 0.0, "non-targets stay the teacher's");
    assert_eq!(max_diff(to_q(&full.teacher_2d), to_q(&nets.teacher_2d)), 0.0, "the 2D teacher is untouched");
}

#[test]
fn with_a_swapped_2d_teacher_the_fake_score_starts_as_the_setting_says() {
    let fixture = Fixture::new();
    let device = &fixture.device;
    // Another image model of the family: the teacher's 2D UNet with one weight changed.
    let own_2d = fixture.video.unet.without_motion_modules();
    let mut swapped = own_2d.clone();
    let conv = |u: &avdm_model::UNetMotionModel| u.down_blocks[0].resnets[0].conv1.weight.val();
    swapped.down_blocks[0].resnets[0].conv1.weight =
        swapped.down_blocks[0].resnets[0].conv1.weight.clone().map(|w| w + 0.5);
    let networks = |init| {
        let mut config = config(Losses::AdmSdm2d);
        config.fake_score.init = init;
        let (text, unet) = (fixture.video.text_encoder.clone(), fixture.video.unet.clone());
        Networks::new(text, unet, Some(swapped.clone()), &config, device)
    };
    let paper = networks(FakeScoreInit::Teacher2d);
    assert_eq!(max_diff(conv(&paper.fake_score), conv(&swapped)), 0.0, "the paper's: the 2D teacher");
    assert_eq!(max_diff(conv(&paper.teacher_2d), conv(&swapped)), 0.0);
    let student = networks(FakeScoreInit::Student);
    assert_eq!(max_diff(conv(&student.fake_score), conv(&own_2d)), 0.0, "the student's own 2D UNet");
    assert_eq!(max_diff(conv(&student.teacher_2d), conv(&swapped)), 0.0, "the real score is still the swapped one");
    assert!(student.fake_score.num_params() < fixture.video.unet.num_params(), "a 2D UNet, without motion modules");
    // The video-SDM ablation's fake score is a video model whatever the setting.
    let mut video_sdm = config(Losses::AdmSdmVideo);
    video_sdm.fake_score.init = FakeScoreInit::Student;
    assert_eq!(FakeScoreBase::of(&video_sdm), FakeScoreBase::VideoTeacher);
}
