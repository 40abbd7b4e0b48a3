//! When a failed event is tried again: exponential backoff with jitter, capped, and a maximum
//! number of attempts after which the event is dead.

use std::time::Duration;

/// The retry policy of a worker. The defaults: 1 s base, doubling, capped at 30 minutes (the
/// original plugin's retry delay), 10 attempts, 20 % jitter.
///
/// ```
/// use acts_as_distributed::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::default()
///     .base(Duration::from_millis(200))
///     .cap(Duration::from_secs(60))
///     .max_attempts(5)
///     .jitter(0.1);
/// assert_eq!(policy.delay_without_jitter(3), Duration::from_millis(800));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    base: Duration,
    cap: Duration,
    max_attempts: u32,
    jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30 * 60),
            max_attempts: 10,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay after the first failure; each further failure doubles it.
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The longest delay.
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Attempts before the event is dead (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The share of the delay taken off at random, from 0.0 (none) to 1.0, so that events that
    /// failed together do not all come back at once.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Attempts before the event is dead.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay after the `failures`-th failure, before jitter: `base * 2^(failures - 1)`, at most
    /// the cap.
    pub fn delay_without_jitter(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay after the `failures`-th failure, with jitter drawn from `random` (0.0 to 1.0):
    /// between `(1 - jitter)` and 1 times [`delay_without_jitter`](Self::delay_without_jitter).
    pub fn delay(&self, failures: u32, random: f64) -> Duration {
        let full = self.delay_without_jitter(failures);
        full.mul_f64(1.0 - self.jitter * random.clamp(0.0, 1.0))
    }

    /// Whether an event that has failed `failures` times is dead.
    pub fn is_exhausted(&self, failures: u32) -> bool {
        failures >= self.max_attempts
    }
}

/// A number from 0.0 to 1.0, from the operating system's randomness through uuid.
pub(crate) fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy::default()
            .base(Duration::from_secs(1))
            .cap(Duration::from_secs(10));
        let delays: Vec<u64> = (1..=6)
            .map(|n| p.delay_without_jitter(n).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(
            p.delay_without_jitter(200),
            Duration::from_secs(10),
            "no overflow"
        );
    }

    #[test]
    fn jitter_stays_within_its_share_below_the_full_delay() {
        let p = RetryPolicy::default()
            .base(Duration::from_secs(8))
            .jitter(0.25);
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(8));
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(6));
        for _ in 0..1000 {
            let d = p.delay(1, random_unit());
            assert!(
                d >= Duration::from_secs(6) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
    }

    #[test]
    fn exhausted_after_max_attempts() {
        let p = RetryPolicy::default().max_attempts(3);
        assert!(!p.is_exhausted(2));
        assert!(p.is_exhausted(3));
        assert_eq!(RetryPolicy::default().max_attempts(0).attempts(), 1);
    }

    #[test]
    fn random_unit_is_a_unit() {
        for _ in 0..1000 {
            let r = random_unit();
            assert!((0.0..=1.0).contains(&r));
        }
    }
}
