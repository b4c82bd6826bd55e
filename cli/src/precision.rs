//! `--dtype f32|bf16|f16`: the float precision of the UNet and the text encoder (weights and
//! activations); the VAE decodes in f32 whatever it is.

use anyhow::{anyhow, bail};
use avdm_import::{LoadOptions, LoadedPipeline};
use burn::prelude::Device;
use burn::tensor::{DType, DeviceConfig, FloatDType};
use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    /// bfloat16: CUDA's native half type for training and sampling; emulated on the CPU.
    Bf16,
    /// IEEE half: needs the GPU's f16 support on wgpu.
    F16,
}

impl Precision {
    pub fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// Makes this the default float dtype of `device`: call it before anything is created there.
    pub fn configure(self, device: &mut Device) -> anyhow::Result<()> {
        if self == Precision::F32 {
            return Ok(());
        }
        let dtype = self.float_dtype();
        if !device.supports_dtype(DType::from(dtype)) {
            bail!("--dtype {self:?}: the device {device:?} does not compute in it (try bf16 on CUDA, or f32)");
        }
        device
            .configure(DeviceConfig::default().float_dtype(dtype))
            .map_err(|e| anyhow!("--dtype {self:?}: cannot set the device's default dtype: {e:?}"))
    }

    /// Load options that read the weights in this precision.
    pub fn load_options(self, variant: Option<String>) -> LoadOptions {
        LoadOptions { dtype: self.float_dtype().into(), variant }
    }

    /// The loaded pipeline's UNet and text encoder in this precision, its VAE in f32.
    pub fn apply(self, mut loaded: LoadedPipeline) -> LoadedPipeline {
        loaded.pipeline = loaded.pipeline.with_dtype(self.float_dtype());
        loaded
    }
}
