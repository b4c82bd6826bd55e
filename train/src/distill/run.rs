//! An AVDM2 distillation run (`avdm distill`): the networks from the teacher, the iteration
//! loop with a metrics log, atomic checkpoints and exact resume, and the student exported as a
//! pipeline folder at the end.
//!
//! Run folder: `config.toml` (the resolved settings), `metrics.jsonl` (one
//! [`IterationReport`] per line), `checkpoint/` (student, fake score and head with their
//! optimizers, and the step), `plots/` (every metric over the iterations, [`crate::monitor::plots`],
//! written with each checkpoint), `student/` (the result, diffusers layout). In a multi-process
//! run ([`crate::cluster`]) rank 0 writes them all; the other ranks read the checkpoint to
//! resume and write only `skipped-rank<N>.txt` (the unreadable rows of their share).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use avdm_import::{
    AdapterSource, ExportDtype, LoadOptions, LoadedPipeline, export_unet_motion, load_pipeline, load_unet_2d,
    read_scheduler, write_scheduler, write_student_config,
};
use avdm_model::sched::{BetaSchedule, DdimConfig, NoiseSchedule, StudentConfig, StudentSampler};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointWriter, replace_folder, sibling, write_file_atomically};
use crate::cluster::Collective;
use crate::cluster::start::{agree_on_start, take_lead_parameters};
use crate::distill::config::{DistillConfig, EvalConfig};
use crate::distill::data::{DistillData, TeacherInput};
use crate::distill::ema::{ema_start, ema_update};
use crate::distill::eval::{ToyEval, append_row, with_unet};
use crate::distill::learner::{FrozenReplica, IterationReport, Learner, Networks, Optimizers, Parameterisation};
use crate::error::TrainError;
use crate::eval::toy::student_sampler;
use crate::monitor::plots::write_plots;
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

/// How a network with scheduler config `s` is queried: its betas and prediction type.
fn parameterisation(s: &DdimConfig) -> Result<Parameterisation, TrainError> {
    let schedule = NoiseSchedule::new(s.beta_schedule, s.beta_start, s.beta_end, s.num_train_timesteps)?;
    Ok(Parameterisation { schedule, prediction: s.prediction_type })
}

/// The 2D teacher and the scheduler config it is queried with. From `models.teacher_2d` (a
/// pipeline folder with a 2D UNet): its UNet and its scheduler config. Otherwise the video
/// teacher's own 2D UNet (taken by [`Networks::new`]) with SD1.5's `scaled_linear` betas over
/// the teacher folder's range (what its image model was trained with) and its prediction type.
pub fn load_teacher_2d(
    config: &DistillConfig,
    loaded: &LoadedPipeline,
    device: &Device,
) -> Result<(Option<avdm_model::UNetMotionModel>, DdimConfig), TrainError> {
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
            Ok((Some(unet.model), s))
        }
        None => Ok((None, DdimConfig { beta_schedule: BetaSchedule::ScaledLinear, ..loaded.scheduler.clone() })),
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

/// The settings (`section.key`) in which two configs differ.
fn changed_settings(a: &DistillConfig, b: &DistillConfig) -> Vec<String> {
    fn walk(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
        match (a, b) {
            (toml::Value::Table(a), toml::Value::Table(b)) => {
                let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
                for key in keys {
                    let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    match (a.get(key), b.get(key)) {
                        (Some(x), Some(y)) => walk(&name, x, y, out),
                        _ => out.push(name),
                    }
                }
            }
            _ if a != b => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let value = |c: &DistillConfig| toml::Value::try_from(c).expect("a config serialises");
    let mut out = Vec::new();
    walk("", &value(a), &value(b), &mut out);
    out
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
    /// The moving average of the student, when `config.ema` is positive.
    ema: Option<avdm_model::UNetMotionModel>,
    state: DistillState,
}

impl RunState {
    /// The student to evaluate and export: the moving average when there is one.
    fn student(&self) -> &avdm_model::UNetMotionModel {
        self.ema.as_ref().unwrap_or(&self.nets.student)
    }
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn save(out: &Path, run: &RunState) -> Result<(), TrainError> {
    let writer = CheckpointWriter::begin(&checkpoint_dir(out))?;
    writer.module("student", &run.nets.student)?;
    writer.optimizer("student", &run.optim.student)?;
    if let Some(ema) = &run.ema {
        writer.module("student_ema", ema)?;
    }
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
    let changed = changed_settings(&resumable_view(&saved.config), &resumable_view(config));
    if !changed.is_empty() {
        return Err(TrainError::Checkpoint {
            path: checkpoint.dir().into(),
            message: format!(
                "was written with other settings ({} changed; only steps, checkpoint_every, sample_every, eval and threads may change on resume); resume with its config.toml or start a new run folder",
                changed.join(", ")
            ),
        });
    }
    run.nets.student = checkpoint.module("student", run.nets.student)?;
    run.optim.student = checkpoint.optimizer("student", run.optim.student)?;
    if let Some(ema) = run.ema.take() {
        run.ema = Some(checkpoint.module("student_ema", ema)?);
    }
    run.nets.fake_score = checkpoint.module("fake_score", run.nets.fake_score)?;
    run.optim.fake_score = checkpoint.optimizer("fake_score", run.optim.fake_score)?;
    run.nets.head = checkpoint.module("head", run.nets.head)?;
    run.optim.head = checkpoint.optimizer("head", run.optim.head)?;
    run.state = DistillState { config: config.clone(), ..saved };
    Ok(run)
}

/// A trained student and what it was trained for.
pub struct Exported<'a> {
    pub unet: &'a avdm_model::UNetMotionModel,
    /// Its sampler (`student.json`, with the betas it was trained on).
    pub sampler: &'a StudentConfig,
    /// The scheduler config it was trained on (the video schedule).
    pub scheduler: &'a DdimConfig,
}

/// Writes the student as a pipeline folder at `dir`: the teacher's folder with the student's
/// UNet, the scheduler config it was trained on (`scheduler/`, so that diffusers samples it on
/// the same schedule) and `student.json` (the sampler it was trained for).
pub fn export_student(
    teacher: &Path,
    loaded: &LoadedPipeline,
    student: Exported,
    dir: &Path,
) -> Result<(), TrainError> {
    let staging = sibling(dir, ".writing");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(TrainError::io(&staging))?;
    }
    copy_folder(teacher, &staging, &["unet", "motion_adapter"])?;
    export_unet_motion(student.unet, &loaded.unet_config, &staging.join("unet"), ExportDtype::F32)?;
    write_scheduler(&staging, student.scheduler)?;
    write_student_config(&staging, student.sampler)?;
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

/// What a run loads and resolves before its first step, for [`distill`] and its dry run
/// ([`crate::distill::plan`]).
pub struct RunSetup {
    pub teacher_dir: PathBuf,
    pub loaded: LoadedPipeline,
    /// The video teacher's (and the student's) scheduler config after the
    /// [`avdm_model::sched::VideoSchedule`] rule of `config.video_schedule`.
    pub video_scheduler: DdimConfig,
    pub video: Parameterisation,
    /// The 2D teacher's (and the 2D fake score's) scheduler config and parameterisation.
    pub image_scheduler: DdimConfig,
    pub image: Parameterisation,
    /// The sampler the student is trained for (and exported with, in `student.json`).
    pub student_config: StudentConfig,
    pub sampler: StudentSampler,
    pub nets: Networks,
}

impl RunSetup {
    /// Loads the teacher (and the 2D teacher) of `config` on the autodiff `device` and makes
    /// the networks of a fresh run.
    pub fn load(config: &DistillConfig, device: &Device) -> Result<Self, TrainError> {
        let options = LoadOptions::in_precision(config.dtype);
        let teacher_dir = teacher_folder(config);
        let adapter = config.models.motion_adapter.as_deref().map(AdapterSource::from_path);
        let loaded = load_pipeline(&teacher_dir, adapter.as_ref(), &options, device)?;
        let video_scheduler = loaded.video_scheduler(config.video_schedule);
        let video = parameterisation(&video_scheduler)?;
        let (teacher_2d, image_scheduler) = load_teacher_2d(config, &loaded, device)?;
        let image = parameterisation(&image_scheduler)?;
        let student_config = StudentConfig {
            prediction_type: video.prediction,
            beta_schedule: Some(video_scheduler.beta_schedule),
            ..config.student.clone()
        };
        let sampler = StudentSampler::new(video.schedule.clone(), &student_config)?;
        let (text_encoder, unet) = (loaded.pipeline.text_encoder.clone(), loaded.pipeline.unet.clone());
        let nets = Networks::new(text_encoder, unet, teacher_2d, config, device);
        Ok(Self { teacher_dir, loaded, video_scheduler, video, image_scheduler, image, student_config, sampler, nets })
    }

    /// What the data source is checked against.
    pub fn teacher_input(&self) -> TeacherInput<'_> {
        let loaded = &self.loaded;
        let vae_scale = loaded.vae_config.as_ref().map_or(1, |v| 1 << v.block_out_channels.len().saturating_sub(1));
        TeacherInput { unet: &loaded.unet_config, vae: loaded.pipeline.vae.as_ref(), vae_scale }
    }
}

/// Runs (or resumes) a distillation into `out` on the autodiff `devices`: the first holds the
/// networks and the optimizers, and every update's batch is split over all of them (data
/// parallel, [`crate::data_parallel`]); with several processes, `collective` joins this rank
/// to the others (its share of the batch, gradients summed over the ranks). `on_iteration` sees
/// every report (the dashboard) and returns whether to go on: when it says stop (on any rank),
/// the run saves a checkpoint and returns early. Returns the final state; after the last step
/// the student is at `out/student`.
pub fn distill(
    config: &DistillConfig,
    out: &Path,
    resume: bool,
    devices: &[Device],
    collective: &dyn Collective,
    mut on_iteration: impl FnMut(&IterationReport) -> bool,
) -> Result<DistillState, TrainError> {
    config.validate()?;
    let (lead, world) = (collective.rank() == 0, collective.world());
    if config.batch < world {
        return Err(TrainError::setting("batch", format!("{} clips cannot be shared by {world} ranks", config.batch)));
    }
    let (device, replica_devices) =
        devices.split_first().ok_or_else(|| TrainError::setting("devices", "a distillation needs a device"))?;
    for device in devices {
        config.dtype.configure(device).map_err(|e| TrainError::setting("dtype", e))?;
    }
    let setup = RunSetup::load(config, device)?;
    let source = DistillData::open(&config.data, &setup.teacher_input())?;
    let RunSetup { teacher_dir, loaded, video_scheduler, video, image, student_config, sampler, nets, .. } = setup;
    let fresh = RunState {
        ema: (config.ema > 0.0).then(|| ema_start(&nets.student)),
        nets,
        optim: Optimizers::new(&config.optim),
        state: DistillState { step: 0, config: config.clone(), seconds: 0.0 },
    };
    fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let mut run = if resume { restore(out, config, fresh)? } else { fresh };
    agree_on_start(collective, &config.to_toml(), run.state.step)?;
    run.nets = take_lead_parameters(run.nets, collective)?;
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = None;
    if lead {
        truncate_metrics(&metrics_path, run.state.step)?;
        let file = fs::OpenOptions::new().create(true).append(true).open(&metrics_path);
        metrics = Some(file.map_err(TrainError::io(&metrics_path))?);
        write_file_atomically(&out.join("config.toml"), config.to_toml())?;
    }

    let inner = device.clone().without_autodiff();
    let evals_during = lead && config.sample_every > 0 && config.sample_every < config.steps;
    let toy_eval = if evals_during { ToyEval::for_run(config, false, &inner)? } else { None };
    let eval_sampler = student_sampler(&video_scheduler, &student_config)?;
    let learner = Learner {
        config,
        tokenizer: &loaded.tokenizer,
        video,
        image,
        sampler,
        device: device.clone(),
        replicas: replica_devices.iter().map(|device| FrozenReplica::new(&run.nets, device)).collect(),
        draws: Default::default(),
        collective,
    };
    let skipped_path =
        out.join(if lead { "skipped.txt".to_string() } else { format!("skipped-rank{}.txt", collective.rank()) });
    let started = Instant::now();
    let seconds_before = run.state.seconds;
    while run.state.step < config.steps {
        let step = run.state.step;
        let embed = |captions: &[String]| learner.embed(&run.nets.text_encoder, captions);
        let step_data = source.iteration(config, step, learner.rows(), &embed, device)?;
        log_skipped(&skipped_path, step, &step_data.skipped)?;
        let mut report = learner.iterate(step, &mut run.nets, &mut run.optim, &step_data.data)?;
        if let Some(ema) = run.ema.take() {
            run.ema = Some(ema_update(ema, &run.nets.student, config.ema));
        }
        let done = step + 1;
        // (The final table evaluates the student after the last step.)
        if let Some(eval) =
            toy_eval.as_ref().filter(|_| done.is_multiple_of(config.sample_every) && done < config.steps)
        {
            let pipeline = with_unet(&loaded.pipeline, run.student());
            let grid = out.join("samples").join(format!("step-{done:06}.gif"));
            let row = eval.row(&format!("student step {done}"), &pipeline, &loaded.tokenizer, &eval_sampler, &grid)?;
            append_row(&out.join("samples").join("eval.jsonl"), &row)?;
            (report.eval_frechet, report.eval_accuracy) = (Some(row.frechet), Some(row.accuracy));
        }
        if let Some(metrics) = metrics.as_mut() {
            let line = serde_json::to_string(&report).expect("a report serialises") + "\n";
            metrics.write_all(line.as_bytes()).map_err(TrainError::io(&metrics_path))?;
        }
        // Any rank's stop request stops them all.
        let go_on = collective.all_agree(on_iteration(&report))?;
        run.state.step += 1;
        if !go_on || run.state.step.is_multiple_of(config.checkpoint_every) || run.state.step == config.steps {
            run.state.seconds = seconds_before + started.elapsed().as_secs_f64();
            if let Some(metrics) = metrics.as_mut() {
                metrics.flush().map_err(TrainError::io(&metrics_path))?;
            }
            if lead {
                save(out, &run)?;
                write_plots(&metrics_path, &out.join("plots"))?;
            }
            // No rank returns (and lets its launcher end the others) before the checkpoint is
            // committed.
            collective.all_agree(true)?;
        }
        if !go_on {
            return Ok(run.state);
        }
    }
    if lead {
        let exported = Exported { unet: run.student(), sampler: &student_config, scheduler: &video_scheduler };
        export_student(&teacher_dir, &loaded, exported, &out.join("student"))?;
    }
    Ok(run.state)
}
