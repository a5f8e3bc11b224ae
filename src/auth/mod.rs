//! Operator accounts: the users file, login sessions and the failed-login
//! throttle. Nothing here knows HTTP; `api::auth` turns it into cookies,
//! bearer tokens and status codes.
//!
//! Invariants:
//! - The users file is read again whenever its modification time or size
//!   changes, so `riskgate user add|passwd|remove` takes effect on the
//!   running gateway without a restart.
//! - A file that cannot be read or parsed lets nobody in (fail closed) and
//!   still counts as "users configured", so a broken edit never opens the
//!   API as a missing file on a loopback listener would.
//! - A session belongs to a name; each request looks the name up in the
//!   current file, so a removed user is out at once, a changed role applies
//!   at once, and a changed password ends the sessions opened with the old.

pub mod cli;
pub mod sessions;
pub mod throttle;
pub mod users;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use sessions::Sessions;
pub use throttle::Throttle;
pub use users::{Role, User, Users, UsersError};

/// What the users file holds right now.
#[derive(Clone, Debug)]
pub enum UsersState {
    /// No file, or a file without users.
    None,
    Some(Arc<Users>),
    /// Unreadable or invalid: nobody gets in; the message says why.
    Broken(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong name or password")]
    Refused,
    #[error("too many failed logins from this address; try again in {} s", .0.as_secs().max(1))]
    Locked(Duration),
    #[error("the users file cannot be used: {0}")]
    Broken(String),
}

pub struct Accounts {
    path: PathBuf,
    cache: Mutex<(Option<(SystemTime, u64)>, UsersState)>,
    pub sessions: Sessions,
    pub throttle: Throttle,
}

impl Accounts {
    pub fn new(path: &Path, idle: Duration, max: Duration) -> Accounts {
        Accounts {
            path: path.to_path_buf(),
            cache: Mutex::new((None, UsersState::None)),
            sessions: Sessions::new(idle, max),
            throttle: Throttle::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The users file as it is now (re-read when it changed).
    pub fn state(&self) -> UsersState {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != stamp || stamp.is_none() {
            let state = match Users::load(&self.path) {
                Ok(Some(u)) if !u.users.is_empty() => UsersState::Some(Arc::new(u)),
                Ok(_) => UsersState::None,
                Err(e) => {
                    tracing::error!(error = %e, "users file unusable: nobody can log in");
                    UsersState::Broken(e.to_string())
                }
            };
            *cache = (stamp, state);
        }
        cache.1.clone()
    }

    /// True unless the file is missing or lists nobody.
    pub fn configured(&self) -> bool {
        !matches!(self.state(), UsersState::None)
    }

    /// Checks a password and opens a session. Spends an argon2
    /// verification (tens of milliseconds): call it off the async threads.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        addr: IpAddr,
    ) -> Result<(User, String), LoginError> {
        if let Some(left) = self.throttle.locked(addr) {
            return Err(LoginError::Locked(left));
        }
        let users = match self.state() {
            UsersState::Some(u) => u,
            UsersState::None => {
                users::verify_nobody(password);
                self.throttle.failed(addr);
                return Err(LoginError::Refused);
            }
            UsersState::Broken(why) => return Err(LoginError::Broken(why)),
        };
        match users.get(name) {
            Some(u) if users::verify_password(password, &u.password_hash) => {
                self.throttle.succeeded(addr);
                let token = self.sessions.open(&u.name, &u.password_hash);
                Ok((u.clone(), token))
            }
            Some(_) => {
                self.throttle.failed(addr);
                Err(LoginError::Refused)
            }
            None => {
                users::verify_nobody(password);
                self.throttle.failed(addr);
                Err(LoginError::Refused)
            }
        }
    }

    /// The user of a live session, as the users file has them now; the
    /// session's idle clock restarts.
    pub fn user_of(&self, token: &str) -> Option<User> {
        let s = self.sessions.touch(token)?;
        self.current(token, s)
    }

    /// Whether a session still stands (not logged out, expired, its user
    /// removed or their password changed), without counting as a use of it
    /// (see `Sessions::peek`).
    pub fn still_valid(&self, token: &str) -> bool {
        self.sessions
            .peek(token)
            .is_some_and(|s| self.current(token, s).is_some())
    }

    fn current(&self, token: &str, s: sessions::SessionUser) -> Option<User> {
        let UsersState::Some(users) = self.state() else {
            self.sessions.close(token);
            return None;
        };
        match users.get(&s.name) {
            Some(u) if u.password_hash == s.hash_at_login => Some(u.clone()),
            _ => {
                self.sessions.close(token);
                None
            }
        }
    }
}
