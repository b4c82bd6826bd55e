//! `tools/gpu/check.sh --device cpu`: the prepared GPU check runs end to end on the CPU at tiny
//! sizes and writes its table, so that it is known to work before a GPU is lent.

use std::path::Path;
use std::process::Command;

#[test]
fn the_gpu_check_runs_on_the_cpu_and_writes_its_table() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(repo.join("tools/gpu/check.sh"))
        .args(["--device", "cpu"])
        .arg(tmp.path())
        .env("AVDM", env!("CARGO_BIN_EXE_avdm"))
        .output()
        .expect("bash runs");
    let table = std::fs::read_to_string(tmp.path().join("check.md")).unwrap_or_default();
    let log = std::fs::read_to_string(tmp.path().join("check.log")).unwrap_or_default();
    assert!(out.status.success(), "{table}\n{log}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(table.contains("tiny UNet vs diffusers on cpu (tolerance 1e-4) | max error"), "{table}");
    for row in ["forward + backward (Chunked attention), f32", "forward + backward (Burn attention), bf16"] {
        assert!(table.contains(row), "no row `{row}`:\n{table}");
    }
    assert!(table.contains("distillation iteration") && table.contains("toy student sampler"), "{table}");
    assert!(table.contains("full student sampler 4 steps + VAE decode (NFE 4), [1, 3, 1, 64, 64]"), "{table}");
    assert!(table.contains("toy distillation on cpu against the CPU | 2 iterations"), "{table}");
    let alone = "toy distillation through the tcp collective (one rank) against (5) on cpu | 2 iterations; largest relative difference of the losses and the student's gradient norm: 0.0e+00";
    assert!(table.contains(alone), "{table}");
    assert!(!table.contains("FAILED"), "{table}");
}
