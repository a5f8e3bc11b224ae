//! Wiring: sources → bounded channel → engine task → durable queues →
//! sinks, plus housekeeping and the operator API. Everything is started here
//! and stopped by one cancellation token; the parts live in their own files
//! (`engine_task`, `actions`, `outbox`, `housekeeping`, `supervise`,
//! `views` for what the API shows).
//!
//! Every task is supervised (`supervise`): one that ends or panics while
//! the gateway runs stops the whole gateway with an error, so `run` returns
//! `RunError::TaskDied` and the process exits non-zero.
//!
//! A queued output is wired with one line: `drive(store, QueueId::X, sink,
//! ..)` (or a list of lanes in priority order when outputs share one
//! connection, e.g. `[QueueId::Alarms, QueueId::Telemetry]` for the uplink),
//! plus, when it is fed reading by reading, its encoder in `feeds`.

mod actions;
mod engine_task;
mod housekeeping;
mod outbox;
mod supervise;
mod telemetry;
pub mod views;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{AckCmd, Shared};
use crate::config::Config;
use crate::model::Input;
use crate::queue::{Limits, QueueId, Store};
use crate::rules::engine::{Engine, Instance};
use crate::sink::influx::{self, InfluxSink};
use crate::sink::uplink::UplinkSink;
use crate::sink::uplink::contract::{Identity, RemoteAck, StatusCounts};
use crate::sink::{self as sinks};
use crate::source;

use engine_task::{EngineTask, Feed};
pub use supervise::TaskDied;
use supervise::Tasks;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] crate::queue::StoreError),
    #[error(transparent)]
    Uplink(#[from] crate::sink::uplink::UplinkError),
    #[error(transparent)]
    Influx(#[from] crate::sink::influx::InfluxError),
    #[error(transparent)]
    TaskDied(#[from] TaskDied),
    #[error("HTTP listener {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A running gateway. Dropping it does not stop it; call `stop()`.
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: Tasks,
}

impl Running {
    /// Stops cleanly: sources end, pending readings are committed, the
    /// sinks get `drain` to deliver what is queued, the uplink publishes its
    /// `offline` status.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.tasks.join_all().await;
    }

    /// Completes when a task ends or panics while the gateway should run.
    pub async fn first_death(&mut self) -> TaskDied {
        self.tasks.first_death().await
    }
}

/// Runs the gateway until `shutdown` completes (`Ok`) or one of its tasks
/// ends or panics (`Err(TaskDied)`, after a clean stop of the rest).
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let mut running = start(cfg).await?;
    supervise::notify_ready();
    let died = tokio::select! {
        _ = shutdown => None,
        d = running.first_death() => Some(d),
    };
    supervise::notify_stopping();
    match &died {
        None => tracing::info!("stopping"),
        Some(d) => tracing::error!(error = %d, "stopping: the gateway cannot run half-dead"),
    }
    running.stop().await;
    died.map_or(Ok(()), |d| Err(d.into()))
}

/// Starts every task and returns once the HTTP listener is bound.
pub async fn start(cfg: Config) -> Result<Running, RunError> {
    let cfg = Arc::new(cfg);
    let store = Arc::new(Store::open_with(
        std::path::Path::new(&cfg.gateway.data_dir),
        Limits {
            readings_queue_bytes: (cfg.store.readings_queue_mb * 1_048_576.0) as u64,
            history_bytes: (cfg.store.history_mb * 1_048_576.0) as u64,
            telemetry_queue_bytes: cfg.telemetry.as_ref().map(|t| t.queue_bytes),
        },
    )?);
    let id = Identity::from_config(&cfg).with_epoch(store.epoch());
    let shutdown = CancellationToken::new();
    let mut tasks = Tasks::default();

    let (input_tx, input_rx) = mpsc::channel::<Input>(4096);
    let (ack_tx, ack_rx) = mpsc::channel::<AckCmd>(64);
    let (cal_tx, cal_rx) = mpsc::channel(16);
    let (remote_tx, remote_rx) = mpsc::unbounded_channel::<RemoteAck>();
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
        devices: RwLock::new(Vec::new()),
        online: Mutex::new(Default::default()),
        counts: counts.clone(),
        acks: ack_tx,
        calibrate: cal_tx,
        calibrations: RwLock::new(Vec::new()),
        status_wake: Arc::new(tokio::sync::Notify::new()),
        engine_tick: Mutex::new(None),
        stream: crate::api::state::StreamHub::new(shutdown.child_token()),
    });

    // Sinks first, so nothing waits on them. Each is one queue, one sink,
    // one `drive`; an output fed with readings also adds its encoder.
    let drain = Duration::from_secs(5);
    let sink_stop = CancellationToken::new();
    let mut feeds: Vec<Feed> = Vec::new();
    let (fault_tx, fault_rx) = mpsc::unbounded_channel();
    if let Some(up) = UplinkSink::new(&cfg, store.clone(), counts.clone(), remote_tx)? {
        let up = up.with_status_wake(shared.status_wake.clone());
        // Alarms first: a telemetry backlog never holds an alarm back.
        let lanes = [QueueId::Alarms, QueueId::Telemetry];
        let run = sinks::drive(store.clone(), lanes, up, sink_stop.clone(), drain);
        tasks.spawn("sink:uplink", run);
    }
    if let Some(icfg) = &cfg.influxdb {
        let sink = InfluxSink::new(icfg, influx::token(icfg)?)
            .map_err(influx::InfluxError::from)?
            .with_faults(fault_tx);
        feeds.push(Feed::new(
            QueueId::Readings,
            influx::encoder(&icfg.measurement, &cfg.site.id),
        ));
        let run = sinks::drive(
            store.clone(),
            QueueId::Readings,
            sink,
            sink_stop.clone(),
            drain,
        );
        tasks.spawn("sink:influxdb", run);
    } else {
        // Without InfluxDB the readings queue would only grow: readings go
        // to the local history alone.
        tracing::info!("no [influxdb]: readings are kept in the local history only");
    }

    // Sources.
    let (sources, writers) = source::build(&cfg);
    let source_stop = shutdown.child_token();
    for s in sources {
        let name = s.name();
        tracing::info!(source = %name, "starting source");
        let (tx, stop) = (input_tx.clone(), source_stop.clone());
        let run = s.run(tx, stop);
        #[cfg(debug_assertions)]
        let run = supervise::inject::source(&name, run);
        tasks.spawn(name, run);
    }
    drop(input_tx);

    // The engine: its task ends when every source has ended (their senders
    // dropped), after the last readings are committed; then the sinks are
    // told to drain.
    let mut engine = Engine::new(&cfg);
    let restored: Vec<Instance> = store.load_active()?;
    if !restored.is_empty() {
        tracing::info!(
            count = restored.len(),
            "active alarms restored from the store"
        );
        engine.restore(restored);
    }
    // The rules' memories (rain slots, rate histories): a row no rule can
    // take is logged and forgotten, its rule starts empty.
    let refused = engine.restore_rule_state(store.load_rule_state()?);
    for (key, why) in &refused {
        tracing::warn!(rule = %key, why = %why, "stored rule state not used");
    }
    store.delete_rule_state(&refused.into_iter().map(|r| r.0).collect::<Vec<_>>())?;
    {
        let sh = shared.clone();
        let stop_sinks = sink_stop.clone();
        let engine_stop = shutdown.clone();
        tasks.spawn("engine", async move {
            // Also when the engine panics: the sinks still drain and stop,
            // so the gateway can stop and exit.
            let _drain_sinks = stop_sinks.drop_guard();
            let telemetry = telemetry::TelemetryFeed::new(sh.clone(), chrono::Utc::now());
            let mut et = EngineTask::new(engine, sh, writers, feeds).with_telemetry(telemetry);
            et.gateway_faults(fault_rx);
            et.calibrations(cal_rx);
            et.run(input_rx, ack_rx, remote_rx, engine_stop).await;
        });
    }

    tasks.spawn(
        "online-gauges",
        telemetry::online_gauges(shared.clone(), shutdown.clone()),
    );

    // Housekeeping: retention and queue gauges.
    {
        let (s, c, stop) = (store.clone(), cfg.clone(), shutdown.clone());
        tasks.spawn("housekeeping", housekeeping::run(s, c, stop));
    }

    // Operator API.
    let mut http_addr = None;
    if let Some(http) = &cfg.http {
        let listener = tokio::net::TcpListener::bind(http.listen)
            .await
            .map_err(|source| RunError::Listen {
                addr: http.listen.to_string(),
                source,
            })?;
        http_addr = listener.local_addr().ok();
        let app = crate::api::router(shared.clone());
        let stop = shutdown.clone();
        tracing::info!(addr = ?http_addr, "operator page and API listening");
        tasks.spawn("api", async move {
            crate::api::serve(listener, app, async move { stop.cancelled().await }).await;
        });
    }

    Ok(Running {
        http_addr,
        shared,
        shutdown,
        tasks,
    })
}
