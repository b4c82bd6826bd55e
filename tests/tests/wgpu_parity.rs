//! The tiny UNet parity of `unet_parity` on Burn's wgpu backend (built with `--features wgpu`):
//! on a machine without a GPU it runs on Mesa's lavapipe (Vulkan on the CPU; Debian
//! `mesa-vulkan-drivers` + `libvulkan1`). Same weights and diffusers outputs as on the CPU;
//! the tolerance is 1e-4, as there.
#![cfg(feature = "wgpu")]

use avdm_import::{AdapterSource, LoadOptions, load_unet_motion};
use avdm_tests::{assert_close, fixture, fixture_tensors, tensor};
use burn::prelude::*;
use burn::tensor::DeviceKind;
use burn::tensor::wgpu::WgpuBackend;
use std::sync::OnceLock;

/// The Vulkan device, initialised once per process: the tests run on parallel threads, and a
/// second initialisation of the same device is refused ("Service already initialized").
fn wgpu_device() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            Device::wgpu_options()
                .device_kind(DeviceKind::DefaultDevice)
                .graphics_api(WgpuBackend::Vulkan)
                .init()
                .expect("a Vulkan device (install mesa-vulkan-drivers and libvulkan1 for lavapipe)")
        })
        .clone()
}

#[test]
fn tiny_unet_matches_diffusers_on_wgpu() {
    let device = wgpu_device();
    let adapter = AdapterSource::Folder(fixture("tiny_unet/motion_adapter"));
    let unet = load_unet_motion(&fixture("tiny_unet/unet"), &adapter, &LoadOptions::default(), &device)
        .expect("tiny unet + adapter on wgpu");
    let io = fixture_tensors("tiny_unet/io.safetensors");
    for (case, what) in [("a", "one clip, 4 frames, 8x8"), ("b", "two clips, 3 frames, 7x7")] {
        let input = |name: &str| format!("{case}_{name}");
        let out = unet
            .model
            .forward(
                tensor::<5>(&io, &input("sample")).to_device(&device),
                tensor::<1>(&io, &input("timestep")).to_device(&device),
                tensor::<3>(&io, &input("text")).to_device(&device),
            )
            .expect("valid inputs");
        let expected = tensor::<5>(&io, &input("out"));
        assert_close(&format!("wgpu: {what}"), out.to_device(&avdm_tests::device()), expected, 1e-4);
    }
}

/// Chunked attention (a backend extension with a hand-written backward pass) on the cubecl
/// backend, with autodiff: output and gradients against softmax attention on the CPU.
#[test]
fn chunked_attention_and_its_gradients_match_on_wgpu() {
    use avdm_model::kernels::chunked_attention::chunked_attention;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax;

    let cpu = Device::flex().autodiff();
    let gpu = wgpu_device().autodiff();
    let normal = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.5), &cpu);
    let (q, k, v, weight) =
        (normal([2, 2, 33, 8]), normal([2, 2, 20, 8]), normal([2, 2, 20, 8]), normal([2, 2, 33, 8]));
    let run = |device: &Device, chunked: bool| {
        let track = |x: &Tensor<4>| x.clone().detach().to_device(device).require_grad();
        let (q, k, v) = (track(&q), track(&k), track(&v));
        let out = if chunked {
            chunked_attention(q.clone(), k.clone(), v.clone(), 6)
        } else {
            softmax(q.clone().matmul(k.clone().swap_dims(2, 3)) / (8f32).sqrt(), 3).matmul(v.clone())
        };
        let grads = (out.clone() * weight.clone().to_device(device)).sum().backward();
        let grad = |x: &Tensor<4>| x.grad(&grads).expect("a gradient").to_device(&avdm_tests::device());
        [out.inner().to_device(&avdm_tests::device()), grad(&q), grad(&k), grad(&v)]
    };
    let expected = run(&cpu, false);
    for (name, (got, want)) in ["out", "dq", "dk", "dv"].iter().zip(run(&gpu, true).into_iter().zip(expected)) {
        assert_close(&format!("wgpu chunked attention: {name}"), got, want, 1e-4);
    }
}
