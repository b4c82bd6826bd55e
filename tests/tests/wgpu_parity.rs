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

fn wgpu_device() -> Device {
    Device::wgpu_options()
        .device_kind(DeviceKind::DefaultDevice)
        .graphics_api(WgpuBackend::Vulkan)
        .init()
        .expect("a Vulkan device (install mesa-vulkan-drivers and libvulkan1 for lavapipe)")
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
