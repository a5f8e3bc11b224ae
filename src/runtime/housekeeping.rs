//! Periodic chores: the queue gauges and a WAL checkpoint every 2 s, and
//! the retention of the local history every hour (in small steps, see
//! `Store::prune`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::queue::{QueueId, Store};

pub(super) async fn run(store: Arc<Store>, cfg: Arc<Config>, stop: CancellationToken) {
    let m = crate::metrics::metrics();
    let mut gauges = tokio::time::interval(Duration::from_secs(2));
    let mut prune = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = gauges.tick() => {
                let now = Utc::now().timestamp_millis();
                for q in QueueId::ALL {
                    if let Ok(s) = store.stats(q) {
                        m.queue_depth.with_label_values(&[q.label()]).set(s.depth as i64);
                        m.queue_oldest_age.with_label_values(&[q.label()]).set(s.oldest_ms.map(|o| (now - o) / 1000).unwrap_or(0));
                    }
                }
                // Commits do not checkpoint (an alarm commit must not copy
                // the readings' pages), so the WAL is folded back here.
                let s = store.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.checkpoint()).await {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
            _ = prune.tick() => {
                let (s, c) = (store.clone(), cfg.clone());
                let r = tokio::task::spawn_blocking(move || {
                    if let Err(e) = s.prune_rejected(Utc::now().timestamp_millis()) {
                        tracing::error!(error = %e, "pruning rejected rows failed");
                    }
                    s.prune(Utc::now(), c.store.raw_retention_days, c.store.stats_retention_days)
                }).await;
                match r {
                    Ok(Ok(n)) if n > 0 => tracing::info!(rows = n, "history pruned past retention"),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "pruning the history failed"),
                    Err(e) => tracing::error!(error = %e, "pruning the history panicked"),
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}
