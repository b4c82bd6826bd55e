//! Helpers shared by avdm's cross-crate tests: fixture paths, fixture tensors, comparisons.

use std::path::PathBuf;

use avdm_import::TensorSet;
use burn::prelude::*;
use burn::store::bridge;

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

/// The CPU device every parity test runs on.
pub fn device() -> Device {
    Device::flex()
}

/// All tensors of a fixture safetensors file.
pub fn fixture_tensors(rel: &str) -> TensorSet {
    TensorSet::from_safetensors(&fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// One f32 tensor of a fixture set, by key.
pub fn tensor<const D: usize>(set: &TensorSet, key: &str) -> Tensor<D> {
    let entry = set.entries.get(key).unwrap_or_else(|| panic!("fixture has no `{key}`"));
    let data = bridge::to_data(&entry.tensor).expect("readable fixture").convert::<f32>();
    Tensor::from_data(data, &device())
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b).abs().max().into_scalar::<f32>()
}

/// Panics unless `actual` is within `tolerance` of `expected` everywhere, printing the error.
pub fn assert_close<const D: usize>(what: &str, actual: Tensor<D>, expected: Tensor<D>, tolerance: f32) {
    let err = max_abs_diff(actual, expected);
    println!("{what}: max abs error {err:.3e} (tolerance {tolerance:.0e})");
    assert!(err <= tolerance, "{what}: max abs error {err:e} > {tolerance:e}");
}
