//! The fake score's initial network: a full copy of its base (the 2D teacher, or the video
//! teacher for the video-SDM ablation; or, with a swapped 2D teacher, the student's own 2D
//! UNet, see [`FakeScoreInit`]), every weight trained, as DMD2 and the paper do; or
//! LoRA on the frozen base (Burn's reparameterisation: `W + alpha / r * A B` on the attention
//! projections `to_q`, `to_k`, `to_v`, `to_out`, diffusers' usual LoRA targets), which trains
//! a small fraction of the weights and shares the base's storage.

use burn::module::{Lora, Module, ParamGroup};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use avdm_model::UNetMotionModel;

use crate::rekey::rekeyed;

/// How the fake score is made from its base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FakeScoreConfig {
    /// 0: a full copy; `r > 0`: rank-`r` LoRA on the frozen base.
    pub lora_rank: usize,
    /// The LoRA update is scaled by `lora_alpha / lora_rank`; `None`: `lora_alpha = lora_rank`.
    pub lora_alpha: Option<f64>,
    /// The network the 2D fake score starts from.
    pub init: FakeScoreInit,
}

/// The network the 2D fake score starts from. The two differ only when the 2D teacher is
/// swapped (`models.teacher_2d`, style transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FakeScoreInit {
    /// The 2D teacher (the paper, DMD2): the SDM gradient starts at zero and grows as the fake
    /// score learns the student's frames.
    #[default]
    #[serde(rename = "teacher-2d")]
    Teacher2d,
    /// The student's own 2D UNet (the video teacher's, without motion modules): the model of the
    /// student's frames at the start, so the gradient towards a swapped 2D teacher is there from
    /// the first update.
    Student,
}

/// Parameter paths LoRA adapts: the attention projections' weights.
const LORA_TARGETS: &str = r"(^|\.)(to_q|to_k|to_v|to_out)\.weight$";

/// The fake score made from `base` (on an autodiff device), with new parameter ids. LoRA's `A`
/// factors are drawn from the device's generator seeded with `seed` (its `B` factors start at
/// zero, so the fake score starts as its base either way).
pub fn fake_score(base: &UNetMotionModel, config: &FakeScoreConfig, seed: u64, device: &Device) -> UNetMotionModel {
    let copy = rekeyed(base);
    if config.lora_rank == 0 {
        return copy.set_require_grad_group(ParamGroup::all(), true);
    }
    let targets = ParamGroup::from_regex(LORA_TARGETS).expect("a valid pattern");
    let alpha = config.lora_alpha.unwrap_or(config.lora_rank as f64);
    device.seed(seed);
    copy.apply_lora(Lora::new(config.lora_rank, alpha).set_param_group(targets))
}

/// The number of trained values of a module.
pub fn trained_values<M: Module>(module: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let value = param.base();
            if value.is_require_grad() {
                self.0 += value.shape().num_elements();
            }
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}
