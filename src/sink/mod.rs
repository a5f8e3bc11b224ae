//! Sinks: each takes rows from one durable queue and delivers them, and
//! [`drive`] is the one loop that runs every sink.
//!
//! Each delivery ends in one [`Outcome`]: delivered (the rows leave the
//! queue), retry (they stay; everything in flight is sent again from the
//! oldest, after a backoff, so order holds), or rejected (bad data: set
//! aside in `rejected` and counted, so one bad row cannot block the queue).
//!
//! A sink may have several rows in flight (the uplink keeps a window of
//! publishes waiting for their PUBACK; the InfluxDB sink one batch per
//! request). The driver owns the queue side: it peeks past the last row
//! handed over, acknowledges or rejects what the sink settles, and rewinds
//! to the oldest row on a retry. The sink owns its transport and encoding.

pub mod influx;
pub mod uplink;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::queue::{QueueId, Row, Store};

/// How one delivery ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The receiver acknowledged (2xx, PUBACK): the rows may be deleted.
    Delivered,
    /// Not delivered, may work later (5xx, timeout, connection lost).
    Retry(String),
    /// Refused as bad data (4xx): retrying would fail the same way.
    Rejected(String),
}

/// What a sink reports from [`Sink::progress`].
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// These rows (ids) were settled. On `Retry` the ids may be empty: every
    /// row in flight counts as not delivered.
    Settled(Vec<i64>, Outcome),
    /// The sink's link is up again (e.g. MQTT CONNACK): backoff starts over.
    Up,
    /// Something that does not concern the queue happened.
    Idle,
    /// Closing has finished (after [`Sink::close`]).
    Closed,
}

/// One output. The driver calls `room`/`send` to hand rows over and awaits
/// `progress` for what became of them.
pub trait Sink: Send {
    /// How many more rows the sink takes now; 0 while busy or not connected.
    fn room(&self) -> usize;
    /// Hands rows over (oldest first). Must not wait: the outcome comes
    /// later from `progress`.
    fn send(&mut self, rows: Vec<Row>);
    /// Waits for the next thing that happens. Must be cancel-safe: the driver
    /// selects on it together with its timers.
    fn progress(&mut self) -> impl Future<Output = Progress> + Send;
    /// After a `Retry`: forget everything in flight; the driver sends again
    /// from the oldest row once the backoff has passed.
    fn reset(&mut self);
    /// At shutdown: whether delivering what is queued can still work now.
    fn can_drain(&self) -> bool {
        true
    }
    /// The drain is over (queue empty or time up): begin closing;
    /// `progress` answers `Closed` when done.
    fn close(&mut self);
    /// Last words, after `Closed` or the close deadline.
    fn finish(self) -> impl Future<Output = ()> + Send;
    /// How often to look at the queue without being woken.
    fn idle_wait(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// How long a sink may take to close after the drain deadline (the uplink
/// waits this long for the PUBACK of its `offline` status).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Delivers queue `q` through `sink` until `shutdown`; then goes on for up
/// to `drain` while there is something to deliver, and closes the sink.
pub async fn drive<S: Sink>(
    store: Arc<Store>,
    q: QueueId,
    mut sink: S,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let wake = store.waker(q);
    let mut backoff = Backoff::default();
    // Highest row id handed to the sink since the last rewind.
    let mut cursor = 0i64;
    let mut in_flight = 0usize;
    let mut retry_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    let mut close_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if drain_until.is_none() && shutdown.is_cancelled() {
            if !sink.can_drain() {
                break;
            }
            drain_until = Some(now + drain);
            // One more attempt now rather than after the backoff.
            retry_at = None;
        }
        if let Some(d) = drain_until
            && close_until.is_none()
        {
            let done = in_flight == 0 && depth(&store, q) == 0;
            if done || now >= d {
                sink.close();
                close_until = Some(d.max(now) + CLOSE_GRACE);
            }
        }
        if close_until.is_some_and(|c| now >= c) {
            break;
        }
        if close_until.is_none() && retry_at.is_none() {
            let room = sink.room();
            if room > 0 && depth(&store, q) > in_flight as u64 {
                match store.peek(q, cursor, room) {
                    Ok(rows) if !rows.is_empty() => {
                        cursor = rows.last().map(|r| r.id).unwrap_or(cursor);
                        in_flight += rows.len();
                        sink.send(rows);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(queue = q.label(), error = %e, "queue read failed"),
                }
            }
        }
        let deadline = close_until.or(drain_until);
        let idle = sink.idle_wait();
        tokio::select! {
            p = sink.progress(), if retry_at.is_none() => match p {
                Progress::Settled(ids, Outcome::Delivered) => {
                    backoff.reset();
                    in_flight = in_flight.saturating_sub(ids.len());
                    tracing::debug!(queue = q.label(), rows = ids.len(), "delivered");
                    if let Err(e) = store.ack(q, &ids) {
                        // The rows stay queued and are delivered again
                        // (at least once).
                        tracing::error!(queue = q.label(), error = %e, "queue ack failed");
                    }
                }
                Progress::Settled(ids, Outcome::Rejected(why)) => {
                    in_flight = in_flight.saturating_sub(ids.len());
                    tracing::error!(queue = q.label(), rows = ids.len(), reason = %why, "rows rejected by the receiver: set aside in the `rejected` table");
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    if let Err(e) = store.reject(q, &ids, &why, now_ms) {
                        tracing::error!(queue = q.label(), error = %e, "moving rejected rows aside failed");
                    }
                }
                Progress::Settled(_, Outcome::Retry(why)) => {
                    in_flight = 0;
                    cursor = 0;
                    sink.reset();
                    if drain_until.is_some() {
                        tracing::warn!(queue = q.label(), reason = %why, "delivery failed while stopping; what is left stays queued");
                        if close_until.is_none() {
                            sink.close();
                            close_until = Some(Instant::now() + CLOSE_GRACE);
                        }
                    } else {
                        let wait = backoff.fail();
                        tracing::warn!(queue = q.label(), reason = %why, retry_in = ?wait, "delivery failed; kept in the queue");
                        retry_at = Some(Instant::now() + wait);
                    }
                }
                Progress::Up => backoff.reset(),
                Progress::Idle => {}
                Progress::Closed => break,
            },
            _ = sleep_until_opt(retry_at) => retry_at = None,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.cancelled(), if drain_until.is_none() => {}
            _ = sleep_until_opt(deadline) => {}
        }
    }
    sink.finish().await;
}

fn depth(store: &Store, q: QueueId) -> u64 {
    store.depth(q)
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
