//! Acknowledgements of delivered rows, committed off the drive loop.
//!
//! Each acknowledgement is a write transaction with its fsync. Awaited in
//! the drive loop, it held up everything behind it: an alarm event
//! committed while a telemetry acknowledgement was being written waited
//! for that fsync before the loop even looked at the alarm queue, and one
//! transaction per PUBACK kept the write connection busy 20 times a second
//! during a telemetry replay, each one a fsync an alarm commit could queue
//! behind. So the drive loop hands delivered ids here and goes on. Ids of a
//! bulk queue (readings, telemetry) are gathered for up to [`BULK_EVERY`]
//! and deleted in one transaction; alarm acknowledgements are written at
//! once (taking along whatever was gathered).
//!
//! Invariants: a row whose delivery was reported is deleted before the
//! drive loop reads its queue again from the oldest (the loop calls
//! [`Acks::flush`] before it rewinds), so a rewind never sends it again;
//! a crash before the commit does (at least once, as before). The counts
//! of ids handed over and not yet deleted ([`Acks::pending`]) let the loop
//! tell a queue with unsent rows from one with only delivered ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{blocking, sleep_until_opt};
use crate::queue::{Prio, QueueId, Store};

/// How long a bulk queue's acknowledgements wait for company: one
/// transaction deletes a replay's 10 messages (at 20 a second) rather than
/// one each. A crash loses at most this much of "delivered" (sent again).
pub const BULK_EVERY: Duration = Duration::from_millis(500);

enum Msg {
    Ack(QueueId, Vec<i64>),
    Flush(oneshot::Sender<()>),
}

type Pending = Arc<Mutex<HashMap<QueueId, u64>>>;

pub(super) struct Acks {
    tx: mpsc::UnboundedSender<Msg>,
    pending: Pending,
    task: JoinHandle<()>,
}

impl Acks {
    pub fn start(store: Arc<Store>) -> Acks {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Pending::default();
        let task = tokio::spawn(run(store, rx, pending.clone()));
        Acks { tx, pending, task }
    }

    /// These rows of `q` were delivered: deleted soon.
    pub fn ack(&self, q: QueueId, ids: Vec<i64>) {
        if ids.is_empty() {
            return;
        }
        *lock(&self.pending).entry(q).or_default() += ids.len() as u64;
        let _ = self.tx.send(Msg::Ack(q, ids));
    }

    /// Rows of `q` reported delivered and not yet deleted.
    pub fn pending(&self, q: QueueId) -> u64 {
        lock(&self.pending).get(&q).copied().unwrap_or(0)
    }

    /// Returns once every acknowledgement handed over has been written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Writes what is left and ends.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<QueueId, u64>> {
    // Plain counts: usable after a panic elsewhere.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

async fn run(store: Arc<Store>, mut rx: mpsc::UnboundedReceiver<Msg>, counts: Pending) {
    let mut gathered: Vec<(QueueId, Vec<i64>)> = Vec::new();
    let mut due: Option<Instant> = None;
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = sleep_until_opt(due) => {
                due = None;
                write(&store, &mut gathered, &counts).await;
                continue;
            }
        };
        match msg {
            Some(Msg::Ack(q, ids)) => {
                match gathered.iter_mut().find(|(g, _)| *g == q) {
                    Some((_, all)) => all.extend(ids),
                    None => gathered.push((q, ids)),
                }
                let at = match q.prio() {
                    Prio::Alarm => Instant::now(),
                    Prio::Bulk => Instant::now() + BULK_EVERY,
                };
                due = Some(due.map_or(at, |d| d.min(at)));
            }
            Some(Msg::Flush(done)) => {
                due = None;
                write(&store, &mut gathered, &counts).await;
                let _ = done.send(());
            }
            None => {
                write(&store, &mut gathered, &counts).await;
                return;
            }
        }
    }
}

/// One transaction per queue for everything gathered.
async fn write(store: &Arc<Store>, gathered: &mut Vec<(QueueId, Vec<i64>)>, counts: &Pending) {
    for (q, ids) in gathered.drain(..) {
        let n = ids.len() as u64;
        let s = store.clone();
        tracing::debug!(queue = q.label(), rows = n, "delivered rows deleted");
        if let Some(Err(e)) = blocking(move || s.ack(q, &ids)).await {
            // The rows stay queued and are sent again after the next
            // rewind or restart (at least once).
            tracing::error!(queue = q.label(), error = %e, "queue ack failed");
        }
        let mut c = lock(counts);
        let left = c.entry(q).or_default();
        *left = left.saturating_sub(n);
    }
}
