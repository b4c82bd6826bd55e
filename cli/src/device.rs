//! `--device auto|cpu|wgpu|vulkan|cuda[:N]`: the Burn device a command runs on.

use anyhow::bail;
use avdm_model::precision::Precision;
use burn::prelude::Device;

/// Resolves a `--device` value. `auto` takes the first GPU backend this binary was built with
/// (`cuda` when the NVIDIA driver answers with a GPU, then `wgpu`) and falls back to the CPU
/// (flex).
pub fn parse_device(name: &str) -> anyhow::Result<Device> {
    let (kind, index) = match name.split_once(':') {
        Some((kind, i)) => match i.parse::<usize>() {
            Ok(i) => (kind, i),
            Err(_) => bail!("--device {name}: `{i}` is not a device index"),
        },
        None => (name, 0),
    };
    match kind {
        "cpu" | "flex" => Ok(Device::flex()),
        "auto" => Ok(auto_device()),
        "cuda" => cuda(index),
        "wgpu" | "vulkan" => wgpu(kind, index),
        other => bail!("--device {other}: unknown device (use auto, cpu, wgpu, vulkan or cuda[:N])"),
    }
}

/// Resolves a comma-separated `--device` list (`cuda:0,cuda:1`): the devices a data-parallel
/// command splits its batch over, the first holding the networks. A name listed twice is the
/// same device twice (started once: a GPU backend refuses a second start of one device).
pub fn parse_devices(list: &str) -> anyhow::Result<Vec<Device>> {
    each_started_once(list, parse_device)
}

/// The devices of a comma-separated list, `start` called once per distinct name.
fn each_started_once(list: &str, mut start: impl FnMut(&str) -> anyhow::Result<Device>) -> anyhow::Result<Vec<Device>> {
    let mut started: Vec<(&str, Device)> = Vec::new();
    for name in list.split(',').map(str::trim) {
        let device = match started.iter().find(|(seen, _)| *seen == name) {
            Some((_, device)) => device.clone(),
            None => start(name)?,
        };
        started.push((name, device));
    }
    Ok(started.into_iter().map(|(_, device)| device).collect())
}

/// Makes `precision` (`--dtype`) the default float dtype of `device`: before anything is
/// created there.
pub fn configure_dtype(precision: Precision, device: &Device) -> anyhow::Result<()> {
    precision.configure(device).map_err(|e| anyhow::anyhow!("--dtype {precision}: {e}"))
}

/// Worker threads for data-parallel CPU training on the device `--device name` picks: the
/// machine's cores on the CPU (whose backend runs most operations on one thread), one on a GPU.
pub fn default_threads(name: &str) -> usize {
    let gpu_built = cfg!(any(feature = "cuda", feature = "wgpu"));
    let on_cpu = matches!(name, "cpu" | "flex") || (name == "auto" && !gpu_built);
    if on_cpu { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { 1 }
}

fn auto_device() -> Device {
    #[cfg(feature = "cuda")]
    if crate::cuda_probe::probe_cuda(0).is_ok() {
        return Device::cuda(0);
    }
    #[cfg(feature = "wgpu")]
    return Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    #[cfg(not(feature = "wgpu"))]
    Device::flex()
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> anyhow::Result<Device> {
    crate::cuda_probe::probe_cuda(index)?;
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> anyhow::Result<Device> {
    bail!("--device cuda: this avdm was built without CUDA support (rebuild with `--features cuda`)")
}

#[cfg(feature = "wgpu")]
fn wgpu(kind: &str, index: usize) -> anyhow::Result<Device> {
    use burn::tensor::DeviceKind;
    use burn::tensor::wgpu::WgpuBackend;
    let device_kind = if index == 0 { DeviceKind::DefaultDevice } else { DeviceKind::DiscreteGpu(index) };
    let api = if kind == "vulkan" { WgpuBackend::Vulkan } else { WgpuBackend::Auto };
    Device::wgpu_options()
        .device_kind(device_kind)
        .graphics_api(api)
        .init()
        .map_err(|e| anyhow::anyhow!("--device {kind}: cannot start wgpu: {e}"))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(kind: &str, _index: usize) -> anyhow::Result<Device> {
    bail!("--device {kind}: this avdm was built without wgpu support (rebuild with `--features wgpu`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_or_explain() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device("auto").is_ok());
        let err = parse_device("tpu").unwrap_err().to_string();
        assert!(err.contains("unknown device"), "{err}");
        assert_eq!(parse_devices("cpu, cpu").unwrap(), vec![Device::flex(), Device::flex()]);
        assert!(parse_devices("cpu,tpu").unwrap_err().to_string().contains("unknown device"));
        let err = parse_device("cuda:x").unwrap_err().to_string();
        assert!(err.contains("not a device index"), "{err}");
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:1").unwrap_err().to_string().contains("without CUDA"));
    }

    #[test]
    fn each_listed_device_is_started_once() {
        let mut starts = Vec::new();
        let devices = each_started_once("cpu, flex,cpu ,cpu", |name| {
            starts.push(name.to_string());
            parse_device(name)
        })
        .unwrap();
        assert_eq!(devices.len(), 4);
        assert_eq!(starts, ["cpu", "flex"]);
    }

    /// A GPU listed twice is started once (a second start of a wgpu device is an error).
    #[cfg(feature = "wgpu")]
    #[test]
    fn a_gpu_listed_twice_is_one_device() {
        let devices = parse_devices("vulkan,vulkan").expect("Vulkan (lavapipe on a machine without a GPU)");
        assert_eq!(devices[0], devices[1]);
    }
}
