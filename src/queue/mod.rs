//! The durable store: one SQLite database (WAL, `synchronous = FULL`) that
//! holds the outbound queues, the persisted `seq`, the alarm log, the active
//! alarms and the local history.
//!
//! Why SQLite: it is the best-tested embedded store there is, survives power
//! loss in WAL mode with full sync, and gives the local history real queries
//! (`riskgate history`, the operator page) from the same file.
//!
//! Invariants of the queues:
//! - A queue is named by a closed [`QueueId`] and holds opaque bodies that its
//!   producer encoded for the sink that reads it: the store knows no sink and
//!   no payload format. Rows leave a queue in id order only through
//!   [`Store::ack`] (the sink delivered them) or [`Store::reject`] (the sink
//!   refused them as bad data: moved to `rejected`), or, for a queue whose
//!   [`QueueId::may_drop`] is true, oldest first when it exceeds its size cap.
//! - A row counts as accepted when the transaction that inserts it has
//!   committed. Depth and byte totals are running counters, read once at
//!   open and changed only after a commit, so stats and the size cap never
//!   scan a table.
//!
//! Alarm events (`log.rs`) get their gap-free `seq` in the transaction that
//! queues and logs them; telemetry messages (`telemetry.rs`) their `tseq`
//! likewise; readings (`history.rs`) are committed in batches,
//! one fsync per batch, together with their local history.

mod audit;
mod epoch;
mod gate;
mod history;
mod log;
mod rejected;
mod rows;
mod rule_state;
mod schema;
mod telemetry;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use tokio::sync::Notify;

pub use audit::{AUDIT_MAX_ROWS, AuditRow, AuditSource};
use gate::Gate;
pub use gate::Prio;
pub use history::{HistoryRow, Partial, SEGMENT, Stat5m};
pub use log::LoggedEvent;
pub use rejected::{REJECTED_MAX_ROWS, REJECTED_RETENTION_MS};
pub(crate) use rows::{delete_in, push_in};

/// The outbound queues. Adding one is a variant here (with its table name,
/// its metric label and whether it may drop), a sink that reads it, and one
/// wiring line in `runtime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueId {
    /// Alarm events for the county uplink, in `seq` order. Never dropped.
    Alarms,
    /// Readings for the time-series database. Oldest dropped beyond the cap.
    Readings,
    /// Real-time data for the county uplink, in `tseq` order, behind the
    /// alarms on the same connection. Oldest dropped beyond the cap (the
    /// county sees the gap in `tseq`).
    Telemetry,
}

/// Lets `sink::drive` take one queue where it takes a list of lanes.
impl From<QueueId> for Vec<QueueId> {
    fn from(q: QueueId) -> Self {
        vec![q]
    }
}

impl QueueId {
    pub const ALL: [QueueId; 3] = [QueueId::Alarms, QueueId::Readings, QueueId::Telemetry];

    fn index(self) -> usize {
        self as usize
    }

    /// The SQLite table (created at open, see `schema.rs`).
    fn table(self) -> &'static str {
        match self {
            QueueId::Alarms => "queue_alarms",
            QueueId::Readings => "queue_readings",
            QueueId::Telemetry => "queue_telemetry",
        }
    }

    /// The `queue` label of the metrics and the key in `/api/state`; kept
    /// as they were when queues were named by their sink, so dashboards and
    /// alerts built on them keep working.
    pub fn label(self) -> &'static str {
        match self {
            QueueId::Alarms => "uplink",
            QueueId::Readings => "influx",
            QueueId::Telemetry => "telemetry",
        }
    }

    /// Whose turn first at the write connection: alarm events never wait
    /// behind a readings write.
    pub fn prio(self) -> Prio {
        match self {
            QueueId::Alarms => Prio::Alarm,
            QueueId::Readings | QueueId::Telemetry => Prio::Bulk,
        }
    }

    /// Whether the oldest rows may be dropped when the queue exceeds its
    /// cap. Alarm events never are (docs/guarantees.md).
    pub fn may_drop(self) -> bool {
        match self {
            QueueId::Alarms => false,
            QueueId::Readings | QueueId::Telemetry => true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store {path}: active alarm `{key}` cannot be encoded: {source}")]
    Encode {
        path: PathBuf,
        key: String,
        source: serde_json::Error,
    },
}

/// One queued row: its id (the order) and the body its producer encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: i64,
    pub body: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueStats {
    pub depth: u64,
    pub bytes: u64,
    /// When the row at the head of the queue was queued (ms since epoch).
    pub oldest_ms: Option<i64>,
}

/// Size limits. A queue that may drop and has no cap here is unbounded.
#[derive(Clone, Debug)]
pub struct Limits {
    pub readings_queue_bytes: u64,
    pub history_bytes: u64,
    /// `[telemetry] queue_mb`; unbounded when None.
    pub telemetry_queue_bytes: Option<u64>,
}

impl Limits {
    fn cap(&self, q: QueueId) -> Option<u64> {
        match q {
            QueueId::Alarms => None,
            QueueId::Readings => Some(self.readings_queue_bytes),
            QueueId::Telemetry => self.telemetry_queue_bytes,
        }
    }
}

/// Running totals of one queue.
#[derive(Clone, Copy, Debug, Default)]
struct Counter {
    depth: u64,
    bytes: u64,
}

pub struct Store {
    /// The one write connection, alarm writers first (`gate.rs`).
    writer: Gate<Connection>,
    /// Running totals of the queues, changed only after a commit, while
    /// the write connection is held. Their own lock is never held across
    /// an fsync, so sinks and the API read depths without waiting for a
    /// commit.
    counters: Mutex<[Counter; QueueId::ALL.len()]>,
    /// Read connections (sinks' peeks, API, history, stats): a WAL reader
    /// never waits for the writer and the writer never waits for it.
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    limits: Limits,
    wakers: [Arc<Notify>; QueueId::ALL.len()],
    /// This store's epoch, part of every `event_id` (`epoch.rs`).
    epoch: u32,
}

/// Rows each queue dropped (oldest first) to stay within its cap in one
/// write transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Drops([u64; QueueId::ALL.len()]);

impl Drops {
    pub fn get(&self, q: QueueId) -> u64 {
        self.0[q.index()]
    }

    fn add(&mut self, other: &Drops) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// The queue changes one write transaction made, applied to the counters
/// only once it has committed.
#[derive(Default)]
pub(crate) struct Delta {
    changes: [(i64, i64); QueueId::ALL.len()],
    dropped: [u64; QueueId::ALL.len()],
    pushed: [bool; QueueId::ALL.len()],
}

/// Read connections kept open for reuse; more are opened when busy.
const READERS_KEPT: usize = 4;

impl Store {
    /// Opens (or creates) `dir/riskgate.db` with the readings queue capped at
    /// `readings_cap_bytes` and the raw history at `history_cap_bytes`.
    pub fn open(
        dir: &Path,
        readings_cap_bytes: u64,
        history_cap_bytes: u64,
    ) -> Result<Store, StoreError> {
        Self::open_with(
            dir,
            Limits {
                readings_queue_bytes: readings_cap_bytes,
                history_bytes: history_cap_bytes,
                telemetry_queue_bytes: None,
            },
        )
    }

    pub fn open_with(dir: &Path, limits: Limits) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("riskgate.db");
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        // FULL: a committed alarm survives a power cut, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(wrap)?;
        // Only this process writes, and writers queue in the gate; the
        // timeout covers a checkpoint or an outside reader (`riskgate
        // history` on the same file).
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap)?;
        // No checkpoint inside a commit: an alarm commit must not pay for
        // copying the readings' WAL pages. Housekeeping checkpoints from a
        // read connection instead (`checkpoint`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(wrap)?;
        schema::create(&mut conn).map_err(wrap)?;
        let epoch = epoch::settle(&conn, &path).map_err(wrap)?;
        // The only full pass over the queues: the running totals start here.
        let mut counters = [Counter::default(); QueueId::ALL.len()];
        for q in QueueId::ALL {
            let (depth, bytes): (i64, i64) = conn
                .query_row(
                    &format!(
                        "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) FROM {}",
                        q.table()
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(wrap)?;
            counters[q.index()] = Counter {
                depth: depth as u64,
                bytes: bytes as u64,
            };
        }
        Ok(Store {
            writer: Gate::new(conn),
            counters: Mutex::new(counters),
            readers: Mutex::new(Vec::new()),
            path,
            limits,
            wakers: std::array::from_fn(|_| Arc::new(Notify::new())),
            epoch,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's epoch: random, made with the store (and again when the
    /// store was restored from an older copy), so `event_id`s stay unique
    /// when the store is lost and `seq` starts again.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn counters(&self) -> MutexGuard<'_, [Counter; QueueId::ALL.len()]> {
        // Plain numbers, changed in one assignment: usable after a panic.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a read connection (taken from the pool, or opened).
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
    ) -> Result<R, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| self.err(e))?;
                c.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(|e| self.err(e))?;
                // Reads only: a slip here cannot take the write lock.
                c.pragma_update(None, "query_only", true)
                    .map_err(|e| self.err(e))?;
                c
            }
        };
        let r = f(&conn).map_err(|e| self.err(e));
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < READERS_KEPT {
            pool.push(conn);
        }
        r
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`: the write lock
    /// is taken at the start, so a transaction never fails half-way for a
    /// lock); on commit, applies its queue changes to the counters, counts
    /// and logs drops, and wakes the sinks of the queues that got rows.
    pub(crate) fn write<R>(
        &self,
        prio: Prio,
        f: impl FnOnce(&Transaction<'_>, &mut Delta) -> Result<R, StoreError>,
    ) -> Result<(R, Drops), StoreError> {
        let mut delta = Delta::default();
        let r = {
            let mut conn = self.writer.lock(prio);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
            let r = f(&tx, &mut delta)?;
            let before = *self.counters();
            for q in QueueId::ALL {
                if delta.pushed[q.index()] {
                    let cur = apply(before[q.index()], delta.changes[q.index()]);
                    delta.dropped[q.index()] = self
                        .enforce_cap(&tx, q, cur, &mut delta)
                        .map_err(|e| self.err(e))?;
                }
            }
            tx.commit().map_err(|e| self.err(e))?;
            let mut counters = self.counters();
            for q in QueueId::ALL {
                let c = &mut counters[q.index()];
                *c = apply(*c, delta.changes[q.index()]);
            }
            r
        };
        let m = crate::metrics::metrics();
        for q in QueueId::ALL {
            let dropped = delta.dropped[q.index()];
            if dropped > 0 {
                m.queue_dropped
                    .with_label_values(&[q.label()])
                    .inc_by(dropped);
                tracing::warn!(
                    queue = q.label(),
                    dropped,
                    "queue reached its size limit: oldest rows dropped"
                );
            }
            if delta.pushed[q.index()] {
                self.wakers[q.index()].notify_one();
            }
        }
        Ok((r, Drops(delta.dropped)))
    }

    /// Copies committed WAL pages into the database file. PASSIVE: it never
    /// waits for, nor blocks, a writer. Commits do not checkpoint
    /// themselves (`wal_autocheckpoint = 0`, so an alarm commit never pays
    /// for the readings' pages); housekeeping calls this every few seconds.
    /// Runs on a read connection, not the write gate.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())))
    }

    /// Fault injection for tests: caps the database file at its present
    /// size plus `extra_pages` (SQLite `max_page_count`), so writes that
    /// need more room fail as on a full disk; `None` lifts the cap. Not for
    /// production use.
    #[doc(hidden)]
    pub fn cap_pages(&self, extra_pages: Option<u32>) -> Result<(), StoreError> {
        let conn = self.writer.lock(Prio::Alarm);
        let n: i64 = match extra_pages {
            Some(extra) => {
                let now: i64 = conn
                    .query_row("PRAGMA page_count", [], |r| r.get(0))
                    .map_err(|e| self.err(e))?;
                now + extra as i64
            }
            None => u32::MAX as i64 - 1,
        };
        conn.query_row(&format!("PRAGMA max_page_count = {n}"), [], |_| Ok(()))
            .map_err(|e| self.err(e))
    }

    /// Drops the oldest rows of `q` until it fits its cap. Reads only the
    /// rows it drops (the total comes from the counter).
    fn enforce_cap(
        &self,
        tx: &Transaction<'_>,
        q: QueueId,
        cur: Counter,
        delta: &mut Delta,
    ) -> rusqlite::Result<u64> {
        let Some(cap) = self.limits.cap(q).filter(|_| q.may_drop()) else {
            return Ok(0);
        };
        if cur.bytes <= cap {
            return Ok(0);
        }
        let mut excess = cur.bytes - cap;
        let (mut dropped, mut freed) = (0u64, 0u64);
        let mut last_id = None;
        {
            let mut st = tx.prepare_cached(&format!(
                "SELECT id, LENGTH(CAST(body AS BLOB)) FROM {} ORDER BY id",
                q.table()
            ))?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let (id, len): (i64, i64) = (r.get(0)?, r.get(1)?);
                last_id = Some(id);
                dropped += 1;
                freed += len as u64;
                if len as u64 >= excess {
                    break;
                }
                excess -= len as u64;
            }
        }
        if let Some(id) = last_id {
            tx.execute(&format!("DELETE FROM {} WHERE id <= ?1", q.table()), [id])?;
        }
        let c = &mut delta.changes[q.index()];
        c.0 -= dropped as i64;
        c.1 -= freed as i64;
        Ok(dropped)
    }

    /// Notified after a commit that added rows to `q`; a sink waits on it
    /// when its queue is empty (a permit is kept if nobody waits).
    pub fn waker(&self, q: QueueId) -> Arc<Notify> {
        self.wakers[q.index()].clone()
    }

    /// Appends bodies to `q` in one transaction. Returns how many old rows
    /// were dropped to keep the queue within its cap.
    pub fn push(&self, q: QueueId, bodies: &[String], now_ms: i64) -> Result<u64, StoreError> {
        let ((), drops) = self.write(q.prio(), |tx, d| {
            push_in(tx, d, q, bodies, now_ms).map_err(|e| self.err(e))
        })?;
        Ok(drops.get(q))
    }

    /// Up to `max` rows of `q` with an id greater than `after`, oldest first.
    pub fn peek(&self, q: QueueId, after: i64, max: usize) -> Result<Vec<Row>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT id, body FROM {} WHERE id > ?1 ORDER BY id LIMIT ?2",
                q.table()
            ))?;
            let rows = st.query_map(params![after, max.min(i64::MAX as usize) as i64], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    body: r.get(1)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The sink delivered these rows: they leave the queue. Ids no longer
    /// queued (a duplicate acknowledgement) are ignored.
    pub fn ack(&self, q: QueueId, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        // In segments, as `append_readings` does: a large readings ack
        // gives way to a waiting alarm commit. An ack that fails part way
        // is retried whole; the ids already gone are ignored then.
        let (mut n, mut done) = (0, 0);
        while done < ids.len() {
            let ((k, end), _) = self.write(q.prio(), |tx, d| {
                let (mut k, mut at) = (0, done);
                loop {
                    let to = (at + history::SEGMENT * 4).min(ids.len());
                    k += delete_in(tx, d, q, &ids[at..to]).map_err(|e| self.err(e))?;
                    at = to;
                    if at >= ids.len() || (q.prio() == Prio::Bulk && self.writer.alarm_waiting()) {
                        return Ok((k, at));
                    }
                }
            })?;
            n += k;
            done = end;
        }
        crate::metrics::metrics()
            .delivered
            .with_label_values(&[q.label()])
            .inc_by(n);
        Ok(())
    }

    /// Depth and bytes from the running counters; the age of the head row
    /// by one primary-key lookup.
    pub fn stats(&self, q: QueueId) -> Result<QueueStats, StoreError> {
        let c = self.counters()[q.index()];
        let oldest_ms = if c.depth == 0 {
            None
        } else {
            use rusqlite::OptionalExtension;
            self.read(|conn| {
                conn.query_row(
                    &format!("SELECT at_ms FROM {} ORDER BY id LIMIT 1", q.table()),
                    [],
                    |r| r.get(0),
                )
                .optional()
            })?
        };
        Ok(QueueStats {
            depth: c.depth,
            bytes: c.bytes,
            oldest_ms,
        })
    }

    /// Rows waiting in `q`, from the running counter.
    pub fn depth(&self, q: QueueId) -> u64 {
        self.counters()[q.index()].depth
    }

    /// Rows waiting in every queue.
    pub fn total_depth(&self) -> u64 {
        self.counters().iter().map(|c| c.depth).sum()
    }
}

fn apply(c: Counter, (depth, bytes): (i64, i64)) -> Counter {
    Counter {
        depth: (c.depth as i64 + depth).max(0) as u64,
        bytes: (c.bytes as i64 + bytes).max(0) as u64,
    }
}

#[cfg(test)]
mod tests;
