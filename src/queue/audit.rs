//! The audit log (`audit`): every acknowledgement tried, local or remote,
//! whether it was applied or refused, with who, from where and when.
//!
//! Invariants: a row is written once and never changed; rows leave only
//! oldest first beyond [`AUDIT_MAX_ROWS`] (years of a site's
//! acknowledgements; the cap only bounds a flood). A local
//! acknowledgement's row is committed before the API answers, so an
//! operator who saw "acknowledged" is in the log.

use rusqlite::params;
use serde::Serialize;

use super::{Prio, Store, StoreError};

/// Rows kept at most (the newest).
pub const AUDIT_MAX_ROWS: i64 = 200_000;

/// Where an acknowledgement came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSource {
    /// The operator page, the API or `riskgate ack`, by a logged-in user.
    Local,
    /// The county platform, on `{prefix}/{site}/ack`.
    Remote,
}

impl AuditSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditSource::Local => "local",
            AuditSource::Remote => "remote",
        }
    }
}

/// One row of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRow {
    /// Row id, in commit order (0 before it is written).
    pub id: i64,
    pub at_ms: i64,
    /// The user's name (local) or the county's `by` (remote).
    pub actor: String,
    /// The user's display name (local; empty for remote).
    pub display_name: String,
    pub source: AuditSource,
    /// The client's IP address (local) or the broker's `host:port` (remote).
    pub address: String,
    pub action: String,
    pub alarm_id: String,
    /// `ok`, or `refused: WHY`.
    pub result: String,
}

impl Store {
    /// Commits one audit row.
    pub fn audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        // Alarm priority: the operator waits for it, and it is one small row.
        self.write(Prio::Alarm, |tx, _| {
            let go = || -> rusqlite::Result<()> {
                tx.execute(
                    "INSERT INTO audit (at_ms, actor, display_name, source, address, action, alarm_id, result)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        row.at_ms,
                        row.actor,
                        row.display_name,
                        row.source.as_str(),
                        row.address,
                        row.action,
                        row.alarm_id,
                        row.result
                    ],
                )?;
                tx.execute(
                    "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?1",
                    [AUDIT_MAX_ROWS],
                )?;
                Ok(())
            };
            go().map_err(|e| self.err(e))
        })?;
        Ok(())
    }

    /// Rows at or after `from_ms`, oldest first, at most `limit`.
    pub fn audit_log(&self, from_ms: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, at_ms, actor, display_name, source, address, action, alarm_id, result
                 FROM audit WHERE at_ms >= ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![from_ms, limit as i64], |r| {
                let source: String = r.get(4)?;
                Ok(AuditRow {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    actor: r.get(2)?,
                    display_name: r.get(3)?,
                    source: if source == "remote" {
                        AuditSource::Remote
                    } else {
                        AuditSource::Local
                    },
                    address: r.get(5)?,
                    action: r.get(6)?,
                    alarm_id: r.get(7)?,
                    result: r.get(8)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), u64::MAX, u64::MAX).unwrap();
        let mut row = AuditRow {
            id: 0,
            at_ms: 1_000,
            actor: "张三".into(),
            display_name: "张三".into(),
            source: AuditSource::Local,
            address: "192.0.2.1".into(),
            action: "ack".into(),
            alarm_id: "a-1".into(),
            result: "ok".into(),
        };
        s.audit(&row).unwrap();
        row.source = AuditSource::Remote;
        row.at_ms = 2_000;
        row.result = "refused: latching".into();
        s.audit(&row).unwrap();
        drop(s);
        let s = Store::open(dir.path(), u64::MAX, u64::MAX).unwrap();
        let got = s.audit_log(0, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].id, got[0].source), (1, AuditSource::Local));
        assert_eq!(got[1].result, "refused: latching");
        assert_eq!(s.audit_log(1_500, 10).unwrap().len(), 1);
    }
}
