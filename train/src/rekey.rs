//! Independent copies of a module.
//!
//! `Module::clone` keeps the parameter ids, and Burn keys gradients and optimizer state by id:
//! a student cloned from its teacher would be the teacher to the optimizer. A re-keyed copy has
//! fresh ids over the same initial values (tensors are immutable values, so the copy may share
//! the storage until its first update).

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::prelude::*;

struct FreshIds;

impl ModuleMapper for FreshIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(ParamId::new(), value, mapper)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(ParamId::new(), value, mapper)
    }

    fn map_bool<const D: usize>(&mut self, param: Param<Tensor<D, Bool>>) -> Param<Tensor<D, Bool>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(ParamId::new(), value, mapper)
    }
}

/// A copy of `module` with the same values and new parameter ids.
pub fn rekeyed<M: Module>(module: &M) -> M {
    module.clone().map(&mut FreshIds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, SgdConfig};

    #[test]
    fn a_rekeyed_copy_trains_without_touching_the_original() {
        let device = Device::flex().autodiff();
        let teacher: Linear = LinearConfig::new(3, 2).init(&device);
        let student = rekeyed(&teacher);
        assert_ne!(student.weight.id, teacher.weight.id);
        let same = (student.weight.val() - teacher.weight.val()).abs().max().into_scalar::<f32>();
        assert_eq!(same, 0.0, "the copy starts from the original's values");

        let x = Tensor::<2>::ones([1, 3], &device);
        let grads = GradientsParams::from_grads(student.forward(x).sum().backward(), &student);
        assert!(grads.get::<2>(teacher.weight.id).is_none(), "the original gets no gradient");
        let mut optim = SgdConfig::new().init();
        let before = teacher.weight.val();
        let student = optim.step(0.1, student, grads);
        let moved = (student.weight.val() - before.clone()).abs().max().into_scalar::<f32>();
        assert!(moved > 0.0);
        let unchanged = (teacher.weight.val() - before).abs().max().into_scalar::<f32>();
        assert_eq!(unchanged, 0.0, "the original's weights stay bit-identical");
    }
}
