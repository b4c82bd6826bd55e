//! Reduced precision (bf16, f16): the weights and activations of the UNet and the text
//! encoder in the device's default float dtype, with the parts that need f32 kept in f32 as
//! diffusers does: the timestep values and their sinusoidal embedding, and the VAE decode.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, DeviceConfig, FloatDType};
use serde::{Deserialize, Serialize};

/// The float precision a run computes in (`--dtype`, a distillation's `dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// bfloat16: CUDA's native half type for training and sampling; emulated on the CPU.
    Bf16,
    /// IEEE half: on wgpu it needs the adapter's f16 support.
    F16,
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// `f32`, `bf16` or `f16`.
    fn from_str(name: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(name.into()))
            .map_err(|_| format!("{name}: not one of f32, bf16, f16"))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

impl Precision {
    pub fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// Makes this the default float dtype of `device` (and of its autodiff twin). A device's
    /// defaults are fixed by the first tensor made there: configure it before anything else.
    /// Succeeds at once when the device already computes in this precision.
    pub fn configure(self, device: &Device) -> Result<(), String> {
        let dtype = self.float_dtype();
        if device.settings().float_dtype == dtype {
            return Ok(());
        }
        if !device.supports_dtype(DType::from(dtype)) {
            return Err(format!("{device:?} does not compute in {self} (bf16 is for CUDA; f32 runs everywhere)"));
        }
        device.clone().configure(DeviceConfig::default().float_dtype(dtype)).map_err(|e| {
            format!("cannot make {self} the default of {device:?} (something was made there first): {e:?}")
        })
    }
}

/// Casts every float parameter of `module` to `dtype`; parameters that required a gradient
/// still do (as fresh leaves).
pub fn with_float_dtype<M: Module>(module: M, dtype: FloatDType) -> M {
    module.map(&mut CastFloats(dtype))
}

struct CastFloats(FloatDType);

impl ModuleMapper for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|tensor| {
            let tracked = tensor.is_require_grad();
            let cast = tensor.cast(dtype).detach();
            if tracked { cast.require_grad() } else { cast }
        })
    }
}

/// Diffusion timesteps `(N,)` in f32 whatever the device's default dtype (bf16 holds integers
/// exactly only up to 256: timestep 999 would become 1000).
pub fn timestep_column(timesteps: &[usize], device: &Device) -> Tensor<1> {
    let values: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
    Tensor::from_data(TensorData::new(values, [timesteps.len()]), (device, DType::F32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn casts_parameters_and_keeps_them_trainable() {
        let device = Device::flex().autodiff();
        let linear: Linear = LinearConfig::new(3, 2).init(&device);
        let half = with_float_dtype(linear.clone(), FloatDType::BF16);
        assert_eq!(half.weight.val().dtype(), DType::BF16);
        assert!(half.weight.val().is_require_grad());
        assert_eq!(half.weight.id, linear.weight.id, "the same parameter");
        let back = with_float_dtype(half, FloatDType::F32);
        let diff = (back.weight.val() - linear.weight.val()).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-2, "bf16 keeps 8 bits of mantissa: {diff}");
    }

    #[test]
    fn precisions_parse_and_print_their_names() {
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert!("f64".parse::<Precision>().unwrap_err().contains("bf16"));
        // The test device computes in f32 already: nothing to change.
        assert_eq!(Precision::F32.configure(&Device::flex()), Ok(()));
    }

    #[test]
    fn timesteps_stay_exact() {
        let t = timestep_column(&[999, 1, 257], &Device::flex());
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(t.into_data().try_to_vec::<f32>().unwrap(), vec![999.0, 1.0, 257.0]);
    }
}
