//! `video-box`: an AI video box that publishes camera presence over MQTT.
//!
//! Every `heartbeat` (default 5 s) it publishes, QoS 0, not retained, to
//! `topic` (default `site/video/{box_id}/status`):
//!
//! ```json
//! {"box_id":"vb-1301","ts":"2025-01-01T08:00:00.000Z",
//!  "cameras":[{"id":"cam-1301-1","online":true,"blocked":false,"person":true}, ...]}
//! ```
//!
//! Cameras are numbered from 1. Scenario signals: `cam{i}.online`,
//! `cam{i}.blocked`, `cam{i}.person` (0/1; defaults 1, 0, 0). Faults:
//! `quiet` (publish nothing) and `malformed` (alternately non-JSON garbage and
//! JSON missing fields), switchable at run time or from the scenario's fault
//! timeline (`quiet`, `malformed`; `silent` counts as `quiet`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::scenario::{FaultKind, Scenario};

pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Configuration of one video box.
#[derive(Clone, Debug)]
pub struct VideoBoxConfig {
    /// MQTT broker host.
    pub host: String,
    /// MQTT broker port.
    pub port: u16,
    /// e.g. `vb-1301`
    pub box_id: String,
    /// Number of cameras (ids `cam-{n}-1 ..`, where `n` is `box_id` without `vb-`).
    pub cameras: usize,
    /// `None` = `site/video/{box_id}/status`.
    pub topic: Option<String>,
    pub heartbeat: Duration,
    pub scenario: Scenario,
    /// MQTT client id; `None` = `firmware-sim-{box_id}`.
    pub client_id: Option<String>,
}

impl VideoBoxConfig {
    /// A config with the defaults: default topic, 5 s heartbeat, empty scenario.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        box_id: impl Into<String>,
        cameras: usize,
    ) -> Self {
        VideoBoxConfig {
            host: host.into(),
            port,
            box_id: box_id.into(),
            cameras,
            topic: None,
            heartbeat: DEFAULT_HEARTBEAT,
            scenario: Scenario::default(),
            client_id: None,
        }
    }

    /// The topic actually used.
    pub fn topic(&self) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("site/video/{}/status", self.box_id))
    }

    /// Id of camera `i` (1-based).
    pub fn camera_id(&self, i: usize) -> String {
        let n = self.box_id.strip_prefix("vb-").unwrap_or(&self.box_id);
        format!("cam-{n}-{i}")
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct CamPin {
    online_blocked: Option<(bool, bool)>,
    person: Option<bool>,
}

/// One camera's state as published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CameraStatus {
    pub id: String,
    pub online: bool,
    pub blocked: bool,
    pub person: bool,
}

struct Shared {
    cfg: VideoBoxConfig,
    topic: String,
    start: Instant,
    quiet: AtomicBool,
    malformed: AtomicBool,
    malformed_toggle: AtomicU64,
    pins: Mutex<Vec<CamPin>>,
    published: AtomicU64,
    connected: AtomicBool,
    publish_now: Notify,
}

impl Shared {
    fn cameras(&self) -> Vec<CameraStatus> {
        let elapsed = self.start.elapsed();
        let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sig = |name: String, default: bool| {
            self.cfg
                .scenario
                .value_at(&name, elapsed)
                .map(|v| v >= 0.5)
                .unwrap_or(default)
        };
        (1..=self.cfg.cameras)
            .map(|i| {
                let pin = pins.get(i - 1).copied().unwrap_or_default();
                let (online, blocked) = pin.online_blocked.unwrap_or_else(|| {
                    (
                        sig(format!("cam{i}.online"), true),
                        sig(format!("cam{i}.blocked"), false),
                    )
                });
                let person = pin
                    .person
                    .unwrap_or_else(|| sig(format!("cam{i}.person"), false));
                CameraStatus {
                    id: self.cfg.camera_id(i),
                    online,
                    blocked,
                    person,
                }
            })
            .collect()
    }

    fn timeline_fault(&self) -> FaultKind {
        self.cfg.scenario.fault_at(self.start.elapsed())
    }

    fn is_quiet(&self) -> bool {
        self.quiet.load(Ordering::Relaxed)
            || matches!(self.timeline_fault(), FaultKind::Quiet | FaultKind::Silent)
    }

    fn is_malformed(&self) -> bool {
        self.malformed.load(Ordering::Relaxed)
            || matches!(self.timeline_fault(), FaultKind::Malformed)
    }

    fn payload(&self) -> Vec<u8> {
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        if self.is_malformed() {
            let n = self.malformed_toggle.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(2) {
                return b"\xff\xfe<<not json>> {cameras: [".to_vec();
            }
            // valid JSON, but `ts` and every camera's `online` are missing
            let cams: Vec<serde_json::Value> = self
                .cameras()
                .into_iter()
                .map(|c| serde_json::json!({"id": c.id, "blocked": c.blocked}))
                .collect();
            return serde_json::to_vec(
                &serde_json::json!({"box_id": self.cfg.box_id, "cameras": cams}),
            )
            .expect("json");
        }
        serde_json::to_vec(&serde_json::json!({
            "box_id": self.cfg.box_id,
            "ts": ts,
            "cameras": self.cameras(),
        }))
        .expect("json")
    }
}

/// A running video box. Dropping it stops publishing (without a clean MQTT
/// disconnect); [`stop`](Self::stop) disconnects cleanly.
pub struct VideoBox {
    shared: Arc<Shared>,
    client: AsyncClient,
    cancel: CancellationToken,
    heartbeat_task: Option<JoinHandle<()>>,
    eventloop_task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VideoBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoBox")
            .field("box_id", &self.shared.cfg.box_id)
            .field("topic", &self.shared.topic)
            .finish()
    }
}

impl VideoBox {
    /// Connect to the broker (in the background, reconnecting as needed) and
    /// start publishing. The first status is published as soon as the
    /// connection is up. Must be called inside a tokio runtime.
    pub fn start(cfg: VideoBoxConfig) -> VideoBox {
        let topic = cfg.topic();
        let client_id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("firmware-sim-{}", cfg.box_id));
        let mut opts = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let shared = Arc::new(Shared {
            topic: topic.clone(),
            start: Instant::now(),
            quiet: AtomicBool::new(false),
            malformed: AtomicBool::new(false),
            malformed_toggle: AtomicU64::new(0),
            pins: Mutex::new(vec![CamPin::default(); cfg.cameras]),
            published: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            publish_now: Notify::new(),
            cfg,
        });
        let cancel = CancellationToken::new();

        let eventloop_task = {
            let shared = shared.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let mut last_error: Option<String> = None;
                loop {
                    let ev = tokio::select! {
                        _ = cancel.cancelled() => break,
                        ev = eventloop.poll() => ev,
                    };
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            tracing::info!(box_id = %shared.cfg.box_id, "video box connected to broker");
                            shared.connected.store(true, Ordering::Relaxed);
                            last_error = None;
                            // publish a status right away on (re)connection
                            shared.publish_now.notify_one();
                        }
                        Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        Err(e) => {
                            shared.connected.store(false, Ordering::Relaxed);
                            let msg = e.to_string();
                            if last_error.as_deref() != Some(&msg) {
                                tracing::warn!(box_id = %shared.cfg.box_id, error = %msg, "mqtt connection error; retrying");
                                last_error = Some(msg);
                            }
                            tokio::select! {
                                _ = cancel.cancelled() => break,
                                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            }
                        }
                    }
                }
            })
        };

        let heartbeat_task = {
            let shared = shared.clone();
            let cancel = cancel.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(shared.cfg.heartbeat);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = interval.tick() => {}
                        _ = shared.publish_now.notified() => {}
                    }
                    if !shared.connected.load(Ordering::Relaxed) || shared.is_quiet() {
                        continue;
                    }
                    let payload = shared.payload();
                    match client.try_publish(shared.topic.clone(), QoS::AtMostOnce, false, payload)
                    {
                        Ok(()) => {
                            shared.published.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tracing::warn!(error = %e, "video box publish failed"),
                    }
                }
            })
        };

        VideoBox {
            shared,
            client,
            cancel,
            heartbeat_task: Some(heartbeat_task),
            eventloop_task: Some(eventloop_task),
        }
    }

    /// The topic published to.
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// Id of camera `i` (1-based).
    pub fn camera_id(&self, i: usize) -> String {
        self.shared.cfg.camera_id(i)
    }

    /// Stop (true) or resume (false) publishing.
    pub fn set_quiet(&self, quiet: bool) {
        self.shared.quiet.store(quiet, Ordering::Relaxed);
        if !quiet {
            self.shared.publish_now.notify_one();
        }
    }

    /// Publish malformed payloads (alternately garbage and JSON missing fields).
    pub fn set_malformed(&self, malformed: bool) {
        self.shared.malformed.store(malformed, Ordering::Relaxed);
    }

    /// Pin camera `i` (1-based) online/blocked state (overrides the scenario)
    /// and publish a status at once. Out-of-range `i` is ignored.
    pub fn set_camera(&self, i: usize, online: bool, blocked: bool) {
        if self.with_pin(i, |p| p.online_blocked = Some((online, blocked))) {
            self.shared.publish_now.notify_one();
        }
    }

    /// Pin camera `i` (1-based) person detection and publish at once.
    pub fn set_person(&self, i: usize, person: bool) {
        if self.with_pin(i, |p| p.person = Some(person)) {
            self.shared.publish_now.notify_one();
        }
    }

    /// Return camera `i` to the scenario.
    pub fn release_camera(&self, i: usize) {
        self.with_pin(i, |p| *p = CamPin::default());
    }

    fn with_pin(&self, i: usize, f: impl FnOnce(&mut CamPin)) -> bool {
        let mut pins = self.shared.pins.lock().unwrap_or_else(|e| e.into_inner());
        match i.checked_sub(1).and_then(|k| pins.get_mut(k)) {
            Some(p) => {
                f(p);
                true
            }
            None => false,
        }
    }

    /// Publish a status now (unless quiet).
    pub fn publish_now(&self) {
        self.shared.publish_now.notify_one();
    }

    /// The cameras' current state (what the next normal status would carry).
    pub fn cameras(&self) -> Vec<CameraStatus> {
        self.shared.cameras()
    }

    /// Messages handed to the MQTT client so far.
    pub fn published(&self) -> u64 {
        self.shared.published.load(Ordering::Relaxed)
    }

    /// True while connected to the broker.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Stop publishing and disconnect from the broker. Idempotent.
    pub async fn stop(&mut self) {
        if let Some(t) = self.heartbeat_task.take() {
            t.abort();
            let _ = t.await;
        }
        let _ = self.client.try_disconnect();
        if let Some(t) = self.eventloop_task.take() {
            // give the event loop a moment to send DISCONNECT, then end it
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.cancel.cancel();
    }
}

impl Drop for VideoBox {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
