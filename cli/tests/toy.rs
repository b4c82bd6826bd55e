//! The toy-world commands (`train-teacher`, `train-judge`, `eval`): bad arguments and damaged
//! or missing inputs fail with the reason named and a non-zero exit, writing nothing.

use std::fs;
use std::path::Path;
use std::process::Command;

/// Runs `avdm args`: (success, stderr).
fn avdm(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avdm")).args(args).output().expect("run avdm");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

/// The plan `avdm distill --dry-run` prints for `args` (which must succeed).
fn dry_run_plan(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_avdm")).args(["distill", "--dry-run"]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn assert_fails(args: &[&str], needle: &str) {
    let (ok, stderr) = avdm(args);
    assert!(!ok, "`avdm {}` succeeded", args.join(" "));
    assert!(stderr.contains(needle), "`avdm {}`: stderr does not mention `{needle}`:\n{stderr}", args.join(" "));
    assert!(!stderr.contains("panicked"), "`avdm {}` panicked:\n{stderr}", args.join(" "));
}

#[test]
fn train_teacher_refuses_bad_settings_and_occupied_or_damaged_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    assert_fails(&["train-teacher", "--out", path(&run), "--image-batch", "0"], "batch");
    assert_fails(&["train-teacher", "--out", path(&run), "--lr=-1"], "learning_rate");
    assert_fails(&["train-teacher", "--out", path(&run), "--stage", "sideways"], "--stage");
    assert!(!run.exists(), "a refused run left its folder behind");

    // A folder holding checkpoints is continued only on request.
    fs::create_dir_all(run.join("image")).unwrap();
    fs::write(run.join("image/state.json"), "{ not json").unwrap();
    assert_fails(&["train-teacher", "--out", path(&run)], "--resume");
    assert_fails(&["train-teacher", "--out", path(&run), "--resume"], "state.json");
    // The motion stage needs a finished image stage.
    let fresh = tmp.path().join("fresh");
    assert_fails(&["train-teacher", "--out", path(&fresh), "--stage", "motion"], "image");
}

#[test]
fn train_judge_writes_a_judge_and_eval_refuses_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let judge = tmp.path().join("judge");
    let (ok, stderr) = avdm(&["train-judge", "--out", path(&judge), "--steps", "2"]);
    assert!(ok, "train-judge failed:\n{stderr}");
    assert!(stderr.contains("accuracy on 480 real clips"), "no accuracy report:\n{stderr}");
    assert!(judge.join("model.safetensors").is_file() && judge.join("config.json").is_file());

    let out = tmp.path().join("eval");
    let missing = tmp.path().join("no-such-model");
    assert_fails(&["eval", "--model", path(&missing), "--judge", path(&judge), "--out", path(&out)], "no-such-model");
    assert_fails(&["eval", "--judge", path(&tmp.path().join("no-judge")), "--out", path(&out)], "no-judge");
    assert_fails(&["eval", "--steps", "25,0", "--out", path(&out)], "--steps");
    assert_fails(&["eval", "--clips", "1", "--out", path(&out)], "--clips");
    assert_fails(&["eval", "--sampler", "euler", "--out", path(&out)], "--sampler");
    // A judge file that is not a judge.
    fs::write(judge.join("model.safetensors"), b"garbage").unwrap();
    assert_fails(&["eval", "--judge", path(&judge), "--out", path(&out)], "model.safetensors");
    assert!(!out.exists(), "a refused eval left its output folder behind");
}

#[test]
fn eval_runs_on_the_shipped_assets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("eval");
    let eval = |out: &Path, threads: &str| {
        let (ok, stderr) =
            avdm(&["eval", "--steps", "2,1", "--clips", "6", "--batch", "2", "--threads", threads, "--out", path(out)]);
        assert!(ok, "eval on the shipped teacher and judge failed:\n{stderr}");
        serde_json::from_str::<serde_json::Value>(&fs::read_to_string(out.join("eval.json")).unwrap()).unwrap()
    };
    let json = eval(&out, "2");
    // Each batch has its own noise: the threads change the timing, not the measurements.
    let single = eval(&tmp.path().join("single"), "1");
    for (a, b) in json["rows"].as_array().unwrap().iter().zip(single["rows"].as_array().unwrap()) {
        for key in ["frechet", "accuracy", "flicker", "exact"] {
            assert_eq!(a[key], b[key], "{key} depends on the thread count");
        }
    }
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for (row, (name, nfe)) in rows.iter().zip([("ddim-2", 4), ("ddim-1", 2)]) {
        assert_eq!(row["name"], name);
        assert_eq!(row["nfe"], nfe, "guided DDIM evaluates the UNet twice per step");
        assert_eq!(row["clips"], 6);
        assert!(row["frechet"].as_f64().unwrap() >= 0.0 && row["frechet_floor"].as_f64().unwrap() >= 0.0);
        assert!(out.join(format!("{name}.gif")).is_file());
    }
    assert!(json["real_accuracy"].as_f64().unwrap() > 0.9, "the shipped judge misreads real clips");
    assert!(fs::read_to_string(out.join("eval.md")).unwrap().contains("| ddim-2 | 2 | 7.5 | 4 | 6 |"));
    // The teacher in bf16 (the judge in f32) samples clips the judge still reads as the prompts'.
    let bf16 = tmp.path().join("bf16");
    let (ok, stderr) =
        avdm(&["eval", "--steps", "2", "--clips", "6", "--batch", "2", "--dtype", "bf16", "--out", path(&bf16)]);
    assert!(ok, "eval --dtype bf16 failed:\n{stderr}");
    let bf16: serde_json::Value = serde_json::from_str(&fs::read_to_string(bf16.join("eval.json")).unwrap()).unwrap();
    let (f32_row, bf16_row) = (&rows[0], &bf16["rows"][0]);
    let accuracy = |row: &serde_json::Value| row["accuracy"].as_f64().unwrap();
    assert!((accuracy(f32_row) - accuracy(bf16_row)).abs() <= 0.2, "{f32_row}\n{bf16_row}");
}

#[test]
fn distill_runs_on_the_shipped_teacher_and_refuses_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (ok, stderr) =
        avdm(&["distill", "--steps", "1", "--losses", "adm-only", "--eval-clips", "0", "--out", path(&out)]);
    assert!(ok, "a one-step toy distillation failed:\n{stderr}");
    assert!(out.join("student/unet").is_dir() && out.join("checkpoint").is_dir());
    assert!(!out.join("eval.md").exists(), "--eval-clips 0 turns the eval off");
    // --resume without --config goes on with the run's own settings (here: ADM only), here
    // data parallel over a device list (the CPU twice).
    let (ok, stderr) = avdm(&["distill", "--resume", "--steps", "2", "--device", "cpu,cpu", "--out", path(&out)]);
    assert!(ok, "resuming failed:\n{stderr}");
    let metrics = fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!((metrics.lines().count(), last["step"].as_u64()), (2, Some(1)));
    assert!(last["loss_sdm"].is_null() && last["loss_adm"].is_number(), "{last}");
    assert_fails(&["distill", "--steps", "1", "--out", path(&out)], "--resume");
    assert_fails(&["distill", "--steps", "0", "--out", path(&tmp.path().join("zero"))], "steps");
    let bad = tmp.path().join("bad.toml");
    fs::write(&bad, "[sdm]\nframez = 3\n").unwrap();
    assert_fails(&["distill", "--config", path(&bad), "--out", path(&tmp.path().join("bad"))], "framez");
    assert!(!tmp.path().join("bad").exists(), "a refused config writes nothing");
    assert_fails(&["distill", "--config", path(&tmp.path().join("absent.toml"))], "absent.toml");
    assert_fails(&["distill", "--eval-clips", "1", "--out", path(&tmp.path().join("one"))], "eval.clips");
    assert_fails(&["distill", "--losses", "gan", "--out", path(&tmp.path().join("gan"))], "adm-only");
    assert_fails(&["distill", "--device", "cpu,tpu", "--out", path(&tmp.path().join("tpu"))], "tpu");
}

/// Style transfer's commands: a restyled image model fine-tuned from the shipped teacher on
/// the grey world becomes the 2D teacher of a distillation, its fake score started as the
/// paper's or from the student.
#[test]
fn a_restyled_image_model_is_the_2d_teacher_of_a_distillation() {
    let tmp = tempfile::tempdir().unwrap();
    let (restyled, run) = (tmp.path().join("grey"), tmp.path().join("run"));
    let teacher = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/toy/teacher");
    let train = [
        "train-teacher",
        "--stage",
        "image",
        "--style",
        "grey",
        "--init-from",
        teacher,
        "--image-steps",
        "2",
        "--image-batch",
        "2",
        "--out",
        path(&restyled),
    ];
    let (ok, stderr) = avdm(&train);
    assert!(ok, "{stderr}");
    let image_teacher = restyled.join("image-teacher");
    let index = fs::read_to_string(image_teacher.join("model_index.json")).unwrap();
    assert!(index.contains("StableDiffusionPipeline") && index.contains("UNet2DConditionModel"), "{index}");
    let plan = dry_run_plan(&["--teacher-2d", path(&image_teacher), "--out", path(&run)]);
    assert!(plan.contains(path(&image_teacher)), "the plan names the 2D teacher:\n{plan}");
    assert!(plan.contains("the fake score trains on the same range, from the 2D teacher"), "{plan}");
    let config = tmp.path().join("student-init.toml");
    let toml = format!("[models]\nteacher_2d = {:?}\n\n[fake_score]\ninit = \"student\"\n", path(&image_teacher));
    fs::write(&config, toml).unwrap();
    let plan = dry_run_plan(&["--config", path(&config), "--out", path(&run)]);
    assert!(plan.contains("from the student's own 2D UNet"), "{plan}");
    assert_fails(&["train-teacher", "--style", "hollow", "--out", path(&run)], "filled, outline, grey");
    let absent = tmp.path().join("absent");
    assert_fails(&["distill", "--teacher-2d", path(&absent), "--out", path(&run), "--dry-run"], "absent");
}

#[test]
fn distill_trains_in_bf16_and_resumes_only_in_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let run = ["distill", "--steps", "1", "--eval-clips", "0", "--dtype", "bf16", "--out", path(&out)];
    let (ok, stderr) = avdm(&run);
    assert!(ok, "a one-step bf16 distillation failed:\n{stderr}");
    let config = fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("dtype = \"bf16\""), "{config}");
    let metrics = fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for term in ["loss_adm", "loss_sdm", "loss_fake", "loss_disc", "grad_norm_student"] {
        assert!(first[term].as_f64().is_some_and(f64::is_finite), "{term}: {first}");
    }
    assert!(out.join("student/unet").is_dir());
    // The checkpoint holds bf16 weights: a resume must keep the precision.
    let (ok, stderr) = avdm(&["distill", "--resume", "--steps", "2", "--dtype", "f32", "--out", path(&out)]);
    assert!(!ok && stderr.contains("other settings") && !stderr.contains("panicked"), "{stderr}");
    let (ok, stderr) = avdm(&["distill", "--resume", "--steps", "2", "--out", path(&out)]);
    assert!(ok, "resuming in bf16 failed:\n{stderr}");
    assert_fails(&["distill", "--dtype", "f64", "--out", path(&tmp.path().join("f64"))], "bf16");
}

#[test]
fn distill_evaluates_the_student_during_the_run_and_against_the_teacher_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("small.toml");
    let settings = "steps = 2\nbatch = 1\nsample_every = 1\ncheckpoint_every = 1\n\
                    [head]\nchannels = 8\ngroups = 4\n\
                    [eval]\nclips = 4\nteacher_steps = [1]\nteacher_guidance = 3.0\n";
    fs::write(&config, settings).unwrap();
    let out = tmp.path().join("run");
    let (ok, stderr) = avdm(&["distill", "--config", path(&config), "--out", path(&out)]);
    assert!(ok, "a small toy distillation failed:\n{stderr}");
    let table = fs::read_to_string(out.join("eval.md")).unwrap();
    assert!(
        table.contains("| teacher ddim-1 | 1 | 3 | 2 | 4 |") && table.contains("| student-4 | 4 | - | 4 | 4 |"),
        "{table}"
    );
    assert!(out.join("samples/final-student-4.gif").is_file() && out.join("samples/step-000001.gif").is_file());
    let during = fs::read_to_string(out.join("samples/eval.jsonl")).unwrap();
    assert_eq!(during.lines().count(), 1, "one eval before the last step: {during}");
    let first: serde_json::Value =
        serde_json::from_str(fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    assert!(first["eval_frechet"].as_f64().is_some() && first["eval_accuracy"].as_f64().is_some(), "{first}");

    // `avdm eval --sampler student` samples with the timesteps of the folder's student.json.
    let student = out.join("student");
    fs::write(
        student.join("student.json"),
        r#"{"steps": 4, "timesteps": [999, 499], "prediction_type": "v_prediction"}"#,
    )
    .unwrap();
    let eval_out = tmp.path().join("eval");
    let args = ["eval", "--model", path(&student), "--sampler", "student", "--clips", "2", "--out", path(&eval_out)];
    let (ok, stderr) = avdm(&args);
    assert!(ok, "evaluating the student failed:\n{stderr}");
    let table = fs::read_to_string(eval_out.join("eval.md")).unwrap();
    assert!(table.contains("| student-2 | 2 | - | 2 |"), "{table}");
}

/// Starts `avdm args`, sends SIGINT once `ready` says the run is under way, and returns how it
/// ended: (success, stderr).
#[cfg(unix)]
fn interrupted(args: &[&str], ready: impl Fn() -> bool) -> (bool, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_avdm"))
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start avdm");
    let started = std::time::Instant::now();
    while !ready() {
        assert!(started.elapsed().as_secs() < 600, "`avdm {}` did not get going in 10 minutes", args.join(" "));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into())
}

#[cfg(unix)]
#[test]
fn an_interrupted_distillation_saves_its_progress_and_says_how_to_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let metrics = out.join("metrics.jsonl");
    let (ok, stderr) = interrupted(&["distill", "--steps", "200", "--eval-clips", "0", "--out", path(&out)], || {
        fs::read_to_string(&metrics).is_ok_and(|m| m.lines().count() >= 1)
    });
    assert!(!ok && stderr.contains("interrupted at step") && stderr.contains("--resume"), "{stderr}");
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("checkpoint/state.json")).unwrap()).unwrap();
    let lines = fs::read_to_string(&metrics).unwrap().lines().count() as u64;
    assert_eq!(state["step"].as_u64(), Some(lines), "the checkpoint holds every finished iteration");
    assert!(lines < 200, "the run stopped early");
}

#[cfg(unix)]
#[test]
fn an_interrupted_teacher_training_saves_its_progress_and_says_how_to_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let args = ["train-teacher", "--image-batch", "2", "--checkpoint-every", "1000", "--out", path(&out)];
    let (ok, stderr) = interrupted(&args, || out.join("config.json").exists());
    assert!(!ok && stderr.contains("of the image stage") && stderr.contains("--resume"), "{stderr}");
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("image/state.json")).unwrap()).unwrap();
    let step = state["step"].as_u64().unwrap();
    assert!((1..3000).contains(&step), "the checkpoint is at the interrupted step, not {step}");
    assert!(stderr.contains(&format!("interrupted at step {step} of 3000")), "{stderr}");
    assert!(!out.join("teacher").exists(), "no teacher folder for an unfinished run");
}
