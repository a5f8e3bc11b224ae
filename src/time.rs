//! Time as the gateway uses it.
//!
//! - Relative times as operators write them (`1h`, `30m`), for the history
//!   CLI and API (`since`).
//! - The two clocks of the engine (`Now`): wall time stamps readings and
//!   events; every duration (stale detection, on/off delays, holds, rate
//!   windows, minimum alarm lifetime) is measured on the monotonic clock
//!   (`Mono`), so an NTP step or a manual clock change of ±1 h neither
//!   raises nor clears anything early or late.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum SinceError {
    #[error("`{text}`: {source}")]
    Parse {
        text: String,
        source: humantime::DurationError,
    },
    #[error("`{0}`: too long ago")]
    OutOfRange(String),
}

/// `now` minus a duration like `1h` or `7d`. Any text gives `Ok` or `Err`,
/// never a panic (`1000000y` is out of range, not an overflow).
pub fn since(ago: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, SinceError> {
    let d = humantime::parse_duration(ago).map_err(|source| SinceError::Parse {
        text: ago.to_string(),
        source,
    })?;
    let d = chrono::Duration::from_std(d).map_err(|_| SinceError::OutOfRange(ago.to_string()))?;
    now.checked_sub_signed(d)
        .ok_or_else(|| SinceError::OutOfRange(ago.to_string()))
}

/// A point on the monotonic clock: the time since an origin fixed when the
/// clock was made. Only differences of two `Mono` mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono(Duration);

impl Mono {
    /// `d` after the clock's origin (tests script the clock with this).
    pub const fn from_origin(d: Duration) -> Mono {
        Mono(d)
    }

    pub const fn from_millis(ms: u64) -> Mono {
        Mono(Duration::from_millis(ms))
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn since(self, earlier: Mono) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// One moment as the engine is told it: wall time for stamps, monotonic
/// time for durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub wall: DateTime<Utc>,
    pub mono: Mono,
}

/// The running gateway's clock: `Utc::now()` and the tokio monotonic clock
/// (which a test can pause and advance).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Now {
        Now {
            wall: Utc::now(),
            mono: Mono(self.origin.elapsed()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_never_panics_on_huge_or_odd_input() {
        let now = Utc::now();
        for s in [
            "1000000y",
            "300000y",
            "99999999999999999999s",
            "1y 1y",
            "",
            "-1h",
            "1h",
        ] {
            let _ = since(s, now);
        }
        assert!(matches!(
            since("1000000y", now),
            Err(SinceError::OutOfRange(_))
        ));
        assert!(since("1h", now).is_ok());
    }

    #[test]
    fn mono_differences_saturate() {
        let a = Mono::from_millis(5_000);
        let b = Mono::from_millis(2_000);
        assert_eq!(a.since(b), Duration::from_secs(3));
        assert_eq!(b.since(a), Duration::ZERO);
    }
}
