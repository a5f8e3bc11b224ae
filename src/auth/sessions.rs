//! Login sessions, in memory.
//!
//! Invariants: a token is 256 random bits from the OS generator, written as
//! 64 hex digits; a session ends after `idle` without a request or `max`
//! after login, whichever comes first, and on logout; a restart of the
//! gateway ends every session (they are never written to disk, so a copied
//! data directory carries no live credential). At most [`MAX_SESSIONS`] live
//! at once; the one used least recently gives way.
//!
//! Time is `tokio::time::Instant`, so tests drive expiry with paused time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Live sessions at most (a site has a handful of operators; this bounds
/// what logging in again and again can cost).
pub const MAX_SESSIONS: usize = 1024;

#[derive(Clone, Debug)]
struct Session {
    name: String,
    /// The user's password hash at login: a changed password (or a removed
    /// and re-added user) ends the sessions opened with the old one.
    hash_at_login: String,
    last_seen: Instant,
    created: Instant,
}

pub struct Sessions {
    idle: Duration,
    max: Duration,
    map: Mutex<HashMap<String, Session>>,
}

/// Who a valid token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUser {
    pub name: String,
    pub hash_at_login: String,
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Sessions {
        Sessions {
            idle,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session for `name` and returns its token.
    pub fn open(&self, name: &str, hash: &str) -> String {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut map = self.lock();
        self.expire(&mut map, now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            token.clone(),
            Session {
                name: name.into(),
                hash_at_login: hash.into(),
                last_seen: now,
                created: now,
            },
        );
        token
    }

    /// The session's user, and its idle clock restarted; `None` for an
    /// unknown or expired token.
    pub fn touch(&self, token: &str) -> Option<SessionUser> {
        self.lookup(token, true)
    }

    /// The session's user without restarting its idle clock: an event
    /// stream asks this again and again while its page is open, and a page
    /// left open is not somebody using it.
    pub fn peek(&self, token: &str) -> Option<SessionUser> {
        self.lookup(token, false)
    }

    fn lookup(&self, token: &str, touch: bool) -> Option<SessionUser> {
        let now = Instant::now();
        let mut map = self.lock();
        let s = map.get_mut(token)?;
        if now.duration_since(s.last_seen) >= self.idle || now.duration_since(s.created) >= self.max
        {
            map.remove(token);
            return None;
        }
        if touch {
            s.last_seen = now;
        }
        Some(SessionUser {
            name: s.name.clone(),
            hash_at_login: s.hash_at_login.clone(),
        })
    }

    pub fn close(&self, token: &str) {
        self.lock().remove(token);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, map: &mut HashMap<String, Session>, now: Instant) {
        map.retain(|_, s| {
            now.duration_since(s.last_seen) < self.idle && now.duration_since(s.created) < self.max
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_and_absolute_expiry() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(150));
        let t = s.open("op", "h");
        assert_eq!(t.len(), 64);
        assert_ne!(t, s.open("op", "h"), "tokens are fresh");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(s.touch(&t).unwrap().name, "op");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(
            s.touch(&t).is_some(),
            "each request restarts the idle clock"
        );
        tokio::time::advance(Duration::from_secs(40)).await;
        assert!(s.touch(&t).is_none(), "past the absolute limit");
        let u = s.open("op", "h");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(s.touch(&u).is_none(), "idle too long");
        let w = s.open("op", "h");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(s.peek(&w).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            s.peek(&w).is_none(),
            "peeking does not restart the idle clock"
        );
        let v = s.open("op", "h");
        s.close(&v);
        assert!(s.touch(&v).is_none());
        assert!(s.touch("not-a-token").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn bounded() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let first = s.open("a", "h");
        for _ in 0..MAX_SESSIONS {
            tokio::time::advance(Duration::from_millis(1)).await;
            s.open("b", "h");
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(
            s.touch(&first).is_none(),
            "the least recently used gave way"
        );
    }
}
