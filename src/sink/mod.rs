//! Sinks: tasks that take rows from their durable queue and deliver them.
//! Each delivery ends in one of three ways: delivered (the row leaves the
//! queue), retry later (it stays), or rejected (set aside, counted).

pub mod influx;
pub mod uplink;

use std::time::Duration;

/// Capped exponential backoff with jitter, so many gateways that lost the
/// same server do not come back in lock-step.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    start: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(start: Duration, cap: Duration) -> Backoff {
        Backoff {
            next: start,
            start,
            cap,
        }
    }

    /// The next wait: the current step plus up to 25 % jitter; then doubles.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.cap);
        let jitter = base.as_millis() as u64 / 4;
        let extra = if jitter == 0 {
            0
        } else {
            rand::random_range(0..=jitter)
        };
        base + Duration::from_millis(extra)
    }

    pub fn reset(&mut self) {
        self.next = self.start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let waits: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        for (w, base) in waits.iter().zip([100u128, 200, 400, 800, 800, 800]) {
            assert!(*w >= base && *w <= base + base / 4, "{waits:?}");
        }
        b.reset();
        assert!(b.next_delay().as_millis() <= 125);
    }
}
