//! `avdm inspect`: load a UNet and report what was loaded.

use std::path::PathBuf;

use anyhow::Context;
use avdm_import::{AdapterSource, LoadOptions, load_unet_2d, load_unet_motion, load_unet_motion_folder};
use burn::module::Module;
use burn::prelude::Device;
use clap::Args;

/// Load a UNet (2D, UNet + motion adapter, or a saved UNetMotionModel) and report what was
/// loaded: the network, the parameter count, and any unused keys.
#[derive(Args, Debug)]
pub struct InspectArgs {
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
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    let options = LoadOptions { variant: args.variant, ..LoadOptions::default() };
    let loaded = match (args.combined, args.motion_adapter) {
        (true, _) => load_unet_motion_folder(&args.unet, &options, &device),
        (false, None) => load_unet_2d(&args.unet, &options, &device),
        (false, Some(path)) => load_unet_motion(&args.unet, &AdapterSource::from_path(&path), &options, &device),
    }
    .with_context(|| format!("loading the UNet from {}", args.unet.display()))?;
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
