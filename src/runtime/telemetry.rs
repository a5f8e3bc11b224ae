//! The telemetry feed of the engine task: the builder's messages numbered
//! and queued by the store, and the on-line rate gauges.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::api::Shared;
use crate::model::Reading;
use crate::rules::engine::Instance;
use crate::telemetry::{Builder, Message, encode};

pub(super) struct TelemetryFeed {
    builder: Builder,
    shared: Arc<Shared>,
}

impl TelemetryFeed {
    /// The feed of `[telemetry]`, or None without one.
    pub fn new(shared: Arc<Shared>, now: DateTime<Utc>) -> Option<TelemetryFeed> {
        let builder = Builder::from_config(&shared.cfg, now)?;
        tracing::info!(points = builder.len(), "telemetry for the county on");
        Some(TelemetryFeed { builder, shared })
    }

    pub fn readings(&mut self, rs: &[Reading]) {
        self.builder.on_readings(rs);
    }

    /// Gives the builder the active alarm levels, takes the messages due at
    /// `now` and queues them (each with the next `tseq`).
    pub async fn tick<'a>(
        &mut self,
        active: impl Iterator<Item = &'a Instance>,
        now: DateTime<Utc>,
    ) {
        self.builder
            .set_alarms(active.filter_map(|a| a.point_id.as_deref().map(|p| (p, a.level))));
        let msgs: Vec<Message> = self.builder.tick(now);
        if msgs.is_empty() {
            return;
        }
        let m = crate::metrics::metrics();
        for msg in &msgs {
            m.telemetry_messages
                .with_label_values(&[msg.kind.as_str()])
                .inc();
        }
        let (store, id) = (self.shared.store.clone(), self.shared.id.clone());
        let r = tokio::task::spawn_blocking(move || {
            store.append_telemetry(
                &msgs,
                |tseq, m| encode(&id, tseq, m),
                now.timestamp_millis(),
            )
        })
        .await;
        match r {
            Ok(Ok(_)) => {}
            // The messages are lost but their `tseq`s were never given:
            // the county sees no gap for them, only a late snapshot.
            Ok(Err(e)) => tracing::error!(error = %e, "queueing telemetry failed"),
            Err(e) => tracing::error!(error = %e, "queueing telemetry panicked"),
        }
    }
}

/// Sets the on-line rate gauges every few seconds.
pub(super) async fn online_gauges(shared: Arc<Shared>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    let g = &crate::metrics::metrics().device_online_ratio;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        let rates = shared
            .online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rates(Utc::now());
        for r in rates {
            if let Some(h) = r.hour {
                g.with_label_values(&[&r.device, "1h"]).set(h);
            }
            if let Some(d) = r.day {
                g.with_label_values(&[&r.device, "24h"]).set(d);
            }
        }
    }
}
