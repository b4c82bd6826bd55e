//! `avdm distill` as one rank of a multi-process run launched by `torchrun` or `srun`: the rank
//! from the launcher's variables, the GPU from the local rank (`--device cuda` means
//! `cuda:LOCAL_RANK`), and the collective: NCCL on CUDA, the rendezvous' TCP links otherwise.

use anyhow::bail;
use avdm_train::cluster::rendezvous;
use avdm_train::cluster::{Collective, RankEnv, SingleRank};
use clap::ValueEnum;

/// How the ranks of a multi-process run sum their gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CollectiveKind {
    /// NCCL on `cuda` devices, TCP otherwise.
    Auto,
    /// Through rank 0 over TCP (CPU and wgpu runs, and tests).
    Tcp,
    /// NCCL (needs a build with `--features cuda` and libnccl on the machine). Named, it runs
    /// even for a single process (a check of the NCCL path).
    Nccl,
}

/// This process's place in the run: its collective and the device list it trains on.
pub struct Rank {
    pub env: RankEnv,
    pub collective: Box<dyn Collective>,
    pub devices: String,
}

/// `--device` for this rank: under a launcher with several ranks, a bare `cuda`, `wgpu` or
/// `vulkan` names the GPU of the local rank.
fn rank_devices(devices: &str, env: &RankEnv) -> String {
    match devices.trim() {
        name @ ("cuda" | "wgpu" | "vulkan") if env.world > 1 => format!("{name}:{}", env.local_rank),
        _ => devices.to_string(),
    }
}

/// Joins the launcher's ranks (a single rank without a launcher).
pub fn join(kind: CollectiveKind, devices: &str) -> anyhow::Result<Rank> {
    let mut env = RankEnv::from_process()?;
    let devices = rank_devices(devices, &env);
    if env.world == 1 {
        if kind == CollectiveKind::Auto {
            return Ok(Rank { env, collective: Box::new(SingleRank), devices });
        }
        // A collective asked for by name runs alone (the GPU check's NCCL row): rank 0 listens
        // on a port of the system's choice and waits for nobody.
        env.master.get_or_insert(("127.0.0.1".into(), 0));
    }
    // The GPUs this rank trains on, to refuse two ranks on one GPU (CPU ranks may share).
    let gpus = if devices.split(',').all(|d| d.trim() == "cpu") { String::new() } else { devices.clone() };
    let cuda = devices.trim().starts_with("cuda");
    let kind = match kind {
        CollectiveKind::Auto if cuda && cfg!(feature = "cuda") => CollectiveKind::Nccl,
        CollectiveKind::Auto => CollectiveKind::Tcp,
        chosen => chosen,
    };
    let collective: Box<dyn Collective> = match kind {
        CollectiveKind::Nccl => nccl(&env, &devices, &gpus)?,
        _ => Box::new(rendezvous::join(&env, &gpus, &[])?.0),
    };
    eprintln!("rank {} of {} (local rank {}) on {devices}, {kind:?} collective", env.rank, env.world, env.local_rank);
    Ok(Rank { env, collective, devices })
}

#[cfg(feature = "cuda")]
fn nccl(env: &RankEnv, devices: &str, gpus: &str) -> anyhow::Result<Box<dyn Collective>> {
    let ordinal = match devices.trim().strip_prefix("cuda") {
        Some("") => 0,
        Some(index) if !devices.contains(',') => match index.strip_prefix(':').and_then(|i| i.parse().ok()) {
            Some(ordinal) => ordinal,
            None => bail!("--device {devices}: not a CUDA device"),
        },
        _ => bail!("--collective nccl: each rank trains on one CUDA device (--device cuda or cuda:N), not {devices}"),
    };
    // A missing driver or GPU is named here, not by a panic inside cudarc.
    crate::cuda_probe::probe_cuda(ordinal)?;
    Ok(Box::new(avdm_train::cluster::nccl::NcclCollective::join(env, ordinal, gpus)?))
}

#[cfg(not(feature = "cuda"))]
fn nccl(_: &RankEnv, _: &str, _: &str) -> anyhow::Result<Box<dyn Collective>> {
    bail!(
        "--collective nccl: this avdm was built without CUDA (rebuild with `--features cuda`, or use --collective tcp)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_gpu_name_means_the_local_ranks_gpu() {
        let env = RankEnv { world: 8, local_rank: 3, rank: 11, ..RankEnv::single() };
        assert_eq!(rank_devices("cuda", &env), "cuda:3");
        assert_eq!(rank_devices("vulkan", &env), "vulkan:3");
        assert_eq!(rank_devices("cuda:5", &env), "cuda:5");
        assert_eq!(rank_devices("cpu", &env), "cpu");
        assert_eq!(rank_devices("cuda", &RankEnv::single()), "cuda");
    }
}
