//! The distillation dashboard: burn-train's terminal UI (a plot per metric, progress, ETA) when
//! stdout is a terminal, log lines on stderr otherwise (CI, `nohup`, pipes).
//!
//! Metrics: every loss term, the discriminator's accuracy on real and generated clips, the
//! gradient norms, the learning-rate factor, iterations per second and the periodic toy eval
//! of the student (Fréchet distance, prompt accuracy). A network that did not
//! update in an iteration (an ablation) advances its plot without a point.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use burn::train::Interrupter;
use burn::train::logger::TrainingProgressLogger;
use burn::train::metric::{
    MetricAttributes, MetricDefinition, MetricEntry, MetricId, NumericAttributes, NumericEntry, SerializedEntry,
};
use burn::train::renderer::tui::TuiMetricsRendererWrapper;
use burn::train::renderer::{MetricState, MetricsRenderer, MetricsRendererTraining};

use crate::distill::learner::IterationReport;
use crate::monitor::progress::Progress;

/// `(name, higher is better)` of every metric, in the order of [`metric_values`].
pub const METRICS: [(&str, bool); 13] = [
    ("loss_adm", false),
    ("loss_sdm", false),
    ("loss_fake_score", false),
    ("loss_discriminator", false),
    ("disc_accuracy_real", true),
    ("disc_accuracy_generated", true),
    ("grad_norm_student", false),
    ("grad_norm_fake_score", false),
    ("grad_norm_head", false),
    ("lr_factor", true),
    ("iterations_per_second", true),
    ("eval_frechet", false),
    ("eval_prompt_accuracy", true),
];

/// The values of [`METRICS`] for one report (`None`: not measured this iteration).
pub fn metric_values(r: &IterationReport, iterations_per_second: f64) -> [Option<f64>; 13] {
    [
        r.loss_adm,
        r.loss_sdm,
        r.loss_fake,
        r.loss_disc,
        r.disc_accuracy_real,
        r.disc_accuracy_fake,
        Some(r.grad_norm_student),
        r.grad_norm_fake,
        r.grad_norm_head,
        Some(r.lr_factor),
        Some(iterations_per_second),
        r.eval_frechet,
        r.eval_accuracy,
    ]
}

enum View {
    Terminal { renderer: Box<TuiMetricsRendererWrapper>, ids: Vec<MetricId> },
    Log(Progress),
}

/// Shows a run of `total` iterations starting at `start`.
pub struct Dashboard {
    view: View,
    interrupter: Interrupter,
    started: Instant,
    start: usize,
}

impl Dashboard {
    pub fn new(start: usize, total: usize) -> Self {
        let interrupter = Interrupter::new();
        let view = if std::io::stdout().is_terminal() {
            let checkpoint = (start > 0).then_some(start);
            let mut renderer = Box::new(TuiMetricsRendererWrapper::new(interrupter.clone(), checkpoint));
            let ids = METRICS.iter().map(|&(name, higher)| register(renderer.as_mut(), name, higher)).collect();
            renderer.start(1, 1, Some(total), Some("distill"));
            renderer.start_split("train", total);
            View::Terminal { renderer, ids }
        } else {
            View::Log(Progress::new("distill", start, total, 10))
        };
        Self { view, interrupter, started: Instant::now(), start }
    }

    /// Shows iteration `report.step`.
    pub fn update(&mut self, report: &IterationReport) {
        let done = report.step + 1;
        let rate = (done - self.start) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let values = metric_values(report, rate);
        match &mut self.view {
            View::Terminal { renderer, ids } => {
                for (id, value) in ids.iter().zip(values) {
                    let text = value.map_or("-".into(), |v| format!("{v:.4}"));
                    let entry = MetricEntry::new(id.clone(), SerializedEntry::new(text.clone(), text));
                    renderer.update_train(MetricState::Numeric(entry, value.map(NumericEntry::Value)));
                }
                renderer.update_split(done);
            }
            View::Log(progress) => {
                let named: Vec<(&str, f64)> =
                    METRICS.iter().zip(values).filter_map(|(&(name, _), v)| v.map(|v| (name, v))).collect();
                progress.update(done, &named);
            }
        }
    }

    /// Whether the user asked the terminal UI to stop (`q`, then `s`): the run then saves a
    /// checkpoint and ends.
    pub fn stop_requested(&self) -> bool {
        self.interrupter.should_stop()
    }

    /// Closes the terminal UI (restoring the terminal) or the progress log.
    pub fn finish(self) {
        match self.view {
            View::Terminal { mut renderer, .. } => {
                renderer.end_split();
                renderer.end();
                let _ = renderer.on_train_end(None);
                drop(renderer);
            }
            View::Log(progress) => progress.finish(),
        }
    }
}

fn register(renderer: &mut dyn MetricsRenderer, name: &str, higher_is_better: bool) -> MetricId {
    let id = MetricId::new(Arc::new(name.to_string()));
    renderer.register_metric(MetricDefinition {
        metric_id: id.clone(),
        name: Arc::new(name.to_string()),
        description: None,
        attributes: MetricAttributes::Numeric(NumericAttributes { unit: None, higher_is_better }),
    });
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_reads_its_own_report_field() {
        let report = IterationReport {
            loss_adm: Some(1.0),
            loss_sdm: Some(2.0),
            loss_fake: Some(3.0),
            loss_disc: Some(4.0),
            disc_accuracy_real: Some(5.0),
            disc_accuracy_fake: Some(6.0),
            grad_norm_student: 7.0,
            grad_norm_fake: Some(8.0),
            grad_norm_head: Some(9.0),
            lr_factor: 10.0,
            eval_frechet: Some(12.0),
            eval_accuracy: Some(13.0),
            ..IterationReport::default()
        };
        let values: Vec<f64> = metric_values(&report, 11.0).iter().map(|v| v.unwrap()).collect();
        assert_eq!(values, (1..=13).map(f64::from).collect::<Vec<_>>());
        let names: std::collections::HashSet<_> = METRICS.iter().map(|m| m.0).collect();
        assert_eq!(names.len(), METRICS.len(), "metric names are unique");
        let adm_only = IterationReport { loss_sdm: None, loss_fake: None, grad_norm_fake: None, ..report };
        assert_eq!(metric_values(&adm_only, 1.0).iter().filter(|v| v.is_none()).count(), 3);
    }
}
