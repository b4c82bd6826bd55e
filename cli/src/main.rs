//! `avdm`: distill AnimateDiff into a 4-step video generator (AVDM2), in one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use avdm_import::{AdapterSource, LoadOptions, load_unet_2d, load_unet_motion, load_unet_motion_folder};
use burn::module::Module;
use burn::prelude::Device;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "avdm", version, about = "Distill AnimateDiff into a 4-step video generator (AVDM2)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load a UNet (2D, UNet + motion adapter, or a saved UNetMotionModel) and report what was
    /// loaded: the network, the parameter count, and any unused keys.
    Inspect {
        /// A diffusers `unet/` folder (UNet2DConditionModel), or with `--combined` a
        /// UNetMotionModel folder.
        #[arg(long)]
        unet: PathBuf,
        /// A diffusers MotionAdapter folder or an original AnimateDiff `.ckpt`.
        #[arg(long)]
        motion_adapter: Option<PathBuf>,
        /// `--unet` is a saved UNetMotionModel folder (UNet and motion modules together).
        #[arg(long, conflicts_with = "motion_adapter")]
        combined: bool,
        /// A diffusers weight variant, e.g. `fp16`.
        #[arg(long)]
        variant: Option<String>,
    },
}

fn inspect(
    unet: PathBuf,
    motion_adapter: Option<PathBuf>,
    combined: bool,
    variant: Option<String>,
) -> anyhow::Result<()> {
    let device = Device::flex();
    let options = LoadOptions { variant, ..LoadOptions::default() };
    let loaded = match (combined, motion_adapter) {
        (true, _) => load_unet_motion_folder(&unet, &options, &device),
        (false, None) => load_unet_2d(&unet, &options, &device),
        (false, Some(path)) => {
            let adapter = if path.is_dir() {
                AdapterSource::Folder(path)
            } else {
                AdapterSource::Checkpoint { path, config: None }
            };
            load_unet_motion(&unet, &adapter, &options, &device)
        }
    }
    .with_context(|| format!("loading the UNet from {}", unet.display()))?;
    let c = &loaded.config;
    println!("{}", loaded.report);
    println!("parameters: {}", loaded.model.num_params());
    println!(
        "block_out_channels: {:?}, heads: {:?}, cross_attention_dim: {}",
        c.block_out_channels, c.num_attention_heads, c.cross_attention_dim
    );
    match &c.motion {
        Some(m) => println!(
            "motion modules: heads {:?}, mid block {}, up to {} frames",
            m.num_attention_heads, m.mid_block, m.max_seq_length
        ),
        None => println!("motion modules: none (2D UNet)"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { unet, motion_adapter, combined, variant } => {
            inspect(unet, motion_adapter, combined, variant)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
