//! Reduced precision (bf16, f16): the weights and activations of the UNet and the text
//! encoder in the device's default float dtype, with the parts that need f32 kept in f32 as
//! diffusers does: the timestep values and their sinusoidal embedding, and the VAE decode.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

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
    fn timesteps_stay_exact() {
        let t = timestep_column(&[999, 1, 257], &Device::flex());
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(t.into_data().to_vec::<f32>().unwrap(), vec![999.0, 1.0, 257.0]);
    }
}
