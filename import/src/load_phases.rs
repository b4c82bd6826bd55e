//! Where a load's time goes, when a caller asks ([`recorded`]): reading the weight files'
//! indexes, building the (lazy) modules, and decoding and applying the weights; with the peak
//! resident memory so far at the end of each phase (Linux).

use std::sync::Mutex;
use std::time::Instant;

/// One phase's total over a load.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub seconds: f64,
    /// How often the phase ran (once per network).
    pub runs: usize,
    /// The process's peak resident set when the phase last ended (MiB).
    pub peak_rss_mib: Option<f64>,
}

static PHASES: Mutex<Option<Vec<Phase>>> = Mutex::new(None);

/// Runs `load` with the phases recorded; returns its result and the phases in first-run order.
pub fn recorded<R>(load: impl FnOnce() -> R) -> (R, Vec<Phase>) {
    *PHASES.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    let result = load();
    let phases = PHASES.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
    (result, phases)
}

/// Runs `work` as (part of) phase `name`, timed when a recording is on.
pub(crate) fn timed<R>(name: &'static str, work: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let result = work();
    let mut phases = PHASES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(phases) = phases.as_mut() {
        let seconds = start.elapsed().as_secs_f64();
        let peak_rss_mib = peak_rss_mib();
        match phases.iter_mut().find(|p| p.name == name) {
            Some(p) => {
                p.seconds += seconds;
                p.runs += 1;
                p.peak_rss_mib = peak_rss_mib;
            }
            None => phases.push(Phase { name, seconds, runs: 1, peak_rss_mib }),
        }
    }
    result
}

/// The process's peak resident set so far (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_by_name_in_first_run_order() {
        let ((), phases) = recorded(|| {
            timed("index", || std::thread::sleep(std::time::Duration::from_millis(5)));
            timed("build", || ());
            timed("index", || ());
        });
        let names: Vec<_> = phases.iter().map(|p| (p.name, p.runs)).collect();
        assert_eq!(names, vec![("index", 2), ("build", 1)]);
        assert!(phases[0].seconds >= 0.005);
        // Outside a recording nothing is kept.
        timed("index", || ());
        assert!(PHASES.lock().unwrap().is_none());
    }
}
