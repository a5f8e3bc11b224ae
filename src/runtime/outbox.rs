//! The outbox: alarm events from the engine, queued durably in engine
//! order. An event whose actions are still running waits for them (at most
//! their confirmation time), so that its `actions` say `confirmed` or
//! `failed`; events without actions behind it are committed together.
//!
//! While the store refuses the commit (disk full, I/O error) the events
//! stay here, in memory, in order, and the commit is retried with backoff
//! (100 ms to 5 s); each refusal and the first success after it are
//! reported to the engine task, which raises and clears `store.write`.
//! Alarm events are never dropped for space, so this is not bounded by a
//! count; it is loud instead: the `store.write` alarm (level 1), the
//! status `health: degraded`, `/health` 503 and the gauge
//! `riskgate_unstored{what="events"}`. An event cannot go to the uplink
//! before it is stored: its `seq` is given in the commit, and sending it
//! without one would break the gap-free order the county relies on. At
//! shutdown the retries go on for at most [`DRAIN`]; what is still refused
//! then is logged as lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::Shared;
use crate::backoff::Backoff;
use crate::model::{ActionResult, AlarmTransition};
use crate::queue::QueueId;
use crate::rules::engine::Instance;

/// An event for the outbox, with the engine's active alarms after it.
pub(super) type Item = (Pending, Vec<(String, Instance)>);

/// One event waiting to be queued, with the actions it waits for.
pub(super) struct Pending {
    pub transition: AlarmTransition,
    pub actions: Vec<tokio::task::JoinHandle<ActionResult>>,
}

impl Pending {
    async fn settle(mut self) -> AlarmTransition {
        for h in self.actions.drain(..) {
            if let Ok(r) = h.await {
                self.transition.actions.push(r);
            }
        }
        self.transition
    }
}

/// How long refused commits are retried once shutdown is asked for.
/// The whole stop (this, then the sinks' 5 s) stays well within the
/// unit's `TimeoutStopSec` (20 s).
pub const DRAIN: Duration = Duration::from_secs(3);

/// Where commit results go: `Some(why)` refused, `None` stored.
pub(super) type StoreReports = mpsc::UnboundedSender<Option<String>>;

pub(super) async fn run(
    mut rx: mpsc::UnboundedReceiver<Item>,
    shared: Arc<Shared>,
    reports: StoreReports,
    stop: CancellationToken,
) {
    let out = &Committer {
        shared,
        reports,
        stop,
        deadline: std::sync::Mutex::new(None),
    };
    while let Some((p, active)) = rx.recv().await {
        let mut batch = vec![p.settle().await];
        // Take what else is ready without actions, to commit together.
        let mut latest_active = active;
        while let Ok((next, act)) = rx.try_recv() {
            if !next.actions.is_empty() {
                // Commit what we have, then handle this one in order.
                commit(out, &batch, &latest_active).await;
                batch.clear();
            }
            batch.push(next.settle().await);
            latest_active = act;
        }
        commit(out, &batch, &latest_active).await;
    }
}

struct Committer {
    shared: Arc<Shared>,
    reports: StoreReports,
    stop: CancellationToken,
    /// When retrying ends after shutdown was asked for: one clock for all
    /// the batches still here, not one each.
    deadline: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Gives the events their `seq` and queues them, retrying until stored:
/// committing an alarm must not fail silently.
async fn commit(out: &Committer, batch: &[AlarmTransition], active: &[(String, Instance)]) {
    if batch.is_empty() {
        return;
    }
    let shared = &out.shared;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let (s, id, b, a) = (
            shared.store.clone(),
            shared.id.clone(),
            batch.to_vec(),
            active.to_vec(),
        );
        let r = tokio::task::spawn_blocking(move || {
            s.append_events(QueueId::Alarms, &b, |seq, t| id.alarm_event(seq, t), &a)
        })
        .await;
        let held = crate::metrics::metrics()
            .unstored
            .with_label_values(&["events"]);
        let (wait, why) = match r {
            Ok(Ok(_)) => {
                held.set(0);
                let _ = out.reports.send(None);
                return;
            }
            Ok(Err(e)) => {
                let wait = backoff.fail();
                tracing::error!(error = %e, events = batch.len(), retry_in = ?wait, "queueing alarm events failed: kept in memory, retrying");
                (wait, e.to_string())
            }
            Err(e) => {
                let wait = backoff.fail();
                tracing::error!(error = %e, retry_in = ?wait, "queueing alarm events panicked; retrying");
                (wait, e.to_string())
            }
        };
        // The refused batch; events behind it wait in the channel.
        held.set(batch.len() as i64);
        let _ = out.reports.send(Some(why));
        if out.stop.is_cancelled() {
            let d = *out
                .deadline
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| tokio::time::Instant::now() + DRAIN);
            if tokio::time::Instant::now() >= d {
                tracing::error!(
                    events = batch.len(),
                    "stopping while the store refuses writes: alarm events held in memory are lost \
                     (raised again after the restart if their condition still holds)"
                );
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Shutdown: stop waiting out a long backoff, start the drain clock.
            _ = out.stop.cancelled(), if !out.stop.is_cancelled() => {}
        }
    }
}
