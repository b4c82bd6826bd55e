//! `avdm train-judge`: trains the toy judge on ground-truth clips and saves it.

use std::path::PathBuf;
use std::time::Instant;

use avdm_train::judge::{JudgeTraining, train_judge};
use clap::Args;

use crate::device::parse_device;

/// Train the toy judge (the metric network of `avdm eval`).
#[derive(Args)]
pub struct TrainJudgeArgs {
    /// Output folder (config.json + model.safetensors).
    #[arg(long, default_value = "runs/toy-judge")]
    out: PathBuf,
    /// Training steps (preset: 600).
    #[arg(long)]
    steps: Option<usize>,
    /// auto, cpu, wgpu, vulkan or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: TrainJudgeArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?.autodiff();
    let mut settings = JudgeTraining::toy();
    settings.steps = args.steps.unwrap_or(settings.steps);
    let started = Instant::now();
    let (judge, loss) = train_judge(&settings, &device)?;
    judge.save(&args.out)?;
    eprintln!(
        "judge: {} steps, last loss {loss:.4}, {:.0} s; wrote {}",
        settings.steps,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
