//! The reconnect schedule as a pure, seeded iterator: each `next()` is the wait before
//! the next attempt (exponential backoff with full jitter, see [`ReconnectPolicy`]).
//! It never sleeps and never reads a clock; the reconnect loop does both.

use std::time::Duration;

use super::config::ReconnectPolicy;

/// Waits before successive reconnect attempts. Ends (`None`) after
/// [`ReconnectPolicy::max_attempts`], if set.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: ReconnectPolicy,
    /// Attempts handed out since the last reset.
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A schedule whose jitter is drawn from `seed`: the same seed, the same waits.
    pub fn new(policy: ReconnectPolicy, seed: u64) -> Self {
        Backoff {
            policy,
            attempt: 0,
            rng: SplitMix64(seed),
        }
    }

    /// The number of the attempt the last `next()` was for (1 after the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The largest wait before attempt `attempt` (from 1): `min(max, base *
    /// factor^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(i32::MAX as u32) as i32;
        let secs = self.policy.base.as_secs_f64() * self.policy.factor.powi(exponent);
        // `min` also tames an infinite product.
        Duration::from_secs_f64(secs.min(self.policy.max.as_secs_f64()))
    }

    /// Starts over from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// A connection ended after being up for `up_for`: one that lasted at least
    /// [`ReconnectPolicy::reset_after`] resets the schedule.
    pub fn connection_ended(&mut self, up_for: Duration) {
        if up_for >= self.policy.reset_after {
            self.reset();
        }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
        {
            return None;
        }
        self.attempt = self.attempt.saturating_add(1);
        // Full jitter: uniform in [0, ceiling].
        Some(self.ceiling(self.attempt).mul_f64(self.rng.next_unit()))
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and every seed is a good one.
/// Jitter needs spread, not secrecy.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1]: the top 53 bits over 2^53 - 1, so both ends are reachable.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / ((1u64 << 53) - 1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy::default()
    }

    #[test]
    fn ceilings_double_from_base_and_stop_at_max() {
        let backoff = Backoff::new(policy(), 1);
        let ceilings: Vec<f64> = (1..=9).map(|n| backoff.ceiling(n).as_secs_f64()).collect();
        assert_eq!(ceilings, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn every_wait_is_within_its_attempts_ceiling() {
        for seed in 0..50 {
            let mut backoff = Backoff::new(policy(), seed);
            for attempt in 1..=40 {
                let wait = backoff.next().expect("no attempt limit");
                assert_eq!(backoff.attempt(), attempt);
                assert!(
                    wait <= backoff.ceiling(attempt),
                    "seed {seed} attempt {attempt}"
                );
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_others_differ() {
        let a: Vec<Duration> = Backoff::new(policy(), 42).take(20).collect();
        let b: Vec<Duration> = Backoff::new(policy(), 42).take(20).collect();
        let c: Vec<Duration> = Backoff::new(policy(), 43).take(20).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn jitter_is_spread_over_the_whole_range() {
        // At the cap, waits are uniform in [0, 30 s]: mean near 15 s, both ends visited.
        let mut backoff = Backoff::new(policy(), 7);
        let waits: Vec<f64> = backoff
            .by_ref()
            .skip(10)
            .take(10_000)
            .map(|d| d.as_secs_f64())
            .collect();
        let mean = waits.iter().sum::<f64>() / waits.len() as f64;
        assert!((14.0..16.0).contains(&mean), "mean {mean}");
        assert!(waits.iter().any(|w| *w < 1.0));
        assert!(waits.iter().any(|w| *w > 29.0));
    }

    #[test]
    fn a_long_enough_connection_resets_the_schedule() {
        let mut backoff = Backoff::new(policy(), 3);
        backoff.by_ref().take(5).for_each(drop);
        backoff.connection_ended(Duration::from_secs(29));
        assert_eq!(backoff.attempt(), 5, "a short connection keeps the backoff");
        backoff.next();
        assert_eq!(backoff.attempt(), 6);
        backoff.connection_ended(Duration::from_secs(30));
        assert_eq!(backoff.attempt(), 0);
        let wait = backoff.next().unwrap();
        assert!(wait <= Duration::from_millis(500));
    }

    #[test]
    fn max_attempts_ends_the_schedule_until_a_reset() {
        let limited = ReconnectPolicy {
            max_attempts: Some(3),
            ..policy()
        };
        let mut backoff = Backoff::new(limited, 9);
        assert_eq!(backoff.by_ref().count(), 3);
        assert_eq!(backoff.next(), None);
        backoff.reset();
        assert!(backoff.next().is_some());
    }

    #[test]
    fn a_factor_of_one_keeps_a_constant_ceiling() {
        let flat = ReconnectPolicy {
            factor: 1.0,
            ..policy()
        };
        let backoff = Backoff::new(flat, 0);
        assert_eq!(backoff.ceiling(1), backoff.ceiling(100));
    }
}
