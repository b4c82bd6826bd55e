//! The DDIM scheduler against diffusers' `DDIMScheduler` (tests/fixtures/ddim.*).

use avdm_model::sched::{DdimConfig, DdimScheduler};
use avdm_tests::{assert_close, fixture, fixture_tensors, tensor};
use burn::prelude::*;

/// Absolute for the schedule; for step outputs relative to the output's magnitude (samples of
/// size ~4 and x0 of size ~10 sit where one f32 ulp is 5e-7 .. 1e-6).
const TOLERANCE: f32 = 1e-6;

fn assert_step_close(what: &str, actual: Tensor<5>, expected: Tensor<5>) {
    let scale = expected.clone().abs().max().into_scalar::<f32>().max(1.0);
    assert_close(what, actual, expected, TOLERANCE * scale);
}

fn cases() -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(fixture("ddim.json")).unwrap()).unwrap()
}

fn scheduler(case: &serde_json::Value, steps: usize) -> DdimScheduler {
    let config = DdimConfig::from_json(&case["config"].to_string()).expect("diffusers scheduler config");
    let mut s = DdimScheduler::new(config).expect("supported config");
    s.set_timesteps(steps).expect("valid steps");
    s
}

#[test]
fn timesteps_match_every_spacing() {
    let cases = cases();
    assert_eq!(cases.len(), 36);
    for case in &cases {
        let steps = case["steps"].as_u64().unwrap() as usize;
        let expected: Vec<usize> = serde_json::from_value(case["timesteps"].clone()).unwrap();
        let s = scheduler(case, steps);
        assert_eq!(s.timesteps, expected, "{} {} steps", case["config"]["timestep_spacing"], steps);
    }
}

#[test]
fn alphas_cumprod_match() {
    let tensors = fixture_tensors("ddim.safetensors");
    for case in cases().iter().filter(|c| c["steps"] == 1) {
        let s = scheduler(case, 1);
        let name = case["name"].as_str().unwrap();
        let n = s.schedule.alphas_cumprod.len();
        let ours =
            Tensor::<1>::from_data(TensorData::new(s.schedule.alphas_cumprod.clone(), [n]), &avdm_tests::device());
        assert_close(
            &format!("{name} alphas_cumprod"),
            ours,
            tensor(&tensors, &format!("{name}.alphas_cumprod")),
            TOLERANCE,
        );
    }
}

#[test]
fn one_step_matches_per_spacing_and_eta() {
    let tensors = fixture_tensors("ddim.safetensors");
    let sample: Tensor<5> = tensor(&tensors, "sample");
    let output: Tensor<5> = tensor(&tensors, "model_output");
    let noise: Tensor<5> = tensor(&tensors, "noise");
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.get("key").is_some()) {
        let key = case["key"].as_str().unwrap();
        let s = scheduler(case, case["steps"].as_u64().unwrap() as usize);
        let t = case["step_timestep"].as_u64().unwrap() as usize;
        let last = case["last_timestep"].as_u64().unwrap() as usize;
        let step = s.step(output.clone(), t, sample.clone());
        assert_step_close(&format!("{key} eta 0"), step.prev_sample, tensor(&tensors, &format!("{key}.eta0")));
        let step = s.step_with_noise(output.clone(), t, sample.clone(), Some((0.5, noise.clone())));
        assert_step_close(&format!("{key} eta 0.5"), step.prev_sample, tensor(&tensors, &format!("{key}.eta05")));
        assert_step_close(&format!("{key} x0"), step.pred_original_sample, tensor(&tensors, &format!("{key}.x0")));
        let step = s.step(output.clone(), last, sample.clone());
        assert_step_close(&format!("{key} last step"), step.prev_sample, tensor(&tensors, &format!("{key}.last")));
        checked += 1;
    }
    assert_eq!(checked, 18, "3 configs x 3 spacings x 2 step counts");
}

#[test]
fn bad_step_counts_are_errors() {
    let mut s = DdimScheduler::new(DdimConfig::animatediff()).unwrap();
    assert!(s.set_timesteps(0).is_err());
    let err = s.set_timesteps(1001).unwrap_err();
    assert!(err.to_string().contains("1001"), "{err}");
}
