//! What the API reads and sends: the state the engine task publishes for
//! the operator page, the live event stream's hub, and the acknowledgement
//! command. The runtime fills these in; the API owns their shape.
//!
//! Invariants: `points` is sorted by point id and `devices` is in config
//! order, both fixed at start-up, so the engine task updates an entry in
//! place by its index and a reader never sorts. Every change written here
//! is also sent on the hub (when a stream listens), after it is written:
//! a stream that takes its snapshot after subscribing misses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::json;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::model::Value;
use crate::queue::Store;
use crate::rules::engine::{AckError, Instance};
use crate::sink::uplink::contract::{Identity, StatusCounts};

/// A local acknowledgement (CLI, HTTP API) with its answer.
pub struct AckCmd {
    pub alarm_id: String,
    pub by: String,
    pub reply: Option<oneshot::Sender<Result<(), AckError>>>,
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

/// One device's polling, for the operator page's device panel.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeviceView {
    pub id: String,
    pub name: Option<String>,
    /// `None` until its first poll (or, for a pushing device, its first
    /// connection) was judged.
    pub online: Option<bool>,
    /// What went wrong at the last failed poll, and when.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// When a poll was last answered.
    pub last_good_poll: Option<String>,
    /// Polls judged per second over the last few seconds (for a device
    /// that pushes its data: connection checks, so near 0).
    pub polls_per_s: Option<f64>,
}

/// The operator's view of an active alarm (the page, `/api/alarms`).
pub fn alarm_view(id: &Identity, a: &Instance) -> serde_json::Value {
    json!({
        "alarm_id": a.alarm_id, "rule_id": a.rule_id, "kind": a.kind, "level": a.level,
        "level_color": crate::model::level_color(a.level), "name": a.name, "point_id": a.point_id,
        "value": a.value, "threshold": a.threshold, "message": a.message,
        "raised_at": id.time(a.raised_at), "acked_by": a.acked_by,
        "acked_at": a.acked_at.map(|t| id.time(t)), "latching": a.latching, "condition": a.condition,
    })
}

/// Active alarms as the operator sees them: most severe first, then oldest.
pub fn alarm_views(id: &Identity, alarms: &[Instance]) -> Vec<serde_json::Value> {
    let mut sorted: Vec<&Instance> = alarms.iter().collect();
    sorted.sort_by_key(|a| (a.level, a.raised_at));
    sorted.into_iter().map(|a| alarm_view(id, a)).collect()
}

/// At most this many events wait for a stream's client; one that falls
/// further behind is told to resync (it never holds the engine back).
pub const STREAM_BUFFER: usize = 256;

/// At most this many event streams at once (each holds a connection for
/// as long as a page is open); more are refused with 503.
pub const MAX_STREAMS: usize = 16;

/// One event for the live streams, serialised once for every client.
#[derive(Clone, Debug)]
pub struct StreamEvent {
    /// The SSE event name: `points`, `alarms`, `alarm`, `devices`, `status`.
    pub kind: &'static str,
    pub data: Arc<str>,
}

/// The live event stream's state: the engine task sends, each open
/// stream has its own receiver.
pub struct StreamHub {
    tx: broadcast::Sender<StreamEvent>,
    /// One permit per open stream ([`MAX_STREAMS`]).
    pub slots: Arc<Semaphore>,
    /// Cancelled at shutdown: open streams end, so the API's graceful stop
    /// does not wait for pages that never close.
    pub stop: CancellationToken,
}

impl StreamHub {
    pub fn new(stop: CancellationToken) -> StreamHub {
        StreamHub {
            tx: broadcast::channel(STREAM_BUFFER).0,
            slots: Arc::new(Semaphore::new(MAX_STREAMS)),
            stop,
        }
    }

    /// Whether any stream listens: without one, nothing is serialised.
    pub fn listening(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends `data` as event `kind` to every open stream. Never blocks: a
    /// stream whose client is slow loses the oldest events and resyncs.
    pub fn send(&self, kind: &'static str, data: &impl serde::Serialize) {
        if !self.listening() {
            return;
        }
        match serde_json::to_string(data) {
            Ok(text) => {
                // An error only says no stream listens any more.
                let _ = self.tx.send(StreamEvent {
                    kind,
                    data: text.into(),
                });
            }
            Err(e) => tracing::warn!(kind, error = %e, "stream event not serialisable"),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StreamEvent> {
        self.tx.subscribe()
    }
}

/// What the engine task shares with the API and the uplink.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub id: Identity,
    pub store: Arc<Store>,
    /// Sorted by point id, fixed at start-up (see the module's invariants).
    pub points: RwLock<Vec<PointView>>,
    pub alarms: RwLock<Vec<Instance>>,
    pub devices_online: RwLock<HashMap<String, bool>>,
    /// In config order, fixed at start-up.
    pub devices: RwLock<Vec<DeviceView>>,
    /// Polls answered per device and minute, for the on-line rate.
    pub online: Mutex<crate::telemetry::OnlineRate>,
    pub counts: Arc<Mutex<StatusCounts>>,
    pub acks: mpsc::Sender<AckCmd>,
    /// Calibration windows to open, and the open ones.
    pub calibrate: mpsc::Sender<super::CalibrateCmd>,
    pub calibrations: RwLock<Vec<crate::rules::CalibrationView>>,
    /// Notified when the gateway's faults change, so the uplink publishes
    /// its status at once.
    pub status_wake: Arc<tokio::sync::Notify>,
    /// When the engine task last ticked (`/readyz`).
    pub engine_tick: Mutex<Option<tokio::time::Instant>>,
    /// The live event stream (`GET /api/events/stream`).
    pub stream: StreamHub,
}

impl Shared {
    /// The engine task calls this on each tick.
    pub fn ticked(&self) {
        *self.engine_tick.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(tokio::time::Instant::now());
    }

    pub fn last_tick(&self) -> Option<tokio::time::Instant> {
        *self.engine_tick.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The gateway's own active fault alarms (`StatusCounts::faults`).
    pub fn faults(&self) -> Vec<String> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .faults
            .clone()
    }
}
