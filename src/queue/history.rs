//! The local history: every reading (`history_raw`) and 5-minute statistics
//! (`history_5m`), for `riskgate history` and the operator page. Readings
//! are committed together with the queue rows encoded from them, so a
//! reading is in the history exactly when it is queued for its sinks.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Drops, QueueId, Store, StoreError, push_in};

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

impl Store {
    /// Appends readings to the local history and their encoded forms to
    /// their queues, in one transaction (one fsync). A queue over its cap
    /// drops its oldest rows in the same transaction; returns the drops.
    pub fn append_readings(
        &self,
        history: &[HistoryRow],
        queued: &[(QueueId, Vec<String>)],
        now_ms: i64,
    ) -> Result<Drops, StoreError> {
        let ((), drops) = self.write(|tx, d| {
            let run = |d: &mut super::Delta| -> rusqlite::Result<()> {
                for (q, bodies) in queued {
                    push_in(tx, d, *q, bodies, now_ms)?;
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
                for r in history {
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
            };
            run(d).map_err(|e| self.err(e))
        })?;
        Ok(drops)
    }

    /// Raw readings of one point since `since`, oldest first.
    pub fn history(
        &self,
        point: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let g = self.lock();
        let mut st = g
            .conn
            .prepare_cached(
                "SELECT point, at_ms, value, quality FROM history_raw WHERE point = ?1 AND at_ms >= ?2 ORDER BY at_ms LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(
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
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// 5-minute statistics of one point since `since`, oldest first.
    pub fn stats_5m(&self, point: &str, since: DateTime<Utc>) -> Result<Vec<Stat5m>, StoreError> {
        let g = self.lock();
        let mut st = g
            .conn
            .prepare_cached(
                "SELECT bucket_ms, min, max, sum / n, n FROM history_5m WHERE point = ?1 AND bucket_ms >= ?2 ORDER BY bucket_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(
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
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Deletes history past its retention, and the oldest raw history beyond
    /// its size cap. Returns rows deleted.
    pub fn prune(
        &self,
        now: DateTime<Utc>,
        raw_days: u32,
        stats_days: u32,
    ) -> Result<u64, StoreError> {
        let g = self.lock();
        let c = &g.conn;
        let day = 86_400_000i64;
        let now_ms = now.timestamp_millis();
        let mut n = 0;
        n += c
            .execute(
                "DELETE FROM history_raw WHERE at_ms < ?1",
                [now_ms - raw_days as i64 * day],
            )
            .map_err(|e| self.err(e))?;
        n += c
            .execute(
                "DELETE FROM history_5m WHERE bucket_ms < ?1",
                [now_ms - stats_days as i64 * day],
            )
            .map_err(|e| self.err(e))?;
        n += c
            .execute(
                "DELETE FROM alarm_log WHERE at_ms < ?1",
                [now_ms - stats_days as i64 * day],
            )
            .map_err(|e| self.err(e))?;
        // Size cap of the raw history: ~48 bytes a row with its indexes.
        let rows: i64 = c
            .query_row("SELECT COUNT(*) FROM history_raw", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let max_rows = (self.limits.history_bytes / 48) as i64;
        if rows > max_rows {
            n += c
                .execute(
                    "DELETE FROM history_raw WHERE rowid IN (SELECT rowid FROM history_raw ORDER BY at_ms LIMIT ?1)",
                    [rows - max_rows],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(n as u64)
    }
}
