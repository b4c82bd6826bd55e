//! The UNet's encoder half and the ADM discriminator that reads it: one feature map per
//! resolution, computed by the encoder alone and mixing frames through the motion modules; a
//! trainable head on three scales whose gradient reaches the clip but not the frozen encoder.

use avdm_model::UNetMotionModel;
use avdm_train::toy::preset;
use burn::prelude::*;
use burn::tensor::Distribution;

fn inputs(device: &Device, frames: usize) -> (Tensor<5>, Tensor<1>, Tensor<3>) {
    let sample = Tensor::<5>::random([2, 3, frames, 32, 32], Distribution::Normal(0.0, 1.0), device);
    let text = Tensor::<3>::random([2 * frames, 8, preset::TEXT_WIDTH], Distribution::Normal(0.0, 1.0), device);
    (sample, Tensor::from_floats([500.0, 20.0], device), text)
}

fn max_diff(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
    (a.clone() - b.clone()).abs().max().into_scalar::<f32>()
}

#[test]
fn one_map_per_resolution_from_the_encoder_alone() {
    let device = Device::flex();
    let model = UNetMotionModel::new(&preset::unet_config(true), &device);
    let (sample, t, text) = inputs(&device, 3);
    let features = model.encoder_features(sample.clone(), t.clone(), text.clone()).unwrap();
    let dims: Vec<[usize; 4]> = features.iter().map(|f| f.dims()).collect();
    assert_eq!(dims, vec![[6, 16, 32, 32], [6, 32, 16, 16], [6, 32, 8, 8]]);

    // The decoder half plays no part...
    let fresh = UNetMotionModel::new(&preset::unet_config(true), &device);
    let mut other_decoder = model.clone();
    other_decoder.up_blocks = fresh.up_blocks.clone();
    other_decoder.conv_out = fresh.conv_out.clone();
    let same = other_decoder.encoder_features(sample.clone(), t.clone(), text.clone()).unwrap();
    for (a, b) in features.iter().zip(&same) {
        assert_eq!(max_diff(a, b), 0.0);
    }
    // ...the mid block does (the coarsest map is its output), and so do the timestep and text.
    let mut other_mid = model.clone();
    other_mid.mid_block = fresh.mid_block.clone();
    let changed = other_mid.encoder_features(sample.clone(), t.clone(), text.clone()).unwrap();
    assert_eq!(max_diff(&features[1], &changed[1]), 0.0);
    assert!(max_diff(&features[2], &changed[2]) > 1e-3);
    let later = model.encoder_features(sample.clone(), t.clone() + 300.0, text.clone()).unwrap();
    assert!(max_diff(&features[0], &later[0]) > 1e-3, "the timestep is ignored");
    let other_text = model.encoder_features(sample, t, text.clone() * -1.0).unwrap();
    assert!(max_diff(&features[2], &other_text[2]) > 1e-3, "the text is ignored");
}

#[test]
fn motion_modules_mix_the_frames() {
    let device = Device::flex();
    let model = UNetMotionModel::new(&preset::unet_config(true), &device);
    let (sample, t, text) = inputs(&device, 3);
    let before = model.encoder_features(sample.clone(), t.clone(), text.clone()).unwrap();
    // Change frame 0 of each clip; spatial layers alone would leave frames 1 and 2 unchanged.
    let bump = Tensor::<1>::from_floats([1.0, 0.0, 0.0], &device).reshape([1, 1, 3, 1, 1]);
    let after = model.encoder_features(sample + bump, t, text).unwrap();
    for level in 0..3 {
        let [_, c, h, w] = before[level].dims();
        let per_frame = |f: &Tensor<4>| f.clone().reshape([2, 3, c * h * w]);
        let change = (per_frame(&before[level]) - per_frame(&after[level])).abs().max_dim(2).reshape([2, 3]);
        let change: Vec<f32> = change.into_data().try_to_vec::<f32>().unwrap();
        for clip in change.chunks(3) {
            assert!(clip.iter().all(|&c| c > 1e-4), "level {level}: a frame's features did not change: {clip:?}");
        }
    }
}

#[test]
fn the_discriminator_head_reads_three_scales_and_passes_gradients_to_the_clip() {
    use avdm_train::method::discriminator::{DiscriminatorHead, HeadConfig, generator_loss, logits};
    use burn::module::Module;
    let device = Device::flex().autodiff();
    let teacher = UNetMotionModel::new(&preset::unet_config(true), &device).no_grad();
    let head = DiscriminatorHead::new(&teacher, &HeadConfig { channels: 16, groups: 8 }, 0, &device);
    assert_eq!(head.branches.len(), 3);
    let (sample, t, text) = inputs(&device, 3);
    let sample = sample.require_grad();
    let out = logits(&teacher, &head, sample.clone(), t, text).unwrap();
    assert_eq!(out.dims(), [6, 1, 8, 8], "one logit per frame and coarsest location");
    let grads = generator_loss(out).backward();
    let to_clip = sample.grad(&grads).expect("the loss reaches the clip");
    assert!(to_clip.abs().max().into_scalar::<f32>() > 0.0);
    assert!(head.out.weight.val().grad(&grads).is_some(), "the head trains");
    let frozen = &teacher.down_blocks[0].resnets[0].conv1.weight;
    assert!(frozen.val().grad(&grads).is_none(), "the teacher's encoder stays frozen");
}

#[test]
fn a_few_head_steps_tell_real_from_generated_clips() {
    use avdm_model::sched::NoiseSchedule;
    use avdm_train::method::adm::{AdmTimesteps, Judged, discriminator_adm_loss};
    use avdm_train::method::discriminator::{DiscriminatorHead, HeadConfig};
    use avdm_train::toy::world::{Split, ToyWorld};
    use burn::module::Module;
    use burn::optim::{AdamWConfig, GradientsParams};
    let device = Device::flex().autodiff();
    let teacher = UNetMotionModel::new(&preset::unet_config(true), &device).no_grad();
    let mut head = DiscriminatorHead::new(&teacher, &HeadConfig { channels: 16, groups: 8 }, 0, &device);
    let mut optim = AdamWConfig::new().init();
    let world = ToyWorld { frames: 4, ..ToyWorld::default() };
    let schedule = NoiseSchedule::animatediff();
    let range = AdmTimesteps::default();
    let text = Tensor::<3>::zeros([8, 8, preset::TEXT_WIDTH], &device);
    let batch = |clips: Tensor<5>, step: usize| Judged {
        noise: Tensor::random(clips.dims(), Distribution::Normal(0.0, 1.0), &device),
        clips,
        timesteps: vec![range.t_min + step % 7, range.t_max / 10 + step],
        text: text.clone(),
    };
    let mut losses = Vec::new();
    for step in 0..25 {
        let (real, _) = world.batch(0, Split::Train, 2 * step as u64, 2, &device);
        // "Generated": blurry grey clips, easy to tell apart.
        let fake = Tensor::<5>::random(real.dims(), Distribution::Normal(0.0, 0.2), &device);
        let (loss, _) =
            discriminator_adm_loss(&teacher, &schedule, &head, batch(real, step), batch(fake, step)).unwrap();
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        head = optim.step(1e-3, head, grads);
    }
    let (first, last) = (losses[..5].iter().sum::<f32>() / 5.0, losses[20..].iter().sum::<f32>() / 5.0);
    assert!(last < 0.7 * first, "the discriminator did not learn: {first} -> {last}");
}
