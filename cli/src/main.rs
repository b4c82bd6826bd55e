//! `avdm`: distill AnimateDiff into a 4-step video generator (AVDM2), in one binary.

mod allocator;
mod bench;
mod cache;
mod convert;
mod cuda_probe;
mod device;
mod distill;
mod eval;
mod eval_standard;
mod generate;
mod inspect;
mod interrupt;
mod output;
mod ranks;
mod train_judge;
mod train_teacher;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `avdm --version`: the version and the backends this binary was built with.
#[cfg(all(feature = "cuda", feature = "wgpu"))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, cuda, wgpu)");
#[cfg(all(feature = "cuda", not(feature = "wgpu")))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, cuda)");
#[cfg(all(not(feature = "cuda"), feature = "wgpu"))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, wgpu)");
#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu)");

#[derive(Parser)]
#[command(name = "avdm", version = VERSION, about = "Distill AnimateDiff into a 4-step video generator (AVDM2)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Distill(Box<distill::DistillArgs>),
    Inspect(inspect::InspectArgs),
    Generate(Box<generate::GenerateArgs>),
    TrainTeacher(train_teacher::TrainTeacherArgs),
    TrainJudge(train_judge::TrainJudgeArgs),
    Eval(Box<eval::EvalArgs>),
    Cache(Box<cache::CacheArgs>),
    Convert(convert::ConvertArgs),
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let result = match Cli::parse().command {
        Command::Distill(args) => distill::run(*args),
        Command::Inspect(args) => inspect::run(args),
        Command::Generate(args) => generate::run(*args),
        Command::TrainTeacher(args) => train_teacher::run(args),
        Command::TrainJudge(args) => train_judge::run(args),
        Command::Eval(args) => eval::run(*args),
        Command::Cache(args) => cache::run(*args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
