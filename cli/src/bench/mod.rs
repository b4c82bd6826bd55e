//! `avdm bench`: timings on the chosen device, each the median of `--repeat` runs after one
//! warm-up: the UNetMotionModel forward (and forward + backward) at tiny size (the shipped toy
//! teacher's UNet) and full size (SD1.5 + motion adapter v1-5-2, random weights), text-to-video
//! end to end ([`crate::bench::generation`]), and one
//! distillation iteration of each size ([`crate::bench::distill`]).
//! `tools/bench/bench_diffusers.py` times diffusers on the same shapes for the ratio.
//! Every row also gives its peak memory (host resident set; the device allocator's reservation).

mod distill;
mod generation;
mod load;
mod parity_check;
mod peak_memory;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use avdm_import::{LoadOptions, load_unet_motion_folder};
use avdm_model::kernels::chunked_attention::{SCORE_BUDGET, set_score_budget};
use avdm_model::precision::{Precision, timestep_column, with_float_dtype};
use avdm_model::{UNetConfig, UNetMotionModel};
use avdm_train::toy::assets::default_assets_dir;
use burn::prelude::*;
use burn::tensor::Distribution;
use clap::{Args, ValueEnum};
use serde::Serialize;

use self::distill::DistillStep;
use self::generation::Generation;
use self::load::time_load;
use self::parity_check::{TOLERANCE, tiny_unet_parity};
use self::peak_memory::{PeakMemory, peak, reset_peak};
use crate::device::{configure_dtype, parse_device};
use crate::output::write_json_atomically;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Size {
    /// The shipped toy teacher's UNet (3 pixel channels, 16/32/32 channels).
    Tiny,
    /// SD1.5's UNet with motion adapter v1-5-2 (random weights).
    Full,
}

/// How the backward rows run attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum AttentionKind {
    /// Score matrices over the budget in chunks of query rows, recomputed in the backward pass.
    Chunked,
    /// Burn's attention op: the whole score matrix, kept for the backward pass.
    Burn,
}

/// Time the networks and samplers (median of --repeat runs after a warm-up).
#[derive(Args)]
pub struct BenchArgs {
    /// Which UNets to time (several: `tiny,full`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tiny,full")]
    size: Vec<Size>,
    /// Frames per clip.
    #[arg(long, default_value_t = 16)]
    frames: usize,
    /// Side of the tiny UNet's input (pixels).
    #[arg(long, default_value_t = 32)]
    tiny_side: usize,
    /// Side of the full UNet's latents (64: 512x512 videos).
    #[arg(long, default_value_t = 64)]
    full_side: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Also time forward + backward (autodiff).
    #[arg(long)]
    backward: bool,
    /// Attention in the backward rows, one row each (several: `chunked,burn`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "chunked")]
    attention: Vec<AttentionKind>,
    /// Also time text-to-video end to end: at tiny size the toy teacher's DDIM 25 steps with CFG
    /// against the 4-step student sampler; at full size the 4-step student sampler with the VAE
    /// decode (--frames frames of --full-side latents: 64 gives 512x512).
    #[arg(long)]
    end_to_end: bool,
    /// Also time one distillation iteration of each size on random data (the method's losses,
    /// two fake-score and two discriminator updates; --batch clips of --frames frames).
    #[arg(long)]
    distill_step: bool,
    /// Also run the tiny UNet + motion adapter fixture made by diffusers (`tests/fixtures/tiny_unet`)
    /// on --device and compare with diffusers' outputs (fails above 1e-4).
    #[arg(long)]
    parity: Option<PathBuf>,
    /// Only time loading this diffusers pipeline folder (phases, peak memory against the
    /// weights), nothing else.
    #[arg(long)]
    load: Option<PathBuf>,
    /// With --load: a motion adapter folder or AnimateDiff `.ckpt` to merge into its UNet.
    #[arg(long, requires = "load")]
    motion_adapter: Option<PathBuf>,
    /// auto, cpu, wgpu, vulkan or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Precision of the UNets (weights and activations) and of the end-to-end pipelines.
    #[arg(long, default_value_t = Precision::F32)]
    dtype: Precision,
    /// Write the timings as JSON here too.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One timing.
#[derive(Debug, Serialize)]
struct Timing {
    what: String,
    shape: Vec<usize>,
    median_s: f64,
    runs: Vec<f64>,
    memory: PeakMemory,
}

/// Median wall time of `repeat` runs of `run` after one warm-up, and the peak memory over all
/// of them; `run` must finish its work (read a value back) before returning.
fn time(
    repeat: usize,
    device: &Device,
    mut run: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, Vec<f64>, PeakMemory)> {
    reset_peak();
    run()?;
    let mut runs = Vec::new();
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        run()?;
        runs.push(start.elapsed().as_secs_f64());
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    Ok((sorted[sorted.len() / 2], runs, peak(device)))
}

fn unet(size: Size, precision: Precision, device: &Device) -> anyhow::Result<(UNetMotionModel, UNetConfig)> {
    let (net, config) = match size {
        Size::Tiny => {
            let dir = default_assets_dir().join("teacher/unet");
            let loaded = load_unet_motion_folder(&dir, &LoadOptions::in_precision(precision), device)
                .with_context(|| format!("loading the toy teacher's UNet {}", dir.display()))?;
            (loaded.model, loaded.config)
        }
        Size::Full => {
            let config = UNetConfig::sd15_motion_v1_5_2();
            (UNetMotionModel::new(&config, device), config)
        }
    };
    Ok((with_float_dtype(net, precision.float_dtype()), config))
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    configure_dtype(args.dtype, &device)?;
    if let Some(pipeline) = &args.load {
        let timing = time_load(pipeline, args.motion_adapter.as_deref(), args.dtype, &device)?;
        println!("{timing}");
        if let Some(out) = &args.out {
            write_json_atomically(out, &serde_json::to_value(&timing)?)?;
        }
        return Ok(());
    }
    let parity = match &args.parity {
        Some(dir) => {
            let error = tiny_unet_parity(dir, &device)?;
            println!("tiny UNet parity with diffusers on {device:?}: max error {error:.1e} (tolerance {TOLERANCE:e})");
            Some(error)
        }
        None => None,
    };
    let mut timings = Vec::new();
    let mut report = |t: Timing| {
        println!("{:<48} {:?}: {:.3} s (median of {}); {}", t.what, t.shape, t.median_s, t.runs.len(), t.memory);
        timings.push(t);
    };
    for &size in &args.size {
        let (net, config) = unet(size, args.dtype, &device)?;
        let side = if size == Size::Tiny { args.tiny_side } else { args.full_side };
        let step = 1 << config.block_out_channels.len().saturating_sub(1);
        if side == 0 || side % step != 0 || args.frames == 0 || args.batch == 0 {
            bail!("{size:?}: the side must be a positive multiple of {step}, frames and batch positive");
        }
        let shape = [args.batch, config.in_channels, args.frames, side, side];
        let sample = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let t = timestep_column(&vec![500; args.batch], &device);
        let text = Tensor::<3>::random(
            [args.batch * args.frames, 77, config.cross_attention_dim],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let frozen = net.clone().no_grad();
        let (median_s, runs, memory) = time(args.repeat, &device, || {
            let out = frozen.forward(sample.clone(), t.clone(), text.clone())?;
            out.sum().into_scalar::<f32>();
            Ok(())
        })?;
        let what = format!("{size:?} UNetMotionModel forward");
        report(Timing { what, shape: shape.to_vec(), median_s, runs, memory });
        // The backward rows' peak memory counts their own network only.
        drop((frozen, net));
        if args.backward {
            // Parameters tracked by autodiff are made on the autodiff device.
            let ad = device.clone().autodiff();
            let (net, _) = unet(size, args.dtype, &ad)?;
            let (sample, t, text) =
                (sample.clone().to_device(&ad), t.clone().to_device(&ad), text.clone().to_device(&ad));
            for &attention in &args.attention {
                set_score_budget(match attention {
                    AttentionKind::Chunked => SCORE_BUDGET,
                    AttentionKind::Burn => usize::MAX,
                });
                let (median_s, runs, memory) = time(args.repeat, &ad, || {
                    let out = net.forward(sample.clone(), t.clone(), text.clone())?;
                    drop(out.mean().backward());
                    Ok(())
                })?;
                let what = format!("{size:?} UNetMotionModel forward + backward ({attention:?} attention)");
                report(Timing { what, shape: shape.to_vec(), median_s, runs, memory });
            }
            set_score_budget(SCORE_BUDGET);
        }
        if args.distill_step {
            let ad = device.clone().autodiff();
            let mut step = DistillStep::new(size == Size::Full, args.batch, args.dtype, &ad)?;
            let (median_s, runs, memory) = time(args.repeat, &ad, || step.run(1, args.frames, side, &ad))?;
            let what = format!("{size:?} distillation iteration (ADM + 2D SDM)");
            report(Timing { what, shape: shape.to_vec(), median_s, runs, memory });
        }
        if args.end_to_end {
            let generation = match size {
                Size::Tiny => Generation::toy(args.dtype, &device)?,
                Size::Full => Generation::full(args.dtype, args.frames, side, &device)?,
            };
            for (index, (what, _)) in generation.samplers.iter().enumerate() {
                let (median_s, runs, memory) =
                    time(args.repeat, &device, || generation.run(index, args.batch, &device))?;
                report(Timing {
                    what: what.clone(),
                    shape: generation.video_shape(args.batch),
                    median_s,
                    runs,
                    memory,
                });
            }
        }
    }
    if let Some(out) = &args.out {
        let json = serde_json::json!({
            "device": format!("{device:?}"), "dtype": args.dtype, "repeat": args.repeat, "timings": timings,
            "parity_max_error": parity,
            "avdm_version": env!("CARGO_PKG_VERSION"),
        });
        write_json_atomically(out, &json)?;
    }
    Ok(())
}
