//! Burn backend extensions: operations with their own backward pass that run on every backend
//! (the default bodies compose Burn's primitives) and have fused CPU kernels where they pay.

pub mod chunked_attention;
pub mod fast_math;
pub mod geglu;
pub mod group_norm;
