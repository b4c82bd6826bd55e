//! The NCCL collective (feature `cuda`): gradients and parameters are summed and broadcast by
//! NCCL on this rank's GPU, staged through host memory (a host-to-device copy, NCCL in place,
//! a device-to-host copy per bucket); the small messages (losses, stop requests, the start
//! agreement) go over the rendezvous' TCP links. The communicator lives on a thread of its own
//! that serves the requests (calls on one communicator must not run concurrently). NCCL itself
//! is opened at run time ([`super::nccl_library`]); cudarc gives the device memory and stream.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use std::ffi::c_void;

use cudarc::driver::{CudaContext, DevicePtrMut};

use super::collective::{ClusterError, Collective, TcpCollective};
use super::launch::RankEnv;
use super::nccl_library::{Comm, FLOAT32, NcclLibrary, SUM, UniqueId};
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
        // Every rank opens NCCL before the rendezvous, so that a missing library is named on
        // the rank that lacks it, before the others wait for it.
        let nccl = NcclLibrary::open()?;
        let mut id = UniqueId { internal: [0; 128] };
        if env.rank == 0 {
            // SAFETY: `id` is a valid ncclUniqueId to fill.
            nccl.check("ncclGetUniqueId", unsafe { (nccl.get_unique_id)(&mut id) })?;
        }
        let bytes: Vec<u8> = if env.rank == 0 { id.internal.iter().map(|&c| c as u8).collect() } else { Vec::new() };
        let (tcp, bytes) = rendezvous::join(env, device, &bytes)?;
        if bytes.len() != id.internal.len() {
            return Err(ClusterError::Nccl(format!("rank 0 sent a unique id of {} bytes, not 128", bytes.len())));
        }
        id.internal.iter_mut().zip(&bytes).for_each(|(c, &b)| *c = b as _);
        let (rank, world) = (env.rank, env.world);
        let (ready_tx, ready) = channel();
        let (requests, inbox) = channel();
        std::thread::Builder::new()
            .name("nccl".into())
            .spawn(move || serve(nccl, ordinal, rank, world, id, ready_tx, inbox))
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
    nccl: NcclLibrary,
    ordinal: usize,
    rank: usize,
    world: usize,
    id: UniqueId,
    ready: Sender<Result<(), String>>,
    inbox: Receiver<(Request, Reply)>,
) {
    let setup = || -> Result<(std::sync::Arc<cudarc::driver::CudaStream>, Comm), String> {
        let context = CudaContext::new(ordinal).map_err(|e| format!("CUDA device {ordinal}: {e:?}"))?;
        let stream = context.new_stream().map_err(|e| format!("a CUDA stream on device {ordinal}: {e:?}"))?;
        let mut comm: Comm = std::ptr::null_mut();
        // SAFETY: `comm` receives the communicator; the id is rank 0's, the same on every rank.
        let result = unsafe { (nccl.comm_init_rank)(&mut comm, world as i32, id, rank as i32) };
        nccl.check("ncclCommInitRank", result).map_err(|e| e.to_string())?;
        Ok((stream, comm))
    };
    let (stream, comm) = match setup() {
        Ok(ready) => ready,
        Err(message) => {
            let _ = ready.send(Err(message));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    for (request, reply) in inbox {
        let run = || -> Result<Vec<f32>, String> {
            let host = match &request {
                Request::Sum(v) | Request::Broadcast(v) => v,
            };
            let mut buffer = stream.clone_htod(host.as_slice()).map_err(|e| format!("host to device: {e:?}"))?;
            {
                let (pointer, _written) = buffer.device_ptr_mut(&stream);
                let pointer = pointer as *mut c_void;
                let cu_stream = stream.cu_stream() as *mut c_void;
                // SAFETY: `pointer` holds `host.len()` f32 on this rank's device, in place; the
                // call is ordered on `stream`, which the copy back waits for.
                let result = unsafe {
                    match request {
                        Request::Sum(_) => {
                            (nccl.all_reduce)(pointer, pointer, host.len(), FLOAT32, SUM, comm, cu_stream)
                        }
                        Request::Broadcast(_) => {
                            (nccl.broadcast)(pointer, pointer, host.len(), FLOAT32, 0, comm, cu_stream)
                        }
                    }
                };
                nccl.check("an NCCL collective", result).map_err(|e| e.to_string())?;
            }
            let values = stream.clone_dtoh(&buffer).map_err(|e| format!("device to host: {e:?}"))?;
            stream.synchronize().map_err(|e| format!("synchronising: {e:?}"))?;
            Ok(values)
        };
        let _ = reply.send(run());
    }
    // SAFETY: the communicator is not used after this.
    let _ = unsafe { (nccl.comm_destroy)(comm) };
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
