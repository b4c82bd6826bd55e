//! The Fréchet distance of FVD against a reference computed in Python (scipy's `sqrtm`) on the
//! same 400-d features (`tools/fixtures/make_i3d_fixtures.py`): 256 vectors per set, fewer than
//! the dimension, so both covariances are singular (what an FVD of few videos meets).

use std::path::Path;

use avdm_train::metrics::fvd::Fvd;

fn features(io: &safetensors::SafeTensors, name: &str) -> Vec<Vec<f64>> {
    let view = io.tensor(name).unwrap();
    let dim = view.shape()[1];
    let values: Vec<f64> = view.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect();
    values.chunks(dim).map(<[f64]>::to_vec).collect()
}

#[test]
fn fvd_matches_a_python_reference_and_is_zero_for_equal_sets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/i3d");
    let bytes = std::fs::read(dir.join("frechet.safetensors")).unwrap();
    let io = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("frechet.json")).unwrap()).unwrap();
    let (a, b) = (features(&io, "a"), features(&io, "b"));
    let shifted = Fvd::between(&a, &b).unwrap();
    let want = reference["a_b"].as_f64().unwrap();
    println!("FVD {:.8} vs scipy {want:.8}", shifted.fvd);
    assert!((shifted.fvd - want).abs() <= 1e-4 * want, "FVD {} vs Python's {want}", shifted.fvd);
    assert_eq!((shifted.real_videos, shifted.generated_videos), (256, 256));
    assert!(shifted.warning().is_none(), "256 videos are enough for no warning");
    let same = Fvd::between(&a, &a).unwrap();
    println!("FVD of a set with itself {:.2e}", same.fvd);
    assert!(same.fvd.abs() < 1e-6, "FVD of a set with itself: {}", same.fvd);
}
