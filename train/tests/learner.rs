//! AVDM2 iterations on the tiny toy networks: the update counts follow the two-timescale
//! setting and the ablations, the frozen networks stay bit-identical, the trained ones move.

use avdm_import::ClipTokenizer;
use avdm_model::sched::{NoiseSchedule, PredictionType, StudentConfig, StudentSampler};
use avdm_train::discriminator::HeadConfig;
use avdm_train::distill_config::{DistillConfig, Losses};
use avdm_train::learner::{IterationData, Learner, Networks, Optimizers, Parameterisation};
use avdm_train::teacher::{init_image_model, init_motion_model};
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
    c
}

#[test]
fn iterations_follow_the_two_timescale_setting_and_keep_the_teachers_frozen() {
    let tmp = tempfile::tempdir().unwrap();
    write_tokenizer(&tmp.path().join("tokenizer")).unwrap();
    let tokenizer = ClipTokenizer::from_folder(&tmp.path().join("tokenizer")).unwrap();
    let device = Device::flex().autodiff();
    let image = init_image_model(&device);
    let video = init_motion_model(&image, &preset::unet_config(true), &device).unwrap();
    let world = ToyWorld { frames: 3, ..ToyWorld::default() };
    let parameterisation = |schedule| Parameterisation { schedule, prediction: PredictionType::VPrediction };
    for (losses, updates) in [
        (Losses::AdmSdm2d, [1, 2, 2]),
        (Losses::AdmOnly, [1, 0, 2]),
        (Losses::SdmOnly, [1, 2, 0]),
        (Losses::AdmSdmVideo, [1, 2, 2]),
    ] {
        let config = config(losses);
        let student_config = StudentConfig { prediction_type: PredictionType::VPrediction, ..StudentConfig::default() };
        let learner = Learner {
            config: &config,
            tokenizer: &tokenizer,
            video: parameterisation(NoiseSchedule::animatediff()),
            image: parameterisation(NoiseSchedule::stable_diffusion()),
            sampler: StudentSampler::new(NoiseSchedule::animatediff(), &student_config).unwrap(),
            device: device.clone(),
        };
        let mut nets =
            Networks::new(video.text_encoder.clone(), video.unet.clone(), None, &config.head, losses, 0, &device);
        assert_eq!(nets.fake_score.has_motion_modules(), losses == Losses::AdmSdmVideo);
        let before = nets.clone();
        let mut optim = Optimizers::new(&config.optim);
        for step in 0..2 {
            let real = (0..2)
                .map(|k| {
                    let (clips, specs) = world.batch(0, Split::Train, (4 * step + k) as u64, 1, &device);
                    (clips, specs.iter().map(|s| s.attributes.caption()).collect())
                })
                .collect();
            let data = IterationData { prompts: vec!["a red square moving left".into()], real };
            let report = learner.iterate(step, &mut nets, &mut optim, &data).unwrap();
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
