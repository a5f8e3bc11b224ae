//! Telemetry messages: the gap-free `tseq`.
//!
//! Like the alarm `seq`, `tseq` and the queued message are written in the
//! same transaction: a crash before the commit loses the message *and* its
//! number, so the county never sees a gap the gateway did not mean. The
//! only gaps are the queue's own drops beyond its cap (counted), which is
//! how the contract lets the county see missing telemetry. The store does
//! not know the wire format: the caller encodes each message for its
//! `tseq` inside the transaction.

use rusqlite::OptionalExtension;

use super::{Prio, QueueId, Store, StoreError, push_in};

impl Store {
    /// Gives each message the next `tseq`, encodes it with
    /// `encode(tseq, msg)`, queues it on `Telemetry` with `now_ms` and
    /// persists the `tseq`, in one transaction. Returns the tseqs given and
    /// how many old messages the cap dropped.
    pub fn append_telemetry<M>(
        &self,
        msgs: &[M],
        mut encode: impl FnMut(u64, &M) -> String,
        now_ms: i64,
    ) -> Result<(Vec<u64>, u64), StoreError> {
        let (tseqs, drops) = self.write(Prio::Bulk, |tx, d| {
            let mut run = |d: &mut super::Delta| -> rusqlite::Result<Vec<u64>> {
                let mut tseq = read_tseq(tx)?;
                let mut bodies = Vec::with_capacity(msgs.len());
                let mut tseqs = Vec::with_capacity(msgs.len());
                for m in msgs {
                    tseq += 1;
                    bodies.push(encode(tseq, m));
                    tseqs.push(tseq);
                }
                push_in(tx, d, QueueId::Telemetry, &bodies, now_ms)?;
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('tseq', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
                    [tseq as i64],
                )?;
                Ok(tseqs)
            };
            run(d).map_err(|e| self.err(e))
        })?;
        Ok((tseqs, drops.get(QueueId::Telemetry)))
    }

    /// The last `tseq` given (0 before the first message).
    pub fn last_tseq(&self) -> Result<u64, StoreError> {
        self.read(read_tseq)
    }
}

fn read_tseq(c: &rusqlite::Connection) -> rusqlite::Result<u64> {
    Ok(
        c.query_row("SELECT value FROM meta WHERE key = 'tseq'", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tseq_is_gap_free_across_reopen_and_the_cap_drops_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let limits = super::super::Limits {
            readings_queue_bytes: u64::MAX,
            history_bytes: u64::MAX,
            telemetry_queue_bytes: Some(100),
        };
        {
            let s = Store::open_with(dir.path(), limits.clone()).unwrap();
            let (t, dropped) = s
                .append_telemetry(&["a", "b"], |n, m| format!("{m}{n:039}"), 1)
                .unwrap();
            assert_eq!((t, dropped), (vec![1, 2], 0));
        }
        let s = Store::open_with(dir.path(), limits).unwrap();
        assert_eq!(s.last_tseq().unwrap(), 2);
        // 3 × 40 bytes > 100: the oldest goes.
        let (t, dropped) = s
            .append_telemetry(&["c"], |n, m| format!("{m}{n:039}"), 2)
            .unwrap();
        assert_eq!((t, dropped), (vec![3], 1));
        let rows = s.peek(QueueId::Telemetry, 0, 10).unwrap();
        let heads: Vec<&str> = rows.iter().map(|r| &r.body[..1]).collect();
        assert_eq!(heads, ["b", "c"]);
    }
}
