//! `avdm train-judge`: trains the toy judge on ground-truth clips and saves it.

use std::path::PathBuf;
use std::time::Instant;

use avdm_train::eval::judge::{JudgeTraining, train_judge};
use avdm_train::eval::toy::{EvalSettings, real_accuracy};
use burn::module::Module;
use clap::Args;

use crate::device::parse_device;
use crate::output::write_folder_atomically;

/// Train the toy judge (the metric network of `avdm eval`).
#[derive(Args)]
pub struct TrainJudgeArgs {
    /// Output folder (config.json + model.safetensors).
    #[arg(long, default_value = "runs/toy-judge")]
    out: PathBuf,
    /// Training steps (preset: 1500).
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
    write_folder_atomically(&args.out, |staging| Ok(judge.save(staging)?))?;
    eprintln!(
        "judge: {} steps, last loss {loss:.4}, {:.0} s; wrote {}",
        settings.steps,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    // Unseen real clips: the eval prompts of another seed than `avdm eval`'s default.
    let check = EvalSettings { clips: 480, batch: 32, seed: 7, world: settings.world, ..EvalSettings::default() };
    let (mean, [shape, colour, direction], exact) =
        real_accuracy(&judge.valid(), &check, &device.clone().without_autodiff());
    eprintln!(
        "accuracy on {} real clips: {mean:.3} (shape {shape:.3}, colour {colour:.3}, direction {direction:.3}; all three {exact:.3})",
        check.clips
    );
    Ok(())
}
