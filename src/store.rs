//! The durable store: one SQLite database (WAL, `synchronous = FULL`) that
//! holds the two queues, the persisted `seq`, the active alarms and the local
//! history.
//!
//! Why SQLite: it is the best-tested embedded store there is, survives power
//! loss in WAL mode with full sync, and gives the local history real queries
//! (`riskgate history`, the operator page) from the same file. A reading or
//! an alarm counts as accepted when the transaction that inserts it has
//! committed; a row leaves its queue only when the sink reports delivery.
//!
//! Readings are committed in batches (one fsync per batch, not per reading).
//! Alarm events are committed one step at a time, with their `seq`, in the
//! same transaction, so `seq` is gap-free across crashes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::contract::Identity;
use crate::model::AlarmTransition;
use crate::rules::engine::Instance;

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
}

/// One queued uplink message.
#[derive(Clone, Debug, PartialEq)]
pub struct UplinkRow {
    pub id: i64,
    pub topic: String,
    pub payload: String,
    pub event_id: String,
}

/// One queued reading as InfluxDB line protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct InfluxRow {
    pub id: i64,
    pub line: String,
}

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

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueStats {
    pub depth: u64,
    pub bytes: u64,
    pub oldest_ms: Option<i64>,
}

pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    readings_cap: u64,
    history_cap: u64,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS q_influx (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    line TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS q_uplink (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms_active (key TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alarm_log (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    alarm_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_log_at ON alarm_log(at_ms);
CREATE TABLE IF NOT EXISTS history_raw (
    point TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    value REAL,
    quality INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_raw_point_at ON history_raw(point, at_ms);
CREATE INDEX IF NOT EXISTS history_raw_at ON history_raw(at_ms);
CREATE TABLE IF NOT EXISTS history_5m (
    point TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    min REAL, max REAL, sum REAL NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (point, bucket_ms)
);
"#;

const FIVE_MIN_MS: i64 = 300_000;

impl Store {
    /// Opens (or creates) `dir/riskgate.db`.
    pub fn open(
        dir: &Path,
        readings_cap_bytes: u64,
        history_cap_bytes: u64,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("riskgate.db");
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        // FULL: a committed alarm survives a power cut, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
            readings_cap: readings_cap_bytes,
            history_cap: history_cap_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends readings to the InfluxDB queue and to the local history in one
    /// transaction. When the queue would exceed its size limit, the oldest
    /// queued readings are dropped; returns how many were dropped.
    pub fn append_readings(
        &self,
        lines: &[String],
        history: &[HistoryRow],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.err(e))?;
        {
            let mut q = tx
                .prepare_cached("INSERT INTO q_influx (line, at_ms) VALUES (?1, ?2)")
                .map_err(|e| self.err(e))?;
            for l in lines {
                q.execute(params![l, now_ms]).map_err(|e| self.err(e))?;
            }
            let mut h = tx
                .prepare_cached("INSERT INTO history_raw (point, at_ms, value, quality) VALUES (?1, ?2, ?3, ?4)")
                .map_err(|e| self.err(e))?;
            let mut s = tx
                .prepare_cached(
                    "INSERT INTO history_5m (point, bucket_ms, min, max, sum, n) VALUES (?1, ?2, ?3, ?3, ?3, 1)
                     ON CONFLICT(point, bucket_ms) DO UPDATE SET
                       min = min(min, excluded.min), max = max(max, excluded.max),
                       sum = sum + excluded.sum, n = n + 1",
                )
                .map_err(|e| self.err(e))?;
            for r in history {
                h.execute(params![r.point, r.at_ms, r.value, r.quality])
                    .map_err(|e| self.err(e))?;
                if let (Some(v), 0) = (r.value, r.quality) {
                    s.execute(params![
                        r.point,
                        r.at_ms - r.at_ms.rem_euclid(FIVE_MIN_MS),
                        v
                    ])
                    .map_err(|e| self.err(e))?;
                }
            }
        }
        let dropped = Self::enforce_cap(&tx, self.readings_cap).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        if dropped > 0 {
            crate::metrics::metrics()
                .queue_dropped
                .with_label_values(&["influx"])
                .inc_by(dropped);
            tracing::warn!(
                dropped,
                "readings queue reached its size limit: oldest readings dropped"
            );
        }
        Ok(dropped)
    }

    /// Drops the oldest queued readings until the queue fits `cap` bytes.
    fn enforce_cap(tx: &rusqlite::Transaction<'_>, cap: u64) -> rusqlite::Result<u64> {
        let bytes: i64 = tx.query_row(
            "SELECT COALESCE(SUM(LENGTH(line)), 0) FROM q_influx",
            [],
            |r| r.get(0),
        )?;
        if (bytes as u64) <= cap {
            return Ok(0);
        }
        let mut excess = bytes as u64 - cap;
        let mut dropped = 0u64;
        let mut last_id = None;
        {
            let mut st = tx.prepare("SELECT id, LENGTH(line) FROM q_influx ORDER BY id")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let (id, len): (i64, i64) = (r.get(0)?, r.get(1)?);
                last_id = Some(id);
                dropped += 1;
                if len as u64 >= excess {
                    break;
                }
                excess -= len as u64;
            }
        }
        if let Some(id) = last_id {
            tx.execute("DELETE FROM q_influx WHERE id <= ?1", [id])?;
        }
        Ok(dropped)
    }

    /// Gives each transition the next `seq`, builds its contract payload and
    /// queues it for the uplink and the alarm log, all in one transaction.
    /// Returns the payloads with their seq.
    pub fn append_events(
        &self,
        id: &Identity,
        transitions: &[AlarmTransition],
        active: &[(String, Instance)],
    ) -> Result<Vec<(u64, serde_json::Value)>, StoreError> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        {
            let mut seq: i64 = tx
                .query_row("SELECT value FROM meta WHERE key = 'seq'", [], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?
                .unwrap_or(0);
            let topic = id.alarm_topic();
            for t in transitions {
                seq += 1;
                let payload = id.alarm_payload(seq as u64, t);
                let text = payload.to_string();
                let event_id = id.event_id(seq as u64);
                let at = t.ts.timestamp_millis();
                tx.execute(
                    "INSERT INTO q_uplink (topic, payload, event_id, at_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![topic, text, event_id, at],
                )
                .map_err(|e| self.err(e))?;
                tx.execute(
                    "INSERT INTO alarm_log (seq, event_id, alarm_id, at_ms, json) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![seq, event_id, t.alarm_id, at, text],
                )
                .map_err(|e| self.err(e))?;
                out.push((seq as u64, payload));
            }
            tx.execute("INSERT INTO meta (key, value) VALUES ('seq', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1", [seq])
                .map_err(|e| self.err(e))?;
            Self::write_active(&tx, active).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    fn write_active(
        tx: &rusqlite::Transaction<'_>,
        active: &[(String, Instance)],
    ) -> rusqlite::Result<()> {
        tx.execute("DELETE FROM alarms_active", [])?;
        let mut st = tx.prepare_cached("INSERT INTO alarms_active (key, json) VALUES (?1, ?2)")?;
        for (k, i) in active {
            st.execute(params![k, serde_json::to_string(i).unwrap_or_default()])?;
        }
        Ok(())
    }

    /// The alarms that were active when the gateway last stopped.
    pub fn load_active(&self) -> Result<Vec<Instance>, StoreError> {
        let c = self.lock();
        let mut st = c
            .prepare("SELECT json FROM alarms_active ORDER BY key")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let text = r.map_err(|e| self.err(e))?;
            match serde_json::from_str::<Instance>(&text) {
                Ok(i) => out.push(i),
                Err(e) => {
                    tracing::error!(error = %e, "an active alarm in the store could not be read; skipped")
                }
            }
        }
        Ok(out)
    }

    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let c = self.lock();
        let v: Option<i64> = c
            .query_row("SELECT value FROM meta WHERE key = 'seq'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Up to `max` uplink rows with id greater than `after`, oldest first.
    pub fn peek_uplink(&self, after: i64, max: usize) -> Result<Vec<UplinkRow>, StoreError> {
        let c = self.lock();
        let mut st = c
            .prepare_cached("SELECT id, topic, payload, event_id FROM q_uplink WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![after, max as i64], |r| {
                Ok(UplinkRow {
                    id: r.get(0)?,
                    topic: r.get(1)?,
                    payload: r.get(2)?,
                    event_id: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The broker acknowledged these rows (PUBACK).
    pub fn ack_uplink(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.delete_ids("q_uplink", ids)?;
        crate::metrics::metrics()
            .delivered
            .with_label_values(&["uplink"])
            .inc_by(ids.len() as u64);
        Ok(())
    }

    /// Up to `max` queued readings, oldest first.
    pub fn peek_influx(&self, max: usize) -> Result<Vec<InfluxRow>, StoreError> {
        let c = self.lock();
        let mut st = c
            .prepare_cached("SELECT id, line FROM q_influx ORDER BY id LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([max as i64], |r| {
                Ok(InfluxRow {
                    id: r.get(0)?,
                    line: r.get(1)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The database answered 2xx for these rows.
    pub fn ack_influx(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.delete_ids("q_influx", ids)?;
        crate::metrics::metrics()
            .delivered
            .with_label_values(&["influx"])
            .inc_by(ids.len() as u64);
        Ok(())
    }

    /// The database refused these rows as bad data (4xx): they are moved to
    /// `rejected` for inspection instead of being retried for ever.
    pub fn reject_influx(
        &self,
        rows: &[InfluxRow],
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.err(e))?;
        {
            let mut ins = tx
                .prepare_cached("INSERT INTO rejected (queue, payload, reason, at_ms) VALUES ('influx', ?1, ?2, ?3)")
                .map_err(|e| self.err(e))?;
            let mut del = tx
                .prepare_cached("DELETE FROM q_influx WHERE id = ?1")
                .map_err(|e| self.err(e))?;
            for r in rows {
                ins.execute(params![r.line, reason, now_ms])
                    .map_err(|e| self.err(e))?;
                del.execute([r.id]).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        crate::metrics::metrics()
            .rejected
            .with_label_values(&["influx"])
            .inc_by(rows.len() as u64);
        Ok(())
    }

    pub fn rejected_count(&self) -> Result<u64, StoreError> {
        let c = self.lock();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM rejected", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    fn delete_ids(&self, table: &str, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.lock();
        let tx = c.transaction().map_err(|e| self.err(e))?;
        {
            let mut st = tx
                .prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))
                .map_err(|e| self.err(e))?;
            for id in ids {
                st.execute([id]).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        let c = self.lock();
        let (table, len) = match queue {
            "influx" => ("q_influx", "LENGTH(line)"),
            _ => ("q_uplink", "LENGTH(payload)"),
        };
        c.query_row(
            &format!("SELECT COUNT(*), COALESCE(SUM({len}), 0), MIN(at_ms) FROM {table}"),
            [],
            |r| {
                Ok(QueueStats {
                    depth: r.get::<_, i64>(0)? as u64,
                    bytes: r.get::<_, i64>(1)? as u64,
                    oldest_ms: r.get(2)?,
                })
            },
        )
        .map_err(|e| self.err(e))
    }

    /// Raw readings of one point since `since`, oldest first.
    pub fn history(
        &self,
        point: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let c = self.lock();
        let mut st = c
            .prepare_cached(
                "SELECT point, at_ms, value, quality FROM history_raw WHERE point = ?1 AND at_ms >= ?2 ORDER BY at_ms LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(
                params![point, since.timestamp_millis(), limit as i64],
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
        let c = self.lock();
        let mut st = c
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

    /// Alarm events since `since`, oldest first (contract JSON).
    pub fn alarm_log(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let c = self.lock();
        let mut st = c
            .prepare_cached("SELECT json FROM alarm_log WHERE at_ms >= ?1 ORDER BY seq LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![since.timestamp_millis(), limit as i64], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(v) = serde_json::from_str(&r.map_err(|e| self.err(e))?) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Deletes history past its retention, and the oldest raw history beyond
    /// its size cap. Returns rows deleted.
    pub fn prune(
        &self,
        now: DateTime<Utc>,
        raw_days: u32,
        stats_days: u32,
    ) -> Result<u64, StoreError> {
        let c = self.lock();
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
        let max_rows = (self.history_cap / 48) as i64;
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
