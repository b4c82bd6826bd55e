//! Progress of a long loop: a bar with rate and ETA on a terminal, a log line every
//! `log_every` steps otherwise (CI, `nohup`, pipes), or nothing.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

enum Display {
    Bar(ProgressBar),
    /// A line every this many steps.
    Log(usize),
    Hidden,
}

pub struct Progress {
    display: Display,
    label: String,
    total: usize,
    start_step: usize,
    started: Instant,
}

impl Progress {
    /// A loop over steps `start..total`.
    pub fn new(label: &str, start: usize, total: usize, log_every: usize) -> Self {
        let display = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64).with_position(start as u64);
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}")
                .expect("a valid template")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            Display::Bar(bar)
        } else {
            Display::Log(log_every.max(1))
        };
        Self { display, label: label.into(), total, start_step: start, started: Instant::now() }
    }

    /// A loop that shows nothing (work inside another display, such as the dashboard).
    pub fn hidden(total: usize) -> Self {
        Self { display: Display::Hidden, label: String::new(), total, start_step: 0, started: Instant::now() }
    }

    /// Reports that `step` (1-based count of finished steps) is done, with named values.
    pub fn update(&self, step: usize, values: &[(&str, f64)]) {
        let text: Vec<String> = values.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        match &self.display {
            Display::Bar(bar) => {
                bar.set_position(step as u64);
                bar.set_message(text.join("  "));
            }
            Display::Log(every) if step.is_multiple_of(*every) || step == self.total => {
                let done = (step - self.start_step) as f64;
                let secs = self.started.elapsed().as_secs_f64();
                let rate = if secs > 0.0 { done / secs } else { 0.0 };
                let eta = if rate > 0.0 { (self.total - step) as f64 / rate } else { 0.0 };
                eprintln!("{} {step}/{} {:.2} it/s ETA {:.0}s {}", self.label, self.total, rate, eta, text.join("  "));
            }
            Display::Log(_) | Display::Hidden => {}
        }
    }

    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}
