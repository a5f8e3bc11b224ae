//! Row-level statements shared by every queue: insert and delete inside a
//! caller's transaction, noting the change so the running counters follow
//! only after the commit.

use rusqlite::{Transaction, params};

use super::{Delta, QueueId, Row, Store, StoreError};

impl Store {
    /// Up to `max` rows of `q` with `after < id <= upto`, oldest first
    /// (a lane's backlog ends at `upto`, see `sink::drive`).
    pub fn peek_range(
        &self,
        q: QueueId,
        after: i64,
        upto: i64,
        max: usize,
    ) -> Result<Vec<Row>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT id, body FROM {} WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
                q.table()
            ))?;
            let max = max.min(i64::MAX as usize) as i64;
            let rows = st.query_map(params![after, upto, max], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    body: r.get(1)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The id of the newest row of `q`, 0 when it is empty. Ids only grow
    /// (`AUTOINCREMENT`), so a row queued later has a greater one.
    pub fn last_id(&self, q: QueueId) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT COALESCE(MAX(id), 0) FROM {}", q.table()),
                [],
                |r| r.get(0),
            )
        })
    }
}

/// Inserts `bodies` into `q` inside `tx`, noting the change in `d`.
pub(crate) fn push_in(
    tx: &Transaction<'_>,
    d: &mut Delta,
    q: QueueId,
    bodies: &[String],
    now_ms: i64,
) -> rusqlite::Result<()> {
    if bodies.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(&format!(
        "INSERT INTO {} (body, at_ms) VALUES (?1, ?2)",
        q.table()
    ))?;
    let c = &mut d.changes[q.index()];
    for b in bodies {
        st.execute(params![b, now_ms])?;
        c.0 += 1;
        c.1 += b.len() as i64;
    }
    d.pushed[q.index()] = true;
    Ok(())
}

/// Deletes rows of `q` by id inside `tx`; returns how many were queued.
pub(crate) fn delete_in(
    tx: &Transaction<'_>,
    d: &mut Delta,
    q: QueueId,
    ids: &[i64],
) -> rusqlite::Result<u64> {
    let mut st = tx.prepare_cached(&format!(
        "DELETE FROM {} WHERE id = ?1 RETURNING LENGTH(CAST(body AS BLOB))",
        q.table()
    ))?;
    let c = &mut d.changes[q.index()];
    let mut n = 0;
    for id in ids {
        let mut rows = st.query([id])?;
        if let Some(r) = rows.next()? {
            let len: i64 = r.get(0)?;
            c.0 -= 1;
            c.1 -= len;
            n += 1;
        }
    }
    Ok(n)
}
