//! Wiring: sources → bounded channel → rule engine → durable queues → sinks,
//! plus the operator API. Everything is started here and stopped by one
//! cancellation token.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contract::{Identity, RemoteAck, StatusCounts};
use crate::model::{ActionResult, AlarmState, AlarmTransition, Input, Quality, Value};
use crate::rules::engine::{ActionRequest, Engine, Instance, Output};
use crate::sink::influx::{self, InfluxSink};
use crate::sink::uplink::UplinkSink;
use crate::source::{self, WriteRequest, Writers};
use crate::store::{HistoryRow, Store};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Uplink(#[from] crate::sink::uplink::UplinkError),
    #[error("InfluxDB token: {0}")]
    Token(String),
    #[error("InfluxDB client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP listener {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A local acknowledgement (CLI, HTTP API) with its answer.
pub struct AckCmd {
    pub alarm_id: String,
    pub by: String,
    pub reply: Option<oneshot::Sender<Result<(), String>>>,
}

/// The latest state of one point, for the operator page.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PointView {
    pub id: String,
    pub name: String,
    pub device: String,
    pub unit: Option<String>,
    pub value: Option<Value>,
    pub quality: String,
    pub last_good: Option<String>,
}

/// What the engine task shares with the API and the uplink.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub id: Identity,
    pub store: Arc<Store>,
    pub points: RwLock<Vec<PointView>>,
    pub alarms: RwLock<Vec<Instance>>,
    pub devices_online: RwLock<HashMap<String, bool>>,
    pub counts: Arc<Mutex<StatusCounts>>,
    pub acks: mpsc::Sender<AckCmd>,
}

/// A running gateway. Dropping it does not stop it; call `stop()`.
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stops cleanly: sources end, pending readings are committed, the
    /// sinks get `drain` to deliver what is queued, the uplink publishes its
    /// `offline` status.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Runs the gateway until `shutdown` completes.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let running = start(cfg).await?;
    shutdown.await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

fn influx_token(cfg: &Config) -> Result<Option<String>, RunError> {
    let Some(i) = &cfg.influxdb else {
        return Ok(None);
    };
    match (&i.token_env, &i.token_file) {
        (Some(v), _) => std::env::var(v)
            .map(Some)
            .map_err(|_| RunError::Token(format!("environment variable {v} is not set"))),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| RunError::Token(format!("{f}: {e}"))),
        (None, None) => Ok(None),
    }
}

/// Starts every task and returns once the HTTP listener is bound.
pub async fn start(cfg: Config) -> Result<Running, RunError> {
    let cfg = Arc::new(cfg);
    let store = Arc::new(Store::open(
        std::path::Path::new(&cfg.gateway.data_dir),
        (cfg.store.readings_queue_mb * 1_048_576.0) as u64,
        (cfg.store.history_mb * 1_048_576.0) as u64,
    )?);
    let id = Identity::from_config(&cfg);
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let (input_tx, input_rx) = mpsc::channel::<Input>(4096);
    let (ack_tx, ack_rx) = mpsc::channel::<AckCmd>(64);
    let (remote_tx, remote_rx) = mpsc::channel::<RemoteAck>(64);
    let uplink_wake = Arc::new(Notify::new());
    let influx_wake = Arc::new(Notify::new());
    let counts = Arc::new(Mutex::new(StatusCounts {
        devices_total: cfg.devices.len() as u64,
        ..Default::default()
    }));

    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        id: id.clone(),
        store: store.clone(),
        points: RwLock::new(Vec::new()),
        alarms: RwLock::new(Vec::new()),
        devices_online: RwLock::new(HashMap::new()),
        counts: counts.clone(),
        acks: ack_tx,
    });

    // Sinks first, so nothing waits on them.
    let drain = Duration::from_secs(5);
    let sink_stop = CancellationToken::new();
    if let Some(up) = UplinkSink::new(&cfg)? {
        let (s, w, c, stop) = (
            store.clone(),
            uplink_wake.clone(),
            counts.clone(),
            sink_stop.clone(),
        );
        tasks.spawn(async move { up.run(s, w, remote_tx, c, stop, drain).await });
    }
    if let Some(icfg) = &cfg.influxdb {
        let sink = InfluxSink::new(icfg, influx_token(&cfg)?)?;
        let (s, w, stop) = (store.clone(), influx_wake.clone(), sink_stop.clone());
        tasks.spawn(async move { sink.run(s, w, stop, drain).await });
    } else {
        // Without InfluxDB the readings queue would only grow: readings go
        // to the local history alone.
        tracing::info!("no [influxdb]: readings are kept in the local history only");
    }

    // Sources.
    let (sources, writers) = source::build(&cfg);
    let source_stop = shutdown.child_token();
    let mut source_tasks = JoinSet::new();
    for s in sources {
        tracing::info!(source = %s.name(), "starting source");
        let (tx, stop) = (input_tx.clone(), source_stop.clone());
        source_tasks.spawn(s.run(tx, stop));
    }
    drop(input_tx);

    // The engine: its task ends when every source has ended, after the
    // last readings are committed; then the sinks are told to drain.
    let mut engine = Engine::new(&cfg);
    let restored = store.load_active()?;
    if !restored.is_empty() {
        tracing::info!(
            count = restored.len(),
            "active alarms restored from the store"
        );
        engine.restore(restored);
    }
    {
        let sh = shared.clone();
        let (uw, iw) = (uplink_wake.clone(), influx_wake.clone());
        let has_influx = cfg.influxdb.is_some();
        let stop_sinks = sink_stop.clone();
        let engine_stop = shutdown.clone();
        tasks.spawn(async move {
            let mut et = EngineTask::new(engine, sh, writers, uw, iw, has_influx);
            et.run(input_rx, ack_rx, remote_rx, engine_stop).await;
            while source_tasks.join_next().await.is_some() {}
            stop_sinks.cancel();
        });
    }

    // Housekeeping: retention and queue gauges.
    {
        let (s, c, stop) = (store.clone(), cfg.clone(), shutdown.clone());
        tasks.spawn(async move { housekeeping(s, c, stop).await });
    }

    // Operator API.
    let mut http_addr = None;
    if cfg.http.enabled {
        let listener = tokio::net::TcpListener::bind(&cfg.http.listen)
            .await
            .map_err(|source| RunError::Listen {
                addr: cfg.http.listen.clone(),
                source,
            })?;
        http_addr = listener.local_addr().ok();
        let app = crate::api::router(shared.clone());
        let stop = shutdown.clone();
        tracing::info!(addr = ?http_addr, "operator page and API listening");
        tasks.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
    }

    Ok(Running {
        http_addr,
        shared,
        shutdown,
        tasks,
    })
}

async fn housekeeping(store: Arc<Store>, cfg: Arc<Config>, stop: CancellationToken) {
    let m = crate::metrics::metrics();
    let mut gauges = tokio::time::interval(Duration::from_secs(2));
    let mut prune = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = gauges.tick() => {
                let now = Utc::now().timestamp_millis();
                for q in ["influx", "uplink"] {
                    if let Ok(s) = store.stats(q) {
                        m.queue_depth.with_label_values(&[q]).set(s.depth as i64);
                        m.queue_oldest_age.with_label_values(&[q]).set(s.oldest_ms.map(|o| (now - o) / 1000).unwrap_or(0));
                    }
                }
            }
            _ = prune.tick() => {
                let (s, c) = (store.clone(), cfg.clone());
                let r = tokio::task::spawn_blocking(move || s.prune(Utc::now(), c.store.raw_retention_days, c.store.stats_retention_days)).await;
                if let Ok(Ok(n)) = r && n > 0 { tracing::info!(rows = n, "history pruned past retention"); }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// An event for the outbox, with the engine's active alarms after it.
type OutboxItem = (Pending, Vec<(String, Instance)>);

/// One event waiting to be queued, with the actions it waits for.
struct Pending {
    transition: AlarmTransition,
    actions: Vec<tokio::task::JoinHandle<ActionResult>>,
}

struct EngineTask {
    engine: Engine,
    shared: Arc<Shared>,
    writers: Writers,
    uplink_wake: Arc<Notify>,
    influx_wake: Arc<Notify>,
    has_influx: bool,
    lines: Vec<String>,
    history: Vec<HistoryRow>,
    batch_started: Option<tokio::time::Instant>,
    outbox: mpsc::UnboundedSender<OutboxItem>,
    outbox_rx: Option<mpsc::UnboundedReceiver<OutboxItem>>,
    /// Results of actions, fed back as the point's `{point}.action` fault
    /// alarm: `Some(why)` raises it, `None` (a confirmed write) clears it.
    failed_rx: mpsc::UnboundedReceiver<(String, Option<String>)>,
    failed_tx: mpsc::UnboundedSender<(String, Option<String>)>,
}

impl EngineTask {
    fn new(
        engine: Engine,
        shared: Arc<Shared>,
        writers: Writers,
        uplink_wake: Arc<Notify>,
        influx_wake: Arc<Notify>,
        has_influx: bool,
    ) -> Self {
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let (failed_tx, failed_rx) = mpsc::unbounded_channel();
        EngineTask {
            engine,
            shared,
            writers,
            uplink_wake,
            influx_wake,
            has_influx,
            lines: Vec::new(),
            history: Vec::new(),
            batch_started: None,
            outbox,
            outbox_rx: Some(outbox_rx),
            failed_rx,
            failed_tx,
        }
    }

    async fn run(
        &mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut acks: mpsc::Receiver<AckCmd>,
        mut remote: mpsc::Receiver<RemoteAck>,
        stop: CancellationToken,
    ) {
        // The outbox keeps events in engine order while actions complete.
        let outbox_rx = self.outbox_rx.take().expect("outbox receiver");
        let outbox = tokio::spawn(run_outbox(
            outbox_rx,
            self.shared.clone(),
            self.uplink_wake.clone(),
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
                    let reply = match r {
                        Ok(out) => { self.emit(out); Ok(()) }
                        Err(e) => Err(e.to_string()),
                    };
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
                input = inputs.recv(), if inputs_open => match input {
                    Some(input) => {
                        let now = Utc::now();
                        if let Input::Readings(rs) = &input {
                            self.batch(rs);
                        }
                        if let Input::DeviceHealth { device, ok, .. } = &input {
                            self.shared.devices_online.write().unwrap_or_else(|p| p.into_inner()).insert(device.to_string(), *ok);
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

    fn batch(&mut self, rs: &[crate::model::Reading]) {
        let site = &self.shared.cfg.site.id;
        let measurement = self
            .shared
            .cfg
            .influxdb
            .as_ref()
            .map(|i| i.measurement.as_str())
            .unwrap_or("reading");
        // `riskgate_readings_total` is counted by the sources as they hand
        // readings over; counting here too doubled it.
        for r in rs {
            if self.has_influx {
                self.lines.push(influx::line(measurement, site, r));
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

    /// Commits the pending readings in one transaction.
    async fn commit(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.lines);
        let history = std::mem::take(&mut self.history);
        self.batch_started = None;
        let store = self.shared.store.clone();
        let now = Utc::now().timestamp_millis();
        let r =
            tokio::task::spawn_blocking(move || store.append_readings(&lines, &history, now)).await;
        match r {
            Ok(Ok(dropped)) => {
                if self.has_influx {
                    self.influx_wake.notify_one();
                }
                // Raised while readings are being dropped, cleared by the
                // first commit that drops none (the queue has room again).
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
                .map(|a| {
                    let w = self.writer_for(&a.point);
                    let failed = self.failed_tx.clone();
                    tokio::spawn(async move {
                        let r = run_action(w, &a).await;
                        if r.result == "failed" {
                            let _ = failed.send((
                                a.point.clone(),
                                Some(r.detail.clone().unwrap_or_default()),
                            ));
                        } else if r.result == "confirmed" {
                            // A confirmed write ends an earlier failure alarm.
                            let _ = failed.send((a.point.clone(), None));
                        }
                        r
                    })
                })
                .collect();
            let _ = self.outbox.send((
                Pending {
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

/// Writes the action's value and checks the read-back within its time.
async fn run_action(writer: Option<mpsc::Sender<WriteRequest>>, a: &ActionRequest) -> ActionResult {
    let mut result = ActionResult {
        kind: "modbus_write".into(),
        target: a.point.clone(),
        value: Some(serde_json::json!(a.value)),
        result: "failed".into(),
        detail: None,
    };
    let Some(w) = writer else {
        result.detail = Some("no writer for this point's device".into());
        return result;
    };
    let (tx, rx) = oneshot::channel();
    let req = WriteRequest {
        point: a.point.clone(),
        value: Value::Num(a.value),
        reply: tx,
    };
    let outcome = tokio::time::timeout(a.confirm_within, async {
        w.send(req)
            .await
            .map_err(|_| "device task not running".to_string())?;
        rx.await
            .map_err(|_| "device task dropped the request".to_string())?
            .map_err(|e| e.to_string())
    })
    .await;
    match outcome {
        Ok(Ok(v)) if v.as_f64().is_some_and(|x| (x - a.value).abs() < 1e-6) => {
            result.result = "confirmed".into()
        }
        Ok(Ok(v)) => {
            result.detail = Some(format!(
                "read back {v}, expected {}",
                crate::model::trim_float(a.value)
            ))
        }
        Ok(Err(e)) => result.detail = Some(e.chars().take(200).collect()),
        Err(_) => {
            result.detail = Some(format!(
                "not confirmed within {}",
                humantime::format_duration(a.confirm_within)
            ))
        }
    }
    result
}

/// Queues events durably in engine order; an event whose actions are still
/// running waits for them (at most their confirmation time).
async fn run_outbox(
    mut rx: mpsc::UnboundedReceiver<OutboxItem>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
) {
    while let Some((mut p, active)) = rx.recv().await {
        for h in p.actions.drain(..) {
            if let Ok(r) = h.await {
                p.transition.actions.push(r);
            }
        }
        let mut batch = vec![p.transition];
        // Take what else is ready without actions, to commit together.
        let mut latest_active = active;
        while let Ok((next, act)) = rx.try_recv() {
            if !next.actions.is_empty() {
                // Commit what we have, then handle this one in order.
                commit_events(&shared, &batch, &latest_active).await;
                batch.clear();
                let mut n = next;
                for h in n.actions.drain(..) {
                    if let Ok(r) = h.await {
                        n.transition.actions.push(r);
                    }
                }
                batch.push(n.transition);
            } else {
                batch.push(next.transition);
            }
            latest_active = act;
        }
        commit_events(&shared, &batch, &latest_active).await;
        wake.notify_one();
    }
}

async fn commit_events(
    shared: &Arc<Shared>,
    batch: &[AlarmTransition],
    active: &[(String, Instance)],
) {
    if batch.is_empty() {
        return;
    }
    let (store, id, batch, active) = (
        shared.store.clone(),
        shared.id.clone(),
        batch.to_vec(),
        active.to_vec(),
    );
    // Committing an alarm must not fail silently: retry until it is stored.
    let mut wait = Duration::from_millis(100);
    loop {
        let (s, i, b, a) = (store.clone(), id.clone(), batch.clone(), active.clone());
        match tokio::task::spawn_blocking(move || s.append_events(&i, &b, &a)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                tracing::error!(error = %e, retry_in = ?wait, "queueing alarm events failed; retrying")
            }
            Err(e) => tracing::error!(error = %e, "queueing alarm events panicked; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Parses `--since 1h` style arguments for the history CLI and API.
pub fn since(ago: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let d = humantime::parse_duration(ago).map_err(|e| format!("`{ago}`: {e}"))?;
    Ok(now - chrono::Duration::from_std(d).map_err(|e| e.to_string())?)
}
