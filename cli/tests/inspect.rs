//! `avdm inspect` on the tiny fixtures: success, and clear failures with a non-zero exit.

use std::path::PathBuf;
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

fn avdm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avdm")).args(args).output().expect("run avdm");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn inspects_unet_with_checkpoint_adapter() {
    let unet = fixture("tiny_unet/unet");
    let ckpt = fixture("tiny_unet/mm_tiny_v2.ckpt");
    let (ok, stdout, stderr) =
        avdm(&["inspect", "--unet", unet.to_str().unwrap(), "--motion-adapter", ckpt.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    // An original checkpoint has no config: its layout is read from the tensors, with the
    // 8 temporal heads of every released AnimateDiff module.
    assert!(
        stdout.contains("7 position tables checked") && stdout.contains("motion modules: heads [8, 8], mid block true"),
        "{stdout}"
    );
    let adapter = fixture("tiny_unet/motion_adapter");
    let (ok, stdout, stderr) =
        avdm(&["inspect", "--unet", unet.to_str().unwrap(), "--motion-adapter", adapter.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("7 position tables checked; 0 unused keys") && stdout.contains("up to 32 frames"),
        "{stdout}"
    );
}

#[test]
fn missing_folder_fails_with_its_name() {
    let (ok, _, stderr) = avdm(&["inspect", "--unet", "/nonexistent/unet"]);
    assert!(!ok);
    assert!(stderr.contains("model folder not found: /nonexistent/unet"), "{stderr}");
    let (ok, _, stderr) = avdm(&["inspect"]);
    assert!(!ok && stderr.contains("--unet"), "{stderr}");
}

/// `avdm --version` names the backends this binary has; `--device cuda` without them (or without
/// a GPU) is a clear error, not a panic.
#[test]
fn the_version_names_the_backends_and_a_missing_gpu_is_named() {
    let (ok, stdout, _) = avdm(&["--version"]);
    assert!(ok && stdout.contains("backends: cpu"), "{stdout}");
    let (ok, _, stderr) = avdm(&["generate", "--pipeline", "x", "--prompt", "a", "--out", "x.gif", "--device", "cuda"]);
    assert!(!ok && stderr.contains("--device cuda") && !stderr.contains("panicked"), "{stderr}");
}
