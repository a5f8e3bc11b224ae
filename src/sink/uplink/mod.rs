//! The county uplink: alarm events from the `Alarms` queue and, with
//! `[telemetry]`, real-time data from the `Telemetry` queue (a lane behind
//! the alarms: the driver offers alarms first, and telemetry may use only
//! part of the window, at a paced rate) to the county broker over one MQTT
//! connection, per `docs/contract/county-mqtt.md` (`contract.rs` is
//! the encoding; the queue holds the bytes it produced).
//!
//! rumqttc's `publish()` returning Ok only means "handed to the event
//! loop". A row is settled as delivered when the broker's PUBACK for *its*
//! packet arrives: the link notes which packet id each row got
//! (`Outgoing::Publish(pkid)` events come in publish order) and reports the
//! row on the matching `PubAck`. After any connection error the client and
//! its event loop are rebuilt from scratch and the driver publishes every
//! unacknowledged row again from the oldest, so order holds and nothing is
//! lost; a row may arrive twice (at least once), and consumers de-duplicate
//! on `event_id`. The session is persistent (`clean_session = false`), so
//! remote acknowledgements queued while we were away are delivered.

pub mod contract;
mod link;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;

use self::contract::{Identity, RemoteAck, StatusCounts};
use self::link::{Link, Sent};
use super::{Progress, Sink};
use crate::queue::{QueueId, Row, Store};

/// Rows published and not yet acknowledged, at most.
const WINDOW: usize = 32;
/// Of which telemetry at most: the rest of the window is always free for
/// alarm events, so a telemetry backlog never makes an alarm wait for room.
/// Small, because a publish handed to the connection cannot be overtaken:
/// an alarm queues behind every telemetry message already written to the
/// socket (a 200-point snapshot is 17 KB; eight of them are a second on a
/// slow 4G uplink). Two keep a replay moving at 20 a second over a link
/// with a 100 ms round trip.
const TELEMETRY_WINDOW: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("uplink {what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("uplink password: environment variable {0} is not set")]
    Env(String),
}

/// The uplink sink: its options, and the link while there is one.
pub struct UplinkSink {
    opts: MqttOptions,
    id: Identity,
    status_interval: Duration,
    accept_remote_ack: bool,
    /// `host:port` of the county broker, for the audit log.
    broker: String,
    /// For the status's `queue_depth`.
    store: Arc<Store>,
    counts: Arc<Mutex<StatusCounts>>,
    remote_acks: mpsc::UnboundedSender<RemoteAck>,
    link: Option<Link>,
    closing: bool,
    offline_sent: bool,
    /// With `[telemetry]`: the pace of telemetry publishes.
    pace: Option<Pace>,
    /// Notified when the gateway's health changes: the status goes out at
    /// once, not at the next interval.
    status_wake: Arc<tokio::sync::Notify>,
}

/// A token bucket: at most `rate` telemetry publishes a second, bursts of
/// one second's worth. It paces a backlog replayed after an outage, so
/// live alarms share the broker's and the link's capacity with it.
struct Pace {
    rate: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl Pace {
    fn available(&self) -> f64 {
        let refill = self.at.elapsed().as_secs_f64() * self.rate;
        (self.tokens + refill).min(self.rate.max(1.0))
    }

    fn take(&mut self, n: usize) {
        self.tokens = self.available() - n as f64;
        self.at = tokio::time::Instant::now();
    }
}

impl UplinkSink {
    /// The sink for `[uplink]`, or None without one. Remote acknowledgements
    /// from the county go to `remote_acks`.
    pub fn new(
        cfg: &crate::config::Config,
        store: Arc<Store>,
        counts: Arc<Mutex<StatusCounts>>,
        remote_acks: mpsc::UnboundedSender<RemoteAck>,
    ) -> Result<Option<UplinkSink>, UplinkError> {
        let Some(u) = &cfg.uplink else {
            return Ok(None);
        };
        let id = Identity::from_config(cfg);
        let mut opts = MqttOptions::new(cfg.uplink_client_id(), u.host.clone(), u.port);
        opts.set_keep_alive(u.keep_alive.0);
        // Persistent session, as the contract asks: the county's remote
        // acknowledgements queued while we were away are delivered.
        opts.set_clean_session(false);
        let will = id.status_payload(false, chrono::Utc::now(), &StatusCounts::default());
        opts.set_last_will(LastWill::new(
            id.status_topic(),
            will.to_string(),
            QoS::AtLeastOnce,
            true,
        ));
        opts.set_max_packet_size(256 * 1024, 256 * 1024);
        if let Some(user) = &u.username {
            let pass = match (&u.password_env, &u.password_file) {
                (Some(var), _) => std::env::var(var).map_err(|_| UplinkError::Env(var.clone()))?,
                (None, Some(f)) => read(f, "password file")?.trim_end().to_string(),
                (None, None) => String::new(),
            };
            opts.set_credentials(user.clone(), pass);
        }
        if let Some(t) = &u.tls {
            let ca = std::fs::read(&t.ca_file).map_err(|source| UplinkError::File {
                what: "CA file",
                path: t.ca_file.clone(),
                source,
            })?;
            let client_auth = match (&t.client_cert_file, &t.client_key_file) {
                (Some(c), Some(k)) => Some((
                    std::fs::read(c).map_err(|source| UplinkError::File {
                        what: "client certificate",
                        path: c.clone(),
                        source,
                    })?,
                    std::fs::read(k).map_err(|source| UplinkError::File {
                        what: "client key",
                        path: k.clone(),
                        source,
                    })?,
                )),
                _ => None,
            };
            // The broker's certificate is checked against `host`.
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            }));
        }
        Ok(Some(UplinkSink {
            opts,
            id,
            status_interval: u.status_interval.0,
            accept_remote_ack: u.accept_remote_ack,
            broker: format!("{}:{}", u.host, u.port),
            store,
            counts,
            remote_acks,
            link: None,
            closing: false,
            offline_sent: false,
            pace: cfg.telemetry.as_ref().map(|t| Pace {
                rate: f64::from(t.replay_rate),
                tokens: f64::from(t.replay_rate),
                at: tokio::time::Instant::now(),
            }),
            status_wake: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    /// Publishes the status whenever `wake` is notified (the gateway's
    /// faults changed), besides every `status_interval`.
    pub fn with_status_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.status_wake = wake;
        self
    }

    fn connected(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.connected)
    }

    /// Publishes the retained status (`online` with counts, or `offline`).
    fn publish_status(&mut self, online: bool) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let telemetry = self.store.depth(QueueId::Telemetry);
        // `queue_depth` keeps its 1.0 meaning (alarm events and readings);
        // telemetry has its own field since 1.1.
        counts.queue_depth = self.store.total_depth() - telemetry;
        counts.telemetry_queue_depth = self.pace.is_some().then_some(telemetry);
        let payload = self.id.status_payload(online, chrono::Utc::now(), &counts);
        let sent = if online { Sent::Status } else { Sent::Offline };
        link.publish(self.id.status_topic(), true, payload.to_string(), sent);
    }

    /// The link is gone: every row in flight is to be sent again.
    fn lost(&mut self, why: String) -> Progress {
        self.link = None;
        Progress::Lost(why)
    }

    /// The topic of each queue this sink carries; a queue without one is
    /// never offered room.
    fn topic(&self, queue: QueueId) -> Option<String> {
        match queue {
            QueueId::Alarms => Some(self.id.alarm_topic()),
            QueueId::Telemetry if self.pace.is_some() => Some(self.id.telemetry_topic()),
            QueueId::Readings | QueueId::Telemetry => None,
        }
    }

    async fn next(&mut self) -> Progress {
        if self.link.is_none() {
            if self.closing {
                return Progress::Closed;
            }
            self.link = Some(Link::connect(
                self.opts.clone(),
                2 * WINDOW + 16,
                self.status_interval,
            ));
        }
        let link = self.link.as_mut().expect("link");
        if let Some(why) = link.failed.take() {
            return self.lost(why);
        }
        if self.closing && !link.connected {
            return Progress::Closed;
        }
        let status_due = link.connected && !self.closing;
        // Both branches are cancel-safe: the MQTT event loop runs in its own
        // task and is never cancelled mid-poll.
        let ev = tokio::select! {
            ev = link.events.recv() => Some(ev),
            _ = link.status_tick.tick(), if status_due => None,
            _ = self.status_wake.notified(), if status_due => None,
        };
        let Some(ev) = ev else {
            self.publish_status(true);
            return Progress::Idle;
        };
        match ev {
            Some(Ok(ev)) => self.on_event(ev),
            Some(Err(why)) => self.lost(why),
            None => self.lost("MQTT event loop ended".into()),
        }
    }

    fn on_event(&mut self, ev: rumqttc::Event) -> Progress {
        use rumqttc::{Event, Outgoing, Packet};
        let link = self.link.as_mut().expect("link");
        match ev {
            Event::Incoming(Packet::ConnAck(ca)) => {
                tracing::info!(
                    session_present = ca.session_present,
                    "county uplink connected"
                );
                link.connected = true;
                if self.accept_remote_ack {
                    let _ = link
                        .client
                        .try_subscribe(self.id.ack_topic(), QoS::AtLeastOnce);
                }
                self.publish_status(true);
                Progress::Up
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                link.published(pkid);
                Progress::Idle
            }
            Event::Incoming(Packet::PubAck(a)) => match link.acked(a.pkid) {
                Some(Sent::Row(q, id)) => Progress::Settled(q, vec![id], super::Outcome::Delivered),
                Some(Sent::Offline) => Progress::Closed,
                _ => Progress::Idle,
            },
            // A retained acknowledgement would be applied again at every
            // reconnect, to whatever alarm then has that id: ignored.
            Event::Incoming(Packet::Publish(p)) if p.topic == self.id.ack_topic() && p.retain => {
                crate::metrics::metrics()
                    .remote_acks_ignored
                    .with_label_values(&["retained"])
                    .inc();
                tracing::warn!("retained remote acknowledgement ignored");
                Progress::Idle
            }
            Event::Incoming(Packet::Publish(p)) if p.topic == self.id.ack_topic() => {
                match serde_json::from_slice::<RemoteAck>(&p.payload) {
                    Ok(mut ack) => {
                        ack.from = self.broker.clone();
                        if let Err(why) = ack.check_by() {
                            crate::metrics::metrics()
                                .remote_acks_ignored
                                .with_label_values(&["bad_by"])
                                .inc();
                            tracing::warn!(alarm_id = %ack.alarm_id, why = %why, "remote acknowledgement refused");
                            ack.refused = Some(why);
                        } else {
                            tracing::info!(alarm_id = %ack.alarm_id, by = %ack.by, "remote acknowledgement from the county platform");
                        }
                        let _ = self.remote_acks.send(ack);
                    }
                    Err(e) => {
                        crate::metrics::metrics()
                            .malformed_payloads
                            .with_label_values(&["uplink-ack"])
                            .inc();
                        tracing::warn!(error = %e, "malformed remote acknowledgement ignored");
                    }
                }
                Progress::Idle
            }
            _ => Progress::Idle,
        }
    }
}

/// A window of publishes waiting for their PUBACK.
impl Sink for UplinkSink {
    fn room(&self, queue: QueueId) -> usize {
        if self.topic(queue).is_none() {
            return 0;
        }
        match &self.link {
            Some(l) if l.connected && !self.closing && l.failed.is_none() => {
                let room = WINDOW.saturating_sub(l.outstanding());
                match (queue, &self.pace) {
                    (QueueId::Telemetry, Some(p)) => room
                        .min(TELEMETRY_WINDOW.saturating_sub(l.outstanding_of(queue)))
                        .min(p.available().max(0.0) as usize),
                    _ => room,
                }
            }
            _ => 0,
        }
    }

    fn send(&mut self, queue: QueueId, rows: Vec<Row>) {
        let Some(topic) = self.topic(queue) else {
            return;
        };
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if let (QueueId::Telemetry, Some(p)) = (queue, self.pace.as_mut()) {
            p.take(rows.len());
        }
        for r in rows {
            link.publish(topic.clone(), false, r.body, Sent::Row(queue, r.id));
        }
    }

    async fn progress(&mut self) -> Progress {
        self.next().await
    }

    fn reset(&mut self) {
        self.link = None;
    }

    fn can_drain(&self) -> bool {
        self.connected()
    }

    /// Fresh telemetry before a backlog: the county gets today's snapshots
    /// on time while yesterday's outage replays behind them.
    fn fresh_first(&self, queue: QueueId) -> bool {
        queue == QueueId::Telemetry
    }

    /// With telemetry, often enough to hand over the next paced message.
    fn idle_wait(&self) -> Duration {
        match &self.pace {
            Some(p) => Duration::from_secs_f64((1.0 / p.rate).clamp(0.01, 1.0)),
            None => Duration::from_secs(1),
        }
    }

    fn close(&mut self) {
        self.closing = true;
        if self.connected() && !self.offline_sent {
            self.offline_sent = true;
            self.publish_status(false);
        }
    }

    async fn finish(self) {
        if let Some(link) = self.link {
            link.disconnect().await;
            if self.offline_sent {
                tracing::info!("county uplink closed: status offline published");
            }
        }
    }
}

fn read(path: &str, what: &'static str) -> Result<String, UplinkError> {
    std::fs::read_to_string(path).map_err(|source| UplinkError::File {
        what,
        path: path.to_string(),
        source,
    })
}
