//! The local history: every reading (`history_raw`) and 5-minute statistics
//! (`history_5m`), for `riskgate history` and the operator page. Readings
//! are committed together with the queue rows encoded from them, so a
//! reading is in the history exactly when it is queued for its sinks.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Drops, Prio, QueueId, Store, StoreError, push_in};

/// A reading for the local history.
#[derive(Clone, Debug)]
pub struct HistoryRow {
    pub point: String,
    pub at_ms: i64,
    pub value: Option<f64>,
    pub quality: u8,
}

/// Min, max and mean of one point's good readings in one 5-minute bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat5m {
    pub start_ms: i64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

const FIVE_MIN_MS: i64 = 300_000;

/// Readings one segment of a batch holds: between two segments a batch
/// gives way to a waiting alarm commit. About a millisecond of inserts on
/// an idle edge box.
pub const SEGMENT: usize = 64;

/// A batch of readings the store took only in part.
#[derive(Debug, thiserror::Error)]
#[error("{error} (the first {stored} readings of the batch were stored)")]
pub struct Partial {
    /// The leading readings committed before the error.
    pub stored: usize,
    #[source]
    pub error: StoreError,
}

impl Store {
    /// Appends readings to the local history and their encoded forms to
    /// their queues; [`Store::append_readings_and_state`] without state.
    pub fn append_readings(
        &self,
        history: &[HistoryRow],
        queued: &[(QueueId, Vec<String>)],
        now_ms: i64,
    ) -> Result<Drops, Partial> {
        self.append_readings_and_state(history, queued, &[], now_ms)
    }

    /// Appends readings to the local history and their encoded forms to
    /// their queues, with the rules' changed state (`rule_state.rs`).
    /// `queued` holds, per queue, one body per reading in the order of
    /// `history` (the engine task batches them so).
    ///
    /// Usually one transaction (one fsync). But an alarm commit must not
    /// wait for a whole batch: between segments of [`SEGMENT`] readings the
    /// transaction looks at the write gate, and if an alarm writer waits it
    /// commits the readings done so far, lets the alarm pass and goes on in
    /// a new transaction. A segment is whole: a reading is in the history
    /// exactly when it is queued. The rule state goes with the first
    /// transaction: it is a snapshot taken after every reading of the
    /// batch, so should the gateway die between segments it counts readings
    /// that were taken but not stored (a rain total errs high, not low),
    /// and writing it again is harmless. A queue over its cap drops its
    /// oldest rows in the same transaction; returns the drops of all.
    ///
    /// On an error the readings before [`Partial::stored`] are committed and
    /// the rest are not, so the caller keeps only the rest for its retry.
    pub fn append_readings_and_state(
        &self,
        history: &[HistoryRow],
        queued: &[(QueueId, Vec<String>)],
        states: &[(String, String)],
        now_ms: i64,
    ) -> Result<Drops, Partial> {
        // Readings in the batch: the history rows, or the queue bodies
        // should a queue hold more (it should not).
        let n = queued
            .iter()
            .map(|(_, b)| b.len())
            .fold(history.len(), usize::max);
        let mut drops = Drops::default();
        let mut done = 0;
        loop {
            let (end, d) = self
                .write(Prio::Bulk, |tx, d| {
                    if done == 0 {
                        super::rule_state::put_in(tx, states, now_ms).map_err(|e| self.err(e))?;
                    }
                    let mut at = done;
                    // At least one segment per transaction, so the batch
                    // always moves on, however often alarms come.
                    while at < n {
                        let to = (at + SEGMENT).min(n);
                        self.append_segment(tx, d, history, queued, at, to, now_ms)
                            .map_err(|e| self.err(e))?;
                        at = to;
                        if self.writer.alarm_waiting() {
                            break;
                        }
                    }
                    Ok(at)
                })
                .map_err(|error| Partial {
                    stored: done,
                    error,
                })?;
            drops.add(&d);
            done = end;
            if done >= n {
                return Ok(drops);
            }
        }
    }

    /// Readings `from..to` of a batch (their queue bodies and history rows).
    #[allow(clippy::too_many_arguments)]
    fn append_segment(
        &self,
        tx: &rusqlite::Transaction<'_>,
        d: &mut super::Delta,
        history: &[HistoryRow],
        queued: &[(QueueId, Vec<String>)],
        from: usize,
        to: usize,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        for (q, bodies) in queued {
            let part = &bodies[from.min(bodies.len())..to.min(bodies.len())];
            if !part.is_empty() {
                push_in(tx, d, *q, part, now_ms)?;
            }
        }
        let mut h = tx.prepare_cached(
            "INSERT INTO history_raw (point, at_ms, value, quality) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut s = tx.prepare_cached(
            "INSERT INTO history_5m (point, bucket_ms, min, max, sum, n) VALUES (?1, ?2, ?3, ?3, ?3, 1)
             ON CONFLICT(point, bucket_ms) DO UPDATE SET
               min = min(min, excluded.min), max = max(max, excluded.max),
               sum = sum + excluded.sum, n = n + 1",
        )?;
        for r in &history[from.min(history.len())..to.min(history.len())] {
            h.execute(params![r.point, r.at_ms, r.value, r.quality])?;
            if let (Some(v), 0) = (r.value, r.quality) {
                s.execute(params![
                    r.point,
                    r.at_ms - r.at_ms.rem_euclid(FIVE_MIN_MS),
                    v
                ])?;
            }
        }
        Ok(())
    }

    /// Raw readings of one point since `since`, oldest first.
    pub fn history(
        &self,
        point: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT point, at_ms, value, quality FROM history_raw WHERE point = ?1 AND at_ms >= ?2 ORDER BY at_ms LIMIT ?3",
            )?;
            let rows = st.query_map(
                params![
                    point,
                    since.timestamp_millis(),
                    limit.min(i64::MAX as usize) as i64
                ],
                |r| {
                    Ok(HistoryRow {
                        point: r.get(0)?,
                        at_ms: r.get(1)?,
                        value: r.get(2)?,
                        quality: r.get(3)?,
                    })
                },
            )?;
            rows.collect()
        })
    }

    /// 5-minute statistics of one point since `since`, oldest first.
    pub fn stats_5m(&self, point: &str, since: DateTime<Utc>) -> Result<Vec<Stat5m>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT bucket_ms, min, max, sum / n, n FROM history_5m WHERE point = ?1 AND bucket_ms >= ?2 ORDER BY bucket_ms",
            )?;
            let rows = st.query_map(
                params![point, since.timestamp_millis() - FIVE_MIN_MS],
                |r| {
                    Ok(Stat5m {
                        start_ms: r.get(0)?,
                        min: r.get(1)?,
                        max: r.get(2)?,
                        mean: r.get(3)?,
                        count: r.get::<_, i64>(4)? as u64,
                    })
                },
            )?;
            rows.collect()
        })
    }

    /// Deletes history past its retention, and the oldest raw history beyond
    /// its size cap, in steps of [`PRUNE_STEP`] rows, each its own short
    /// transaction: an alarm commit waits for one step at most, never for
    /// the whole prune. Returns rows deleted.
    pub fn prune(
        &self,
        now: DateTime<Utc>,
        raw_days: u32,
        stats_days: u32,
    ) -> Result<u64, StoreError> {
        let day = 86_400_000i64;
        let now_ms = now.timestamp_millis();
        let raw_before = now_ms - raw_days as i64 * day;
        let stats_before = now_ms - stats_days as i64 * day;
        let mut n = 0;
        // Each statement finds its rows through an index on the time.
        n += self.prune_steps(
            "DELETE FROM history_raw WHERE rowid IN
               (SELECT rowid FROM history_raw WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)",
            raw_before,
        )?;
        n += self.prune_steps(
            "DELETE FROM history_5m WHERE rowid IN
               (SELECT rowid FROM history_5m WHERE bucket_ms < ?1 ORDER BY bucket_ms LIMIT ?2)",
            stats_before,
        )?;
        n += self.prune_steps(
            "DELETE FROM alarm_log WHERE seq IN
               (SELECT seq FROM alarm_log WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)",
            stats_before,
        )?;
        // Size cap of the raw history, ~48 bytes a row with its indexes.
        // The row count is estimated from the rowid span (two index probes,
        // not a count over millions of rows); rows are appended, so the span
        // is the count unless retention left holes, and then it errs on the
        // side of keeping the file within its cap.
        let max_rows = (self.limits.history_bytes / 48).min(i64::MAX as u64) as i64;
        let span: i64 = self.read(|c| {
            c.query_row(
                "SELECT COALESCE(MAX(rowid) - MIN(rowid) + 1, 0) FROM history_raw",
                [],
                |r| r.get(0),
            )
        })?;
        let mut over = span - max_rows;
        while over > 0 {
            let step = over.min(PRUNE_STEP);
            let ((), _) = self.write(Prio::Bulk, |tx, _| {
                tx.execute(
                    "DELETE FROM history_raw WHERE rowid IN
                       (SELECT rowid FROM history_raw ORDER BY at_ms LIMIT ?1)",
                    [step],
                )
                .map(|_| ())
                .map_err(|e| self.err(e))
            })?;
            n += step as usize;
            over -= step;
        }
        Ok(n as u64)
    }

    /// Runs `sql` (with `?1` = `before`, `?2` = the step) until it deletes
    /// less than a step.
    fn prune_steps(&self, sql: &str, before: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        loop {
            let (k, _) = self.write(Prio::Bulk, |tx, _| {
                tx.execute(sql, params![before, PRUNE_STEP])
                    .map_err(|e| self.err(e))
            })?;
            n += k;
            if (k as i64) < PRUNE_STEP {
                return Ok(n);
            }
        }
    }
}

/// Rows one pruning transaction deletes at most. An alarm commit may wait
/// for one step; 500 rows through the time index are a few milliseconds
/// on an idle edge box (2,000 measured 50+ ms on a loaded one).
pub const PRUNE_STEP: i64 = 500;
