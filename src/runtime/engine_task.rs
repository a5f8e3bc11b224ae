//! The engine task: the one owner of the rule engine. It feeds readings,
//! health, acknowledgements and ticks to the engine, batches readings for
//! one commit every `store.commit_interval`, hands alarm events to the
//! outbox (starting their actions first), and publishes the views the API
//! reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::telemetry::TelemetryFeed;
use super::{actions, outbox};
use crate::api::{AckCmd, PointView, Shared};
use crate::model::{AlarmState, Input, Quality, Reading};
use crate::queue::{HistoryRow, QueueId};
use crate::rules::engine::{ActionRequest, Engine, Instance, Output};
use crate::rules::health::GatewayFault;
use crate::sink::uplink::contract::RemoteAck;
use crate::source::{WriteRequest, Writers};

/// A queued output fed with readings: its queue and its sink's encoding,
/// with the bodies encoded since the last commit.
pub(crate) struct Feed {
    queue: QueueId,
    encode: Box<dyn Fn(&Reading) -> String + Send>,
    pending: Vec<String>,
}

impl Feed {
    pub fn new(queue: QueueId, encode: impl Fn(&Reading) -> String + Send + 'static) -> Feed {
        Feed {
            queue,
            encode: Box::new(encode),
            pending: Vec::new(),
        }
    }
}

pub(super) struct EngineTask {
    engine: Engine,
    shared: Arc<Shared>,
    writers: Writers,
    feeds: Vec<Feed>,
    history: Vec<HistoryRow>,
    batch_started: Option<tokio::time::Instant>,
    outbox: mpsc::UnboundedSender<outbox::Item>,
    outbox_rx: Option<mpsc::UnboundedReceiver<outbox::Item>>,
    /// Results of actions, fed back as the point's `{point}.action` fault
    /// alarm: `Some(why)` raises it, `None` (a confirmed write) clears it.
    failed_rx: mpsc::UnboundedReceiver<(String, Option<String>)>,
    failed_tx: mpsc::UnboundedSender<(String, Option<String>)>,
    /// With `[telemetry]`: sees every reading and the active alarms.
    telemetry: Option<TelemetryFeed>,
    /// Faults the sinks report (a token refused, a bucket missing), raised
    /// and cleared as gateway fault alarms.
    gateway_faults: mpsc::UnboundedReceiver<(GatewayFault, Option<String>)>,
}

impl EngineTask {
    pub fn new(engine: Engine, shared: Arc<Shared>, writers: Writers, feeds: Vec<Feed>) -> Self {
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let (failed_tx, failed_rx) = mpsc::unbounded_channel();
        EngineTask {
            engine,
            shared,
            writers,
            feeds,
            history: Vec::new(),
            batch_started: None,
            outbox,
            outbox_rx: Some(outbox_rx),
            failed_rx,
            failed_tx,
            telemetry: None,
            gateway_faults: mpsc::unbounded_channel().1,
        }
    }

    pub fn with_telemetry(mut self, t: Option<TelemetryFeed>) -> Self {
        self.telemetry = t;
        self
    }

    /// Where the sinks' faults come from (see [`crate::sink::influx::FaultTx`]).
    pub fn gateway_faults(&mut self, rx: mpsc::UnboundedReceiver<(GatewayFault, Option<String>)>) {
        self.gateway_faults = rx;
    }

    pub async fn run(
        &mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut acks: mpsc::Receiver<AckCmd>,
        mut remote: mpsc::UnboundedReceiver<RemoteAck>,
        stop: CancellationToken,
    ) {
        // The outbox keeps events in engine order while actions complete.
        let outbox_rx = self.outbox_rx.take().expect("outbox receiver");
        let outbox = tokio::spawn(outbox::run(outbox_rx, self.shared.clone()));
        self.publish_views();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let commit_every = self.shared.cfg.store.commit_interval.0;
        // The loop ends when shutdown was asked for and every source has
        // dropped its sender (so no reading is left in the channel).
        let mut inputs_open = true;
        loop {
            if !inputs_open && stop.is_cancelled() {
                break;
            }
            tokio::select! {
                biased;
                Some(cmd) = acks.recv() => {
                    let r = self.engine.acknowledge(&cmd.alarm_id, &cmd.by, Utc::now());
                    let reply = r.map(|out| self.emit(out));
                    if let Some(tx) = cmd.reply { let _ = tx.send(reply); }
                }
                Some(ack) = remote.recv() => {
                    match self.engine.acknowledge(&ack.alarm_id, &ack.by, Utc::now()) {
                        Ok(out) => self.emit(out),
                        Err(e) => tracing::warn!(alarm_id = %ack.alarm_id, error = %e, "remote acknowledgement not applied"),
                    }
                }
                Some((point, why)) = self.failed_rx.recv() => {
                    let out = self.engine.action_outcome(&point, why.as_deref(), Utc::now());
                    self.emit(out);
                }
                Some((fault, why)) = self.gateway_faults.recv() => {
                    let out = self.engine.gateway_fault(fault, why.as_deref(), Utc::now());
                    self.emit(out);
                }
                input = inputs.recv(), if inputs_open => match input {
                    Some(input) => {
                        let now = Utc::now();
                        if let Input::Readings(rs) = &input {
                            self.batch(rs);
                        }
                        if let Input::DeviceHealth { device, ok, at, .. } = &input {
                            self.shared.devices_online.write().unwrap_or_else(|p| p.into_inner()).insert(device.to_string(), *ok);
                            self.shared.online.lock().unwrap_or_else(|p| p.into_inner()).record(device, *ok, *at);
                        }
                        let out = self.engine.handle(&input, now);
                        self.emit(out);
                        if self.batch_due(commit_every) { self.commit().await; }
                    }
                    None => inputs_open = false,
                },
                _ = tick.tick() => {
                    let out = self.engine.tick(Utc::now());
                    self.emit(out);
                    if let Some(t) = &mut self.telemetry {
                        t.tick(self.engine.active(), Utc::now()).await;
                    }
                    if self.batch_due(commit_every) { self.commit().await; }
                    self.publish_views();
                }
                _ = stop.cancelled(), if !stop.is_cancelled() => {}
                _ = std::future::ready(()), if !inputs_open && stop.is_cancelled() => {}
            }
        }
        self.commit().await;
        self.publish_views();
        drop(std::mem::replace(
            &mut self.outbox,
            mpsc::unbounded_channel().0,
        ));
        let _ = outbox.await;
    }

    fn batch(&mut self, rs: &[Reading]) {
        // `riskgate_readings_total` is counted by the sources as they hand
        // readings over; counting here too doubled it.
        if let Some(t) = &mut self.telemetry {
            t.readings(rs);
        }
        for r in rs {
            for f in &mut self.feeds {
                f.pending.push((f.encode)(r));
            }
            self.history.push(HistoryRow {
                point: r.point.to_string(),
                at_ms: r.at.timestamp_millis(),
                value: if r.quality.is_good() {
                    r.value.as_ref().and_then(|v| v.as_f64())
                } else {
                    None
                },
                quality: r.quality.code(),
            });
        }
        if self.batch_started.is_none() && !self.history.is_empty() {
            self.batch_started = Some(tokio::time::Instant::now());
        }
    }

    fn batch_due(&self, every: Duration) -> bool {
        self.history.len() >= 5000 || self.batch_started.is_some_and(|t| t.elapsed() >= every)
    }

    /// Commits the pending readings, history and queues, in one transaction.
    async fn commit(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let queued: Vec<(QueueId, Vec<String>)> = self
            .feeds
            .iter_mut()
            .map(|f| (f.queue, std::mem::take(&mut f.pending)))
            .collect();
        let history = std::mem::take(&mut self.history);
        self.batch_started = None;
        let store = self.shared.store.clone();
        let now = Utc::now().timestamp_millis();
        let r = tokio::task::spawn_blocking(move || store.append_readings(&history, &queued, now))
            .await;
        match r {
            Ok(Ok(drops)) => {
                // Raised while readings are being dropped, cleared by the
                // first commit that drops none (the queue has room again).
                let dropped = drops.get(QueueId::Readings);
                let out = self.engine.readings_dropped(dropped, Utc::now());
                self.emit(out);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "committing readings failed"),
            Err(e) => tracing::error!(error = %e, "committing readings panicked"),
        }
    }

    /// Sends the engine's output to the outbox, starting actions first.
    fn emit(&mut self, out: Output) {
        if out.transitions.is_empty() {
            return;
        }
        // The engine is pure; its raised and cleared transitions are counted here.
        for t in &out.transitions {
            let state = match t.state {
                AlarmState::Raised => "raised",
                AlarmState::Cleared => "cleared",
                AlarmState::Escalated | AlarmState::Acknowledged => continue,
            };
            crate::metrics::metrics()
                .alarm_events
                .with_label_values(&[t.kind.as_str(), state])
                .inc();
        }
        let active = self.engine.active_keyed();
        let mut actions: HashMap<usize, Vec<ActionRequest>> = HashMap::new();
        for (i, a) in out.actions {
            actions.entry(i).or_default().push(a);
        }
        for (i, t) in out.transitions.into_iter().enumerate() {
            tracing::info!(alarm_id = %t.alarm_id, state = ?t.state, level = t.level, message = %t.message, "alarm");
            let handles = actions
                .remove(&i)
                .unwrap_or_default()
                .into_iter()
                .map(|a| actions::spawn(self.writer_for(&a.point), a, self.failed_tx.clone()))
                .collect();
            let _ = self.outbox.send((
                outbox::Pending {
                    transition: t,
                    actions: handles,
                },
                active.clone(),
            ));
        }
        self.publish_views();
    }

    fn writer_for(&self, point: &str) -> Option<mpsc::Sender<WriteRequest>> {
        let dev = self.engine.device_of(point)?;
        self.writers.get(dev).cloned()
    }

    fn publish_views(&self) {
        let cfg = &self.shared.cfg;
        let views: Vec<PointView> = self
            .engine
            .point_values()
            .into_iter()
            .map(|s| {
                let (d, p) = cfg
                    .point(&s.id)
                    .expect("engine points come from the config");
                PointView {
                    name: p.name.map_or_else(|| s.id.clone(), str::to_string),
                    device: d.id.clone(),
                    unit: p.unit.map(str::to_string),
                    value: if s.quality == Quality::Good {
                        s.value
                    } else {
                        None
                    },
                    quality: s.quality.label().to_string(),
                    last_good: s.last_good.map(|t| self.shared.id.time(t)),
                    id: s.id,
                }
            })
            .collect();
        let alarms: Vec<Instance> = self.engine.active().cloned().collect();
        let online = self
            .shared
            .devices_online
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|v| **v)
            .count();
        {
            let mut c = self.shared.counts.lock().unwrap_or_else(|p| p.into_inner());
            c.active_alarms = alarms.len() as u64;
            c.devices_online = online as u64;
        }
        *self
            .shared
            .points
            .write()
            .unwrap_or_else(|p| p.into_inner()) = views;
        *self
            .shared
            .alarms
            .write()
            .unwrap_or_else(|p| p.into_inner()) = alarms;
    }
}
