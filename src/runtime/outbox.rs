//! The outbox: alarm events from the engine, queued durably in engine
//! order. Nothing waits here for an action: an event that asks for one is
//! committed (and gets its `seq`) at once, with the action listed as
//! `pending`; the action's outcome follows as an event of its own (the
//! target's `{point}.action` fault alarm when it fails or is not confirmed,
//! see `actions`). Once an action has ended, its final result (`confirmed`
//! or `failed`, with why) is written into the local alarm log only, for
//! the operator page and `/api/events`; the queued copy the county gets
//! keeps `pending`, since it may already be on its way.
//!
//! Everything ready in the channel is committed together, in order.
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
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::api::Shared;
use crate::backoff::Backoff;
use crate::model::{ActionResult, AlarmTransition};
use crate::queue::QueueId;
use crate::rules::engine::Instance;

/// An event for the outbox, with the engine's active alarms after it.
pub(super) type Item = (Pending, Vec<(String, Instance)>);

/// One event to queue, its actions already listed as `pending`, with the
/// running actions whose outcome goes into the log once known.
pub(super) struct Pending {
    pub transition: AlarmTransition,
    pub actions: Vec<JoinHandle<ActionResult>>,
}

/// At most this many events in one commit, so one commit stays short.
const BATCH_MAX: usize = 256;

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
    // Actions still running for committed events, each waiting to note its
    // outcome in the log. Dropped (aborted) when the outbox ends: the log
    // then keeps `pending` for them, which stays true of what was sent.
    let mut outcomes = JoinSet::new();
    while let Some((first, mut active)) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            let Ok((next, act)) = rx.try_recv() else {
                break;
            };
            batch.push(next);
            active = act;
        }
        let transitions: Vec<AlarmTransition> =
            batch.iter().map(|p| p.transition.clone()).collect();
        let Some(seqs) = commit(out, &transitions, &active).await else {
            continue;
        };
        for (seq, p) in seqs.into_iter().zip(batch) {
            if !p.actions.is_empty() {
                outcomes.spawn(note_outcome(out.shared.clone(), seq, p.actions));
            }
        }
        // Reap the finished ones so the set does not grow.
        while outcomes.try_join_next().is_some() {}
    }
}

/// Waits for an event's actions (each ends within its `confirm_within`)
/// and writes their results into the event's log entry.
async fn note_outcome(shared: Arc<Shared>, seq: u64, actions: Vec<JoinHandle<ActionResult>>) {
    let mut results = Vec::with_capacity(actions.len());
    for h in actions {
        if let Ok(r) = h.await {
            results.push(r);
        }
    }
    let Ok(value) = serde_json::to_value(&results) else {
        return;
    };
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.amend_logged(seq, "actions", value)).await {
        Ok(Ok(_)) => {}
        // Only the log's note is missing: the outcome itself went out as
        // its own event (or its absence, for a confirmed write).
        Ok(Err(e)) => tracing::warn!(seq, error = %e, "action outcome not noted in the alarm log"),
        Err(e) => tracing::warn!(seq, error = %e, "noting an action outcome panicked"),
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
/// committing an alarm must not fail silently. Returns the seqs given, or
/// `None` when the events were given up at shutdown.
async fn commit(
    out: &Committer,
    batch: &[AlarmTransition],
    active: &[(String, Instance)],
) -> Option<Vec<u64>> {
    if batch.is_empty() {
        return Some(Vec::new());
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
        let timer = crate::metrics::metrics()
            .alarm_commit_seconds
            .with_label_values::<&str>(&[])
            .start_timer();
        let r = tokio::task::spawn_blocking(move || {
            s.append_events(QueueId::Alarms, &b, |seq, t| id.alarm_event(seq, t), &a)
        })
        .await;
        timer.observe_duration();
        let held = crate::metrics::metrics()
            .unstored
            .with_label_values(&["events"]);
        let (wait, why) = match r {
            Ok(Ok(seqs)) => {
                held.set(0);
                let _ = out.reports.send(None);
                return Some(seqs);
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
                return None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Shutdown: stop waiting out a long backoff, start the drain clock.
            _ = out.stop.cancelled(), if !out.stop.is_cancelled() => {}
        }
    }
}
