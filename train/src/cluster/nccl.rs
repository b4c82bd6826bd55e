//! The NCCL collective (feature `cuda`): gradients and parameters are summed and broadcast by
//! NCCL on this rank's GPU, staged through host memory (a host-to-device copy, NCCL in place,
//! a device-to-host copy per bucket); the small messages (losses, stop requests, the start
//! agreement) go over the rendezvous' TCP links. NCCL's communicator is not `Send`, so it lives
//! on a thread of its own that serves the requests.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use cudarc::driver::CudaContext;
use cudarc::nccl::safe::{Comm, Id, ReduceOp};

use super::collective::{ClusterError, Collective, TcpCollective};
use super::launch::RankEnv;
use super::rendezvous;

enum Request {
    Sum(Vec<f32>),
    Broadcast(Vec<f32>),
}

type Reply = Sender<Result<Vec<f32>, String>>;

/// NCCL over this rank's GPU, with the TCP links for the small messages.
pub struct NcclCollective {
    tcp: TcpCollective,
    requests: Mutex<Sender<(Request, Reply)>>,
}

impl NcclCollective {
    /// Joins the ranks of `env` (rank 0 makes NCCL's unique id and hands it out at the
    /// rendezvous), then builds the communicator on CUDA device `ordinal`.
    pub fn join(env: &RankEnv, ordinal: usize, device: &str) -> Result<Self, ClusterError> {
        let id = if env.rank == 0 {
            let id = Id::new()
                .map_err(|e| ClusterError::Nccl(format!("ncclGetUniqueId: {e:?} (is libnccl.so.2 installed?)")))?;
            id.internal().iter().map(|&c| c as u8).collect()
        } else {
            Vec::new()
        };
        let (tcp, id) = rendezvous::join(env, device, &id)?;
        let mut internal = [0 as std::ffi::c_char; 128];
        if id.len() != internal.len() {
            return Err(ClusterError::Nccl(format!("rank 0 sent a unique id of {} bytes, not 128", id.len())));
        }
        internal.iter_mut().zip(&id).for_each(|(c, &b)| *c = b as _);
        let (rank, world) = (env.rank, env.world);
        let (ready_tx, ready) = channel();
        let (requests, inbox) = channel();
        std::thread::Builder::new()
            .name("nccl".into())
            .spawn(move || serve(ordinal, rank, world, internal, ready_tx, inbox))
            .map_err(|e| ClusterError::Nccl(format!("starting the NCCL thread: {e}")))?;
        match ready.recv() {
            Ok(Ok(())) => Ok(Self { tcp, requests: Mutex::new(requests) }),
            Ok(Err(message)) => Err(ClusterError::Nccl(message)),
            Err(_) => Err(ClusterError::Nccl("the NCCL thread ended while starting".into())),
        }
    }

    fn call(&self, request: Request, values: &mut [f32]) -> Result<(), ClusterError> {
        let (reply, answer) = channel();
        let sent = self.requests.lock().unwrap_or_else(|p| p.into_inner()).send((request, reply));
        sent.map_err(|_| ClusterError::Nccl("the NCCL thread has ended".into()))?;
        let result = answer.recv().map_err(|_| ClusterError::Nccl("the NCCL thread has ended".into()))?;
        let result = result.map_err(ClusterError::Nccl)?;
        values.copy_from_slice(&result);
        Ok(())
    }
}

/// The NCCL thread: builds the communicator, then serves requests until the collective drops.
fn serve(
    ordinal: usize,
    rank: usize,
    world: usize,
    id: [std::ffi::c_char; 128],
    ready: Sender<Result<(), String>>,
    inbox: Receiver<(Request, Reply)>,
) {
    let setup = || -> Result<Comm, String> {
        let context = CudaContext::new(ordinal).map_err(|e| format!("CUDA device {ordinal}: {e:?}"))?;
        let stream = context.new_stream().map_err(|e| format!("a CUDA stream on device {ordinal}: {e:?}"))?;
        Comm::from_rank(stream, rank, world, Id::uninit(id)).map_err(|e| format!("ncclCommInitRank: {e:?}"))
    };
    let comm = match setup() {
        Ok(comm) => comm,
        Err(message) => {
            let _ = ready.send(Err(message));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    for (request, reply) in inbox {
        let run = || -> Result<Vec<f32>, String> {
            let stream = comm.stream();
            let host = match &request {
                Request::Sum(v) | Request::Broadcast(v) => v,
            };
            let mut buffer = stream.clone_htod(host.as_slice()).map_err(|e| format!("host to device: {e:?}"))?;
            match request {
                Request::Sum(_) => comm.all_reduce_in_place(&mut buffer, &ReduceOp::Sum),
                Request::Broadcast(_) => comm.broadcast_in_place(&mut buffer, 0),
            }
            .map_err(|e| format!("{e:?}"))?;
            let values = stream.clone_dtoh(&buffer).map_err(|e| format!("device to host: {e:?}"))?;
            stream.synchronize().map_err(|e| format!("synchronising: {e:?}"))?;
            Ok(values)
        };
        let _ = reply.send(run());
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.tcp.rank()
    }
    fn world(&self) -> usize {
        self.tcp.world()
    }
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), ClusterError> {
        self.call(Request::Sum(values.to_vec()), values)
    }
    fn sum_f64(&self, values: &mut [f64]) -> Result<(), ClusterError> {
        self.tcp.sum_f64(values)
    }
    fn broadcast_f32(&self, values: &mut [f32]) -> Result<(), ClusterError> {
        self.call(Request::Broadcast(values.to_vec()), values)
    }
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<(), ClusterError> {
        self.tcp.broadcast_bytes(bytes)
    }
    fn all_agree(&self, go_on: bool) -> Result<bool, ClusterError> {
        self.tcp.all_agree(go_on)
    }
}
