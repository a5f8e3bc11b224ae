//! The drive loop against a scripted sink: lanes in priority order, a retry
//! rewinds to the oldest row, a rejection sets rows aside, and a stop drains
//! what is queued. The real sinks are tested against real servers in
//! `tests/fault_*.rs`.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;

/// Takes two rows at a time and settles them one by one with the scripted
/// outcomes (then `Delivered`).
struct Scripted {
    log: Arc<Mutex<Vec<(QueueId, i64)>>>,
    in_flight: VecDeque<(QueueId, i64)>,
    script: VecDeque<Outcome>,
    closing: bool,
}

impl Sink for Scripted {
    fn room(&self, _: QueueId) -> usize {
        if self.closing {
            0
        } else {
            2 - self.in_flight.len()
        }
    }
    fn send(&mut self, q: QueueId, rows: Vec<Row>) {
        for r in rows {
            self.log.lock().unwrap().push((q, r.id));
            self.in_flight.push_back((q, r.id));
        }
    }
    async fn progress(&mut self) -> Progress {
        if self.closing {
            return Progress::Closed;
        }
        // Nothing awaited after taking the row: cancel-safe.
        let Some((q, id)) = self.in_flight.pop_front() else {
            return std::future::pending().await;
        };
        let o = self.script.pop_front().unwrap_or(Outcome::Delivered);
        Progress::Settled(q, vec![id], o)
    }
    fn reset(&mut self) {
        self.in_flight.clear();
    }
    fn close(&mut self) {
        self.closing = true;
    }
    async fn finish(self) {}
}

#[tokio::test(start_paused = true)]
async fn lanes_in_priority_order_rejects_set_aside_and_a_failed_drain_stops() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), u64::MAX, u64::MAX).unwrap());
    let body = |n: usize| (0..n).map(|i| format!("r{i}")).collect::<Vec<_>>();
    store.push(QueueId::Readings, &body(2), 0).unwrap();
    store.push(QueueId::Alarms, &body(3), 0).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Scripted {
        log: log.clone(),
        in_flight: VecDeque::new(),
        script: [Outcome::Retry("down".into())].into(),
        closing: false,
    };
    // Stopping from the start: the drain sends the alarm lane first, and
    // a failure while stopping ends it (no backoff), leaving all queued.
    let stop = CancellationToken::new();
    stop.cancel();
    drive(
        store.clone(),
        [QueueId::Alarms, QueueId::Readings],
        sink,
        stop,
        Duration::from_secs(60),
    )
    .await;
    let sent = log.lock().unwrap().clone();
    let a = |id| (QueueId::Alarms, id);
    let r = |id| (QueueId::Readings, id);
    assert_eq!(sent, [a(1), a(2)]);
    assert_eq!(store.depth(QueueId::Alarms), 3);
    assert_eq!(store.depth(QueueId::Readings), 2);

    // Running: every alarm before any reading; the second reading refused.

    let sink = Scripted {
        log: log.clone(),
        in_flight: VecDeque::new(),
        script: [Outcome::Delivered, Outcome::Delivered, Outcome::Delivered]
            .into_iter()
            .chain([Outcome::Delivered, Outcome::Rejected("400".into())])
            .collect(),
        closing: false,
    };
    log.lock().unwrap().clear();
    let stop = CancellationToken::new();
    let task = tokio::spawn(drive(
        store.clone(),
        [QueueId::Alarms, QueueId::Readings],
        sink,
        stop.clone(),
        Duration::from_secs(5),
    ));
    while store.depth(QueueId::Alarms) + store.depth(QueueId::Readings) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    task.await.unwrap();
    let sent = log.lock().unwrap().clone();
    assert_eq!(
        sent,
        [a(1), a(2), a(3), r(1), r(2)],
        "in order, alarms first"
    );
    assert_eq!(store.rejected_count().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_sends_again_from_the_oldest_after_a_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), u64::MAX, u64::MAX).unwrap());
    store
        .push(QueueId::Alarms, &["a".into(), "b".into(), "c".into()], 0)
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Scripted {
        log: log.clone(),
        in_flight: VecDeque::new(),
        script: [Outcome::Delivered, Outcome::Retry("down".into())].into(),
        closing: false,
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(drive(
        store.clone(),
        QueueId::Alarms,
        sink,
        stop.clone(),
        Duration::from_secs(5),
    ));
    let t0 = Instant::now();
    while store.depth(QueueId::Alarms) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    task.await.unwrap();
    let ids: Vec<i64> = log.lock().unwrap().iter().map(|s| s.1).collect();
    // 1 and 2 sent; 1 delivered, so 3 goes out; 2 fails: everything in
    // flight is sent again from the oldest, 2 then 3.
    assert_eq!(ids, [1, 2, 3, 2, 3]);
    assert!(t0.elapsed() >= Duration::from_millis(100), "backed off");
}
