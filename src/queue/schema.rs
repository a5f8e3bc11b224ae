//! The tables, and the move of rows from the queue tables of earlier
//! versions (`q_uplink`, `q_influx`, named by sink) into the queue tables
//! named by [`QueueId`](super::QueueId), so an upgrade loses nothing queued.

use rusqlite::Connection;

use super::QueueId;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms_active (key TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rule_state (key TEXT PRIMARY KEY, json TEXT NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alarm_log (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    alarm_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_log_at ON alarm_log(at_ms);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    display_name TEXT NOT NULL,
    source TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    alarm_id TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at_ms);
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
-- Retention deletes by time in small steps; without it each step scans.
CREATE INDEX IF NOT EXISTS history_5m_bucket ON history_5m(bucket_ms);
"#;

/// Old queue table, its body column, and the new table.
const MOVED: [(&str, &str, &str); 2] = [
    ("q_uplink", "payload", "queue_alarms"),
    ("q_influx", "line", "queue_readings"),
];

pub(super) fn create(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    // Every queue has the same shape, so a new `QueueId` needs no SQL.
    for q in QueueId::ALL {
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                body TEXT NOT NULL,
                at_ms INTEGER NOT NULL
            );",
            q.table()
        ))?;
    }
    let tx = conn.transaction()?;
    for (old, body, new) in MOVED {
        let exists: bool = tx.query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [old],
            |r| r.get(0),
        )?;
        if exists {
            // In id order, behind anything already in the new table (there
            // is none unless an older binary ran after a newer one).
            tx.execute_batch(&format!(
                "INSERT INTO {new} (body, at_ms) SELECT {body}, at_ms FROM {old} ORDER BY id;
                 DROP TABLE {old};"
            ))?;
        }
    }
    tx.commit()
}
