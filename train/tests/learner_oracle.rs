//! The learner against its PyTorch oracle (`tools/fixtures/make_learner_oracle.py`, written
//! from the method, not from this code): one AVDM2 iteration on the tiny diffusers UNet + motion
//! adapter, loaded as a user's SD1.5 folder and adapter are, with the oracle's random draws fed
//! in from its file, gives the oracle's rollout, losses, SDM gradient, parameter gradients of
//! the student, the fake score and the head, and parameters after AdamW with warm-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use avdm_import::keys::avdm_to_diffusers;
use avdm_import::{TensorSet, apply::apply_tensors};
use avdm_train::distill::config::{DistillConfig, Losses};
use avdm_train::distill::learner::{IterationData, Learner, Networks, Optimizers, RealBatch};
use avdm_train::distill::run::RunSetup;
use avdm_train::distill::sample_streams::{Draws, RecordedDraws};
use avdm_train::grad_norm::global_norm;
use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};
use burn::tensor::DType;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

/// The oracle's float tensors (flattened) and its JSON.
struct Oracle {
    file: PathBuf,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    json: serde_json::Value,
}

impl Oracle {
    fn load(variant: &str) -> Self {
        let file = fixture(&format!("learner_oracle/{variant}.safetensors"));
        let bytes = std::fs::read(&file).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .tensors()
            .into_iter()
            .filter(|(_, view)| view.dtype() == safetensors::Dtype::F32)
            .map(|(name, view)| {
                let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
                (name, (view.shape().to_vec(), values))
            })
            .collect();
        let json_path = file.with_extension("json");
        let json = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
        Self { file, tensors, json }
    }

    fn values(&self, key: &str) -> &[f32] {
        &self.tensors.get(key).unwrap_or_else(|| panic!("the oracle has no {key}")).1
    }

    fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = &self.tensors[key];
        Tensor::from_data(TensorData::new(values.clone(), shape.clone()), device)
    }

    fn scalar(&self, name: &str) -> f64 {
        self.json["scalars"][name].as_f64().unwrap_or_else(|| panic!("scalar {name}"))
    }

    fn pair(&self, name: &str) -> [f64; 2] {
        let v = &self.json["scalars"][name];
        [v[0].as_f64().unwrap(), v[1].as_f64().unwrap()]
    }

    /// The oracle's keys `prefix.*`, without the prefix.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let dotted = format!("{prefix}.");
        self.tensors.keys().filter_map(|k| k.strip_prefix(&dotted).map(String::from)).collect()
    }
}

/// `got` within `rel` of `want`, relative to the largest magnitude of `want`.
fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: {} values against {}", got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.iter().zip(want).fold(0f32, |m, (g, w)| m.max((g - w).abs()));
    eprintln!("{what}: max error {err:.3e} of scale {scale:.3e}");
    assert!(err <= rel * scale + 1e-9, "{what}: max error {err:e} against a scale of {scale:e}");
}

/// The student after its first AdamW step: within `rel` of the oracle (relative to the tensor's
/// scale), except where the oracle's gradient is within 100x of Adam's epsilon: there the first
/// step `lr g / (|g| + eps)` turns the gradient's last float digits into a fraction of the step,
/// so those elements need only be within one step `lr` of the oracle.
fn assert_first_adam_step(what: &str, got: &[f32], want: &[f32], grad: &[f32], lr: f32, rel: f32) {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut ill_conditioned = 0;
    for (i, ((g, w), d)) in got.iter().zip(want).zip(grad).enumerate() {
        let err = (g - w).abs();
        let allowed = if d.abs() < 1e-6 {
            ill_conditioned += 1;
            rel * scale + lr
        } else {
            rel * scale
        };
        assert!(err <= allowed, "{what}[{i}]: {g} against {w} (gradient {d:e}, allowed {allowed:e})");
    }
    eprintln!("{what}: within {rel} of scale {scale:.3e}; {ill_conditioned} of {} near Adam's epsilon", want.len());
}

fn assert_scalar(what: &str, got: f64, want: f64) {
    eprintln!("{what}: {got} against {want}");
    assert!((got - want).abs() <= 1e-4 * want.abs().max(1e-6), "{what}: {got} against the oracle's {want}");
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// The module's parameters in PyTorch layout under diffusers' names (the head's own names are
/// PyTorch's already).
fn named<M: Module>(module: &M, head: bool) -> BTreeMap<String, Vec<f32>> {
    module
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| {
            let data = bridge::to_data(&t).unwrap().convert::<f32>();
            let name = if head { t.name.to_string() } else { avdm_to_diffusers(&t.name) };
            (name, data.try_to_vec::<f32>().unwrap())
        })
        .collect()
}

/// The module with every parameter replaced by its gradient (zero where it has none), so that
/// gradients read out under the parameters' names and layout.
fn gradients_as_module<M: Module>(module: &M, grads: &GradientsParams) -> M {
    struct AsGradients<'a>(&'a GradientsParams);
    impl ModuleMapper for AsGradients<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let grad = self.0.get::<D>(param.id);
            param.map(|value| grad.unwrap_or_else(|| value.zeros_like().inner()).autodiff())
        }
    }
    module.clone().map(&mut AsGradients(grads))
}

/// Compares the oracle's `prefix.<key>` tensors with the module's parameters of those names.
fn assert_named<M: Module>(oracle: &Oracle, prefix: &str, module: &M, rel: f32) {
    let ours = named(module, prefix.ends_with("head"));
    let keys = oracle.keys(prefix);
    assert!(!keys.is_empty(), "the oracle has no {prefix}.*");
    for key in keys {
        let got = ours.get(&key).unwrap_or_else(|| panic!("{prefix}: no parameter {key}"));
        assert_close(&format!("{prefix}.{key}"), got, oracle.values(&format!("{prefix}.{key}")), rel);
    }
}

fn config(losses: Losses, guidance: f32, threads: usize) -> DistillConfig {
    let mut c = DistillConfig { batch: 2, critic_updates: 2, threads, ..DistillConfig::default() };
    c.models.teacher = Some(fixture("tiny_pipeline/sd"));
    c.models.motion_adapter = Some(fixture("tiny_pipeline/motion_adapter"));
    c.head.channels = 8;
    c.head.groups = 4;
    c.loss.losses = losses;
    (c.loss.lambda_sdm, c.loss.lambda_adm) = (1.0, 0.05);
    (c.adm.t_min, c.adm.t_max) = (0, 500);
    (c.sdm.frames, c.sdm.t_min, c.sdm.t_max, c.sdm.guidance) = (2, 200, 980, guidance);
    let o = &mut c.optim;
    (o.lr_motion, o.lr_backbone, o.lr_fake, o.lr_head) = (1e-2, 5e-3, 1e-2, 1e-2);
    (o.warmup, o.max_grad_norm) = (4, 1.0);
    c
}

/// Checks one oracle variant; `threads` splits every update's batch (the result must not
/// depend on it).
fn check(variant: &str, losses: Losses, guidance: f32, threads: usize) {
    let oracle = Oracle::load(variant);
    let config = config(losses, guidance, threads);
    let device = Device::flex().autodiff();
    let mut setup = RunSetup::load(&config, &device).unwrap();
    let head_init = TensorSet::from_safetensors(&oracle.file)
        .unwrap()
        .rename(|key| key.strip_prefix("head_init.").map(avdm_to_diffusers));
    let applied = apply_tensors(&mut setup.nets.head, head_init, DType::F32).unwrap();
    assert!(applied.unused.is_empty(), "{:?}", applied.unused);
    let draws = Draws::Recorded(Arc::new(RecordedDraws::open(&oracle.file).unwrap()));
    let learner = Learner {
        config: &config,
        tokenizer: &setup.loaded.tokenizer,
        video: setup.video.clone(),
        image: setup.image.clone(),
        sampler: setup.sampler.clone(),
        device: device.clone(),
        replicas: Vec::new(),
        draws,
        collective: &avdm_train::cluster::SingleRank,
    };
    let nets: Networks = setup.nets.clone();
    let captions = |list: &serde_json::Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()
    };
    let inner = device.clone().without_autodiff();
    let prompts = learner.embed(&nets.text_encoder, &captions(&oracle.json["prompts"])).unwrap();
    let real = (0..2)
        .map(|k| RealBatch {
            clips: oracle.tensor(&format!("real.{k}.clips"), &inner),
            text: learner.embed(&nets.text_encoder, &captions(&oracle.json["captions"][k])).unwrap(),
        })
        .collect();
    let data = IterationData { prompts: prompts.clone(), real };

    // The generator update: rollout, losses, gradients before clipping.
    let generator = learner.generator_pass(0, &nets, &data).unwrap();
    assert_eq!(generator.stop, oracle.json["stops"]["generator"].as_u64().unwrap() as usize);
    assert_close("x0", &values(generator.generated.clone()), oracle.values("x0"), 1e-4);
    assert_scalar("loss_adm", generator.loss_adm.unwrap(), oracle.scalar("loss_adm"));
    let loss_sdm = generator.loss_sdm.unwrap();
    let want_sdm = oracle.scalar("loss_sdm");
    if want_sdm == 0.0 {
        assert!(loss_sdm.abs() < 1e-9, "without guidance the fake score starts as the real score: {loss_sdm}");
    } else {
        assert_scalar("loss_sdm", loss_sdm, want_sdm);
    }
    assert_scalar(
        "grad_norm_student",
        global_norm(&nets.student, &generator.grads) as f64,
        oracle.scalar("grad_norm_student"),
    );
    assert_named(&oracle, "grad.student", &gradients_as_module(&nets.student, &generator.grads), 1e-4);
    let x0 = oracle.tensor::<5>("x0", &inner);
    let sdm_grad = learner.sdm_gradient(0, &nets, x0.clone(), &prompts).unwrap();
    // (x0_fake - x0_real) is a small difference of two large x0 estimates (divided by sqrt(ᾱ_t)
    // at t up to 980): float32 cancellation leaves about 1e-4 of it.
    assert_close("sdm_grad_x0", &values(sdm_grad), oracle.values("sdm_grad_x0"), 2e-4);

    // Critic update 0: the fake score's and the head's gradients on the generator's clips.
    let fake = learner.fake_score_pass(0, 0, &nets, &x0, &prompts).unwrap();
    assert_scalar("loss_fake[0]", fake.loss, oracle.pair("loss_fake")[0]);
    assert_named(&oracle, "grad.fake_score", &gradients_as_module(&nets.fake_score, &fake.grads), 1e-4);
    let disc = learner.discriminator_pass(0, 0, &nets, &data.real[0], &x0, &prompts).unwrap();
    assert_scalar("loss_disc[0]", disc.loss, oracle.pair("loss_disc")[0]);
    assert_named(&oracle, "grad.head", &gradients_as_module(&nets.head, &disc.grads), 1e-4);

    // The whole iteration: every network after its AdamW steps with warm-up.
    let mut nets = nets;
    let mut optim = Optimizers::new(&config.optim);
    let report = learner.iterate(0, &mut nets, &mut optim, &data).unwrap();
    assert_eq!(report.updates, [1, 2, 2]);
    let mean = |pair: [f64; 2]| (pair[0] + pair[1]) / 2.0;
    assert_scalar("loss_fake", report.loss_fake.unwrap(), mean(oracle.pair("loss_fake")));
    assert_scalar("loss_disc", report.loss_disc.unwrap(), mean(oracle.pair("loss_disc")));
    assert_scalar("grad_norm_fake[1]", report.grad_norm_fake.unwrap(), oracle.pair("grad_norm_fake")[1]);
    assert_scalar("grad_norm_head[1]", report.grad_norm_head.unwrap(), oracle.pair("grad_norm_head")[1]);
    assert_scalar("accuracy_real", report.disc_accuracy_real.unwrap(), mean(oracle.pair("accuracy_real")));
    assert_scalar("accuracy_fake", report.disc_accuracy_fake.unwrap(), mean(oracle.pair("accuracy_fake")));
    let student = named(&nets.student, false);
    let lr = (config.optim.lr_motion * report.lr_factor) as f32;
    for key in oracle.keys("after.student") {
        let (want, grad) =
            (oracle.values(&format!("after.student.{key}")), oracle.values(&format!("grad.student.{key}")));
        assert_first_adam_step(&format!("after.student.{key}"), &student[&key], want, grad, lr, 1e-4);
    }
    assert_named(&oracle, "after.fake_score", &nets.fake_score, 1e-4);
    assert_named(&oracle, "after.head", &nets.head, 1e-4);
}

#[test]
fn one_iteration_of_the_method_matches_the_oracle() {
    check("adm-sdm2d", Losses::AdmSdm2d, 1.0, 1);
}

#[test]
fn one_iteration_with_real_score_guidance_matches_the_oracle_with_the_batch_split_over_threads() {
    check("adm-sdm2d-cfg", Losses::AdmSdm2d, 1.75, 2);
}

#[test]
fn one_iteration_of_the_video_sdm_ablation_matches_the_oracle() {
    check("adm-sdm-video", Losses::AdmSdmVideo, 1.0, 1);
}

#[test]
fn one_iteration_of_the_video_sdm_ablation_with_guidance_matches_the_oracle() {
    check("adm-sdm-video-cfg", Losses::AdmSdmVideo, 1.75, 1);
}
