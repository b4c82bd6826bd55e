//! `avdm distill` as two ranks of a torchrun-style launch on this machine (the TCP collective):
//! the same student as one process with the same global batch; a signal to one rank stops
//! both at a checkpoint, a killed rank stops the other with an error, and both resume to the
//! uninterrupted result; ranks with different settings refuse to start.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use avdm_train::distill::config::DistillConfig;

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn distill(config: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_avdm"));
    command.args(["distill", "--config", path(config), "--out", path(out)]).args(extra);
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

/// Ranks 0 and 1 of a launch (torchrun's variables) on a free port, one thread each.
fn ranks(config: &Path, out: &Path, extra: &[&str]) -> [Child; 2] {
    ranks_with(config, out, [extra, extra])
}

/// The same with each rank's own extra arguments.
fn ranks_with(config: &Path, out: &Path, extra: [&[&str]; 2]) -> [Child; 2] {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    [0, 1].map(|rank| {
        let mut command = distill(config, out, &[&["--threads", "1", "--collective", "tcp"], extra[rank]].concat());
        command.env("RANK", rank.to_string()).env("WORLD_SIZE", "2").env("LOCAL_RANK", rank.to_string());
        command.env("MASTER_ADDR", "127.0.0.1").env("MASTER_PORT", "1").env("AVDM_RENDEZVOUS_PORT", &port);
        command.env("AVDM_RENDEZVOUS_TIMEOUT", "60");
        command.spawn().unwrap()
    })
}

fn finish(children: [Child; 2]) -> [Output; 2] {
    children.map(|child| child.wait_with_output().unwrap())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn toy(dir: &Path, steps: usize) -> std::path::PathBuf {
    let mut toy = DistillConfig { steps, checkpoint_every: 1, sample_every: 0, ..DistillConfig::toy() };
    toy.eval.clips = 0;
    let file = dir.join(format!("toy-{steps}.toml"));
    fs::write(&file, toy.to_toml()).unwrap();
    file
}

/// The student UNet's weights of a finished run, as f32 values by tensor name.
fn student(out: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = fs::read(out.join("student/unet/diffusion_pytorch_model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<(String, Vec<f32>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            (name, values)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn assert_same_student(a: &Path, b: &Path, tolerance: f32) {
    let (a, b) = (student(a), student(b));
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f32;
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        for (u, v) in x.iter().zip(y) {
            let diff = (u - v).abs() / v.abs().max(1e-3);
            assert!(diff <= tolerance, "{name}: {u} against {v}");
            worst = worst.max(diff);
        }
    }
    eprintln!("students agree to {worst:.1e}");
}

#[test]
fn two_ranks_train_the_student_of_one_process_and_resume_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let config = toy(tmp.path(), 3);

    // One process, the toy batch of 2 split over 2 threads: the ranks' shards, summed in order.
    let single = tmp.path().join("single");
    let out = distill(&config, &single, &["--threads", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let two = tmp.path().join("two");
    let [lead, other] = finish(ranks(&config, &two, &[]));
    assert!(lead.status.success() && other.status.success(), "{}\n{}", stderr(&lead), stderr(&other));
    assert!(stderr(&other).contains("rank 1 of 2"), "{}", stderr(&other));
    assert_same_student(&two, &single, 1e-5);
    let metrics = |dir: &Path| fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics(&two).lines().count(), 3, "rank 0 alone writes the metrics");
    assert!(!two.join("skipped-rank1.txt").exists());

    // A run of 5 steps stopped by a signal to one rank, then by a killed rank, and resumed
    // each time, against the uninterrupted ranks.
    let long = toy(tmp.path(), 5);
    let whole = tmp.path().join("whole");
    let [lead, other] = finish(ranks(&long, &whole, &[]));
    assert!(lead.status.success() && other.status.success(), "{}\n{}", stderr(&lead), stderr(&other));
    let killed = tmp.path().join("killed");
    let iterations = |n: usize| {
        let start = Instant::now();
        while fs::read_to_string(killed.join("metrics.jsonl")).map_or(0, |m| m.lines().count()) < n {
            assert!(start.elapsed() < Duration::from_secs(300), "no progress to {n} iterations");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // SIGTERM to rank 1 alone after an iteration: every rank stops at a checkpoint.
    let [lead, other] = ranks(&long, &killed, &[]);
    iterations(1);
    unsafe { libc::kill(other.id() as libc::pid_t, libc::SIGTERM) };
    let [lead, other] = finish([lead, other]);
    assert!(stderr(&lead).contains("stopped at step"), "{}", stderr(&lead));
    assert!(stderr(&other).contains("interrupted at step"), "{}", stderr(&other));
    // Rank 1 killed outright after the next iteration: rank 0 stops with an error naming it,
    // its checkpoint intact.
    let [lead, mut other] = ranks(&long, &killed, &["--resume"]);
    let done = fs::read_to_string(killed.join("metrics.jsonl")).unwrap().lines().count();
    iterations(done + 1);
    other.kill().unwrap();
    other.wait().unwrap();
    let lead = lead.wait_with_output().unwrap();
    assert!(!lead.status.success(), "rank 0 goes on without rank 1");
    assert!(stderr(&lead).contains("lost rank 1"), "{}", stderr(&lead));
    assert!(!killed.join("student").exists());
    // Both resume and end where the uninterrupted ranks did.
    let [lead, other] = finish(ranks(&long, &killed, &["--resume"]));
    assert!(lead.status.success() && other.status.success(), "{}\n{}", stderr(&lead), stderr(&other));
    assert_eq!(metrics(&killed), metrics(&whole), "the resumed metrics differ");
    assert_same_student(&killed, &whole, 0.0);

    // Ranks launched with different settings refuse to start, naming the setting.
    let mixed = tmp.path().join("mixed");
    let [lead, other] = finish(ranks_with(&config, &mixed, [&[], &["--steps", "4"]]));
    assert!(!lead.status.success() && !other.status.success());
    assert!(stderr(&other).contains("rank 1's settings differ from rank 0's (steps = 4)"), "{}", stderr(&other));
    assert!(stderr(&lead).contains("another rank's settings or step differ"), "{}", stderr(&lead));
}
