//! `avdm distill` killed with SIGKILL at arbitrary moments (a checkpoint every step, so some
//! kills land while one is being written) and resumed each time ends with the metrics and the
//! student of an uninterrupted run, byte for byte.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use avdm_train::distill::config::DistillConfig;

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn distill(config: &Path, out: &Path, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_avdm"));
    command.args(["distill", "--config", path(config), "--out", path(out), "--threads", "2"]);
    if resume {
        command.arg("--resume");
    }
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

#[test]
fn a_run_killed_at_any_moment_resumes_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("toy.toml");
    let mut toy = DistillConfig { steps: 5, checkpoint_every: 1, sample_every: 0, ..DistillConfig::toy() };
    toy.eval.clips = 0;
    fs::write(&config, toy.to_toml()).unwrap();

    let whole = tmp.path().join("whole");
    let started = Instant::now();
    let out = distill(&config, &whole, false).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let uninterrupted = started.elapsed();

    // Kills spread over the run's length, each followed by a resume, until a run finishes.
    let killed = tmp.path().join("killed");
    let mut kills = 0;
    for attempt in 0.. {
        let resume = killed.join("checkpoint").exists();
        let mut child = distill(&config, &killed, resume).spawn().unwrap();
        let fraction = [0.35, 0.5, 0.62, 0.71, 0.83, 0.9][attempt % 6];
        let deadline = Instant::now() + uninterrupted.mul_f64(fraction);
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match finished {
            Some(status) => {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                assert!(status.success(), "attempt {attempt}: {stderr}");
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
        assert!(attempt < 40, "no run finished after {kills} kills");
    }
    assert!(kills >= 2, "the run finished before it could be killed twice ({kills})");
    eprintln!("resumed after {kills} kills");
    let read = |dir: &Path, file: &str| fs::read(dir.join(file)).unwrap();
    assert_eq!(
        String::from_utf8(read(&killed, "metrics.jsonl")).unwrap(),
        String::from_utf8(read(&whole, "metrics.jsonl")).unwrap(),
        "the metrics of the killed run differ"
    );
    let unet = "student/unet/diffusion_pytorch_model.safetensors";
    assert!(read(&killed, unet) == read(&whole, unet), "the students differ after {kills} kills");
    assert_eq!(read(&killed, "student/student.json"), read(&whole, "student/student.json"));
}
