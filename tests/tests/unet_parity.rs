//! The video UNet against diffusers 0.42.1 on the same tiny weights (tests/fixtures/tiny_unet).

use avdm_import::{AdapterSource, LoadOptions, LoadedUNet, load_unet_2d, load_unet_motion, load_unet_motion_folder};
use avdm_model::unet::MotionAdapterConfig;
use avdm_tests::{assert_close, device, fixture, fixture_tensors, max_abs_diff, tensor};
use burn::prelude::*;

const TOLERANCE: f32 = 1e-4;

fn folders() -> LoadedUNet {
    let adapter = AdapterSource::Folder(fixture("tiny_unet/motion_adapter"));
    load_unet_motion(&fixture("tiny_unet/unet"), &adapter, &LoadOptions::default(), &device())
        .expect("tiny unet + adapter")
}

fn run(unet: &LoadedUNet, case: &str) -> Tensor<5> {
    let io = fixture_tensors("tiny_unet/io.safetensors");
    unet.model
        .forward(
            tensor(&io, &format!("{case}_sample")),
            tensor(&io, &format!("{case}_timestep")),
            tensor(&io, &format!("{case}_text")),
        )
        .expect("valid inputs")
}

fn expected(key: &str) -> Tensor<5> {
    tensor(&fixture_tensors("tiny_unet/io.safetensors"), key)
}

#[test]
fn unet_and_adapter_folders_match_diffusers() {
    let unet = folders();
    println!("{}", unet.report);
    assert!(unet.report.unused.is_empty(), "unused keys: {:?}", unet.report.unused);
    assert_eq!(unet.report.positions_checked, 7, "one position table per motion transformer block");
    assert!(unet.model.has_motion_modules());
    assert_close("one clip, 4 frames, 8x8", run(&unet, "a"), expected("a_out"), TOLERANCE);
    assert_close("two clips, 3 frames, 7x7, per-clip timesteps", run(&unet, "b"), expected("b_out"), TOLERANCE);
}

#[test]
fn combined_folder_matches_diffusers() {
    let unet = load_unet_motion_folder(&fixture("tiny_unet/unet_motion"), &LoadOptions::default(), &device())
        .expect("UNetMotionModel folder");
    assert!(unet.report.unused.is_empty(), "unused keys: {:?}", unet.report.unused);
    assert_close("combined folder", run(&unet, "a"), expected("a_out"), TOLERANCE);
    assert_eq!(unet.config, folders().config, "both layouts describe the same network");
}

#[test]
fn original_checkpoint_gives_identical_outputs() {
    let config = MotionAdapterConfig::from_json(
        &std::fs::read_to_string(fixture("tiny_unet/motion_adapter/config.json")).unwrap(),
    )
    .unwrap();
    let from_file = |file: &str, config| {
        let adapter = AdapterSource::Checkpoint { path: fixture(&format!("tiny_unet/{file}")), config };
        load_unet_motion(&fixture("tiny_unet/unet"), &adapter, &LoadOptions::default(), &device())
            .expect("unet + .ckpt")
    };
    let from_ckpt = |config| from_file("mm_tiny_v2.ckpt", config);
    let ckpt = from_ckpt(Some(config.clone()));
    assert_eq!(ckpt.report.positions_checked, 7);
    let diff = max_abs_diff(run(&ckpt, "a"), run(&folders(), "a"));
    assert_eq!(diff, 0.0, ".ckpt and folders must give identical outputs");
    let wrapped = from_file("mm_tiny_v2_wrapped.ckpt", Some(config));
    assert_eq!(max_abs_diff(run(&wrapped, "a"), run(&ckpt, "a")), 0.0, "a `state_dict` wrapper changes nothing");
    // Without a config the layout is read from the tensors (heads default to 8, so give the
    // tiny model's 2 heads back and compare the rest).
    let inferred = from_ckpt(None).config.motion.expect("motion config");
    let mut want = ckpt.config.motion.clone().unwrap();
    want.num_attention_heads = vec![8; 2];
    want.reverse_num_attention_heads = vec![8; 2];
    assert_eq!(inferred, want);
}

#[test]
fn half_precision_and_sharded_files_load_into_f32() {
    for (dir, key) in
        [("unet_motion_fp16_sharded", "a_out_unet_motion_fp16_sharded"), ("unet_motion_bf16", "a_out_unet_motion_bf16")]
    {
        let unet = load_unet_motion_folder(&fixture(&format!("tiny_unet/{dir}")), &LoadOptions::default(), &device())
            .expect(dir);
        assert_eq!(unet.model.conv_in.weight.val().dtype(), burn::tensor::DType::F32);
        assert_close(dir, run(&unet, "a"), expected(key), TOLERANCE);
    }
    let adapter = AdapterSource::Folder(fixture("tiny_unet/motion_adapter_fp16"));
    let options = LoadOptions { variant: Some("fp16".into()), ..LoadOptions::default() };
    // The base UNet has no fp16 variant: the variant applies to the adapter folder only here.
    let err = load_unet_motion(&fixture("tiny_unet/unet"), &adapter, &options, &device()).unwrap_err();
    assert!(err.to_string().contains("diffusion_pytorch_model.fp16.safetensors"), "{err}");
    let unet = load_unet_motion(&fixture("tiny_unet/unet"), &adapter, &LoadOptions::default(), &device())
        .expect("fp16 variant found by default");
    assert_close("fp16 adapter variant", run(&unet, "a"), expected("a_out_adapter_fp16"), TOLERANCE);
}

#[test]
fn a_requested_dtype_is_honoured() {
    let options = LoadOptions { dtype: burn::tensor::DType::F16, ..LoadOptions::default() };
    let unet = load_unet_2d(&fixture("tiny_unet/unet"), &options, &device()).expect("2D unet in f16");
    assert_eq!(unet.model.conv_in.weight.val().dtype(), burn::tensor::DType::F16);
    let q = &unet.model.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight;
    assert_eq!(q.val().dtype(), burn::tensor::DType::F16);
}

#[test]
fn unet_2d_matches_diffusers() {
    let unet = load_unet_2d(&fixture("tiny_unet/unet"), &LoadOptions::default(), &device()).expect("2D unet");
    assert!(!unet.model.has_motion_modules());
    let io = fixture_tensors("tiny_unet/io.safetensors");
    let out = unet
        .model
        .forward_2d(tensor(&io, "unet2d_sample"), tensor(&io, "unet2d_timestep"), tensor(&io, "unet2d_text"))
        .expect("valid inputs");
    assert_close("2D UNet", out, tensor(&io, "unet2d_out"), TOLERANCE);
}

#[test]
fn too_many_frames_is_an_error() {
    let unet = folders();
    let d = device();
    let err = unet
        .model
        .forward(Tensor::zeros([1, 4, 33, 8, 8], &d), Tensor::zeros([1], &d), Tensor::zeros([33, 7, 16], &d))
        .unwrap_err();
    assert_eq!(err.to_string(), "33 frames exceed the motion modules' 32 positions");
    let err = unet
        .model
        .forward(Tensor::zeros([1, 4, 2, 8, 8], &d), Tensor::zeros([1], &d), Tensor::zeros([1, 7, 16], &d))
        .unwrap_err();
    assert!(err.to_string().contains("expected 2"), "{err}");
}
