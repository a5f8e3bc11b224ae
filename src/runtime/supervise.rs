//! Supervision: every long-lived task of the gateway is needed. If a
//! source, the engine, a sink, housekeeping or the API ends or panics while
//! the gateway is meant to run, the gateway stops and exits non-zero, so
//! systemd restarts a whole process instead of leaving one running
//! half-dead (polling with no engine, judging with no uplink).
//!
//! The watchdog: with `Type=notify` and `WatchdogSec=` systemd expects
//! `WATCHDOG=1` regularly; the engine's tick sends it (`Watchdog::fed`), so
//! an engine stuck in a loop or a blocked call is killed and restarted.
//! Without `NOTIFY_SOCKET` (tests, `riskgate demo`, no systemd) every
//! notification is a no-op.
//!
//! Fault injection for the tests (`RISKGATE_TEST_PANIC_SOURCE`,
//! `RISKGATE_TEST_STALL_ENGINE`) is compiled into debug builds only
//! (`cfg(debug_assertions)`), which the integration tests run; a release
//! build has none of it.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinSet};

/// Why the gateway stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum TaskDied {
    #[error("task `{0}` ended while the gateway was running")]
    Ended(String),
    #[error("task `{0}` panicked: {1}")]
    Panicked(String, String),
}

/// The gateway's tasks, each with a name for the log.
#[derive(Default)]
pub(super) struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, String>,
}

impl Tasks {
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let h = self.set.spawn(task);
        self.names.insert(h.id(), name.into());
    }

    /// Waits for the first task to end or panic. Pending forever when
    /// there are no tasks.
    pub async fn first_death(&mut self) -> TaskDied {
        let Some(r) = self.set.join_next_with_id().await else {
            return std::future::pending().await;
        };
        match r {
            Ok((id, ())) => TaskDied::Ended(self.name(id)),
            Err(e) => {
                let name = self.name(e.id());
                let why = if e.is_panic() {
                    let p = e.into_panic();
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".into())
                } else {
                    "cancelled".into()
                };
                TaskDied::Panicked(name, why)
            }
        }
    }

    /// Waits for every task (after shutdown was asked for), logging any
    /// that panicked on the way out.
    pub async fn join_all(&mut self) {
        while let Some(r) = self.set.join_next_with_id().await {
            if let Err(e) = r {
                let name = self.name(e.id());
                tracing::error!(task = %name, error = %e, "task failed while stopping");
            }
        }
    }

    fn name(&mut self, id: Id) -> String {
        self.names.remove(&id).unwrap_or_else(|| format!("{id}"))
    }
}

/// `READY=1` once everything is started; `STOPPING=1` on the way out.
pub(super) fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "systemd notification failed");
    }
}

pub(super) fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// The systemd watchdog, fed from the engine's tick: at most one
/// `WATCHDOG=1` a second (systemd wants one per half `WatchdogSec`).
pub(super) struct Watchdog {
    last: Option<tokio::time::Instant>,
}

const WATCHDOG_EVERY: Duration = Duration::from_secs(1);

impl Watchdog {
    pub fn new() -> Watchdog {
        Watchdog { last: None }
    }

    /// The engine made a pass: tell systemd it is alive.
    pub fn fed(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < WATCHDOG_EVERY) {
            return;
        }
        self.last = Some(tokio::time::Instant::now());
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        #[cfg(debug_assertions)]
        inject::maybe_stall_engine();
    }
}

/// Test-only faults, in debug builds only (see the module doc).
#[cfg(debug_assertions)]
pub(super) mod inject {
    use std::future::Future;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// `RISKGATE_TEST_PANIC_SOURCE=NAME`: the source task `NAME` (e.g.
    /// `modbus-tcp:gd1`) panics 300 ms after it started.
    pub fn source<F>(name: &str, task: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let doomed = std::env::var("RISKGATE_TEST_PANIC_SOURCE").is_ok_and(|v| v == name);
        async move {
            if !doomed {
                return task.await;
            }
            tokio::select! {
                _ = task => {}
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    panic!("injected panic (RISKGATE_TEST_PANIC_SOURCE)")
                }
            }
        }
    }

    /// `RISKGATE_TEST_STALL_ENGINE=DURATION` (e.g. `2s`): that long after
    /// start the engine task blocks for good, after telling the notify
    /// socket `STATUS=engine stalled (test)` so a test knows when.
    pub fn maybe_stall_engine() {
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        let Some(after) = std::env::var("RISKGATE_TEST_STALL_ENGINE")
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
        else {
            return;
        };
        if start.elapsed() >= after {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status("engine stalled (test)")]);
            tracing::error!("RISKGATE_TEST_STALL_ENGINE: the engine task blocks now");
            std::thread::sleep(Duration::from_secs(86_400));
        }
    }
}
