//! Training over several processes (ranks), one per GPU, launched by `torchrun` or `srun`.
//!
//! [`launch`] reads the rank from the launcher's environment; [`rendezvous`] connects every rank
//! to rank 0 over TCP (and hands out rank 0's bytes: NCCL's unique id); a [`Collective`] sums
//! gradients and losses over the ranks and broadcasts rank 0's parameters ([`buckets`]): NCCL on
//! CUDA ([`nccl`], feature `cuda`), the TCP links elsewhere ([`TcpCollective`]), or nothing for
//! one process ([`SingleRank`]).

pub mod buckets;
pub mod collective;
pub mod launch;
#[cfg(feature = "cuda")]
pub mod nccl;
pub mod nccl_library;
pub mod rendezvous;
pub mod start;

pub use collective::{ClusterError, Collective, SingleRank, TcpCollective, rank_rows};
pub use launch::RankEnv;
