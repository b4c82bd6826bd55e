//! Before the first step of a multi-process run, the ranks agree: every rank must hold rank
//! 0's settings and be at rank 0's step (a resume where some rank cannot see the run folder's
//! checkpoint would otherwise train on a different state), and every rank then takes rank 0's
//! parameters (fresh networks differ where they are randomly initialised).

use super::buckets::broadcast_parameters;
use super::collective::{ClusterError, Collective};
use crate::distill::learner::Networks;

/// Checks that this rank's `settings` (the resolved config as TOML) and `step` are rank 0's,
/// failing on every rank when one differs (the differing rank names what differs).
pub fn agree_on_start(collective: &dyn Collective, settings: &str, step: usize) -> Result<(), ClusterError> {
    if collective.single_process() {
        return Ok(());
    }
    let mine = format!("{step}\n{settings}");
    let mut lead = mine.clone().into_bytes();
    collective.broadcast_bytes(&mut lead)?;
    let lead = String::from_utf8_lossy(&lead).into_owned();
    let (lead_step, lead_settings) = lead.split_once('\n').unwrap_or((&lead, ""));
    let problem = if lead_settings != settings {
        let theirs = qualified_lines(lead_settings);
        let differ: Vec<String> = qualified_lines(settings).into_iter().filter(|line| !theirs.contains(line)).collect();
        Some(format!("rank {}'s settings differ from rank 0's ({})", collective.rank(), differ.join("; ")))
    } else if lead_step != step.to_string() {
        Some(format!(
            "rank {} is at step {step}, rank 0 at step {lead_step}: every rank must see the run folder (--out on a shared file system) to resume",
            collective.rank()
        ))
    } else {
        None
    };
    if !collective.all_agree(problem.is_none())? {
        return Err(ClusterError::Disagree(
            problem.unwrap_or_else(|| "another rank's settings or step differ from rank 0's (see its output)".into()),
        ));
    }
    Ok(())
}

/// The lines of TOML `text` with their table's name in front (`student.steps = 4`).
fn qualified_lines(text: &str) -> Vec<String> {
    let mut table = String::new();
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            Some(name) => table = format!("{name}."),
            None => lines.push(format!("{table}{line}")),
        }
    }
    lines
}

/// The trained networks of `nets` with rank 0's values.
pub fn take_lead_parameters(nets: Networks, collective: &dyn Collective) -> Result<Networks, ClusterError> {
    Ok(Networks {
        student: broadcast_parameters(nets.student, collective)?,
        fake_score: broadcast_parameters(nets.fake_score, collective)?,
        head: broadcast_parameters(nets.head, collective)?,
        ..nets
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_lines_are_named_by_their_table() {
        let text = "steps = 3\n\n[student]\nsteps = 4\n[loss.sdm]\nguidance = 1.75\n";
        assert_eq!(qualified_lines(text), ["steps = 3", "student.steps = 4", "loss.sdm.guidance = 1.75"]);
    }
}
