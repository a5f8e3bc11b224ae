//! The telemetry feed of the engine task: the builder's messages numbered
//! and queued by the store, and the on-line rate gauges.
//!
//! The engine task only builds the messages; a writer task of its own
//! queues them, in order (so `tseq` follows the order they were made in).
//! Queueing is a write transaction with its fsync, and the engine task must
//! not wait for it: a reading that crosses an alarm threshold while a
//! snapshot is being written would wait too.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::Shared;
use crate::model::Reading;
use crate::rules::engine::Instance;
use crate::telemetry::{Builder, Message, encode};

pub(super) struct TelemetryFeed {
    builder: Builder,
    /// Messages for the writer task, with the time they were made at.
    to_store: mpsc::UnboundedSender<(Vec<Message>, DateTime<Utc>)>,
    /// Old messages each queueing dropped for the cap, as they finish.
    drops: mpsc::UnboundedReceiver<u64>,
    /// The engine's `calibrations_version` the builder was last told.
    calibrations_seen: Option<u64>,
}

impl TelemetryFeed {
    /// The feed of `[telemetry]`, or None without one. Starts its writer,
    /// which ends once the feed is dropped and what it was given is queued.
    pub fn new(shared: Arc<Shared>, now: DateTime<Utc>) -> Option<TelemetryFeed> {
        let builder = Builder::from_config(&shared.cfg, now)?;
        tracing::info!(points = builder.len(), "telemetry for the county on");
        let (to_store, rx) = mpsc::unbounded_channel();
        let (drops_tx, drops) = mpsc::unbounded_channel();
        tokio::spawn(write(shared, rx, drops_tx));
        Some(TelemetryFeed {
            builder,
            to_store,
            drops,
            calibrations_seen: None,
        })
    }

    pub fn readings(&mut self, rs: &[Reading]) {
        self.builder.on_readings(rs);
    }

    /// The points inside a calibration window, when the windows changed
    /// (`version` is the engine's `calibrations_version`): asked of the
    /// engine only then, as this runs every tick.
    pub fn calibrations(
        &mut self,
        version: u64,
        open: impl FnOnce() -> Vec<crate::rules::CalibrationView>,
    ) {
        if self.calibrations_seen == Some(version) {
            return;
        }
        self.calibrations_seen = Some(version);
        let open = open();
        self.builder
            .set_calibrating(open.iter().map(|w| w.point.as_str()));
    }

    /// Gives the builder the active alarm levels and hands the messages due
    /// at `now` to the writer. Returns how many old messages the cap
    /// dropped in the queueings finished since the last call, if any
    /// finished (0: they dropped none).
    pub fn tick<'a>(
        &mut self,
        active: impl Iterator<Item = &'a Instance>,
        now: DateTime<Utc>,
    ) -> Option<u64> {
        self.builder
            .set_alarms(active.filter_map(|a| a.point_id.as_deref().map(|p| (p, a.level))));
        let msgs: Vec<Message> = self.builder.tick(now);
        if !msgs.is_empty() {
            let m = crate::metrics::metrics();
            for msg in &msgs {
                m.telemetry_messages
                    .with_label_values(&[msg.kind.as_str()])
                    .inc();
            }
            let _ = self.to_store.send((msgs, now));
        }
        let mut finished = None;
        while let Ok(d) = self.drops.try_recv() {
            *finished.get_or_insert(0) += d;
        }
        finished
    }
}

/// Queues each batch of messages, each with the next `tseq`, in the order
/// they come; reports the drops.
async fn write(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<(Vec<Message>, DateTime<Utc>)>,
    drops: mpsc::UnboundedSender<u64>,
) {
    while let Some((msgs, now)) = rx.recv().await {
        let (store, id) = (shared.store.clone(), shared.id.clone());
        let r = tokio::task::spawn_blocking(move || {
            store.append_telemetry(
                &msgs,
                |tseq, m| encode(&id, tseq, m),
                now.timestamp_millis(),
            )
        })
        .await;
        match r {
            Ok(Ok((_, dropped))) => {
                let _ = drops.send(dropped);
            }
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
