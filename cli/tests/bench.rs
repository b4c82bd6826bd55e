//! `avdm bench`: timings written as JSON; bad shapes refused with the reason.

use std::process::Command;

fn avdm(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avdm")).args(args).output().expect("run avdm");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn bench_times_the_tiny_unet_and_refuses_bad_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bench.json");
    let args = ["bench", "--size", "tiny", "--frames", "2", "--tiny-side", "16", "--repeat", "2", "--backward"];
    let parity = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_unet");
    let extra = [
        "--attention",
        "chunked,burn",
        "--distill-step",
        "--parity",
        parity.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let (ok, stderr) = avdm(&[&args[..], &extra[..]].concat());
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let parity_error = json["parity_max_error"].as_f64().unwrap();
    assert!(parity_error < 1e-4, "the tiny UNet against diffusers: {parity_error}");
    let timings = json["timings"].as_array().unwrap();
    assert_eq!(timings.len(), 4, "forward, forward + backward with each attention, a distillation iteration");
    assert!(timings[2]["what"].as_str().unwrap().contains("Burn attention"), "{}", timings[2]);
    assert!(timings[3]["what"].as_str().unwrap().contains("distillation iteration"), "{}", timings[3]);
    for t in timings {
        assert_eq!(t["shape"], serde_json::json!([1, 3, 2, 16, 16]));
        assert_eq!(t["runs"].as_array().unwrap().len(), 2);
        assert!(t["median_s"].as_f64().unwrap() > 0.0);
        // Linux reports the peak resident set; the CPU backend has no device allocator to ask.
        assert!(t["memory"]["host_peak_rss_mib"].as_f64().unwrap() > 1.0, "{t}");
        assert!(t["memory"]["device_reserved_mib"].is_null(), "{t}");
    }
    let (ok, stderr) = avdm(&["bench", "--size", "tiny", "--tiny-side", "30"]);
    assert!(!ok && stderr.contains("multiple of 4") && !stderr.contains("panicked"), "{stderr}");
    let (ok, stderr) = avdm(&["bench", "--size", "tiny", "--parity", "/no/such/fixture"]);
    assert!(!ok && stderr.contains("/no/such/fixture") && !stderr.contains("panicked"), "{stderr}");
    let (ok, stderr) = avdm(&["bench", "--size", "huge"]);
    assert!(!ok && stderr.contains("huge"), "{stderr}");
}

#[test]
fn bench_load_times_the_phases_of_a_pipeline_load() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("load.json");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_pipeline");
    let (sd, adapter) = (fixture.join("sd"), fixture.join("motion_adapter"));
    let args = ["bench", "--load", sd.to_str().unwrap(), "--motion-adapter", adapter.to_str().unwrap()];
    let (ok, stderr) = avdm(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let phases: Vec<&str> = json["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(phases, ["read the files' indexes", "build the modules", "decode and apply the weights"]);
    // UNet (with the adapter), VAE and text encoder: three networks built and loaded.
    assert_eq!(json["phases"][1]["runs"], 3);
    assert!(json["parameters"].as_u64().unwrap() > 0 && json["weights_mib"].as_f64().unwrap() > 0.0);
    assert!(json["seconds"].as_f64().unwrap() >= json["other_seconds"].as_f64().unwrap());
    assert!(json["peak_rss_mib"].as_f64().unwrap() > 0.0);
    let (ok, stderr) = avdm(&["bench", "--load", "/no/such/pipeline"]);
    assert!(!ok && stderr.contains("/no/such/pipeline") && !stderr.contains("panicked"), "{stderr}");
}
