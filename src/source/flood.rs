//! Flood protection for a device that pushes its data (MQTT): a misbehaving
//! box publishing thousands of messages a second must not cost the gateway
//! more than a well-behaved one, nor delay other devices' readings in the
//! one input channel they share.
//!
//! A token bucket per device: `max_rate` messages a second, bursts of up to
//! one second's worth (at least one message). A message over the limit is
//! dropped before it is decoded, counted, and logged at most every
//! [`LOG_EVERY`]. The device *floods* from its first dropped message until
//! none has been dropped for [`CALM_AFTER`]; the source reports the start
//! and the end once each, which the engine turns into one `{device}.flood`
//! alarm. Messages within the limit keep flowing meanwhile, so the device's
//! points stay live (and its alarms judged) while it floods.
//!
//! Polled devices (Modbus) need none of this: the gateway sets their pace.
//!
//! Pure: the caller passes the (monotonic) time, so tests script it.

use std::time::Duration;

use tokio::time::Instant;

/// The limit when the config sets none: far above what a gas monitor or a
/// video box sends (about one message a second), far below a flood.
pub const DEFAULT_MAX_RATE: f64 = 50.0;
/// A flood ends when no message has been dropped for this long: a device
/// that floods in bursts keeps one alarm, not one per burst.
pub const CALM_AFTER: Duration = Duration::from_secs(10);
/// Dropped messages are logged at the start of a flood and then at most
/// once per this, with the count since the last line.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// What the caller does with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: decode it.
    Admit,
    /// Over the limit: drop it. `started` on the first drop of a flood
    /// (raise the alarm); `log` with the number dropped since the last log
    /// line, when one is due.
    Drop { started: bool, log: Option<u64> },
}

#[derive(Debug)]
pub struct FloodGuard {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// The last dropped message, while the device floods.
    last_drop: Option<Instant>,
    /// Dropped since the last log line, and when that was.
    unlogged: u64,
    logged: Option<Instant>,
    /// Dropped during the current flood (for the alarm's message).
    flood_dropped: u64,
}

impl FloodGuard {
    /// `rate` messages a second (validation keeps it positive and finite).
    pub fn new(rate: f64, now: Instant) -> FloodGuard {
        let burst = rate.max(1.0);
        FloodGuard {
            rate,
            burst,
            tokens: burst,
            refilled: now,
            last_drop: None,
            unlogged: 0,
            logged: None,
            flood_dropped: 0,
        }
    }

    /// One message arrived at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Admit;
        }
        let started = self.last_drop.is_none();
        if started {
            self.flood_dropped = 0;
        }
        self.last_drop = Some(now);
        self.flood_dropped += 1;
        self.unlogged += 1;
        let log = match self.logged {
            Some(t) if !started && now.saturating_duration_since(t) < LOG_EVERY => None,
            _ => {
                self.logged = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        };
        Verdict::Drop { started, log }
    }

    /// While flooding: when the flood ends unless another message is
    /// dropped first.
    pub fn calm_at(&self) -> Option<Instant> {
        self.last_drop.map(|t| t + CALM_AFTER)
    }

    /// The flood is over at `now` (nothing dropped for [`CALM_AFTER`]):
    /// `Some(dropped during it)` once, then `None`.
    pub fn end(&mut self, now: Instant) -> Option<u64> {
        match self.calm_at() {
            Some(t) if now >= t => {
                self.last_drop = None;
                // The end is logged with the flood's total; a next flood
                // starts its own count.
                self.unlogged = 0;
                Some(std::mem::take(&mut self.flood_dropped))
            }
            _ => None,
        }
    }

    /// Dropped so far in the current flood.
    pub fn dropped(&self) -> u64 {
        self.flood_dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_device_within_its_rate_is_never_dropped() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(5.0, t0);
        // 5 a second for a minute, evenly spaced.
        for i in 0..300 {
            assert_eq!(g.check(t0 + ms(200 * i)), Verdict::Admit, "message {i}");
        }
        assert_eq!(g.calm_at(), None);
    }

    #[test]
    fn a_burst_of_one_seconds_worth_passes_then_the_rest_is_dropped() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(10.0, t0);
        let verdicts: Vec<Verdict> = (0..1000).map(|_| g.check(t0)).collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Admit));
        assert_eq!(
            verdicts[10],
            Verdict::Drop {
                started: true,
                log: Some(1)
            }
        );
        assert!(
            verdicts[11..].iter().all(|v| *v
                == Verdict::Drop {
                    started: false,
                    log: None
                }),
            "one start, one log line"
        );
        assert_eq!(g.dropped(), 990);
    }

    #[test]
    fn a_flood_admits_the_rate_and_ends_after_calm() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(10.0, t0);
        // 1,000 a second for 5 s: about 10 a second admitted (plus the
        // first second's burst), one start, a log line every LOG_EVERY.
        let (mut admitted, mut starts, mut logs, mut logged) = (0, 0, 0, 0);
        for i in 0..5000 {
            match g.check(t0 + ms(i)) {
                Verdict::Admit => admitted += 1,
                Verdict::Drop { started, log } => {
                    starts += u32::from(started);
                    if let Some(n) = log {
                        logs += 1;
                        logged += n;
                    }
                }
            }
        }
        assert!((50..=61).contains(&admitted), "{admitted}");
        assert_eq!(starts, 1);
        assert_eq!(logs, 1, "within LOG_EVERY");
        assert_eq!(logged, 1);
        let last = t0 + ms(4999);
        assert_eq!(g.calm_at(), Some(last + CALM_AFTER));
        assert_eq!(g.end(last + CALM_AFTER - ms(1)), None, "not calm yet");
        assert_eq!(g.end(last + CALM_AFTER), Some(5000 - admitted));
        assert_eq!(g.end(last + CALM_AFTER), None, "ended once");
        assert_eq!(g.calm_at(), None);
        // A new flood later is a new start.
        let t1 = last + CALM_AFTER * 2;
        let v: Vec<Verdict> = (0..20).map(|_| g.check(t1)).collect();
        assert!(v.contains(&Verdict::Drop {
            started: true,
            log: Some(1)
        }));
    }

    #[test]
    fn a_long_flood_logs_every_log_every_with_the_count() {
        let t0 = Instant::now();
        let mut g = FloodGuard::new(1.0, t0);
        let mut lines = Vec::new();
        // 100 a second for 35 s.
        for i in 0..3500 {
            if let Verdict::Drop { log: Some(n), .. } = g.check(t0 + ms(10 * i)) {
                lines.push(n);
            }
        }
        assert_eq!(lines.len(), 4, "at 0 s, 10 s, 20 s, 30 s: {lines:?}");
        assert_eq!(lines[0], 1);
        assert!(
            lines[1..].iter().all(|n| (980..=1000).contains(n)),
            "{lines:?}"
        );
    }
}
