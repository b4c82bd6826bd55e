//! The learning-rate schedule of our training loops: linear warm-up, then cosine decay.

/// The learning rate at `step` (0-based) of a run of `steps`: linear warm-up from `peak / warmup`
/// to `peak` over the first `warmup` steps, then cosine decay from `peak` towards 0 at `steps`
/// (diffusers' `get_cosine_schedule_with_warmup` with half a cycle).
pub fn warmup_cosine(peak: f64, warmup: usize, steps: usize, step: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / steps.saturating_sub(warmup).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_zero() {
        let lr = |step| warmup_cosine(1e-3, 10, 110, step);
        assert!((lr(0) - 1e-4).abs() < 1e-12);
        assert!((lr(9) - 1e-3).abs() < 1e-12);
        assert!((lr(10) - 1e-3).abs() < 1e-12, "the peak right after warm-up");
        assert!((lr(60) - 0.5e-3).abs() < 1e-12, "half-way through the decay");
        assert!(lr(109) < 1e-6 && lr(109) > 0.0);
        assert!((1..110).all(|s| s <= 10 || lr(s) <= lr(s - 1)), "no rise after warm-up");
        assert!((warmup_cosine(1.0, 0, 4, 0) - 1.0).abs() < 1e-12, "no warm-up starts at the peak");
    }
}
