//! Parameter groups with their own learning rates (the paper's generator: motion modules at
//! 2e-5, the 2D backbone at 4e-6): the gradients are split by parameter path, and each part is
//! applied by its own optimizer step.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

struct Split<'a> {
    path: Vec<String>,
    segment: &'a str,
    from: &'a mut GradientsParams,
    matching: GradientsParams,
}

impl ModuleVisitor for Split<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.path.iter().any(|p| p == self.segment)
            && let Some(g) = self.from.remove::<D>(param.id)
        {
            self.matching.register(param.id, g);
        }
    }
}

/// Splits `grads` of `module`'s parameters into those under a module named `segment` (e.g.
/// `motion_modules`) and the rest.
pub fn split_by_module<M: Module>(
    module: &M,
    mut grads: GradientsParams,
    segment: &str,
) -> (GradientsParams, GradientsParams) {
    let mut visitor = Split { path: Vec::new(), segment, from: &mut grads, matching: GradientsParams::new() };
    module.visit(&mut visitor);
    let matching = visitor.matching;
    (matching, grads)
}

/// The numbers of values of `module`'s parameters under a module named `segment` and of the
/// rest.
pub fn values_by_module<M: Module>(module: &M, segment: &str) -> (usize, usize) {
    struct Count<'a> {
        path: Vec<String>,
        segment: &'a str,
        counts: (usize, usize),
    }
    impl ModuleVisitor for Count<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.shape().num_elements();
            if self.path.iter().any(|p| p == self.segment) { self.counts.0 += n } else { self.counts.1 += n }
        }
    }
    let mut count = Count { path: Vec::new(), segment, counts: (0, 0) };
    module.visit(&mut count);
    count.counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use avdm_model::UNetMotionModel;

    #[test]
    fn motion_module_gradients_go_to_their_own_group() {
        let device = Device::flex().autodiff();
        let unet = UNetMotionModel::new(&crate::toy::preset::unet_config(true), &device);
        let x = Tensor::<5>::ones([1, 3, 2, 32, 32], &device);
        let text = Tensor::<3>::ones([2, 8, crate::toy::preset::TEXT_WIDTH], &device);
        let out = unet.forward(x, Tensor::from_floats([10.0], &device), text).unwrap();
        let grads = GradientsParams::from_grads(out.sum().backward(), &unet);
        let total = grads.len();
        let (motion, rest) = split_by_module(&unet, grads, "motion_modules");
        assert_eq!(motion.len() + rest.len(), total);
        let proj_out = &unet.down_blocks[0].motion_modules[0].proj_out.weight;
        assert!(motion.get::<2>(proj_out.id).is_some() && rest.get::<2>(proj_out.id).is_none());
        let conv_in = &unet.conv_in.weight;
        assert!(rest.get::<4>(conv_in.id).is_some() && motion.get::<4>(conv_in.id).is_none());
        let (motion_values, rest_values) = values_by_module(&unet, "motion_modules");
        assert_eq!(rest_values, unet.without_motion_modules().num_params(), "the 2D backbone");
        assert_eq!(motion_values + rest_values, unet.num_params());
    }
}
