//! Progress of a long loop: a bar with rate and ETA on a terminal, a log line every
//! `log_every` steps otherwise (CI, `nohup`, pipes).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: usize,
    start_step: usize,
    started: Instant,
    log_every: usize,
}

impl Progress {
    /// A loop over steps `start..total`.
    pub fn new(label: &str, start: usize, total: usize, log_every: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64).with_position(start as u64);
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}")
                .expect("a valid template")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        Self {
            bar,
            label: label.into(),
            total,
            start_step: start,
            started: Instant::now(),
            log_every: log_every.max(1),
        }
    }

    /// Reports that `step` (1-based count of finished steps) is done, with named values.
    pub fn update(&self, step: usize, values: &[(&str, f64)]) {
        let text: Vec<String> = values.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        match &self.bar {
            Some(bar) => {
                bar.set_position(step as u64);
                bar.set_message(text.join("  "));
            }
            None if step.is_multiple_of(self.log_every) || step == self.total => {
                let done = (step - self.start_step) as f64;
                let secs = self.started.elapsed().as_secs_f64();
                let rate = if secs > 0.0 { done / secs } else { 0.0 };
                let eta = if rate > 0.0 { (self.total - step) as f64 / rate } else { 0.0 };
                eprintln!("{} {step}/{} {:.2} it/s ETA {:.0}s {}", self.label, self.total, rate, eta, text.join("  "));
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
