//! One rule for the video model's noise schedule across `generate`, `eval` and `distill`: on a
//! tiny pipeline folder laid out like a real SD1.5 download (a PNDM `scaled_linear` scheduler
//! config) plus a motion adapter, all three use AnimateDiff's `linear` betas unless the folder's
//! own schedule is asked for, a student samples on the betas its `student.json` records, and
//! the dry run's plan shows `linear` for the video model and `scaled_linear` for the 2D teacher.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// `(success, stdout, stderr)` of `avdm args`.
fn avdm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avdm")).args(args).output().expect("run avdm");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The tiny diffusers pipeline with the scheduler config of the SD1.5 hub folders.
fn sd15_like(dir: &Path) -> PathBuf {
    let sd = dir.join("sd15");
    copy_dir(&fixture("tiny_pipeline/sd"), &sd);
    let scheduler = r#"{"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
        "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "clip_sample": false}"#;
    fs::write(sd.join("scheduler/scheduler_config.json"), scheduler).unwrap();
    sd
}

fn json(file: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(file).unwrap()).unwrap()
}

/// The `beta_schedule` `avdm generate` recorded for a run with `extra` arguments.
fn generated_schedule(sd: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let adapter = fixture("tiny_pipeline/motion_adapter");
    let mut args = vec!["generate", "--pipeline", path(sd), "--motion-adapter", path(&adapter), "--prompt", "a cat"];
    args.extend(["--frames", "2", "--height", "16", "--width", "16", "--steps", "1", "--out", path(out)]);
    args.extend(extra);
    let (ok, _, stderr) = avdm(&args);
    assert!(ok, "generate {extra:?} failed:\n{stderr}");
    json(Path::new(&format!("{}.json", out.display())))["scheduler_config"]["beta_schedule"].clone()
}

#[test]
fn generate_eval_and_distill_query_the_video_model_on_one_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sd = sd15_like(dir);
    let adapter = fixture("tiny_pipeline/motion_adapter");

    // generate: AnimateDiff's betas by default, the folder's when asked.
    assert_eq!(generated_schedule(&sd, &dir.join("a.gif"), &[]), "linear");
    assert_eq!(generated_schedule(&sd, &dir.join("b.gif"), &["--scheduler", "folder"]), "scaled_linear");
    // A student samples on the betas it was trained on, whatever --scheduler says.
    fs::write(sd.join("student.json"), r#"{"steps": 1, "beta_schedule": "linear"}"#).unwrap();
    let student = ["--sampler", "student", "--scheduler", "folder"];
    assert_eq!(generated_schedule(&sd, &dir.join("c.gif"), &student), "linear");
    fs::remove_file(sd.join("student.json")).unwrap();

    // eval (CLIPScore with the tiny CLIP): the same betas.
    let prompts = dir.join("prompts.csv");
    fs::write(&prompts, "caption\na cat\na dog\n").unwrap();
    let out = dir.join("eval");
    let clip = fixture("tiny_clip");
    let mut args = vec!["eval", "--model", path(&sd), "--motion-adapter", path(&adapter), "--steps", "1"];
    args.extend(["--prompts", path(&prompts), "--clipscore", "--clip", path(&clip), "--out", path(&out)]);
    args.extend(["--frames", "2", "--height", "16", "--width", "16", "--batch", "2"]);
    let (ok, _, stderr) = avdm(&args);
    assert!(ok, "eval failed:\n{stderr}");
    assert_eq!(json(&out.join("eval.json"))["rows"][0]["beta_schedule"], "linear");

    // distill --dry-run: the plan, and nothing written.
    let videos = dir.join("videos");
    fs::create_dir(&videos).unwrap();
    fs::write(videos.join("a.mp4"), b"not decoded by a dry run").unwrap();
    fs::write(videos.join("a.txt"), "a cat").unwrap();
    let config = |schedule: &str| {
        let file = dir.join(format!("{schedule}.toml"));
        let text = format!(
            "steps = 3\nbatch = 4\nvideo_schedule = \"{schedule}\"\n[models]\nteacher = {:?}\nmotion_adapter = {:?}\n\
             [head]\nchannels = 8\ngroups = 4\n[data]\nkind = \"videos\"\nsize = 16\n\
             [data.dataset]\nkind = \"folder\"\ndir = {:?}\n[data.clip]\nframes = 2\nstride = 1\n",
            path(&sd),
            path(&adapter),
            path(&videos)
        );
        fs::write(&file, text).unwrap();
        file
    };
    let run = dir.join("run");
    let dry_run = |schedule: &str| {
        let (ok, stdout, stderr) =
            avdm(&["distill", "--config", path(&config(schedule)), "--out", path(&run), "--dry-run"]);
        assert!(ok, "distill --dry-run failed:\n{stderr}");
        stdout
    };
    let plan = dry_run("animatediff");
    let line = |name: &str| plan.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}:\n{plan}"));
    assert!(line("video schedule").contains("linear betas 0.00085..0.012, prediction_type epsilon"), "{plan}");
    assert!(!line("video schedule").contains("scaled_linear betas"), "{plan}");
    assert!(line("2D schedule").contains("scaled_linear betas 0.00085..0.012"), "{plan}");
    assert!(line("student sampler").contains("[999, 749, 499, 249]"), "{plan}");
    assert!(line("batch").contains("4 clips per update: 4 per device on 1 device(s)"), "{plan}");
    assert!(line("data").contains("1 videos (0 rows skipped), 2 frames at stride 1, 16x16"), "{plan}");
    for group in ["student motion modules", "student 2D backbone", "fake score", "discriminator head"] {
        assert!(plan.contains(group), "{group} missing:\n{plan}");
    }
    assert!(plan.contains("lr 4e-6") && plan.contains("lr 2e-5"), "{plan}");
    assert!(!run.exists(), "a dry run wrote its run folder");
    let plan = dry_run("folder");
    assert!(plan.contains("video schedule     scaled_linear betas"), "{plan}");
    // Under torchrun: the plan of the whole launch.
    let launched = std::process::Command::new(env!("CARGO_BIN_EXE_avdm"))
        .args(["distill", "--config", path(&config("animatediff")), "--out", path(&run), "--dry-run"])
        .envs([("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "x"), ("MASTER_PORT", "9")])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&launched.stdout);
    assert!(plan.contains("4 clips per update: 2 per rank on 2 ranks, 2 per device on 1 device(s)"), "{plan}");

    // Bad data is named by the dry run.
    fs::remove_dir_all(&videos).unwrap();
    let (ok, _, stderr) = avdm(&["distill", "--config", path(&config("animatediff")), "--dry-run"]);
    assert!(!ok && stderr.contains("videos") && !stderr.contains("panicked"), "{stderr}");
}
