//! Pillow's bicubic resize of 8-bit RGB images, reproduced to the bit, because CLIP's image
//! processor (transformers' PIL backend, as CLIPScore uses it) resizes with it. Pillow filters
//! rows, then columns, each pass with fixed-point weights (22 fractional bits) rounded back to
//! 8 bits; shrinking widens the filter by the scale (antialiasing).

/// An 8-bit RGB image, `(H, W, 3)` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb8 {
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

const FRACTION_BITS: u32 = 22;

/// Keys' cubic convolution kernel with `a = -0.5`, support 2.
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The input positions `first..first + weights.len()` and fixed-point weights of one output
/// position.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// The taps of every output position when `input` samples become `output` ones.
fn taps(input: usize, output: usize) -> Vec<Taps> {
    let scale = input as f64 / output as f64;
    let widen = scale.max(1.0);
    let support = 2.0 * widen;
    let inverse = 1.0 / widen;
    (0..output)
        .map(|out| {
            let centre = (out as f64 + 0.5) * scale;
            // C casts truncate toward zero.
            let first = ((centre - support + 0.5) as i64).max(0) as usize;
            let end = ((centre + support + 0.5) as i64).min(input as i64) as usize;
            let raw: Vec<f64> = (first..end).map(|i| cubic((i as f64 - centre + 0.5) * inverse)).collect();
            let sum: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if sum != 0.0 { w / sum } else { w };
                    let fixed = w * (1 << FRACTION_BITS) as f64;
                    (if w < 0.0 { fixed - 0.5 } else { fixed + 0.5 }) as i32
                })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

/// A weighted sum of 8-bit samples, rounded and clamped to 8 bits.
fn filtered(samples: impl Iterator<Item = u8>, weights: &[i32]) -> u8 {
    let sum = samples.zip(weights).fold(1i32 << (FRACTION_BITS - 1), |acc, (s, &w)| acc + s as i32 * w);
    (sum >> FRACTION_BITS).clamp(0, 255) as u8
}

/// Resizes to `height x width` as Pillow's `Image.resize(size, Image.BICUBIC)` does.
pub fn resize_bicubic(image: &Rgb8, height: usize, width: usize) -> Rgb8 {
    let mut current = image.clone();
    if width != current.width {
        let taps = taps(current.width, width);
        let mut data = Vec::with_capacity(current.height * width * 3);
        for y in 0..current.height {
            let row = &current.data[y * current.width * 3..(y + 1) * current.width * 3];
            for t in &taps {
                for c in 0..3 {
                    data.push(filtered((t.first..).map(|x| row[x * 3 + c]), &t.weights));
                }
            }
        }
        current = Rgb8 { height: current.height, width, data };
    }
    if height != current.height {
        let taps = taps(current.height, height);
        let w = current.width;
        let mut data = Vec::with_capacity(height * w * 3);
        for t in &taps {
            for x in 0..w {
                for c in 0..3 {
                    data.push(filtered((t.first..).map(|y| current.data[(y * w + x) * 3 + c]), &t.weights));
                }
            }
        }
        current = Rgb8 { height, width: w, data };
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy_and_flat_stays_flat() {
        let image = Rgb8 { height: 3, width: 2, data: (0..18).map(|v| v as u8 * 10).collect() };
        assert_eq!(resize_bicubic(&image, 3, 2), image);
        let flat = Rgb8 { height: 9, width: 13, data: vec![77; 9 * 13 * 3] };
        let small = resize_bicubic(&flat, 4, 5);
        assert_eq!((small.height, small.width), (4, 5));
        assert!(small.data.iter().all(|&v| v == 77), "weights sum to one");
    }

    #[test]
    fn weights_are_normalised_fixed_point() {
        for (input, output) in [(57, 32), (32, 57), (512, 224)] {
            for t in taps(input, output) {
                let sum: i64 = t.weights.iter().map(|&w| w as i64).sum();
                assert!((sum - (1 << FRACTION_BITS)).abs() <= t.weights.len() as i64, "{sum}");
                assert!(t.first + t.weights.len() <= input);
            }
        }
    }
}
