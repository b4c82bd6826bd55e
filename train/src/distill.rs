//! An AVDM2 distillation run (`avdm distill`): the networks from the teacher, the iteration
//! loop with a metrics log, atomic checkpoints and exact resume, and the student exported as a
//! pipeline folder at the end.
//!
//! Run folder: `config.toml` (the resolved settings), `metrics.jsonl` (one
//! [`IterationReport`] per line), `checkpoint/` (student, fake score and head with their
//! optimizers, and the step), `student/` (the result, diffusers layout).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use avdm_import::{
    AdapterSource, ExportDtype, LoadOptions, LoadedPipeline, export_unet_motion, load_pipeline, load_unet_2d,
    read_scheduler, write_student_config,
};
use avdm_model::sched::{BetaSchedule, DdimConfig, NoiseSchedule, StudentConfig, StudentSampler};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointWriter, replace_folder, sibling, write_file_atomically};
use crate::distill_config::{DistillConfig, EvalConfig};
use crate::distill_data::{DistillData, TeacherInput};
use crate::distill_eval::{ToyEval, append_row, with_unet};
use crate::error::TrainError;
use crate::eval::student_sampler;
use crate::learner::{FrozenReplica, IterationReport, Learner, Networks, Optimizers, Parameterisation};
use crate::toy::assets::default_assets_dir;
use burn::prelude::*;

/// What a checkpoint records besides the networks and optimizers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillState {
    /// Iterations done.
    pub step: usize,
    pub config: DistillConfig,
    /// Training time over all sessions of the run.
    pub seconds: f64,
}

/// The teacher pipeline folder of a config (the shipped toy teacher by default).
pub fn teacher_folder(config: &DistillConfig) -> PathBuf {
    config.models.teacher.clone().unwrap_or_else(|| default_assets_dir().join("teacher"))
}

/// A scheduler config's betas, with `beta_schedule` (its own, or another over the same range),
/// and its prediction type.
fn parameterisation(s: &DdimConfig, beta_schedule: BetaSchedule) -> Result<Parameterisation, TrainError> {
    let schedule = NoiseSchedule::new(beta_schedule, s.beta_start, s.beta_end, s.num_train_timesteps)?;
    Ok(Parameterisation { schedule, prediction: s.prediction_type })
}

/// How the video teacher (and the student) is queried: its scheduler config.
pub fn video_parameterisation(loaded: &LoadedPipeline) -> Result<Parameterisation, TrainError> {
    parameterisation(&loaded.scheduler, loaded.scheduler.beta_schedule)
}

/// The 2D teacher and how it is queried. From `models.teacher_2d` (a pipeline folder with a 2D
/// UNet): its UNet and its scheduler config. Otherwise the video teacher's own 2D UNet (taken by
/// [`Networks::new`]) with SD1.5's `scaled_linear` schedule over the teacher's betas (what its
/// image model was trained with) and the teacher's prediction type.
pub fn load_teacher_2d(
    config: &DistillConfig,
    loaded: &LoadedPipeline,
    device: &Device,
) -> Result<(Option<avdm_model::UNetMotionModel>, Parameterisation), TrainError> {
    match &config.models.teacher_2d {
        Some(dir) => {
            let s = read_scheduler(dir)?;
            let options = LoadOptions::in_precision(config.dtype);
            let unet = load_unet_2d(&dir.join("unet"), &options, device)?;
            let (video, image) = (&loaded.unet_config, &unet.config);
            let fits = [
                ("in_channels", video.in_channels, image.in_channels),
                ("out_channels", video.out_channels, image.out_channels),
                ("cross_attention_dim", video.cross_attention_dim, image.cross_attention_dim),
            ];
            if let Some((field, want, got)) = fits.into_iter().find(|(_, want, got)| want != got) {
                return Err(TrainError::setting(
                    "models.teacher_2d",
                    format!("{}: its UNet has {field} {got}, the video teacher's {want}", dir.display()),
                ));
            }
            Ok((Some(unet.model), parameterisation(&s, s.beta_schedule)?))
        }
        None => Ok((None, parameterisation(&loaded.scheduler, BetaSchedule::ScaledLinear)?)),
    }
}

/// Settings that may change when a run is resumed (its length, how often it saves and
/// evaluates, threads).
fn resumable_view(config: &DistillConfig) -> DistillConfig {
    DistillConfig {
        steps: 0,
        checkpoint_every: 0,
        sample_every: 0,
        threads: 0,
        eval: EvalConfig::default(),
        ..config.clone()
    }
}

/// Keeps the lines of `metrics.jsonl` before `step` (a resumed run rewrites what came after).
fn truncate_metrics(path: &Path, step: usize) -> Result<(), TrainError> {
    if !path.exists() {
        return Ok(());
    }
    let text = fs::read_to_string(path).map_err(TrainError::io(path))?;
    let kept: String = text
        .lines()
        .filter(|line| serde_json::from_str::<IterationReport>(line).is_ok_and(|r| r.step < step))
        .map(|line| format!("{line}\n"))
        .collect();
    write_file_atomically(path, kept)
}

/// Appends the videos a step could not decode to the run's `skipped.txt` (`step N: path:
/// reason` per line).
fn log_skipped(path: &Path, step: usize, skipped: &[String]) -> Result<(), TrainError> {
    if skipped.is_empty() {
        return Ok(());
    }
    let lines: String = skipped.iter().map(|s| format!("step {step}: {s}\n")).collect();
    let mut file = fs::OpenOptions::new().create(true).append(true).open(path).map_err(TrainError::io(path))?;
    file.write_all(lines.as_bytes()).map_err(TrainError::io(path))
}

/// The networks and optimizers of a run, from the checkpoint under `out` when resuming.
struct RunState {
    nets: Networks,
    optim: Optimizers,
    state: DistillState,
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn save(out: &Path, run: &RunState) -> Result<(), TrainError> {
    let writer = CheckpointWriter::begin(&checkpoint_dir(out))?;
    writer.module("student", &run.nets.student)?;
    writer.optimizer("student", &run.optim.student)?;
    writer.module("fake_score", &run.nets.fake_score)?;
    writer.optimizer("fake_score", &run.optim.fake_score)?;
    writer.module("head", &run.nets.head)?;
    writer.optimizer("head", &run.optim.head)?;
    writer.state(&run.state)?;
    writer.commit()
}

fn restore(out: &Path, config: &DistillConfig, mut run: RunState) -> Result<RunState, TrainError> {
    let Some(checkpoint) = Checkpoint::find(&checkpoint_dir(out)) else {
        return Ok(run);
    };
    let saved: DistillState = checkpoint.state()?;
    if resumable_view(&saved.config) != resumable_view(config) {
        return Err(TrainError::Checkpoint {
            path: checkpoint.dir().into(),
            message: "was written with other settings (only steps, checkpoint_every, sample_every, eval and threads may change on resume); resume with its config.toml or start a new run folder".into(),
        });
    }
    run.nets.student = checkpoint.module("student", run.nets.student)?;
    run.optim.student = checkpoint.optimizer("student", run.optim.student)?;
    run.nets.fake_score = checkpoint.module("fake_score", run.nets.fake_score)?;
    run.optim.fake_score = checkpoint.optimizer("fake_score", run.optim.fake_score)?;
    run.nets.head = checkpoint.module("head", run.nets.head)?;
    run.optim.head = checkpoint.optimizer("head", run.optim.head)?;
    run.state = DistillState { config: config.clone(), ..saved };
    Ok(run)
}

/// Writes the student as a pipeline folder at `dir`: the teacher's folder with the student's
/// UNet, and `student.json` (the sampler the student was trained for).
pub fn export_student(
    teacher: &Path,
    loaded: &LoadedPipeline,
    student: &avdm_model::UNetMotionModel,
    sampler: &StudentConfig,
    dir: &Path,
) -> Result<(), TrainError> {
    let staging = sibling(dir, ".writing");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(TrainError::io(&staging))?;
    }
    copy_folder(teacher, &staging, &["unet", "motion_adapter"])?;
    export_unet_motion(student, &loaded.unet_config, &staging.join("unet"), ExportDtype::F32)?;
    write_student_config(&staging, sampler)?;
    replace_folder(&staging, dir)
}

/// Copies the folder `from` to `to`, leaving out the top-level entries named in `skip`.
fn copy_folder(from: &Path, to: &Path, skip: &[&str]) -> Result<(), TrainError> {
    fs::create_dir_all(to).map_err(TrainError::io(to))?;
    for entry in fs::read_dir(from).map_err(TrainError::io(from))? {
        let entry = entry.map_err(TrainError::io(from))?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if src.is_dir() {
            copy_folder(&src, &dst, &[])?;
        } else {
            fs::copy(&src, &dst).map_err(TrainError::io(&src))?;
        }
    }
    Ok(())
}

/// Runs (or resumes) a distillation into `out` on the autodiff `devices`: the first holds the
/// networks and the optimizers, and every update's batch is split over all of them (data
/// parallel, [`crate::data_parallel`]). `on_iteration` sees
/// every report (the dashboard) and returns whether to go on: when it says stop, the run saves
/// a checkpoint and returns early. Returns the final state; after the last step the student is
/// at `out/student`.
pub fn distill(
    config: &DistillConfig,
    out: &Path,
    resume: bool,
    devices: &[Device],
    mut on_iteration: impl FnMut(&IterationReport) -> bool,
) -> Result<DistillState, TrainError> {
    config.validate()?;
    let (device, replica_devices) =
        devices.split_first().ok_or_else(|| TrainError::setting("devices", "a distillation needs a device"))?;
    for device in devices {
        config.dtype.configure(device).map_err(|e| TrainError::setting("dtype", e))?;
    }
    let options = LoadOptions::in_precision(config.dtype);
    let teacher_dir = teacher_folder(config);
    let adapter = config.models.motion_adapter.as_deref().map(AdapterSource::from_path);
    let loaded = load_pipeline(&teacher_dir, adapter.as_ref(), &options, device)?;
    let video = video_parameterisation(&loaded)?;
    let (teacher_2d, image) = load_teacher_2d(config, &loaded, device)?;
    let student_config = StudentConfig { prediction_type: video.prediction, ..config.student.clone() };
    let sampler = StudentSampler::new(video.schedule.clone(), &student_config)?;
    let nets =
        Networks::new(loaded.pipeline.text_encoder.clone(), loaded.pipeline.unet.clone(), teacher_2d, config, device);
    let fresh = RunState {
        nets,
        optim: Optimizers::new(&config.optim),
        state: DistillState { step: 0, config: config.clone(), seconds: 0.0 },
    };
    fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let mut run = if resume { restore(out, config, fresh)? } else { fresh };
    let metrics_path = out.join("metrics.jsonl");
    truncate_metrics(&metrics_path, run.state.step)?;
    let mut metrics =
        fs::OpenOptions::new().create(true).append(true).open(&metrics_path).map_err(TrainError::io(&metrics_path))?;
    let config_path = out.join("config.toml");
    write_file_atomically(&config_path, config.to_toml())?;

    let inner = device.clone().without_autodiff();
    let evals_during = config.sample_every > 0 && config.sample_every < config.steps;
    let toy_eval = if evals_during { ToyEval::for_run(config, false, &inner)? } else { None };
    let eval_sampler = student_sampler(&loaded.scheduler, &student_config)?;
    let learner = Learner {
        config,
        tokenizer: &loaded.tokenizer,
        video,
        image,
        sampler,
        device: device.clone(),
        replicas: replica_devices.iter().map(|device| FrozenReplica::new(&run.nets, device)).collect(),
    };
    let vae_scale = loaded.vae_config.as_ref().map_or(1, |v| 1 << v.block_out_channels.len().saturating_sub(1));
    let teacher_input = TeacherInput { unet: &loaded.unet_config, vae: loaded.pipeline.vae.as_ref(), vae_scale };
    let source = DistillData::open(&config.data, &teacher_input)?;
    let skipped_path = out.join("skipped.txt");
    let started = Instant::now();
    let seconds_before = run.state.seconds;
    while run.state.step < config.steps {
        let step = run.state.step;
        let embed = |captions: &[String]| learner.embed(&run.nets.text_encoder, captions);
        let step_data = source.iteration(config, step, &embed, device)?;
        log_skipped(&skipped_path, step, &step_data.skipped)?;
        let mut report = learner.iterate(step, &mut run.nets, &mut run.optim, &step_data.data)?;
        let done = step + 1;
        // (The final table evaluates the student after the last step.)
        if let Some(eval) =
            toy_eval.as_ref().filter(|_| done.is_multiple_of(config.sample_every) && done < config.steps)
        {
            let pipeline = with_unet(&loaded.pipeline, &run.nets.student);
            let grid = out.join("samples").join(format!("step-{done:06}.gif"));
            let row = eval.row(&format!("student step {done}"), &pipeline, &loaded.tokenizer, &eval_sampler, &grid)?;
            append_row(&out.join("samples").join("eval.jsonl"), &row)?;
            (report.eval_frechet, report.eval_accuracy) = (Some(row.frechet), Some(row.accuracy));
        }
        let line = serde_json::to_string(&report).expect("a report serialises") + "\n";
        metrics.write_all(line.as_bytes()).map_err(TrainError::io(&metrics_path))?;
        let go_on = on_iteration(&report);
        run.state.step += 1;
        if !go_on || run.state.step.is_multiple_of(config.checkpoint_every) || run.state.step == config.steps {
            run.state.seconds = seconds_before + started.elapsed().as_secs_f64();
            metrics.flush().map_err(TrainError::io(&metrics_path))?;
            save(out, &run)?;
        }
        if !go_on {
            return Ok(run.state);
        }
    }
    export_student(&teacher_dir, &loaded, &run.nets.student, &student_config, &out.join("student"))?;
    Ok(run.state)
}
