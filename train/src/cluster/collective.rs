//! The [`Collective`] seam: what the learner needs from the other ranks, and its two host-side
//! implementations: [`SingleRank`] (one process: nothing to do) and [`TcpCollective`] (over the
//! rendezvous' TCP links: rank 0 sums in rank order and sends the result back, so the sum is
//! the same on every rank and does not depend on timing).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("launch: {0}")]
    Launch(String),
    #[error("rendezvous: {0}")]
    Rendezvous(String),
    #[error("lost rank {rank}: {message} (it stopped or failed; see its own output)")]
    Peer { rank: usize, message: String },
    #[error("ranks disagree: {0}")]
    Disagree(String),
    #[error("NCCL: {0}")]
    Nccl(String),
}

/// Reductions and broadcasts over every rank of the run. Every rank makes the same calls in
/// the same order; each call returns when all ranks made it.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// Sums `values` elementwise over the ranks, in place on every rank.
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), ClusterError>;
    fn sum_f64(&self, values: &mut [f64]) -> Result<(), ClusterError>;
    /// Rank 0's `values` on every rank (the same length everywhere).
    fn broadcast_f32(&self, values: &mut [f32]) -> Result<(), ClusterError>;
    /// Rank 0's bytes on every rank (any length).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<(), ClusterError>;
    /// Whether every rank says go on (a barrier carrying each rank's stop request).
    fn all_agree(&self, go_on: bool) -> Result<bool, ClusterError>;
    /// True for [`SingleRank`]: callers skip flattening gradients for it. A collective of one
    /// rank (`--collective nccl` alone on a GPU, to check the NCCL path) runs every step.
    fn single_process(&self) -> bool {
        false
    }
}

/// The global sample rows `rank` of `world` ranks works on in a batch of `total`.
pub fn rank_rows(total: usize, rank: usize, world: usize) -> Range<usize> {
    total * rank / world.max(1)..total * (rank + 1) / world.max(1)
}

/// One process: every call returns at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleRank;

impl Collective for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) -> Result<(), ClusterError> {
        Ok(())
    }
    fn sum_f64(&self, _: &mut [f64]) -> Result<(), ClusterError> {
        Ok(())
    }
    fn broadcast_f32(&self, _: &mut [f32]) -> Result<(), ClusterError> {
        Ok(())
    }
    fn broadcast_bytes(&self, _: &mut Vec<u8>) -> Result<(), ClusterError> {
        Ok(())
    }
    fn all_agree(&self, go_on: bool) -> Result<bool, ClusterError> {
        Ok(go_on)
    }
    fn single_process(&self) -> bool {
        true
    }
}

/// The rendezvous' links as a collective: a star around rank 0 (`links[r]` is rank 0's link
/// to rank `r`; on the others `links[0]` is their link to rank 0).
pub struct TcpCollective {
    rank: usize,
    links: Vec<Option<Mutex<TcpStream>>>,
}

/// A value sent over the links, little-endian.
trait Wire: Copy + std::ops::AddAssign {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! wire {
    ($t:ty) => {
        impl Wire for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("one value's bytes"))
            }
        }
    };
}
wire!(f32);
wire!(f64);

fn encode<T: Wire>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * T::SIZE);
    values.iter().for_each(|v| v.put(&mut out));
    out
}

/// Writes one frame: its length (u64) and its bytes.
pub(crate) fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(&(bytes.len() as u64).to_le_bytes())?;
    stream.write_all(bytes)?;
    stream.flush()
}

/// Reads one frame of at most `limit` bytes.
pub(crate) fn read_frame(stream: &mut TcpStream, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len) as usize;
    if len > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {len} bytes")));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

impl TcpCollective {
    pub(crate) fn new(rank: usize, links: Vec<Option<TcpStream>>) -> Self {
        Self { rank, links: links.into_iter().map(|l| l.map(Mutex::new)).collect() }
    }

    /// Runs `talk` on the link to `peer` (rank 0's view: any rank; the others: rank 0).
    fn with_link<R>(
        &self,
        peer: usize,
        talk: impl FnOnce(&mut TcpStream) -> std::io::Result<R>,
    ) -> Result<R, ClusterError> {
        let link = self.links.get(peer).and_then(Option::as_ref).expect("a link to every peer of the star");
        let mut stream = link.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        talk(&mut stream).map_err(|e| ClusterError::Peer { rank: peer, message: e.to_string() })
    }

    fn others(&self) -> Range<usize> {
        1..self.links.len()
    }

    /// Rank 0 receives every rank's bytes (in rank order) and `combine`s them into its own;
    /// then every rank gets rank 0's result.
    fn gather_combine_scatter(
        &self,
        mine: Vec<u8>,
        mut combine: impl FnMut(&mut Vec<u8>, Vec<u8>, usize) -> Result<(), ClusterError>,
    ) -> Result<Vec<u8>, ClusterError> {
        if self.rank != 0 {
            return self.with_link(0, |s| {
                write_frame(s, &mine)?;
                read_frame(s, usize::MAX)
            });
        }
        let mut acc = mine;
        for peer in self.others() {
            let theirs = self.with_link(peer, |s| read_frame(s, usize::MAX))?;
            combine(&mut acc, theirs, peer)?;
        }
        for peer in self.others() {
            self.with_link(peer, |s| write_frame(s, &acc))?;
        }
        Ok(acc)
    }

    fn sum<T: Wire>(&self, values: &mut [T]) -> Result<(), ClusterError> {
        let expected = values.len() * T::SIZE;
        let summed = self.gather_combine_scatter(encode(values), |acc, theirs, peer| {
            if theirs.len() != acc.len() {
                return Err(ClusterError::Disagree(format!(
                    "rank {peer} sent {} values to sum, rank 0 has {}",
                    theirs.len() / T::SIZE,
                    acc.len() / T::SIZE
                )));
            }
            for (a, b) in acc.chunks_exact_mut(T::SIZE).zip(theirs.chunks_exact(T::SIZE)) {
                let mut v = T::get(a);
                v += T::get(b);
                a.copy_from_slice(&encode(&[v]));
            }
            Ok(())
        })?;
        if summed.len() != expected {
            return Err(ClusterError::Disagree(format!(
                "rank 0 summed {} values, rank {} has {}",
                summed.len() / T::SIZE,
                self.rank,
                values.len()
            )));
        }
        for (v, bytes) in values.iter_mut().zip(summed.chunks_exact(T::SIZE)) {
            *v = T::get(bytes);
        }
        Ok(())
    }
}

impl Collective for TcpCollective {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.links.len()
    }
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), ClusterError> {
        self.sum(values)
    }
    fn sum_f64(&self, values: &mut [f64]) -> Result<(), ClusterError> {
        self.sum(values)
    }
    fn broadcast_f32(&self, values: &mut [f32]) -> Result<(), ClusterError> {
        let mut bytes = encode(values);
        self.broadcast_bytes(&mut bytes)?;
        if bytes.len() != values.len() * 4 {
            return Err(ClusterError::Disagree(format!(
                "rank 0 broadcast {} values, rank {} expects {}",
                bytes.len() / 4,
                self.rank,
                values.len()
            )));
        }
        for (v, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::get(b);
        }
        Ok(())
    }
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<(), ClusterError> {
        if self.rank != 0 {
            *bytes = self.with_link(0, |s| read_frame(s, usize::MAX))?;
            return Ok(());
        }
        for peer in self.others() {
            self.with_link(peer, |s| write_frame(s, bytes))?;
        }
        Ok(())
    }
    fn all_agree(&self, go_on: bool) -> Result<bool, ClusterError> {
        let agreed = self.gather_combine_scatter(vec![go_on as u8], |acc, theirs, _| {
            acc[0] &= theirs.first().copied().unwrap_or(0);
            Ok(())
        })?;
        Ok(agreed.first() == Some(&1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_rows_cover_the_batch_once() {
        let rows: Vec<_> = (0..3).map(|r| rank_rows(16, r, 3)).collect();
        assert_eq!(rows, vec![0..5, 5..10, 10..16]);
        assert_eq!(rank_rows(16, 0, 1), 0..16);
    }

    #[test]
    fn a_single_rank_changes_nothing() {
        let mut v = [1.0f32, 2.0];
        SingleRank.sum_f32(&mut v).unwrap();
        SingleRank.broadcast_f32(&mut v).unwrap();
        assert_eq!(v, [1.0, 2.0]);
        assert!(!SingleRank.all_agree(false).unwrap());
    }
}
