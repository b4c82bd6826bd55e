//! `avdm cache` end to end on a few ffmpeg-made videos with the tiny diffusers pipeline, and
//! its refusals of bad input.

use std::path::Path;
use std::process::Command;

fn avdm(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avdm")).args(args).output().expect("run avdm");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[test]
fn cache_a_folder_then_continue_it_and_refuse_bad_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let videos = tmp.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    for (name, size) in [("wide", "40x24"), ("tall", "24x40"), ("square", "17x17")] {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i", &format!("testsrc=s={size}:r=12"), "-frames:v", "10"])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv444p"])
            .arg(videos.join(format!("{name}.mp4")))
            .status()
            .expect("ffmpeg runs (the tests need FFmpeg: apt-get install ffmpeg)");
        assert!(status.success());
        std::fs::write(videos.join(format!("{name}.txt")), format!("a {name} test pattern")).unwrap();
    }
    std::fs::write(videos.join("cut.mp4"), b"\x00\x00\x00\x18ftypmp42").unwrap();
    std::fs::write(videos.join("cut.txt"), "a cut file").unwrap();
    let sd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_pipeline/sd");
    let out = tmp.path().join("cache");
    let args = [
        "cache",
        "--pipeline",
        path(&sd),
        "--folder",
        path(&videos),
        "--out",
        path(&out),
        "--frames",
        "4",
        "--stride",
        "2",
        "--size",
        "16",
        "--shard-clips",
        "2",
    ];
    let (ok, stderr) = avdm(&args);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("cached 3 clips in 2 shards") && stderr.contains("1 videos skipped"), "{stderr}");
    assert!(stderr.contains("skipped ") && stderr.contains("cut.mp4"), "the bad file is named:\n{stderr}");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["complete"], true);
    // Run again: nothing left to do, nothing rewritten.
    let (ok, stderr) = avdm(&args);
    assert!(ok && stderr.contains("this run: 0 clips"), "{stderr}");
    // Other settings for the same folder are refused.
    let mut other = args.to_vec();
    let size_at = other.iter().position(|a| *a == "--size").unwrap() + 1;
    other[size_at] = "32";
    let (ok, stderr) = avdm(&other);
    assert!(!ok && stderr.contains("other settings"), "{stderr}");

    let mut bad_policy = args.to_vec();
    bad_policy.extend(["--short-videos", "sometimes"]);
    let (ok, stderr) = avdm(&bad_policy);
    assert!(!ok && stderr.contains("reduce-stride, skip"), "{stderr}");

    // Bad sources: none, a missing folder, a CSV without the named column.
    let (ok, stderr) = avdm(&["cache", "--pipeline", path(&sd), "--out", path(&out)]);
    assert!(!ok && stderr.contains("--openvid"), "{stderr}");
    let missing = tmp.path().join("no-such-folder");
    let fresh = tmp.path().join("fresh");
    let (ok, stderr) = avdm(&["cache", "--pipeline", path(&sd), "--folder", path(&missing), "--out", path(&fresh)]);
    assert!(!ok && stderr.contains("no-such-folder") && !stderr.contains("panicked"), "{stderr}");
    let csv = tmp.path().join("list.csv");
    std::fs::write(&csv, "file,text\nwide.mp4,a wide one\n").unwrap();
    let (ok, stderr) = avdm(&["cache", "--pipeline", path(&sd), "--csv", path(&csv), "--out", path(&fresh)]);
    assert!(!ok && stderr.contains("no `path` column") && stderr.contains("file, text"), "{stderr}");
    assert!(!fresh.exists(), "a refused cache left a folder behind");
}
