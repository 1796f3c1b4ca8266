//! When to try again: a pure function of the attempt number, the
//! schedule and a jitter draw, so it can be tested as a table.

use std::time::Duration;

/// Delay before attempt `attempt + 1`, after `attempt` attempts (≥ 1)
/// have been made. The schedule's last entry repeats. `jitter` in [0, 1)
/// spreads retries by up to ±10 % so a burst of deferrals does not come
/// back as one burst.
pub fn backoff(attempt: u32, schedule: &[Duration], jitter: f64) -> Duration {
    let Some(last) = schedule.last() else {
        return Duration::from_secs(60);
    };
    let idx = (attempt.max(1) as usize - 1).min(schedule.len() - 1);
    let base = schedule.get(idx).unwrap_or(last).as_secs_f64();
    let factor = 0.9 + 0.2 * jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64((base * factor).max(0.001))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_then_repeat_last() {
        let s: Vec<Duration> = [60, 300, 1800].map(Duration::from_secs).to_vec();
        let cases = [
            (1, 0.5, 60.0),
            (2, 0.5, 300.0),
            (3, 0.5, 1800.0),
            (9, 0.5, 1800.0),
            (0, 0.5, 60.0),
            (1, 0.0, 54.0),
            (1, 0.999_999, 66.0),
            (2, 7.0, 330.0),
        ];
        for (attempt, jitter, want) in cases {
            let got = backoff(attempt, &s, jitter).as_secs_f64();
            assert!((got - want).abs() < 0.01, "attempt {attempt} jitter {jitter}: {got} != {want}");
        }
        assert_eq!(backoff(3, &[], 0.5), Duration::from_secs(60));
    }
}
