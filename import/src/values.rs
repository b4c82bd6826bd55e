//! Stored tensor bytes (little-endian f32, f16 or bf16, PyTorch layout) to a parameter's
//! values in its dtype, on all cores: a copy or a vectorised slice conversion (`half`), then,
//! for a 2D weight stored transposed (a Linear's `[out, in]`, Burn's `[in, out]`), a transpose
//! tile by tile.

use burn::tensor::{DType, TensorData};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// Below this many values a tensor is decoded on the calling thread.
const PARALLEL_FROM: usize = 1 << 16;

/// A float element type the bytes are stored in or decoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    F32,
    F16,
    BF16,
}

impl Float {
    pub fn of(dtype: DType) -> Option<Self> {
        match dtype {
            DType::F32 => Some(Float::F32),
            DType::F16 => Some(Float::F16),
            DType::BF16 => Some(Float::BF16),
            _ => None,
        }
    }

    fn size(self) -> usize {
        if self == Float::F32 { 4 } else { 2 }
    }

    pub fn dtype(self) -> DType {
        match self {
            Float::F32 => DType::F32,
            Float::F16 => DType::F16,
            Float::BF16 => DType::BF16,
        }
    }
}

/// An element type values are decoded to, with its conversions from each stored type.
trait Target: Copy + Default + Send + Sync + burn::tensor::Element {
    /// Fills `out` from `bytes` holding `out.len()` elements of `stored`.
    fn convert(bytes: &[u8], stored: Float, out: &mut [Self]);
}

/// `bytes` as a slice of `E` where it is aligned for it (little-endian machines; `E` is a
/// float type: every bit pattern is a value).
fn view<E: Copy>(bytes: &[u8]) -> Option<&[E]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: f32, f16 and bf16 have no invalid bit patterns; `align_to` only returns an
    // aligned middle.
    let (head, mid, tail) = unsafe { bytes.align_to::<E>() };
    (head.is_empty() && tail.is_empty()).then_some(mid)
}

/// Element by element, for unaligned bytes and the rare pairs without a slice conversion.
fn convert_each<T>(bytes: &[u8], stored: Float, out: &mut [T], from: impl Fn(f32) -> T) {
    let read = |i: usize| -> f32 {
        match stored {
            Float::F32 => f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes")),
            Float::F16 => f16::from_le_bytes(bytes[2 * i..2 * i + 2].try_into().expect("2 bytes")).to_f32(),
            Float::BF16 => bf16::from_le_bytes(bytes[2 * i..2 * i + 2].try_into().expect("2 bytes")).to_f32(),
        }
    };
    out.iter_mut().enumerate().for_each(|(i, v)| *v = from(read(i)));
}

impl Target for f32 {
    fn convert(bytes: &[u8], stored: Float, out: &mut [Self]) {
        match stored {
            Float::F32 => match view::<f32>(bytes) {
                Some(src) => out.copy_from_slice(src),
                None => convert_each(bytes, stored, out, |v| v),
            },
            Float::F16 => match view::<f16>(bytes) {
                Some(src) => src.convert_to_f32_slice(out),
                None => convert_each(bytes, stored, out, |v| v),
            },
            Float::BF16 => match view::<bf16>(bytes) {
                Some(src) => src.convert_to_f32_slice(out),
                None => convert_each(bytes, stored, out, |v| v),
            },
        }
    }
}

/// The half-precision targets: a copy from their own type, a slice conversion from f32.
macro_rules! half_target {
    ($t:ty, $float:expr) => {
        impl Target for $t {
            fn convert(bytes: &[u8], stored: Float, out: &mut [Self]) {
                match (stored, view::<$t>(bytes), view::<f32>(bytes)) {
                    (s, Some(src), _) if s == $float => out.copy_from_slice(src),
                    (Float::F32, _, Some(src)) => out.convert_from_f32_slice(src),
                    _ => convert_each(bytes, stored, out, <$t>::from_f32),
                }
            }
        }
    };
}
half_target!(f16, Float::F16);
half_target!(bf16, Float::BF16);

/// `bytes` (elements of `stored`, shape `shape` as stored) as `target` values in the
/// parameter's shape: `shape` itself, or its transpose when `transposed` (2D only).
pub fn decode(bytes: &[u8], stored: Float, shape: &[usize], transposed: bool, target: Float) -> TensorData {
    let out_shape: Vec<usize> = if transposed { vec![shape[1], shape[0]] } else { shape.to_vec() };
    match target {
        Float::F32 => TensorData::new(decode_as::<f32>(bytes, stored, shape, transposed), out_shape),
        Float::F16 => TensorData::new(decode_as::<f16>(bytes, stored, shape, transposed), out_shape),
        Float::BF16 => TensorData::new(decode_as::<bf16>(bytes, stored, shape, transposed), out_shape),
    }
}

fn decode_as<T: Target>(bytes: &[u8], stored: Float, shape: &[usize], transposed: bool) -> Vec<T> {
    let size = stored.size();
    let mut values = vec![T::default(); bytes.len() / size];
    let per = values.len().div_ceil(threads(values.len()));
    parallel_chunks(&mut values, per, |first, chunk| {
        T::convert(&bytes[first * size..(first + chunk.len()) * size], stored, chunk)
    });
    if transposed { transpose(&values, shape[0], shape[1]) } else { values }
}

/// Threads for `count` values: one below [`PARALLEL_FROM`], else every core.
fn threads(count: usize) -> usize {
    if count < PARALLEL_FROM { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
}

/// Runs `work(first index, chunk)` on chunks of `per` elements, one thread each.
fn parallel_chunks<T: Send>(values: &mut [T], per: usize, work: impl Fn(usize, &mut [T]) + Sync) {
    if per >= values.len() {
        return work(0, values);
    }
    std::thread::scope(|scope| {
        for (c, chunk) in values.chunks_mut(per.max(1)).enumerate() {
            let work = &work;
            scope.spawn(move || work(c * per, chunk));
        }
    });
}

/// Side of the square tiles a transpose walks, so that reads and writes stay in cache.
const TILE: usize = 32;

/// The transpose `(cols, rows)` of a row-major `(rows, cols)` matrix, tile by tile, chunks of
/// output rows over the cores.
fn transpose<T: Copy + Default + Send + Sync>(values: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); values.len()];
    let per_rows = cols.div_ceil(threads(values.len()));
    parallel_chunks(&mut out, per_rows * rows, |first, chunk| {
        let first_row = first / rows.max(1);
        let chunk_rows = chunk.len() / rows.max(1);
        for r0 in (0..chunk_rows).step_by(TILE) {
            for c0 in (0..rows).step_by(TILE) {
                for c in c0..(c0 + TILE).min(rows) {
                    for r in r0..(r0 + TILE).min(chunk_rows) {
                        chunk[r * rows + c] = values[c * cols + first_row + r];
                    }
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(data: TensorData) -> Vec<f32> {
        data.convert::<f32>().iter::<f32>().collect()
    }

    #[test]
    fn decodes_every_stored_type_to_every_target_and_transposes() {
        // A stored [2, 3] matrix 0..6.
        let numbers: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let stored: [(Float, Vec<u8>); 3] = [
            (Float::F32, numbers.iter().flat_map(|v| v.to_le_bytes()).collect()),
            (Float::F16, numbers.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect()),
            (Float::BF16, numbers.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect()),
        ];
        for (kind, bytes) in &stored {
            for target in [Float::F32, Float::F16, Float::BF16] {
                let plain = decode(bytes, *kind, &[2, 3], false, target);
                assert_eq!(plain.dtype(), target.dtype());
                assert_eq!(plain.shape().to_vec(), vec![2, 3]);
                assert_eq!(values(plain), numbers);
                let t = decode(bytes, *kind, &[2, 3], true, target);
                assert_eq!(t.shape().to_vec(), vec![3, 2]);
                assert_eq!(values(t), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0], "{kind:?} -> {target:?}");
                // The same bytes at an odd address (a file whose header length is odd).
                let shifted: Vec<u8> = [0u8].iter().chain(bytes).copied().collect();
                let odd = decode(&shifted[1..], *kind, &[2, 3], false, target);
                assert_eq!(values(odd), numbers, "unaligned {kind:?} -> {target:?}");
            }
        }
    }

    #[test]
    fn large_tensors_decode_the_same_on_all_cores() {
        let (rows, cols) = (300, 700);
        let numbers: Vec<f32> = (0..rows * cols).map(|v| (v % 1000) as f32 * 0.25).collect();
        let bytes: Vec<u8> = numbers.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect();
        let t = values(decode(&bytes, Float::F16, &[rows, cols], true, Float::F32));
        for (i, v) in t.iter().enumerate() {
            let (r, c) = (i / rows, i % rows);
            assert_eq!(*v, numbers[c * cols + r]);
        }
    }
}
