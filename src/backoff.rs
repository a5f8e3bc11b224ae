//! Capped exponential backoff with jitter, for every reconnect and retry:
//! Modbus sessions, the MQTT uplink and the InfluxDB sink.
//!
//! A device or server that is down must not be hammered, and many
//! gateways restarted together (a site power cut) must not reconnect in
//! lock-step, hence the jitter.

use std::time::Duration;

/// First delay after a failure.
pub const START: Duration = Duration::from_millis(200);
/// Longest delay between two attempts.
pub const CAP: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(START, CAP)
    }
}

impl Backoff {
    pub fn new(start: Duration, cap: Duration) -> Self {
        Backoff {
            start,
            cap,
            failures: 0,
        }
    }

    /// Records one more failure and returns how long to wait before the
    /// next attempt: `start * 2^n` capped at `cap`, then a random value in
    /// its upper half ("equal jitter"), so it never exceeds the cap.
    pub fn fail(&mut self) -> Duration {
        let full = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        full.mul_f64(0.5 + rand::random_range(0.0..0.5))
    }

    /// The device answered: the next failure starts over at `start`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The un-jittered delay for the next failure.
    fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.start.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps_with_jitter() {
        let mut b = Backoff::default();
        let expected_ceilings = [
            200u64, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000,
        ];
        for ceiling in expected_ceilings {
            let d = b.fail();
            let c = Duration::from_millis(ceiling);
            assert!(d >= c / 2 && d <= c, "{d:?} not in [{:?}, {c:?}]", c / 2);
        }
        for _ in 0..100 {
            assert!(b.fail() <= CAP);
        }
        b.reset();
        assert!(b.fail() <= START);
    }

    #[test]
    fn jitter_spreads_delays() {
        let delays: Vec<Duration> = (0..20).map(|_| Backoff::default().fail()).collect();
        assert!(delays.iter().any(|d| *d != delays[0]), "{delays:?}");
    }
}
