//! Burn backend extensions: operations with their own backward pass that run on every backend
//! (the default bodies compose Burn's primitives) and have fused CPU kernels where they pay.

mod attention_cpu;
pub mod chunked_attention;
pub mod conv2d;
pub mod fast_math;
pub mod geglu;
pub mod group_norm;
pub mod linear;
mod matmul;

use burn::backend::flex::FlexTensor;

/// `x` itself when its elements are one contiguous run, else a contiguous copy (for the CPU
/// kernels, which read f32 tensors as slices).
fn contiguous(x: FlexTensor) -> FlexTensor {
    if x.as_slice::<f32>().is_some() { x } else { x.to_contiguous() }
}

/// Whether every tensor is f32 (what the CPU kernels take; other dtypes go to Burn's ops).
fn all_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == burn::tensor::DType::F32)
}

/// The elements of a contiguous f32 tensor.
fn f32_slice(x: &FlexTensor) -> &[f32] {
    x.as_slice::<f32>().expect("a contiguous f32 tensor")
}
