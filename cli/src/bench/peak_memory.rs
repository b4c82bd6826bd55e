//! Peak memory of a measured piece of work: the process's peak resident set on the host (Linux's
//! `VmHWM`, reset through `/proc/self/clear_refs`) and what the device's allocator has reserved
//! (GPU backends; its pools keep pages for reuse, so after the work it is the work's peak).

use burn::prelude::*;
use serde::Serialize;

/// Peak memory in MiB; `None` where the platform or backend does not tell.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PeakMemory {
    pub host_peak_rss_mib: Option<f64>,
    pub device_reserved_mib: Option<f64>,
}

/// Starts a measurement: resets the host's peak resident set to the current one.
pub fn reset_peak() {
    // "5" resets the peak RSS (Linux >= 4.0); elsewhere the peak is the process's so far.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peaks since [`reset_peak`].
pub fn peak(device: &Device) -> PeakMemory {
    const MIB: f64 = 1024.0 * 1024.0;
    let host_peak_rss_mib = avdm_import::load_phases::peak_rss_mib();
    let device_reserved_mib = device.memory_pool_usage().map(|usage| usage.bytes_reserved as f64 / MIB);
    PeakMemory { host_peak_rss_mib, device_reserved_mib }
}

impl std::fmt::Display for PeakMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.0} MiB"));
        write!(f, "host peak RSS {}, device reserved {}", mib(self.host_peak_rss_mib), mib(self.device_reserved_mib))
    }
}
