//! Alarm events: the gap-free `seq`, the alarm log and the active alarms.
//!
//! `seq` and the event are written in the same transaction, so `seq` has no
//! gaps and is never reused, across restarts and crashes. The store does not
//! know the event's wire format: the caller encodes each event once its
//! `seq` is known, inside that transaction, and the same bytes are queued
//! and logged.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Prio, QueueId, Store, StoreError, push_in};

/// One event as encoded by the caller for its `seq`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEvent {
    /// Unique for ever (built from the persisted `seq`).
    pub event_id: String,
    pub alarm_id: String,
    /// The event's own time, for the log's retention and queries.
    pub at_ms: i64,
    /// What is queued for the sink and kept in the log (JSON text).
    pub body: String,
}

impl Store {
    /// Gives each event the next `seq`, encodes it with `encode(seq, event)`,
    /// queues the body on `queue`, logs it, persists the `seq` and replaces
    /// the stored active alarms with `active`, all in one transaction.
    /// Returns the seqs given.
    pub fn append_events<E, A: Serialize>(
        &self,
        queue: QueueId,
        events: &[E],
        mut encode: impl FnMut(u64, &E) -> LoggedEvent,
        active: &[(String, A)],
    ) -> Result<Vec<u64>, StoreError> {
        // Encoded before the transaction: the active set is plain data.
        let active: Vec<(&str, String)> = active
            .iter()
            .filter_map(|(k, a)| match serde_json::to_string(a) {
                Ok(t) => Some((k.as_str(), t)),
                Err(e) => {
                    tracing::error!(key = %k, error = %e, "an active alarm could not be encoded; not stored");
                    None
                }
            })
            .collect();
        let (seqs, _) = self.write(Prio::Alarm, |tx, d| {
            let mut run = |d: &mut super::Delta| -> rusqlite::Result<Vec<u64>> {
                let mut seq = read_seq(tx)?;
                let mut seqs = Vec::with_capacity(events.len());
                let mut bodies = Vec::with_capacity(events.len());
                let mut log = tx.prepare_cached(
                    "INSERT INTO alarm_log (seq, event_id, alarm_id, at_ms, json) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in events {
                    seq += 1;
                    let ev = encode(seq, e);
                    log.execute(params![seq as i64, ev.event_id, ev.alarm_id, ev.at_ms, ev.body])?;
                    // The queue row's time is the event's, as before.
                    push_in(tx, d, queue, std::slice::from_ref(&ev.body), ev.at_ms)?;
                    bodies.push(ev.body);
                    seqs.push(seq);
                }
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('seq', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
                    [seq as i64],
                )?;
                write_active(tx, &active)?;
                Ok(seqs)
            };
            run(d).map_err(|e| self.err(e))
        })?;
        if let Some(last) = seqs.last() {
            super::epoch::note(&self.path, self.epoch, *last);
        }
        Ok(seqs)
    }

    /// The alarms that were active when the gateway last stopped, in the
    /// caller's own persisted form. Unreadable rows are logged and skipped.
    pub fn load_active<A: DeserializeOwned>(&self) -> Result<Vec<A>, StoreError> {
        let texts: Vec<String> = self.read(|c| {
            let mut st = c.prepare("SELECT json FROM alarms_active ORDER BY key")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })?;
        let mut out = Vec::new();
        for text in texts {
            match serde_json::from_str::<A>(&text) {
                Ok(i) => out.push(i),
                Err(e) => {
                    tracing::error!(error = %e, "an active alarm in the store could not be read; skipped")
                }
            }
        }
        Ok(out)
    }

    /// Sets the top-level field `key` of the logged event `seq` to
    /// `value`, in the log only (the queued copy, already on its way, is
    /// not touched). Used to record an action's outcome, known after the
    /// event was committed. Returns whether the event was still logged.
    pub fn amend_logged(
        &self,
        seq: u64,
        key: &str,
        value: serde_json::Value,
    ) -> Result<bool, StoreError> {
        // Bulk: a note for the operator page must not hold an alarm back.
        let (found, _) = self.write(Prio::Bulk, |tx, _| {
            let run = || -> rusqlite::Result<bool> {
                let text: Option<String> = tx
                    .query_row(
                        "SELECT json FROM alarm_log WHERE seq = ?1",
                        [seq as i64],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(mut v) =
                    text.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                else {
                    return Ok(false);
                };
                let Some(o) = v.as_object_mut() else {
                    return Ok(false);
                };
                o.insert(key.to_string(), value);
                tx.execute(
                    "UPDATE alarm_log SET json = ?2 WHERE seq = ?1",
                    params![seq as i64, v.to_string()],
                )?;
                Ok(true)
            };
            run().map_err(|e| self.err(e))
        })?;
        Ok(found)
    }

    /// The last `seq` given (0 before the first event).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        self.read(read_seq)
    }

    /// Logged events since `since`, oldest first, as the JSON they were
    /// queued as.
    pub fn alarm_log(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let texts: Vec<String> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT json FROM alarm_log WHERE at_ms >= ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = st.query_map(
                params![
                    since.timestamp_millis(),
                    limit.min(i64::MAX as usize) as i64
                ],
                |r| r.get::<_, String>(0),
            )?;
            rows.collect()
        })?;
        Ok(texts
            .iter()
            .filter_map(|t| serde_json::from_str(t).ok())
            .collect())
    }
}

fn read_seq(c: &rusqlite::Connection) -> rusqlite::Result<u64> {
    let v: Option<i64> = c
        .query_row("SELECT value FROM meta WHERE key = 'seq'", [], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(0) as u64)
}

fn write_active(tx: &Transaction<'_>, active: &[(&str, String)]) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM alarms_active", [])?;
    let mut st = tx.prepare_cached("INSERT INTO alarms_active (key, json) VALUES (?1, ?2)")?;
    for (k, json) in active {
        st.execute(params![k, json])?;
    }
    Ok(())
}
