//! The queue's own promises: running counters agree with the tables, the cap
//! drops oldest first, acks are idempotent, rejected rows move aside, the
//! `seq` is gap-free across reopen, and old sink-named tables are migrated.

use super::*;

fn open(dir: &Path, cap: u64) -> Store {
    Store::open(dir, cap, u64::MAX).unwrap()
}

fn bodies(n: usize, len: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:0len$}")).collect()
}

fn scanned(s: &Store, q: QueueId) -> (u64, u64) {
    s.read(|c| {
        c.query_row(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) FROM {}",
                q.table()
            ),
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
    })
    .unwrap()
}

#[test]
fn counters_follow_push_ack_reject_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), u64::MAX);
    s.push(QueueId::Readings, &bodies(10, 8), 1).unwrap();
    s.push(QueueId::Alarms, &["é".to_string()], 2).unwrap();
    let st = s.stats(QueueId::Readings).unwrap();
    assert_eq!((st.depth, st.bytes, st.oldest_ms), (10, 80, Some(1)));
    assert_eq!(
        s.stats(QueueId::Alarms).unwrap().bytes,
        2,
        "bytes, not chars"
    );
    let rows = s.peek(QueueId::Readings, 0, 3).unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    s.ack(QueueId::Readings, &ids).unwrap();
    s.ack(QueueId::Readings, &ids).unwrap(); // a duplicate PUBACK
    let next = s.peek(QueueId::Readings, 0, 1).unwrap();
    s.reject(QueueId::Readings, &[next[0].id], "400", 5)
        .unwrap();
    assert_eq!(s.rejected_count().unwrap(), 1);
    assert_eq!(s.depth(QueueId::Readings), 6);
    assert_eq!(scanned(&s, QueueId::Readings), (6, 48));
    assert_eq!(s.total_depth(), 7);
    drop(s);
    let s = open(dir.path(), u64::MAX);
    assert_eq!(s.stats(QueueId::Readings).unwrap().bytes, 48);
    assert_eq!(s.peek(QueueId::Readings, ids[2], 100).unwrap().len(), 6);
}

#[test]
fn cap_drops_oldest_first_and_only_where_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 100);
    assert_eq!(s.push(QueueId::Readings, &bodies(10, 10), 0).unwrap(), 0);
    assert_eq!(s.push(QueueId::Readings, &bodies(3, 10), 0).unwrap(), 3);
    let st = s.stats(QueueId::Readings).unwrap();
    assert_eq!((st.depth, st.bytes), (10, 100));
    assert_eq!(scanned(&s, QueueId::Readings), (10, 100));
    let head = s.peek(QueueId::Readings, 0, 1).unwrap();
    assert_eq!(head[0].id, 4, "the three oldest went");
    // Alarm events are never dropped, whatever the readings cap.
    s.push(QueueId::Alarms, &bodies(50, 10), 0).unwrap();
    assert_eq!(s.depth(QueueId::Alarms), 50);
}

#[test]
fn seq_is_gap_free_across_reopen_and_encoded_in_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let enc = |seq: u64, name: &&str| LoggedEvent {
        event_id: format!("gw:{seq:012}"),
        alarm_id: name.to_string(),
        at_ms: 1_000,
        body: format!("{{\"seq\":{seq},\"alarm_id\":\"{name}\"}}"),
    };
    let s = open(dir.path(), u64::MAX);
    let active = vec![("k".to_string(), serde_json::json!({"a": 1}))];
    assert_eq!(
        s.append_events(QueueId::Alarms, &["a", "b"], enc, &active)
            .unwrap(),
        vec![1, 2]
    );
    drop(s);
    let s = open(dir.path(), u64::MAX);
    assert_eq!(s.last_seq().unwrap(), 2);
    assert_eq!(
        s.append_events(QueueId::Alarms, &["c"], enc, &active)
            .unwrap(),
        vec![3]
    );
    let queued: Vec<String> = s
        .peek(QueueId::Alarms, 0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(queued[2], r#"{"seq":3,"alarm_id":"c"}"#);
    let since = chrono::DateTime::from_timestamp_millis(0).unwrap();
    let log = s.alarm_log(since, 10).unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[1]["alarm_id"], "b");
    let restored: Vec<serde_json::Value> = s.load_active().unwrap();
    assert_eq!(restored, vec![serde_json::json!({"a": 1})]);
}

#[test]
fn rows_of_the_old_sink_named_tables_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Connection::open(dir.path().join("riskgate.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE q_uplink (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                 payload TEXT NOT NULL, event_id TEXT NOT NULL, at_ms INTEGER NOT NULL);
             CREATE TABLE q_influx (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL,
                 at_ms INTEGER NOT NULL);
             INSERT INTO q_uplink (topic, payload, event_id, at_ms) VALUES ('t', 'e1', 'g:1', 5), ('t', 'e2', 'g:2', 6);
             INSERT INTO q_influx (line, at_ms) VALUES ('l1', 7);",
        )
        .unwrap();
    }
    let s = open(dir.path(), u64::MAX);
    let up: Vec<String> = s
        .peek(QueueId::Alarms, 0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(up, ["e1", "e2"]);
    assert_eq!(s.stats(QueueId::Alarms).unwrap().oldest_ms, Some(5));
    assert_eq!(s.stats(QueueId::Readings).unwrap().depth, 1);
    drop(s);
    let s = open(dir.path(), u64::MAX);
    assert_eq!(s.depth(QueueId::Alarms), 2, "migrated once");
}

#[test]
fn rejected_rows_have_a_cap_and_a_retention() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), u64::MAX);
    let day = 24 * 3600 * 1000;
    let n = REJECTED_MAX_ROWS as usize + 5;
    s.push(QueueId::Readings, &bodies(n, 4), 1).unwrap();
    let ids: Vec<i64> = s
        .peek(QueueId::Readings, 0, n)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    s.reject(QueueId::Readings, &ids[..1], "400", 100 * day)
        .unwrap();
    s.reject(QueueId::Readings, &ids[1..], "400", 120 * day)
        .unwrap();
    assert_eq!(
        s.rejected_count().unwrap(),
        REJECTED_MAX_ROWS as u64,
        "the newest kept, up to the cap"
    );
    assert_eq!(s.depth(QueueId::Readings), 0);
    assert_eq!(s.prune_rejected(140 * day).unwrap(), 0, "within retention");
    assert_eq!(
        s.prune_rejected(151 * day).unwrap(),
        REJECTED_MAX_ROWS as u64
    );
    assert_eq!(s.rejected_count().unwrap(), 0);
}

#[test]
fn prune_works_in_steps_and_checkpoint_runs_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    // Room for 3,000 rows of raw history (48 bytes a row).
    let s = Store::open(dir.path(), u64::MAX, 48 * 3_000).unwrap();
    let day = 86_400_000i64;
    let now = chrono::DateTime::from_timestamp_millis(30 * day).unwrap();
    let rows = |from: i64, n: i64| -> Vec<HistoryRow> {
        (0..n)
            .map(|i| HistoryRow {
                point: "p".into(),
                at_ms: from + i,
                value: Some(1.0),
                quality: 0,
            })
            .collect()
    };
    // 5,000 rows past a 7-day retention, 4,000 within it.
    s.append_readings(&rows(day, 5_000), &[], 0).unwrap();
    s.append_readings(&rows(29 * day, 4_000), &[], 0).unwrap();
    s.checkpoint().unwrap();
    let n = s.prune(now, 7, 366).unwrap();
    assert_eq!(n, 5_000 + 1_000, "retention (3 steps), then the size cap");
    let since = chrono::DateTime::from_timestamp_millis(0).unwrap();
    let left = s.history("p", since, 10_000).unwrap();
    assert_eq!(left.len(), 3_000);
    assert_eq!(left[0].at_ms, 29 * day + 1_000, "the oldest went first");
    s.checkpoint().unwrap();
}

#[test]
fn an_amended_log_entry_changes_in_the_log_only() {
    let dir = tempfile::tempdir().unwrap();
    let enc = |seq: u64, name: &&str| LoggedEvent {
        event_id: format!("gw:{seq:012}"),
        alarm_id: name.to_string(),
        at_ms: 1_000,
        body: format!("{{\"seq\":{seq},\"actions\":[{{\"result\":\"pending\"}}]}}"),
    };
    let s = open(dir.path(), u64::MAX);
    let none: &[(String, serde_json::Value)] = &[];
    s.append_events(QueueId::Alarms, &["a"], enc, none).unwrap();
    let outcome = serde_json::json!([{"result": "confirmed"}]);
    assert!(s.amend_logged(1, "actions", outcome.clone()).unwrap());
    assert!(!s.amend_logged(9, "actions", outcome.clone()).unwrap());
    let since = chrono::DateTime::from_timestamp_millis(0).unwrap();
    let log = s.alarm_log(since, 10).unwrap();
    assert_eq!(log[0]["actions"], outcome);
    assert_eq!(log[0]["seq"], 1);
    // What is queued for the county keeps what was committed.
    let queued = s.peek(QueueId::Alarms, 0, 10).unwrap();
    assert_eq!(
        queued[0].body,
        r#"{"seq":1,"actions":[{"result":"pending"}]}"#
    );
}

/// A large readings batch gives way to an alarm commit between segments:
/// the alarm is stored while the batch is still being written, and the
/// batch's first part is already committed then (so the alarm waited for
/// one segment, not for the whole batch). Structural, not timed: the
/// batch is large enough that it cannot end before the alarm is served.
#[test]
fn an_alarm_commit_cuts_into_a_large_readings_batch() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path(), u64::MAX));
    let n = 50_000;
    let history: Vec<HistoryRow> = (0..n)
        .map(|i| HistoryRow {
            point: format!("p{}", i % 100),
            at_ms: i as i64,
            value: Some(1.0),
            quality: 0,
        })
        .collect();
    let queued = vec![(QueueId::Readings, bodies(n, 40))];
    let finished = Arc::new(AtomicBool::new(false));
    let batch = {
        let (s, finished) = (s.clone(), finished.clone());
        std::thread::spawn(move || {
            s.append_readings(&history, &queued, 0).unwrap();
            finished.store(true, Ordering::SeqCst);
        })
    };
    // Wait until the batch is inside its transaction.
    while !s.writer.busy() && !finished.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let enc = |seq: u64, _: &&str| LoggedEvent {
        event_id: format!("gw:{seq:012}"),
        alarm_id: "a".into(),
        at_ms: 1,
        body: format!("{{\"seq\":{seq}}}"),
    };
    let none: &[(String, serde_json::Value)] = &[];
    s.append_events(QueueId::Alarms, &["a"], enc, none).unwrap();
    let batch_done_before_alarm = finished.load(Ordering::SeqCst);
    let (committed, _) = scanned(&s, QueueId::Readings);
    batch.join().unwrap();
    assert!(
        !batch_done_before_alarm,
        "the alarm waited for the whole batch of {n} readings"
    );
    assert!(
        committed > 0 && committed < n as u64,
        "the batch's first part is committed when the alarm is: {committed} of {n}"
    );
    // Segments are whole and the batch ends complete: each reading once in
    // the queue and in the history.
    assert_eq!(scanned(&s, QueueId::Readings).0, n as u64);
    let rows: i64 = s
        .read(|c| c.query_row("SELECT COUNT(*) FROM history_raw", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(rows, n as i64);
    assert_eq!(s.stats(QueueId::Readings).unwrap().depth, n as u64);
}
