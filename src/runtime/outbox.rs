//! The outbox: alarm events from the engine, queued durably in engine
//! order. An event whose actions are still running waits for them (at most
//! their confirmation time), so that its `actions` say `confirmed` or
//! `failed`; events without actions behind it are committed together.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

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

pub(super) async fn run(mut rx: mpsc::UnboundedReceiver<Item>, shared: Arc<Shared>) {
    while let Some((p, active)) = rx.recv().await {
        let mut batch = vec![p.settle().await];
        // Take what else is ready without actions, to commit together.
        let mut latest_active = active;
        while let Ok((next, act)) = rx.try_recv() {
            if !next.actions.is_empty() {
                // Commit what we have, then handle this one in order.
                commit(&shared, &batch, &latest_active).await;
                batch.clear();
            }
            batch.push(next.settle().await);
            latest_active = act;
        }
        commit(&shared, &batch, &latest_active).await;
    }
}

/// Gives the events their `seq` and queues them, retrying until stored:
/// committing an alarm must not fail silently.
async fn commit(shared: &Arc<Shared>, batch: &[AlarmTransition], active: &[(String, Instance)]) {
    if batch.is_empty() {
        return;
    }
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
        let wait = match r {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                let wait = backoff.fail();
                tracing::error!(error = %e, retry_in = ?wait, "queueing alarm events failed; retrying");
                wait
            }
            Err(e) => {
                let wait = backoff.fail();
                tracing::error!(error = %e, retry_in = ?wait, "queueing alarm events panicked; retrying");
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}
