//! Sinks: each delivers rows from one or more durable queues, and [`drive`]
//! is the one loop that runs every sink.
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
//!
//! A sink that carries several queues over one connection (the county
//! uplink: alarm events, and later real-time data) gets them as lanes in
//! priority order: the driver offers the first lane's rows first, so a
//! backlog in a later lane never holds back an earlier one; the sink's
//! `room(queue)` says how much of its window each lane may use. A lane the
//! sink wants [`Sink::fresh_first`] (telemetry) sends what was queued since
//! the link came up before the backlog left from before: the backlog still
//! goes in order, in the room the fresh rows leave.
//!
//! Delivered rows are deleted off the loop (`acks.rs`): the loop never
//! waits for a fsync between a PUBACK and the next alarm.

mod acks;
pub mod influx;
pub mod uplink;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
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
    /// These rows (ids) of that queue were settled. A `Retry` counts for
    /// every row in flight, of every lane.
    Settled(QueueId, Vec<i64>, Outcome),
    /// The link went down: every row in flight is not delivered.
    Lost(String),
    /// The sink's link is up again (e.g. MQTT CONNACK): backoff starts over.
    Up,
    /// Something that does not concern the queues happened.
    Idle,
    /// Closing has finished (after [`Sink::close`]).
    Closed,
}

/// One output. The driver calls `room`/`send` to hand rows over and awaits
/// `progress` for what became of them.
pub trait Sink: Send {
    /// How many more rows of `queue` the sink takes now; 0 while busy or not
    /// connected.
    fn room(&self, queue: QueueId) -> usize;
    /// Hands rows of `queue` over (oldest first). Must not wait: the outcome
    /// comes later from `progress`.
    fn send(&mut self, queue: QueueId, rows: Vec<Row>);
    /// Waits for the next thing that happens. Must be cancel-safe: the driver
    /// selects on it together with its timers.
    fn progress(&mut self) -> impl Future<Output = Progress> + Send;
    /// After a retry or a loss: forget everything in flight; the driver
    /// sends again from the oldest row once the backoff has passed.
    fn reset(&mut self);
    /// At shutdown: whether delivering what is queued can still work now.
    fn can_drain(&self) -> bool {
        true
    }
    /// The drain is over (queues empty or time up): begin closing;
    /// `progress` answers `Closed` when done.
    fn close(&mut self);
    /// Last words, after `Closed` or the close deadline.
    fn finish(self) -> impl Future<Output = ()> + Send;
    /// How often to look at the queues without being woken.
    fn idle_wait(&self) -> Duration {
        Duration::from_secs(1)
    }
    /// Whether `queue`'s rows queued since the link came up go before the
    /// older ones (the backlog), which fill the room they leave, in order.
    fn fresh_first(&self, _queue: QueueId) -> bool {
        false
    }
}

/// How long a sink may take to close after the drain deadline (the uplink
/// waits this long for the PUBACK of its `offline` status).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// One queue as the driver sees it.
struct Lane {
    q: QueueId,
    /// Highest row id handed to the sink since the last rewind (of the
    /// backlog, with `fresh_first`).
    cursor: i64,
    in_flight: usize,
    /// With `fresh_first`: the last row id queued when the link came up
    /// (found at the first fill after a rewind); rows up to it are the
    /// backlog, rows after it fresh.
    backlog_end: Option<i64>,
    /// With `fresh_first`: highest fresh row id handed to the sink.
    fresh: i64,
}

impl Lane {
    fn new(q: QueueId) -> Lane {
        Lane {
            q,
            cursor: 0,
            in_flight: 0,
            backlog_end: None,
            fresh: 0,
        }
    }

    fn rewind(&mut self) {
        self.cursor = 0;
        self.in_flight = 0;
        self.backlog_end = None;
        self.fresh = 0;
    }
}

/// Delivers `queues` (in priority order) through `sink` until `shutdown`;
/// then goes on for up to `drain` while there is something to deliver, and
/// closes the sink.
pub async fn drive<S: Sink>(
    store: Arc<Store>,
    queues: impl Into<Vec<QueueId>>,
    mut sink: S,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let mut lanes: Vec<Lane> = queues.into().into_iter().map(Lane::new).collect();
    let acks = acks::Acks::start(store.clone());
    let wakers: Vec<_> = lanes.iter().map(|l| store.waker(l.q)).collect();
    let mut backoff = Backoff::default();
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
            if lanes.iter().all(|l| l.in_flight == 0) {
                // Nothing in flight: what is delivered must be off the
                // queues before they can look empty.
                acks.flush().await;
            }
            let done = lanes
                .iter()
                .all(|l| l.in_flight == 0 && store.depth(l.q) == 0);
            if done || now >= d {
                sink.close();
                close_until = Some(d.max(now) + CLOSE_GRACE);
            }
        }
        if close_until.is_some_and(|c| now >= c) {
            break;
        }
        if close_until.is_none() && retry_at.is_none() {
            for lane in &mut lanes {
                fill(&store, &mut sink, lane, &acks).await;
            }
        }
        let deadline = close_until.or(drain_until);
        let idle = sink.idle_wait();
        let woken = async {
            if wakers.is_empty() {
                std::future::pending::<()>().await;
            }
            futures::future::select_all(wakers.iter().map(|w| w.notified().boxed())).await;
        };
        let happened = tokio::select! {
            p = sink.progress(), if retry_at.is_none() => match p {
                Progress::Closed => break,
                p => Some(p),
            },
            _ = sleep_until_opt(retry_at) => {
                retry_at = None;
                None
            }
            _ = woken => None,
            _ = tokio::time::sleep(idle) => None,
            _ = shutdown.cancelled(), if drain_until.is_none() => None,
            _ = sleep_until_opt(deadline) => None,
        };
        let failed = match happened {
            Some(Progress::Settled(q, ids, Outcome::Delivered)) => {
                backoff.reset();
                settled(&mut lanes, q, ids.len());
                tracing::debug!(queue = q.label(), rows = ids.len(), "delivered");
                acks.ack(q, ids);
                None
            }
            Some(Progress::Settled(q, ids, Outcome::Rejected(why))) => {
                settled(&mut lanes, q, ids.len());
                tracing::error!(queue = q.label(), rows = ids.len(), reason = %why, "rows rejected by the receiver: set aside in the `rejected` table");
                let now_ms = chrono::Utc::now().timestamp_millis();
                let s = store.clone();
                if let Some(Err(e)) = blocking(move || s.reject(q, &ids, &why, now_ms)).await {
                    tracing::error!(queue = q.label(), error = %e, "moving rejected rows aside failed");
                }
                None
            }
            Some(Progress::Settled(_, _, Outcome::Retry(why)) | Progress::Lost(why)) => Some(why),
            Some(Progress::Up) => {
                backoff.reset();
                None
            }
            Some(Progress::Idle | Progress::Closed) | None => None,
        };
        if let Some(why) = failed {
            // Delivered rows off the queues first: the rewind must not
            // send them again.
            acks.flush().await;
            lanes.iter_mut().for_each(Lane::rewind);
            sink.reset();
            let names: Vec<&str> = lanes.iter().map(|l| l.q.label()).collect();
            if drain_until.is_some() {
                tracing::warn!(queues = ?names, reason = %why, "delivery failed while stopping; what is left stays queued");
                if close_until.is_none() {
                    sink.close();
                    close_until = Some(Instant::now() + CLOSE_GRACE);
                }
            } else {
                let wait = backoff.fail();
                tracing::warn!(queues = ?names, reason = %why, retry_in = ?wait, "delivery failed; kept in the queue");
                retry_at = Some(Instant::now() + wait);
            }
        }
    }
    acks.finish().await;
    sink.finish().await;
}

/// Offers the lane's next rows to the sink, as many as it has room for.
async fn fill<S: Sink>(store: &Arc<Store>, sink: &mut S, lane: &mut Lane, acks: &acks::Acks) {
    // The counters say whether anything is left beyond what is in flight
    // or delivered, without a query.
    let unsent = store
        .depth(lane.q)
        .saturating_sub(acks.pending(lane.q))
        .saturating_sub(lane.in_flight as u64);
    if sink.room(lane.q) == 0 || unsent == 0 {
        return;
    }
    if !sink.fresh_first(lane.q) {
        if let Offered::Rows(last) = offer(store, sink, lane, lane.cursor, None).await {
            lane.cursor = last;
        }
        return;
    }
    let end = match lane.backlog_end {
        Some(end) => end,
        None => {
            let (s, q) = (store.clone(), lane.q);
            match blocking(move || s.last_id(q)).await {
                Some(Ok(end)) => {
                    lane.backlog_end = Some(end);
                    lane.fresh = end;
                    end
                }
                Some(Err(e)) => {
                    tracing::error!(queue = lane.q.label(), error = %e, "queue read failed");
                    return;
                }
                None => return,
            }
        }
    };
    if let Offered::Rows(last) = offer(store, sink, lane, lane.fresh, None).await {
        lane.fresh = last;
    }
    if lane.cursor < end {
        match offer(store, sink, lane, lane.cursor, Some(end)).await {
            Offered::Rows(last) => lane.cursor = last,
            // Every backlog row handed over (or gone): only fresh ones now.
            Offered::Empty => lane.cursor = end,
            Offered::Nothing => {}
        }
    }
}

enum Offered {
    /// Rows handed over, up to this id.
    Rows(i64),
    /// None left in the range.
    Empty,
    /// No room, or the read failed.
    Nothing,
}

/// Hands the sink the rows of the lane after `after` (up to `upto`), as
/// many as it has room for.
async fn offer<S: Sink>(
    store: &Arc<Store>,
    sink: &mut S,
    lane: &mut Lane,
    after: i64,
    upto: Option<i64>,
) -> Offered {
    let room = sink.room(lane.q);
    if room == 0 {
        return Offered::Nothing;
    }
    let (s, q) = (store.clone(), lane.q);
    match blocking(move || s.peek_range(q, after, upto.unwrap_or(i64::MAX), room)).await {
        Some(Ok(rows)) => match rows.last().map(|r| r.id) {
            Some(last) => {
                lane.in_flight += rows.len();
                sink.send(lane.q, rows);
                Offered::Rows(last)
            }
            None => Offered::Empty,
        },
        None => Offered::Nothing,
        Some(Err(e)) => {
            tracing::error!(queue = lane.q.label(), error = %e, "queue read failed");
            Offered::Nothing
        }
    }
}

/// Runs a store call off the async workers: a write waits for its fsync,
/// and a worker blocked on it would delay the device polls.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "a queue operation panicked");
            None
        }
    }
}

fn settled(lanes: &mut [Lane], q: QueueId, n: usize) {
    if let Some(l) = lanes.iter_mut().find(|l| l.q == q) {
        l.in_flight = l.in_flight.saturating_sub(n);
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
