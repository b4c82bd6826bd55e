//! The rendezvous: every rank connects to rank 0 over TCP (`MASTER_ADDR`, the rendezvous
//! port), says who it is and which device it trains on; rank 0 waits for all of them (or
//! names the missing ranks after the timeout), refuses two ranks on one GPU, and sends every
//! rank its payload (NCCL's unique id). The links stay open as the run's [`TcpCollective`].

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::collective::{ClusterError, TcpCollective, read_frame, write_frame};
use super::launch::RankEnv;

const HELLO: &[u8; 8] = b"avdm-rv1";
/// Longest hello or payload frame.
const FRAME_LIMIT: usize = 1 << 20;

/// A rank's greeting: its rank, the world it was launched in and its device's identity
/// (`host/cuda:N`; empty on the CPU, where ranks may share the machine).
struct Hello {
    rank: usize,
    world: usize,
    identity: String,
}

impl Hello {
    fn bytes(&self) -> Vec<u8> {
        let mut out = HELLO.to_vec();
        out.extend_from_slice(&(self.rank as u64).to_le_bytes());
        out.extend_from_slice(&(self.world as u64).to_le_bytes());
        out.extend_from_slice(self.identity.as_bytes());
        out
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(HELLO)?;
        let number = |b: &[u8]| u64::from_le_bytes(b.try_into().ok()?).try_into().ok();
        Some(Hello {
            rank: number(rest.get(..8)?)?,
            world: number(rest.get(8..16)?)?,
            identity: String::from_utf8(rest.get(16..)?.to_vec()).ok()?,
        })
    }
}

/// This machine's name, for telling devices of different nodes apart.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Joins the ranks of `env` (more than one). `device` names the GPU this rank trains on
/// (empty on the CPU); `payload` is what rank 0 hands out (the others' is ignored). Returns the
/// links as a collective and rank 0's payload.
pub fn join(env: &RankEnv, device: &str, payload: &[u8]) -> Result<(TcpCollective, Vec<u8>), ClusterError> {
    let (host, port) = env
        .master
        .clone()
        .ok_or_else(|| ClusterError::Rendezvous(format!("{} ranks need MASTER_ADDR and a port", env.world)))?;
    let identity = if device.is_empty() { String::new() } else { format!("{}/{device}", hostname()) };
    let deadline = Instant::now() + env.timeout;
    if env.rank == 0 {
        lead(env, &identity, port, payload, deadline)
    } else {
        follow(env, &identity, (&host, port), deadline)
    }
}

fn lead(
    env: &RankEnv,
    identity: &str,
    port: u16,
    payload: &[u8],
    deadline: Instant,
) -> Result<(TcpCollective, Vec<u8>), ClusterError> {
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        ClusterError::Rendezvous(format!(
            "rank 0 cannot listen on port {port}: {e} (set AVDM_RENDEZVOUS_PORT to a free port)"
        ))
    })?;
    listener.set_nonblocking(true).map_err(|e| ClusterError::Rendezvous(e.to_string()))?;
    let mut links: Vec<Option<TcpStream>> = (0..env.world).map(|_| None).collect();
    let mut identities = vec![(0, identity.to_string())];
    let mut problem = None;
    while links.iter().skip(1).any(Option::is_none) && problem.is_none() {
        if Instant::now() >= deadline {
            let missing: Vec<String> = (1..env.world).filter(|&r| links[r].is_none()).map(|r| r.to_string()).collect();
            problem = Some(format!(
                "rank(s) {} did not reach rank 0 on port {port} within {:.0} s",
                missing.join(", "),
                env.timeout.as_secs_f64()
            ));
            break;
        }
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(ClusterError::Rendezvous(format!("accepting on port {port}: {e}"))),
        };
        let setup = stream.set_nonblocking(false).and_then(|_| stream.set_read_timeout(Some(Duration::from_secs(10))));
        let hello = setup.and_then(|_| read_frame(&mut stream, FRAME_LIMIT)).ok().and_then(|b| Hello::parse(&b));
        // Something else on the port (a port scanner, another job): not a rank.
        let Some(hello) = hello else { continue };
        if hello.world != env.world {
            problem =
                Some(format!("rank {} was launched with {} ranks, rank 0 with {}", hello.rank, hello.world, env.world));
        } else if hello.rank == 0 || hello.rank >= env.world || links[hello.rank].is_some() {
            problem = Some(format!("two processes say they are rank {}", hello.rank));
        } else if let Some((other, _)) =
            identities.iter().find(|(_, id)| !hello.identity.is_empty() && *id == hello.identity)
        {
            problem = Some(format!("ranks {other} and {} both train on {}", hello.rank, hello.identity));
        }
        identities.push((hello.rank, hello.identity));
        links[hello.rank.min(env.world - 1).max(1)].get_or_insert(stream);
    }
    // Every connected rank hears the outcome: the payload, or why the run cannot start.
    let (status, body) = match &problem {
        Some(message) => (1u8, message.as_bytes()),
        None => (0u8, payload),
    };
    for stream in links.iter_mut().flatten() {
        let sent = stream.write_all(&[status]).and_then(|_| write_frame(stream, body));
        let _ = stream.set_read_timeout(None);
        let _ = stream.set_nodelay(true);
        if let (Err(e), None) = (sent, &problem) {
            return Err(ClusterError::Rendezvous(format!("sending the payload: {e}")));
        }
    }
    match problem {
        Some(message) => Err(ClusterError::Rendezvous(message)),
        None => Ok((TcpCollective::new(0, links), payload.to_vec())),
    }
}

fn follow(
    env: &RankEnv,
    identity: &str,
    (host, port): (&str, u16),
    deadline: Instant,
) -> Result<(TcpCollective, Vec<u8>), ClusterError> {
    let unreachable = |why: String| {
        ClusterError::Rendezvous(format!(
            "rank {} could not reach rank 0 at {host}:{port} within {:.0} s: {why}",
            env.rank,
            env.timeout.as_secs_f64()
        ))
    };
    // Rank 0 may start later: retry until the deadline.
    let mut stream = loop {
        let attempt = (host, port)
            .to_socket_addrs()
            .and_then(|mut addrs| addrs.next().ok_or_else(|| std::io::Error::other("no address")))
            .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)));
        match attempt {
            Ok(stream) => break stream,
            Err(e) if Instant::now() >= deadline => return Err(unreachable(e.to_string())),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let hello = Hello { rank: env.rank, world: env.world, identity: identity.to_string() };
    write_frame(&mut stream, &hello.bytes()).map_err(|e| unreachable(e.to_string()))?;
    // Rank 0 answers once every rank is there: wait up to the rest of the timeout, and a margin.
    let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(10);
    let _ = stream.set_read_timeout(Some(wait));
    let mut status = [0u8; 1];
    let answer = stream.read_exact(&mut status).and_then(|_| read_frame(&mut stream, FRAME_LIMIT));
    let body = answer.map_err(|e| unreachable(format!("no answer from rank 0 ({e})")))?;
    if status[0] != 0 {
        return Err(ClusterError::Rendezvous(format!("rank 0 refused the run: {}", String::from_utf8_lossy(&body))));
    }
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_nodelay(true);
    let mut links: Vec<Option<TcpStream>> = (0..env.world).map(|_| None).collect();
    links[0] = Some(stream);
    Ok((TcpCollective::new(env.rank, links), body))
}

#[cfg(test)]
mod tests {
    use super::super::collective::Collective;
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn env(rank: usize, world: usize, port: u16, timeout_s: u64) -> RankEnv {
        RankEnv {
            rank,
            world,
            local_rank: rank,
            master: Some(("127.0.0.1".into(), port)),
            timeout: Duration::from_secs(timeout_s),
        }
    }

    /// Runs `world` ranks on threads, rank `r` on device `devices(r)`, each then running `then`.
    fn ranks<R: Send>(
        world: usize,
        devices: impl Fn(usize) -> String + Sync,
        then: impl Fn(TcpCollective, Vec<u8>) -> R + Sync,
    ) -> Vec<Result<R, ClusterError>> {
        let port = free_port();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let (devices, then) = (&devices, &then);
                    s.spawn(move || {
                        let payload = if rank == 0 { b"nccl id bytes".to_vec() } else { Vec::new() };
                        join(&env(rank, world, port, 20), &devices(rank), &payload).map(|(c, p)| then(c, p))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn every_rank_gets_rank_0s_bytes_and_sums_in_rank_order() {
        let results = ranks(
            3,
            |_| String::new(),
            |c, payload| {
                let mut values = [c.rank() as f32 + 0.5, 1.0];
                c.sum_f32(&mut values).unwrap();
                let mut scalars = [c.rank() as f64];
                c.sum_f64(&mut scalars).unwrap();
                let mut broadcast = [c.rank() as f32; 3];
                c.broadcast_f32(&mut broadcast).unwrap();
                let agreed = c.all_agree(c.rank() != 2).unwrap();
                (payload, values, scalars[0], broadcast, agreed, c.world())
            },
        );
        for result in results {
            let (payload, values, scalar, broadcast, agreed, world) = result.unwrap();
            assert_eq!(payload, b"nccl id bytes");
            assert_eq!(values, [4.5, 3.0]);
            assert_eq!(scalar, 3.0);
            assert_eq!(broadcast, [0.0; 3]);
            assert!(!agreed, "rank 2 asked to stop");
            assert_eq!(world, 3);
        }
    }

    #[test]
    fn two_ranks_on_one_gpu_are_refused_on_every_rank() {
        let results = ranks(2, |_| "cuda:0".into(), |_, _| ());
        for result in results {
            let message = result.unwrap_err().to_string();
            assert!(message.contains("ranks 0 and 1 both train on") && message.contains("/cuda:0"), "{message}");
        }
    }

    #[test]
    fn a_missing_rank_is_named_after_the_timeout() {
        let port = free_port();
        let start = Instant::now();
        // Rank 1 has 3 s to connect (time enough on a loaded machine); rank 2 never comes.
        let lead = std::thread::spawn(move || join(&env(0, 3, port, 3), "", b"x").map(|_| ()));
        let one = join(&env(1, 3, port, 3), "", b"").map(|_| ());
        let message = lead.join().unwrap().unwrap_err().to_string();
        assert!(message.contains("rank(s) 2 did not reach rank 0"), "{message}");
        let message = one.unwrap_err().to_string();
        assert!(message.contains("rank(s) 2 did not reach rank 0"), "rank 1 hears why: {message}");
        assert!(start.elapsed() < Duration::from_secs(15));
        // Nobody listening: a follower gives up after its timeout.
        let message = join(&env(1, 2, free_port(), 1), "", b"").map(|_| ()).unwrap_err().to_string();
        assert!(message.contains("rank 1 could not reach rank 0 at 127.0.0.1"), "{message}");
    }
}
