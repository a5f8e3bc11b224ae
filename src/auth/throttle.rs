//! Failed logins per client address, and the lockout they earn.
//!
//! After [`MAX_FAILURES`] failed logins from one address, further attempts
//! from it are refused without checking the password until [`LOCKOUT`] has
//! passed since its last failure; a successful login clears its count. A
//! guesser gets a handful of tries a minute, an operator who mistyped twice
//! is not slowed at all. Addresses, not names, are counted, so nobody can
//! lock an operator out from elsewhere by failing on purpose with their
//! name. At most [`MAX_TRACKED`] addresses are kept (the stalest give way).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT: Duration = Duration::from_secs(60);
pub const MAX_TRACKED: usize = 4096;

#[derive(Default)]
pub struct Throttle {
    map: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// How long `addr` must still wait, or `None` when it may try.
    pub fn locked(&self, addr: IpAddr) -> Option<Duration> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (n, last) = map.get(&addr)?;
        let left = LOCKOUT.checked_sub(last.elapsed())?;
        (*n >= MAX_FAILURES && !left.is_zero()).then_some(left)
    }

    pub fn failed(&self, addr: IpAddr) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, (_, last)| now.duration_since(*last) < LOCKOUT);
            if map.len() >= MAX_TRACKED
                && let Some(stalest) = map.iter().min_by_key(|(_, (_, t))| *t).map(|(a, _)| *a)
            {
                map.remove(&stalest);
            }
        }
        let e = map.entry(addr).or_insert((0, now));
        // A failure long after the last one starts a new count.
        if now.duration_since(e.1) >= LOCKOUT {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
    }

    pub fn succeeded(&self, addr: IpAddr) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn locks_after_max_failures_until_the_lockout_passes() {
        let t = Throttle::default();
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed(a);
            assert!(t.locked(a).is_none());
        }
        t.failed(a);
        assert!(t.locked(a).is_some());
        assert!(t.locked(b).is_none(), "per address");
        tokio::time::advance(LOCKOUT).await;
        assert!(t.locked(a).is_none());
        t.failed(a);
        assert!(t.locked(a).is_none(), "a new count after the lockout");
        t.succeeded(a);
        assert!(t.locked(a).is_none());
    }
}
