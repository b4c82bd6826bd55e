//! `avdm generate` end to end on the tiny pipeline fixture, and its clear failures (non-zero
//! exit, the reason named, no output file left behind).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

struct Run {
    ok: bool,
    stderr: String,
}

fn avdm(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_avdm")).args(args).envs(env.iter().copied()).output().expect("run");
    Run { ok: out.status.success(), stderr: String::from_utf8_lossy(&out.stderr).into() }
}

/// `avdm generate` on the tiny pipeline (4 frames of 16x16, 2 steps unless `extra` says
/// otherwise) with extra arguments.
fn generate(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let pipeline = fixture("tiny_pipeline/sd");
    let adapter = fixture("tiny_pipeline/motion_adapter");
    let mut args = vec![
        "generate",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--motion-adapter",
        adapter.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let defaults = [("--frames", "4"), ("--height", "16"), ("--width", "16"), ("--steps", "2")];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend_from_slice(&[flag, value]);
        }
    }
    if !extra.contains(&"--prompt-file") {
        args.extend_from_slice(&["--prompt", "a red square moving left"]);
    }
    avdm(&args, env)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn gif_frames(path: &Path) -> usize {
    let mut decoder = gif::DecodeOptions::new().read_info(fs::File::open(path).unwrap()).unwrap();
    let mut frames = 0;
    while decoder.read_next_frame().unwrap().is_some() {
        frames += 1;
    }
    frames
}

#[test]
fn writes_a_gif_with_its_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("clip.gif");
    let run = generate(&out, &["--negative-prompt", "blurry", "--seed", "3"], &[]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(gif_frames(&out), 4);
    let settings: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(tmp.path().join("clip.gif.json")).unwrap()).unwrap();
    assert_eq!(settings["timesteps"], serde_json::json!([999, 0]));
    assert_eq!(settings["network_evaluations"], 4);
    assert_eq!(settings["guidance_resolved"], 7.5);
    assert_eq!(settings["negative_prompt"], "blurry");
    assert_eq!(settings["scheduler_config"]["beta_schedule"], "linear");
    assert_eq!(entries(tmp.path()), vec!["clip.gif", "clip.gif.json"]);

    // The same seed gives the same clip.
    let again = tmp.path().join("again.gif");
    assert!(generate(&again, &["--negative-prompt", "blurry", "--seed", "3"], &[]).ok);
    assert_eq!(fs::read(&out).unwrap(), fs::read(&again).unwrap());
}

#[test]
fn student_sampler_writes_png_frames_from_a_prompt_file() {
    let tmp = tempfile::tempdir().unwrap();
    let prompt = tmp.path().join("prompt.txt");
    fs::write(&prompt, "a blue circle moving up\n").unwrap();
    let out = tmp.path().join("frames");
    let run = generate(&out, &["--sampler", "student", "--prompt-file", prompt.to_str().unwrap()], &[]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(entries(&out), vec!["frame_0000.png", "frame_0001.png", "frame_0002.png", "frame_0003.png"]);
    let settings: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(tmp.path().join("frames.json")).unwrap()).unwrap();
    assert_eq!(settings["timesteps"], serde_json::json!([999, 499]));
    assert_eq!(settings["network_evaluations"], 2);
    assert_eq!(settings["prompt_text"], "a blue circle moving up");
}

/// The RGB(A) bytes of a PNG file.
fn png_pixels(path: &Path) -> Vec<u8> {
    let mut reader = png::Decoder::new(std::io::BufReader::new(fs::File::open(path).unwrap())).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    buf
}

#[test]
fn bf16_samples_close_to_f32_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = |dtype: &str| {
        let out = tmp.path().join(dtype);
        let run = generate(&out, &["--sampler", "student", "--seed", "5", "--dtype", dtype], &[]);
        assert!(run.ok, "{dtype}: {}", run.stderr);
        (0..4).flat_map(|i| png_pixels(&out.join(format!("frame_{i:04}.png")))).collect::<Vec<u8>>()
    };
    let (full, half) = (frames("f32"), frames("bf16"));
    assert_eq!(full.len(), half.len());
    let diffs: Vec<f64> = full.iter().zip(&half).map(|(&a, &b)| (a as f64 - b as f64).abs()).collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    eprintln!("bf16 against f32: {mean:.2} levels of 255 on average");
    // Measured: 0.48 levels of 255 on average (2 student steps on the tiny pipeline).
    assert!(mean < 2.0, "bf16 frames differ from f32 by {mean} levels on average");
    let settings: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(tmp.path().join("bf16.json")).unwrap()).unwrap();
    assert_eq!(settings["dtype"], "bf16");
}

#[test]
fn mp4_needs_ffmpeg() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("clip.mp4");
    let run = generate(&out, &[], &[("AVDM_FFMPEG", "/nonexistent/ffmpeg")]);
    assert!(!run.ok);
    assert!(run.stderr.contains("needs ffmpeg") && run.stderr.contains("/nonexistent/ffmpeg"), "{}", run.stderr);
    assert!(entries(tmp.path()).is_empty(), "no partial output");
    if Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success()) {
        let run = generate(&out, &[], &[]);
        assert!(run.ok, "{}", run.stderr);
        let bytes = fs::read(&out).unwrap();
        assert!(bytes.len() > 100 && &bytes[4..8] == b"ftyp", "an MP4 file");
    } else {
        println!("ffmpeg is not installed: only the missing-ffmpeg error was checked");
    }
}

/// Copies a folder tree.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn bad_inputs_fail_clearly_without_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("clip.gif");
    let expect_error = |run: Run, needle: &str| {
        assert!(!run.ok, "must fail");
        assert!(run.stderr.contains(needle), "expected `{needle}` in: {}", run.stderr);
        assert!(!out.exists() && !tmp.path().join("clip.gif.json").exists(), "no output on failure");
    };
    expect_error(generate(&out, &["--sampler", "euler"], &[]), "invalid value 'euler'");
    expect_error(generate(&out, &["--frames", "33"], &[]), "--frames 33: the motion modules support 1 to 32 frames");
    expect_error(generate(&out, &["--prompt-file", "/nonexistent/prompt.txt"], &[]), "/nonexistent/prompt.txt");
    expect_error(generate(&out, &["--sampler", "student", "--guidance", "2"], &[]), "without classifier-free");
    expect_error(generate(&out, &["--height", "15"], &[]), "multiple of the VAE's factor 2");
    expect_error(generate(&out, &["--device", "tpu"], &[]), "unknown device");
    let nested = tmp.path().join("missing/clip.gif");
    let run = generate(&nested, &[], &[]);
    assert!(!run.ok && run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(!tmp.path().join("missing").exists());

    let pipeline = tmp.path().join("pipeline");
    copy_tree(&fixture("tiny_pipeline/sd"), &pipeline);
    for file in ["tokenizer.json", "vocab.json", "merges.txt"] {
        fs::remove_file(pipeline.join("tokenizer").join(file)).unwrap();
    }
    let adapter = fixture("tiny_pipeline/motion_adapter");
    let run = avdm(
        &[
            "generate",
            "--pipeline",
            pipeline.to_str().unwrap(),
            "--motion-adapter",
            adapter.to_str().unwrap(),
            "--prompt",
            "x",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    expect_error(run, "tokenizer");
}
