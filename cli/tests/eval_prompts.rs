//! `avdm eval --prompts`: an eval-prompt set read from a CSV, optionally with reference videos
//! that stand in for the rendered real clips.

use std::fs;
use std::path::Path;
use std::process::Command;

use avdm_import::{Video, write_video};
use avdm_train::toy::world::{ClipSpec, Split, ToyWorld};
use burn::prelude::*;

fn avdm(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avdm")).args(args).output().expect("run avdm");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A toy clip written as an mp4 (what a user's reference video would be).
fn write_reference(world: &ToyWorld, spec: &ClipSpec, file: &Path) {
    let (f, s) = (world.frames, world.size);
    let clip = Tensor::<1>::from_floats(world.render(spec).as_slice(), &Device::flex()).reshape([3, f, s, s]);
    write_video(&Video::from_tensor(clip.permute([1, 0, 2, 3]) / 2.0 + 0.5), file, 8).unwrap();
}

#[test]
fn eval_samples_a_prompt_set_against_its_reference_videos() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let world = ToyWorld::default();
    // 12 of the 48 combinations.
    let specs: Vec<ClipSpec> = (0..12).map(|k| world.spec(7, Split::Eval, 4 * k)).collect();
    let mut csv = String::from("id,caption,clip\n");
    for (i, spec) in specs.iter().enumerate() {
        write_reference(&world, spec, &dir.join(format!("ref{i}.mp4")));
        // Users write captions as sentences.
        let mut caption = spec.attributes.caption();
        caption[..1].make_ascii_uppercase();
        csv += &format!("{i},{caption}.,ref{i}.mp4\n");
    }
    fs::write(dir.join("broken.mp4"), b"not a video").unwrap();
    csv += "90,a red circle moving up,broken.mp4\n91,a red circle moving down,gone.mp4\n";
    let table = dir.join("prompts.csv");
    fs::write(&table, csv).unwrap();

    let out = dir.join("eval");
    let (ok, stderr) = avdm(&[
        "eval",
        "--prompts",
        path(&table),
        "--video-column",
        "clip",
        "--steps",
        "1",
        "--batch",
        "7",
        "--out",
        path(&out),
    ]);
    assert!(ok, "eval on a prompt set failed:\n{stderr}");
    assert!(stderr.contains("row 15: ") && stderr.contains("gone.mp4 not found"), "{stderr}");
    assert!(
        stderr.contains("12 reference videos, 1 could not be decoded") && stderr.contains("broken.mp4"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(json["rows"][0]["clips"], 13, "one clip per prompt by default");
    assert_eq!(json["prompt_set"]["prompts"], 13);
    assert_eq!(json["prompt_set"]["reference_videos"], true);
    let accuracy = json["real_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "the judge misreads the reference videos of their own prompts: {accuracy}");

    // A random subset of the prompts, renders as the real clips.
    let (ok, stderr) =
        avdm(&["eval", "--prompts", path(&table), "--prompt-count", "5", "--steps", "1", "--out", path(&out)]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(
        (json["rows"][0]["clips"].as_u64(), json["prompt_set"]["reference_videos"].as_bool()),
        (Some(5), Some(false))
    );
    assert!(json["rows"][0]["diversity"].is_null(), "one clip per prompt: no diversity to measure");

    // Three seeds of each of 3 prompts: the diversity per prompt, the model's and the real clips'.
    let args = ["eval", "--prompts", path(&table), "--prompt-count", "3", "--clips", "9", "--steps", "1"];
    let (ok, stderr) = avdm(&[&args[..], &["--out", path(&out)]].concat());
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    let (model, real) = (json["rows"][0]["diversity"].as_f64(), json["rows"][0]["diversity_real"].as_f64());
    assert!(model.unwrap() > 0.0 && real.unwrap() > 0.0, "{}", json["rows"][0]);
    let markdown = fs::read_to_string(out.join("eval.md")).unwrap();
    assert!(markdown.contains("diversity (real)") && markdown.contains("| style |"), "{markdown}");
    let style = json["rows"][0]["style"].as_object().expect("the style probe's reading");
    let fractions: Vec<f64> = ["filled", "outline", "grey"].iter().map(|s| style[*s].as_f64().unwrap()).collect();
    assert!((fractions.iter().sum::<f64>() - 1.0).abs() < 1e-9, "fractions of the clips: {style:?}");

    // The toy judge reads toy captions only.
    fs::write(&table, "caption\na cat playing the piano\n").unwrap();
    let (ok, stderr) = avdm(&["eval", "--prompts", path(&table), "--out", path(&dir.join("cat"))]);
    assert!(
        !ok && stderr.contains("a cat playing the piano") && stderr.contains("not a toy-world caption"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
    let (ok, stderr) = avdm(&["eval", "--video-column", "clip", "--out", path(&dir.join("none"))]);
    assert!(!ok && stderr.contains("--prompts"), "{stderr}");
}
