//! The rank of this process from the launcher's environment: `torchrun` sets `RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT`; `srun` sets `SLURM_PROCID`,
//! `SLURM_NTASKS` and `SLURM_LOCALID` (the batch script exports `MASTER_ADDR` and
//! `MASTER_PORT`). torchrun's own store already listens on `MASTER_PORT`, so the rendezvous
//! takes the next port, or `AVDM_RENDEZVOUS_PORT`.

use std::time::Duration;

use super::collective::ClusterError;

/// Where this process stands in a multi-process run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEnv {
    pub rank: usize,
    pub world: usize,
    /// The rank's position on its node: its GPU.
    pub local_rank: usize,
    /// Rank 0's host and the rendezvous port (`None` for a single process).
    pub master: Option<(String, u16)>,
    /// How long a rank waits for the others at the rendezvous (`AVDM_RENDEZVOUS_TIMEOUT`
    /// seconds; default 600, torchrun's own rendezvous join timeout).
    pub timeout: Duration,
}

impl RankEnv {
    /// One process, no launcher.
    pub fn single() -> Self {
        Self { rank: 0, world: 1, local_rank: 0, master: None, timeout: Duration::from_secs(600) }
    }

    /// The process's environment.
    pub fn from_process() -> Result<Self, ClusterError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The rank from the variables `var` gives: torchrun's first, then SLURM's, else a single
    /// process. A launcher's variables set only in part are an error naming the missing ones.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ClusterError> {
        const TORCHRUN: [&str; 3] = ["RANK", "WORLD_SIZE", "LOCAL_RANK"];
        const SLURM: [&str; 3] = ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"];
        let mut env = Self::single();
        let launcher = [("torchrun", TORCHRUN), ("srun", SLURM)]
            .into_iter()
            .find(|(_, names)| names.iter().any(|name| var(name).is_some()));
        let Some((launcher, names)) = launcher else { return Ok(env) };
        let number = |name: &str| -> Result<usize, ClusterError> {
            let value = var(name).ok_or_else(|| {
                let missing: Vec<&str> = names.iter().copied().filter(|n| var(n).is_none()).collect();
                ClusterError::Launch(format!(
                    "{launcher}'s variables are set only in part: {} missing (of {})",
                    missing.join(", "),
                    names.join(", ")
                ))
            })?;
            value.trim().parse().map_err(|_| ClusterError::Launch(format!("{name}={value:?} is not a number")))
        };
        (env.rank, env.world, env.local_rank) = (number(names[0])?, number(names[1])?, number(names[2])?);
        if env.world == 0 || env.rank >= env.world {
            return Err(ClusterError::Launch(format!(
                "{}={} is not below {}={}",
                names[0], env.rank, names[1], env.world
            )));
        }
        if let Some(seconds) = var("AVDM_RENDEZVOUS_TIMEOUT") {
            let seconds: f64 = seconds.trim().parse().map_err(|_| {
                ClusterError::Launch(format!("AVDM_RENDEZVOUS_TIMEOUT={seconds:?} is not a number of seconds"))
            })?;
            env.timeout = Duration::from_secs_f64(seconds.max(0.0));
        }
        if env.world == 1 {
            return Ok(env);
        }
        let host = var("MASTER_ADDR").ok_or_else(|| {
            ClusterError::Launch(format!(
                "{launcher} runs {} ranks but MASTER_ADDR is not set (the host of rank 0; with srun, export it in the batch script)",
                env.world
            ))
        })?;
        let port = match (var("AVDM_RENDEZVOUS_PORT"), var("MASTER_PORT")) {
            (Some(port), _) => parse_port("AVDM_RENDEZVOUS_PORT", &port, 0)?,
            // torchrun's store listens on MASTER_PORT itself.
            (None, Some(port)) => parse_port("MASTER_PORT", &port, 1)?,
            (None, None) => {
                return Err(ClusterError::Launch(format!(
                    "{launcher} runs {} ranks but neither MASTER_PORT nor AVDM_RENDEZVOUS_PORT is set",
                    env.world
                )));
            }
        };
        env.master = Some((host, port));
        Ok(env)
    }

    pub fn is_lead(&self) -> bool {
        self.rank == 0
    }
}

/// Port `value` of variable `name`, plus `offset`.
fn parse_port(name: &str, value: &str, offset: u16) -> Result<u16, ClusterError> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .and_then(|port| port.checked_add(offset))
        .filter(|&port| port > 0)
        .ok_or_else(|| ClusterError::Launch(format!("{name}={value:?} is not a port number (1 to 65534)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<RankEnv, ClusterError> {
        RankEnv::from_vars(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn reads_torchrun_and_slurm_and_defaults_to_one_process() {
        assert_eq!(env(&[]).unwrap(), RankEnv::single());
        let torchrun = env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap();
        assert_eq!((torchrun.rank, torchrun.world, torchrun.local_rank), (3, 8, 1));
        assert_eq!(torchrun.master, Some(("node0".into(), 29501)), "the port after torchrun's store");
        let slurm = env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "5"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "12000"),
            ("AVDM_RENDEZVOUS_PORT", "12345"),
            ("AVDM_RENDEZVOUS_TIMEOUT", "30"),
        ])
        .unwrap();
        assert_eq!((slurm.rank, slurm.world, slurm.local_rank), (5, 16, 5));
        assert_eq!(slurm.master, Some(("10.0.0.1".into(), 12345)));
        assert_eq!(slurm.timeout, Duration::from_secs(30));
        // One task: no rendezvous needed.
        let one = env(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1"), ("SLURM_LOCALID", "0")]).unwrap();
        assert_eq!((one.world, one.master), (1, None));
    }

    #[test]
    fn half_set_or_bad_variables_are_named() {
        let message = |vars: &[(&str, &str)]| env(vars).unwrap_err().to_string();
        let m = message(&[("RANK", "0"), ("WORLD_SIZE", "2")]);
        assert!(m.contains("torchrun") && m.contains("LOCAL_RANK missing"), "{m}");
        let m = message(&[("SLURM_PROCID", "0")]);
        assert!(m.contains("srun") && m.contains("SLURM_NTASKS, SLURM_LOCALID missing"), "{m}");
        let m = message(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")]);
        assert!(m.contains("RANK=2 is not below WORLD_SIZE=2"), "{m}");
        let m = message(&[("RANK", "x"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")]);
        assert!(m.contains("RANK=\"x\" is not a number"), "{m}");
        let m = message(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_PORT", "1")]);
        assert!(m.contains("MASTER_ADDR is not set"), "{m}");
        let m = message(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "h")]);
        assert!(m.contains("neither MASTER_PORT"), "{m}");
        let vars =
            [("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "65535")];
        let m = message(&vars);
        assert!(m.contains("MASTER_PORT=\"65535\" is not a port number"), "{m}");
    }
}
