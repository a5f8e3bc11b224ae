//! The `rejected` table: rows a sink refused as bad data, set aside for
//! inspection so one bad row cannot block its queue, capped and kept for a
//! retention so that a sink refusing everything cannot fill the disk.

use rusqlite::{Transaction, params};

use super::{Prio, QueueId, Store, StoreError, delete_in};

impl Store {
    /// The sink refused these rows as bad data: they move to `rejected`
    /// for inspection instead of blocking the queue for ever.
    pub fn reject(
        &self,
        q: QueueId,
        ids: &[i64],
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (n, _) = self.write(q.prio(), |tx, d| {
            let set_aside = || -> rusqlite::Result<()> {
                let mut ins = tx.prepare_cached(&format!(
                    "INSERT INTO rejected (queue, payload, reason, at_ms) SELECT ?1, body, ?2, ?3 FROM {} WHERE id = ?4",
                    q.table()
                ))?;
                for id in ids {
                    ins.execute(params![q.label(), reason, now_ms, id])?;
                }
                Ok(())
            };
            set_aside().map_err(|e| self.err(e))?;
            let n = delete_in(tx, d, q, ids).map_err(|e| self.err(e))?;
            let pruned = prune_rejected(tx, now_ms).map_err(|e| self.err(e))?;
            Ok((n, pruned))
        })?;
        let m = crate::metrics::metrics();
        m.rejected.with_label_values(&[q.label()]).inc_by(n.0);
        count_pruned(n.1);
        Ok(())
    }

    /// Drops rejected rows past [`REJECTED_RETENTION_MS`] (hourly, with the
    /// history's retention).
    pub fn prune_rejected(&self, now_ms: i64) -> Result<u64, StoreError> {
        let (p, _) = self.write(Prio::Bulk, |tx, _| {
            prune_rejected(tx, now_ms).map_err(|e| self.err(e))
        })?;
        count_pruned(p);
        Ok(p.0 + p.1)
    }

    /// Rows set aside as rejected, all queues.
    pub fn rejected_count(&self) -> Result<u64, StoreError> {
        let n: i64 =
            self.read(|c| c.query_row("SELECT COUNT(*) FROM rejected", [], |r| r.get(0)))?;
        Ok(n as u64)
    }
}

/// Rejected rows kept at most: the newest are kept, so a sink that refuses
/// everything (a bug) cannot fill the disk with its refusals.
pub const REJECTED_MAX_ROWS: i64 = 10_000;
/// How long a rejected row is kept for inspection.
pub const REJECTED_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// Drops rejected rows beyond the cap (oldest first) and past retention;
/// returns (by cap, by retention). Both by the primary key or a table that
/// the cap keeps small.
fn prune_rejected(tx: &Transaction<'_>, now_ms: i64) -> rusqlite::Result<(u64, u64)> {
    let cap = tx.execute(
        "DELETE FROM rejected WHERE id <= (SELECT MAX(id) FROM rejected) - ?1",
        params![REJECTED_MAX_ROWS],
    )?;
    let old = tx.execute(
        "DELETE FROM rejected WHERE at_ms < ?1",
        params![now_ms - REJECTED_RETENTION_MS],
    )?;
    Ok((cap as u64, old as u64))
}

fn count_pruned((cap, old): (u64, u64)) {
    let m = crate::metrics::metrics();
    m.rejected_pruned.with_label_values(&["cap"]).inc_by(cap);
    m.rejected_pruned
        .with_label_values(&["retention"])
        .inc_by(old);
}
