//! The engine task: the one owner of the rule engine. It feeds readings,
//! health, acknowledgements and ticks to the engine, batches readings for
//! one commit every `store.commit_interval`, hands alarm events to the
//! outbox (starting their actions, listed `pending`, which it does not wait
//! for), and publishes the views the API reads.
//!
//! When the store refuses a readings commit (disk full, I/O error) the
//! batch stays in memory and is retried with backoff; at most
//! [`UNSTORED_MAX`] readings are held, beyond that the oldest are dropped
//! and counted (`riskgate_unstored_dropped_total`). The failure, from a
//! readings commit or from the outbox, raises `store.write`; it clears once
//! the store has taken every write for [`STORE_CLEAR_AFTER`].
//!
//! The rules' memories (rain slots, rate histories) are asked of the
//! engine at each commit and stored in the readings' transaction; a state
//! the store refused is kept (the newest per rule) and goes with the next.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::supervise::Watchdog;
use super::telemetry::TelemetryFeed;
use super::views::Views;
use super::{actions, outbox};
use crate::api::{AckCmd, Shared};
use crate::backoff::Backoff;
use crate::model::{AlarmState, Input, Reading};
use crate::queue::{HistoryRow, QueueId};
use crate::rules::engine::{ActionRequest, Engine, Output};
use crate::rules::health::GatewayFault;
use crate::sink::uplink::contract::RemoteAck;
use crate::source::{WriteRequest, Writers};
use crate::time::Clock;

mod calibrate;

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

/// Readings held in memory at most while the store refuses them: about a
/// minute of a large site (1,000 readings/s), a few MB.
pub const UNSTORED_MAX: usize = 50_000;

/// How long the store must take every write before `store.write` clears:
/// a store that fails every other commit (nearly full) does not flap.
pub const STORE_CLEAR_AFTER: Duration = Duration::from_secs(5);

/// The store's health as the engine task sees it.
#[derive(Default)]
struct StoreHealth {
    /// The last refused write, while `store.write` is raised.
    failed_at: Option<tokio::time::Instant>,
}

pub(super) struct EngineTask {
    engine: Engine,
    /// Wall time for stamps, monotonic time for the engine's durations.
    clock: Clock,
    /// systemd's watchdog, fed by every tick the engine makes.
    watchdog: Watchdog,
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
    /// Calibration windows the API asks to open.
    calibrate: mpsc::Receiver<crate::api::CalibrateCmd>,
    /// The engine's `calibrations_version` last published.
    calibrations_published: u64,
    /// Faults the sinks report (a token refused, a bucket missing), raised
    /// and cleared as gateway fault alarms.
    gateway_faults: mpsc::UnboundedReceiver<(GatewayFault, Option<String>)>,
    /// The outbox's store results: `Some(why)` a refused commit, `None` a
    /// commit that worked.
    store_rx: mpsc::UnboundedReceiver<Option<String>>,
    store_tx: mpsc::UnboundedSender<Option<String>>,
    store_health: StoreHealth,
    /// No readings commit before this (backoff after a refused one).
    retry_at: Option<tokio::time::Instant>,
    commit_backoff: Backoff,
    /// The operator views and live stream, updated by what changed.
    views: Views,
    /// Rule states not stored yet, newest per rule id.
    states: std::collections::BTreeMap<String, String>,
    /// The last commit: every changed state goes, however recent its last.
    stopping: bool,
}

impl EngineTask {
    pub fn new(engine: Engine, shared: Arc<Shared>, writers: Writers, feeds: Vec<Feed>) -> Self {
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let (failed_tx, failed_rx) = mpsc::unbounded_channel();
        let (store_tx, store_rx) = mpsc::unbounded_channel();
        let views = Views::new(&shared, &engine);
        EngineTask {
            engine,
            clock: Clock::new(),
            watchdog: Watchdog::new(),
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
            calibrate: mpsc::channel(1).1,
            calibrations_published: 0,
            store_rx,
            store_tx,
            store_health: StoreHealth::default(),
            retry_at: None,
            commit_backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
            views,
            states: Default::default(),
            stopping: false,
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
        // The outbox commits events in engine order; actions run beside it.
        let outbox_rx = self.outbox_rx.take().expect("outbox receiver");
        let outbox = tokio::spawn(outbox::run(
            outbox_rx,
            self.shared.clone(),
            self.store_tx.clone(),
            stop.clone(),
        ));
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
                Some(ack) = remote.recv() => self.remote_ack(ack),
                Some(cmd) = self.calibrate.recv() => self.open_calibration(cmd),
                Some(r) = self.store_rx.recv() => self.store_result(r.as_deref()),
                Some((point, why)) = self.failed_rx.recv() => {
                    let out = self.engine.action_outcome(&point, why.as_deref(), Utc::now());
                    self.emit(out);
                }
                Some((fault, why)) = self.gateway_faults.recv() => {
                    let out = self.engine.gateway_fault(fault, why.as_deref(), Utc::now());
                    self.emit(out);
                }
                input = inputs.recv(), if inputs_open => match input {
                    Some(mut input) => {
                        let now = self.clock.now();
                        if let Input::Readings(rs) = &mut input {
                            // Over range and device faults are stored and
                            // sent as the engine judges them.
                            self.engine.qualify(rs);
                            self.batch(rs);
                        }
                        if let Input::DeviceHealth { device, ok, detail, at } = &input {
                            self.views.device_health(&self.shared, device, *ok, detail, *at);
                            self.shared.online.lock().unwrap_or_else(|p| p.into_inner()).record(device, *ok, *at);
                        }
                        let out = self.engine.handle(&input, now);
                        self.emit(out);
                        if self.batch_due(commit_every) { self.commit().await; }
                    }
                    None => inputs_open = false,
                },
                _ = tick.tick() => {
                    self.watchdog.fed();
                    self.shared.ticked();
                    let out = self.engine.tick(self.clock.now());
                    self.emit(out);
                    if let Some(t) = &mut self.telemetry {
                        t.calibrations(self.engine.calibrations_version(), || self.engine.calibrations());
                    }
                    if let Some(t) = &mut self.telemetry
                        && let Some(dropped) = t.tick(self.engine.active(), Utc::now())
                    {
                        // Like the readings queue: raised while the cap
                        // drops messages, cleared by a write that drops none.
                        let out = self.engine.telemetry_dropped(dropped, Utc::now());
                        self.emit(out);
                    }
                    if self.batch_due(commit_every) { self.commit().await; }
                    self.publish_views();
                }
                _ = stop.cancelled(), if !stop.is_cancelled() => {}
                _ = std::future::ready(()), if !inputs_open && stop.is_cancelled() => {}
            }
        }
        self.stopping = true;
        self.commit().await;
        if !self.history.is_empty() {
            // The store still refuses them and the drain time is the
            // process's, not ours to extend: said loudly and counted.
            tracing::error!(
                readings = self.history.len(),
                "stopping while the store refuses writes: readings held in memory are lost"
            );
            crate::metrics::metrics()
                .unstored_dropped
                .with_label_values(&["readings"])
                .inc_by(self.history.len() as u64);
        }
        self.publish_views();
        drop(std::mem::replace(
            &mut self.outbox,
            mpsc::unbounded_channel().0,
        ));
        let _ = outbox.await;
    }

    /// A county acknowledgement: refused when the uplink found it bad or
    /// when it would release a latching alarm and
    /// `uplink.remote_ack_clears_latching` is off (only someone on site
    /// releases a latch); every one goes to the audit log, its source
    /// `remote`, written off this task.
    fn remote_ack(&mut self, ack: RemoteAck) {
        let clears_latching = self
            .shared
            .cfg
            .uplink
            .as_ref()
            .is_some_and(|u| u.remote_ack_clears_latching);
        let latching = self
            .engine
            .active()
            .any(|a| a.alarm_id == ack.alarm_id && a.latching);
        let result = if let Some(why) = &ack.refused {
            Err(why.clone())
        } else if latching && !clears_latching {
            Err("a latching alarm is released on site only (uplink.remote_ack_clears_latching = false)".to_string())
        } else {
            match self.engine.acknowledge(&ack.alarm_id, &ack.by, Utc::now()) {
                Ok(out) => {
                    self.emit(out);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        };
        if let Err(why) = &result {
            tracing::warn!(alarm_id = %ack.alarm_id, error = %why, "remote acknowledgement not applied");
        }
        let row = crate::queue::AuditRow {
            id: 0,
            at_ms: Utc::now().timestamp_millis(),
            actor: ack
                .by
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect(),
            display_name: String::new(),
            source: crate::queue::AuditSource::Remote,
            address: ack.from.clone(),
            action: "ack".into(),
            alarm_id: ack.alarm_id.chars().take(256).collect(),
            result: match result {
                Ok(()) => "ok".into(),
                Err(why) => format!("refused: {why}"),
            },
        };
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.audit(&row) {
                tracing::error!(error = %e, "audit row of a remote acknowledgement not stored");
            }
        });
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
        if self
            .retry_at
            .is_some_and(|t| tokio::time::Instant::now() < t)
        {
            return false;
        }
        self.history.len() >= 5000 || self.batch_started.is_some_and(|t| t.elapsed() >= every)
    }

    /// A store write worked (`None`) or was refused (`Some(why)`): raises
    /// `store.write` at the first refusal, clears it once writes have
    /// worked for [`STORE_CLEAR_AFTER`].
    fn store_result(&mut self, failure: Option<&str>) {
        let now = tokio::time::Instant::now();
        let out = match (failure, self.store_health.failed_at) {
            (Some(why), last) => {
                self.store_health.failed_at = Some(now);
                if last.is_some() {
                    return;
                }
                self.engine.store_write(Some(why), Utc::now())
            }
            (None, Some(t)) if now.duration_since(t) >= STORE_CLEAR_AFTER => {
                self.store_health.failed_at = None;
                self.engine.store_write(None, Utc::now())
            }
            (None, _) => return,
        };
        self.emit(out);
    }

    /// Keeps a refused batch for the next attempt, within [`UNSTORED_MAX`].
    fn keep_unstored(&mut self, history: Vec<HistoryRow>, queued: Vec<(QueueId, Vec<String>)>) {
        // Nothing was batched while the commit ran (it is awaited in the
        // loop), so the kept batch is all there is.
        self.history = history;
        for (f, (_, bodies)) in self.feeds.iter_mut().zip(queued) {
            f.pending = bodies;
        }
        let over = self.history.len().saturating_sub(UNSTORED_MAX);
        if over > 0 {
            // One history row and one body per feed for each reading, in
            // the same order: dropping the first `over` of each drops the
            // same oldest readings everywhere.
            self.history.drain(..over);
            for f in &mut self.feeds {
                f.pending.drain(..over.min(f.pending.len()));
            }
            crate::metrics::metrics()
                .unstored_dropped
                .with_label_values(&["readings"])
                .inc_by(over as u64);
        }
        crate::metrics::metrics()
            .unstored
            .with_label_values(&["readings"])
            .set(self.history.len() as i64);
        self.batch_started = Some(tokio::time::Instant::now());
        self.retry_at = Some(tokio::time::Instant::now() + self.commit_backoff.fail());
    }

    /// Commits the pending readings, history and queues (one transaction,
    /// or a few when alarm commits cut in: `Store::append_readings`).
    async fn commit(&mut self) {
        let mono = self.clock.now().mono;
        self.states
            .extend(self.engine.take_rule_state(mono, self.stopping));
        if self.history.is_empty() && (self.states.is_empty() || !self.stopping) {
            return;
        }
        let states: Vec<(String, String)> = std::mem::take(&mut self.states).into_iter().collect();
        let queued: Vec<(QueueId, Vec<String>)> = self
            .feeds
            .iter_mut()
            .map(|f| (f.queue, std::mem::take(&mut f.pending)))
            .collect();
        let history = std::mem::take(&mut self.history);
        self.batch_started = None;
        let store = self.shared.store.clone();
        let now = Utc::now().timestamp_millis();
        let r = tokio::task::spawn_blocking(move || {
            let r = store.append_readings_and_state(&history, &queued, &states, now);
            (r, history, queued, states)
        })
        .await;
        match r {
            Ok((Ok(drops), _, _, _)) => {
                if self.retry_at.take().is_some() {
                    tracing::info!("the store takes readings again");
                    crate::metrics::metrics()
                        .unstored
                        .with_label_values(&["readings"])
                        .set(0);
                }
                self.commit_backoff.reset();
                // Raised while readings are being dropped, cleared by the
                // first commit that drops none (the queue has room again).
                let dropped = drops.get(QueueId::Readings);
                let out = self.engine.readings_dropped(dropped, Utc::now());
                self.emit(out);
                self.store_result(None);
            }
            Ok((Err(e), mut history, mut queued, states)) => {
                // Kept for the next commit unless a newer one came meanwhile
                // (a snapshot: writing it again is harmless).
                for (k, j) in states {
                    self.states.entry(k).or_insert(j);
                }
                // The readings before `stored` are committed: only the rest
                // is kept for the retry, or they would be stored twice.
                history.drain(..e.stored.min(history.len()));
                for (_, bodies) in &mut queued {
                    bodies.drain(..e.stored.min(bodies.len()));
                }
                let n = history.len();
                self.keep_unstored(history, queued);
                tracing::error!(error = %e, readings = n, held = self.history.len(), retry_in = ?self.retry_at.map(|t| t - tokio::time::Instant::now()), "committing readings failed: kept in memory, retrying");
                self.store_result(Some(&e.to_string()));
            }
            // The batch is gone with the panicked thread; counted as lost.
            Err(e) => {
                tracing::error!(error = %e, "committing readings panicked");
                self.store_result(Some("commit panicked"));
            }
        }
    }

    /// Sends the engine's output to the outbox, starting actions first.
    fn emit(&mut self, out: Output) {
        if out.clears_held > 0 {
            crate::metrics::metrics()
                .alarm_clears_held
                .with_label_values(&[] as &[&str])
                .inc_by(out.clears_held);
        }
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
        self.views.transitions(&self.shared, &out.transitions);
        let active = self.engine.active_keyed();
        let mut actions: HashMap<usize, Vec<ActionRequest>> = HashMap::new();
        for (i, a) in out.actions {
            actions.entry(i).or_default().push(a);
        }
        for (i, mut t) in out.transitions.into_iter().enumerate() {
            tracing::info!(alarm_id = %t.alarm_id, state = ?t.state, level = t.level, message = %t.message, "alarm");
            let requests = actions.remove(&i).unwrap_or_default();
            // Listed as pending and committed at once: the outcome follows
            // as its own event (see `actions`), so nothing waits for it.
            t.actions.extend(requests.iter().map(actions::pending));
            let handles = requests
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

    /// Brings the operator views and the live streams up to date with
    /// what changed (`views`): cheap when little did.
    fn publish_views(&mut self) {
        self.views.publish(&mut self.engine, &self.shared);
        self.publish_calibrations();
    }
}
