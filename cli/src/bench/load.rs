//! `avdm bench --load PIPELINE [--motion-adapter A]`: how long loading a pipeline folder takes
//! and where the time goes (reading the files' indexes, building the modules, decoding and
//! applying the weights), with the peak resident memory against the loaded weights' bytes.
//! `tools/bench/load_diffusers.py` times diffusers' `from_pretrained` on the same folders.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use avdm_import::load_phases::{Phase, peak_rss_mib, recorded};
use avdm_import::{AdapterSource, LoadOptions, load_pipeline};
use avdm_model::precision::Precision;
use burn::module::Module;
use burn::prelude::*;
use serde::Serialize;

/// One load, measured.
#[derive(Debug, Serialize)]
pub struct LoadTiming {
    pub pipeline: PathBuf,
    pub motion_adapter: Option<PathBuf>,
    pub dtype: Precision,
    pub seconds: f64,
    pub phases: Vec<Phase>,
    /// Everything the phases do not cover: configs, tokenizer, scheduler, checks.
    pub other_seconds: f64,
    pub parameters: usize,
    pub weights_mib: f64,
    pub peak_rss_mib: Option<f64>,
}

impl std::fmt::Display for LoadTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "load of {} ({} parameters in {}):", self.pipeline.display(), self.parameters, self.dtype)?;
        for p in &self.phases {
            let peak = p.peak_rss_mib.map_or("n/a".into(), |m| format!("{m:.0} MiB"));
            writeln!(f, "  {:<32} {:>7.2} s  ({} runs; peak RSS after it {peak})", p.name, p.seconds, p.runs)?;
        }
        writeln!(f, "  {:<32} {:>7.2} s", "other (configs, tokenizer)", self.other_seconds)?;
        writeln!(f, "  {:<32} {:>7.2} s", "total", self.seconds)?;
        let peak = self.peak_rss_mib.map_or("n/a".into(), |m| format!("{m:.0} MiB"));
        let ratio = self.peak_rss_mib.map_or("n/a".into(), |m| format!("{:.2}x", m / self.weights_mib));
        write!(f, "weights {:.0} MiB; peak RSS {peak} ({ratio} the weights)", self.weights_mib)
    }
}

/// Loads `pipeline` (with `adapter`) in `dtype` on `device`, timing its phases.
pub fn time_load(
    pipeline: &std::path::Path,
    adapter: Option<&std::path::Path>,
    dtype: Precision,
    device: &Device,
) -> anyhow::Result<LoadTiming> {
    let source = adapter.map(AdapterSource::from_path);
    let options = LoadOptions::in_precision(dtype);
    let start = Instant::now();
    let (loaded, phases) = recorded(|| load_pipeline(pipeline, source.as_ref(), &options, device));
    let seconds = start.elapsed().as_secs_f64();
    let loaded = loaded.with_context(|| format!("loading {}", pipeline.display()))?;
    let p = &loaded.pipeline;
    let counts = [p.unet.num_params(), p.text_encoder.num_params(), p.vae.as_ref().map_or(0, |v| v.num_params())];
    let parameters: usize = counts.iter().sum();
    // The VAE is kept in f32 whatever the dtype (as diffusers' upcast_vae).
    let bytes = (counts[0] + counts[1]) * burn::tensor::DType::from(dtype.float_dtype()).size() + counts[2] * 4;
    let covered: f64 = phases.iter().map(|p| p.seconds).sum();
    Ok(LoadTiming {
        pipeline: pipeline.into(),
        motion_adapter: adapter.map(Into::into),
        dtype,
        seconds,
        other_seconds: (seconds - covered).max(0.0),
        phases,
        parameters,
        weights_mib: bytes as f64 / (1024.0 * 1024.0),
        peak_rss_mib: peak_rss_mib(),
    })
}
