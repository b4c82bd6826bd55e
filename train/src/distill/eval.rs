//! The toy eval of a distillation (`avdm eval`'s measures with the shipped toy judge): the
//! student's samples every `sample_every` steps during the run (a GIF grid and a row under
//! `samples/`), and at the end the table of the teacher's DDIM rows with CFG against the
//! exported student (`eval.md`, `eval.json`).

use std::fs;
use std::io::Write;
use std::path::Path;

use avdm_import::{ClipTokenizer, LoadOptions, load_pipeline, read_student_config};
use avdm_model::UNetMotionModel;
use avdm_model::pipeline::{Sampler, VideoPipeline};
use burn::prelude::*;

use crate::checkpoint::write_file_atomically;
use crate::distill::config::DistillConfig;
use crate::distill::run::teacher_folder;
use crate::error::TrainError;
use crate::eval::judge::Judge;
use crate::eval::toy::{
    EvalRow, EvalSettings, RealReference, ddim_sampler, evaluate, markdown_table, real_reference, student_sampler,
    write_grid,
};
use crate::toy::assets::default_assets_dir;

/// The judge, the real reference and the settings of a run's toy eval.
pub struct ToyEval {
    judge: Judge,
    reference: RealReference,
    settings: EvalSettings,
    device: Device,
}

impl ToyEval {
    /// The toy eval of `config` on `device` (without autodiff), or `None` when its `eval.clips`
    /// is 0 or the teacher is not the toy one (the judge knows only the toy world).
    pub fn for_run(config: &DistillConfig, show_progress: bool, device: &Device) -> Result<Option<Self>, TrainError> {
        if config.eval.clips == 0 || config.models.teacher.is_some() {
            return Ok(None);
        }
        let judge = Judge::load(&default_assets_dir().join("judge"), device)?;
        let settings = EvalSettings {
            clips: config.eval.clips,
            threads: config.threads,
            progress: show_progress,
            ..EvalSettings::default()
        };
        let reference = real_reference(&judge, &settings, device)?;
        Ok(Some(Self { judge, reference, settings, device: device.clone() }))
    }

    /// Samples and judges one row; writes its first 16 clips as a GIF grid to `grid`.
    pub fn row(
        &self,
        name: &str,
        pipeline: &VideoPipeline,
        tokenizer: &ClipTokenizer,
        sampler: &Sampler,
        grid: &Path,
    ) -> Result<EvalRow, TrainError> {
        let (judge, reference, settings) = (&self.judge, &self.reference, &self.settings);
        let (row, clips) = evaluate(name, pipeline, tokenizer, sampler, judge, reference, settings, &self.device)?;
        if let Some(dir) = grid.parent() {
            fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        }
        write_grid(&clips, grid)?;
        Ok(row)
    }

    /// The rows as a Markdown table with the judge's accuracy on real clips.
    pub fn markdown(&self, rows: &[EvalRow]) -> String {
        markdown_table(rows, self.reference.accuracy)
    }
}

/// `pipeline` (on an autodiff device) with `unet` in place of its UNet, without autodiff.
pub fn with_unet(pipeline: &VideoPipeline, unet: &UNetMotionModel) -> VideoPipeline {
    VideoPipeline {
        text_encoder: pipeline.text_encoder.valid(),
        unet: unet.valid(),
        vae: pipeline.vae.as_ref().map(|vae| vae.valid()),
        ..pipeline.clone()
    }
}

/// Appends `row` to the JSON-lines file `path`.
pub fn append_row(path: &Path, row: &EvalRow) -> Result<(), TrainError> {
    let mut file = fs::OpenOptions::new().create(true).append(true).open(path).map_err(TrainError::io(path))?;
    let line = serde_json::to_string(row).expect("a row serialises") + "\n";
    file.write_all(line.as_bytes()).map_err(TrainError::io(path))
}

/// The final table of a finished run in `out`: the teacher's DDIM rows with CFG, the teacher
/// on the student's sampler (where the student started) and the exported student
/// (`out/student`) on it, both without CFG. Writes `out/eval.md`,
/// `out/eval.json` and a GIF grid per row under `out/samples/`; returns the Markdown, or
/// `None` when the run has no toy eval.
pub fn final_table(config: &DistillConfig, out: &Path, device: &Device) -> Result<Option<String>, TrainError> {
    let Some(eval) = ToyEval::for_run(config, true, device)? else { return Ok(None) };
    let options = LoadOptions::in_precision(config.dtype);
    let teacher = load_pipeline(&teacher_folder(config), None, &options, device)?;
    let student_dir = out.join("student");
    let student = load_pipeline(&student_dir, None, &options, device)?;
    let trained = read_student_config(&student_dir)?.unwrap_or_else(|| config.student.clone());
    let mut runs: Vec<(String, &VideoPipeline, &ClipTokenizer, Sampler)> = Vec::new();
    for &steps in &config.eval.teacher_steps {
        let sampler =
            ddim_sampler(&teacher.video_scheduler(config.video_schedule), steps, config.eval.teacher_guidance)?;
        runs.push((format!("teacher ddim-{steps}"), &teacher.pipeline, &teacher.tokenizer, sampler));
    }
    // The starting point: the teacher itself on the student's sampler.
    let sampler = student_sampler(&teacher.video_scheduler(config.video_schedule), &trained)?;
    runs.push((format!("teacher student-{}", trained.steps()), &teacher.pipeline, &teacher.tokenizer, sampler));
    let sampler = student_sampler(&student.video_scheduler(config.video_schedule), &trained)?;
    runs.push((format!("student-{}", trained.steps()), &student.pipeline, &student.tokenizer, sampler));
    let mut rows = Vec::new();
    for (name, pipeline, tokenizer, sampler) in &runs {
        let grid = out.join("samples").join(format!("final-{}.gif", name.replace(' ', "-")));
        rows.push(eval.row(name, pipeline, tokenizer, sampler, &grid)?);
    }
    let markdown = eval.markdown(&rows);
    let json = serde_json::json!({ "settings": eval.settings, "real_accuracy": eval.reference.accuracy, "rows": rows });
    let text = serde_json::to_string_pretty(&json).expect("a table serialises") + "\n";
    write_file_atomically(&out.join("eval.json"), text)?;
    write_file_atomically(&out.join("eval.md"), &markdown)?;
    Ok(Some(markdown))
}
