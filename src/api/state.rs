//! What the API reads and sends: the state the engine task publishes for
//! the operator page, and the acknowledgement command. The runtime fills
//! these in; the API owns their shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot};

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

/// What the engine task shares with the API and the uplink.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub id: Identity,
    pub store: Arc<Store>,
    pub points: RwLock<Vec<PointView>>,
    pub alarms: RwLock<Vec<Instance>>,
    pub devices_online: RwLock<HashMap<String, bool>>,
    /// Polls answered per device and minute, for the on-line rate.
    pub online: Mutex<crate::telemetry::OnlineRate>,
    pub counts: Arc<Mutex<StatusCounts>>,
    pub acks: mpsc::Sender<AckCmd>,
    /// Notified when the gateway's faults change, so the uplink publishes
    /// its status at once.
    pub status_wake: Arc<tokio::sync::Notify>,
    /// When the engine task last ticked (`/readyz`).
    pub engine_tick: Mutex<Option<tokio::time::Instant>>,
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
