//! Exact resume, checked bit for bit: a run stopped at a checkpoint and resumed against an
//! uninterrupted one.

use std::path::Path;

use avdm_train::checkpoint::Checkpoint;
use avdm_train::distill::config::DistillConfig;
use avdm_train::distill::run::{DistillState, distill};
use burn::prelude::*;

/// Every parameter of a run's checkpointed networks, by name, as bits; then the same after one
/// more AdamW step of each network with its checkpointed optimizer and the parameters' own
/// values as gradients, which differs wherever an optimizer state (moments, step count) does.
fn checkpointed(out: &Path) -> Vec<(String, Vec<u32>)> {
    use avdm_train::distill::learner::Optimizers;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::store::ModuleSnapshot;
    struct OwnValues(GradientsParams);
    impl ModuleVisitor for OwnValues {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.register(param.id, param.val().inner());
        }
    }
    fn bits<M: Module>(prefix: &str, module: &M, out: &mut Vec<(String, Vec<u32>)>) {
        for t in module.collect(None, None, true) {
            let data = burn::store::bridge::to_data(&t).unwrap().convert::<f32>();
            out.push((format!("{prefix}.{}", t.name), data.iter::<f32>().map(f32::to_bits).collect()));
        }
    }
    fn probe<M: Module>(name: &str, module: M, optim: burn::optim::ModuleOptimizer, out: &mut Vec<(String, Vec<u32>)>) {
        bits(name, &module, out);
        let mut grads = OwnValues(GradientsParams::new());
        module.visit(&mut grads);
        let mut optim = optim;
        bits(&format!("{name} stepped"), &optim.step(1e-3, module, grads.0), out);
    }
    let device = Device::flex().autodiff();
    let checkpoint = Checkpoint::find(&out.join("checkpoint")).unwrap();
    let config: DistillConfig = checkpoint.state::<DistillState>().unwrap().config;
    let fresh = avdm_train::distill::run::RunSetup::load(&config, &device).unwrap().nets;
    let optim = Optimizers::new(&config.optim);
    let mut all = Vec::new();
    let optimizer = |name, o| checkpoint.optimizer(name, o).unwrap();
    let student = checkpoint.module("student", fresh.student).unwrap();
    probe("student", student, optimizer("student", optim.student), &mut all);
    let fake_score = checkpoint.module("fake_score", fresh.fake_score).unwrap();
    probe("fake_score", fake_score, optimizer("fake_score", optim.fake_score), &mut all);
    let head = checkpoint.module("head", fresh.head).unwrap();
    probe("head", head, optimizer("head", optim.head), &mut all);
    all
}

/// Runs `config` for 4 steps whole, and as 2 steps then a resume to 4 (checkpoint every 2): the
/// metrics, the networks and their optimizer states must be the same, bit for bit.
pub fn assert_resume_is_exact(config: impl Fn(usize) -> DistillConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, parts) = (tmp.path().join("whole"), tmp.path().join("parts"));
    let run = |config: &DistillConfig, out: &Path, resume: bool| {
        distill(config, out, resume, &[Device::flex().autodiff()], &avdm_train::cluster::SingleRank, |_| true).unwrap()
    };
    run(&config(4), &whole, false);
    run(&config(2), &parts, false);
    run(&config(4), &parts, true);
    let metrics = |out: &Path| std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics(&parts), metrics(&whole), "the metrics after the resume differ");
    let (a, b) = (checkpointed(&whole), checkpointed(&parts));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after the resume");
    }
}
