//! An exponential moving average (EMA) of the student's weights: after every generator update,
//! `ema = decay * ema + (1 - decay) * student`, starting from the initial student (a constant
//! decay, as torch's `AveragedModel` with `get_ema_multi_avg_fn`). The paper trains without one;
//! the stability ablations measure it (book: benchmarks).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// The values of a module's float parameters by id, each flattened.
struct Values(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().detach();
        let len = value.shape().num_elements();
        self.0.insert(param.id, value.reshape([len]));
    }
}

/// Moves each parameter of the average towards the model's parameter of the same id.
struct Towards {
    model: Values,
    decay: f64,
}

impl ModuleMapper for Towards {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self.model.0.remove(&param.id) else { return param };
        param.map(|average| {
            let current = current.reshape(average.dims()).cast(average.dtype());
            (average * self.decay + current * (1.0 - self.decay)).detach()
        })
    }
}

/// `average` one step closer to `model`: `decay * average + (1 - decay) * model`, parameter by
/// parameter (matched by id: `average` is a clone of an earlier `model`). Untracked.
pub fn ema_update<M: Module>(average: M, model: &M, decay: f64) -> M {
    let mut values = Values(HashMap::new());
    model.visit(&mut values);
    average.map(&mut Towards { model: values, decay })
}

/// The moving average of a model that is being trained: a clone of it whose parameters are
/// not tracked by autodiff.
pub fn ema_start<M: Module>(model: &M) -> M {
    model.clone().no_grad()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn each_update_moves_the_average_by_one_minus_the_decay() {
        let device = Device::flex().autodiff();
        let model: Linear = LinearConfig::new(3, 2).init(&device);
        let start = model.weight.val();
        let average = ema_start(&model);
        assert!(!average.weight.is_require_grad(), "the average is not trained");
        let moved = |model: &Linear, shift: f32| Linear {
            weight: model.weight.clone().map(|w| w + shift),
            bias: model.bias.clone(),
        };
        let (one, two) = (moved(&model, 1.0), moved(&model, 3.0));
        let average = ema_update(average, &one, 0.75);
        let want = start.clone() * 0.75 + one.weight.val() * 0.25;
        assert!(max_abs_diff(average.weight.val(), want.clone()) < 1e-6);
        let average = ema_update(average, &two, 0.75);
        // 0.75 (0.75 w + 0.25 (w + 1)) + 0.25 (w + 3) = w + 0.9375
        assert!(max_abs_diff(average.weight.val(), start.clone() + 0.9375) < 1e-6);
        assert_eq!(average.weight.id, model.weight.id, "the average keeps the ids");
        assert!(!average.weight.is_require_grad());
        let unchanged = ema_update(ema_start(&model), &model, 0.0);
        assert!(max_abs_diff(unchanged.weight.val(), start) < 1e-7, "decay 0 is the model itself");
    }
}
