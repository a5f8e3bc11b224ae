//! What the gateway committed, read back from its store.

use std::time::Duration;

use super::wait::wait_for_async;

/// Every raw reading of the local history (all points), per point: the
/// readings the gateway accepted (committed).
pub fn accepted_readings(
    store: &riskgate::queue::Store,
    points: &[String],
) -> std::collections::BTreeMap<String, Vec<i64>> {
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    points
        .iter()
        .map(|p| {
            let rows = store.history(p, since, usize::MAX >> 1).unwrap();
            (p.clone(), rows.iter().map(|r| r.at_ms).collect())
        })
        .collect()
}

/// Waits until the gateway's alarm log holds an event of `rule` in `state`
/// newer than `after_seq`; returns its seq.
pub async fn committed(
    store: &riskgate::queue::Store,
    rule: &str,
    state: &str,
    after_seq: u64,
) -> u64 {
    committed_within(store, rule, state, after_seq, Duration::from_secs(10)).await
}

/// As [`committed`], waiting up to `limit` (for an event that follows a
/// reconnect, whose backoff may be 30 s).
pub async fn committed_within(
    store: &riskgate::queue::Store,
    rule: &str,
    state: &str,
    after_seq: u64,
    limit: Duration,
) -> u64 {
    wait_for_async(&format!("{rule} {state} committed"), limit, || async {
        let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
        store
            .alarm_log(since, 100_000)
            .unwrap()
            .into_iter()
            .find(|e| {
                e["rule_id"] == rule
                    && e["state"] == state
                    && e["seq"].as_u64().unwrap() > after_seq
            })
            .map(|e| e["seq"].as_u64().unwrap())
    })
    .await
}
