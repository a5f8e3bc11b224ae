//! The county uplink: alarm events from the durable queue to the county
//! broker over MQTT, per `docs/contract/county-mqtt.md`.
//!
//! rumqttc's `publish()` returning Ok only means "handed to the event
//! loop". A row leaves the queue when the broker's PUBACK for *its* packet
//! arrives: the sink notes which packet id each row got
//! (`Outgoing::Publish(pkid)` events come in publish order) and deletes the
//! row on the matching `PubAck`. After any connection error the client and
//! its event loop are rebuilt from scratch and every unacknowledged row is
//! published again from the oldest, so order holds and nothing is lost; a
//! row may arrive twice (at least once), and consumers de-duplicate on
//! `event_id`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::contract::{Identity, RemoteAck, StatusCounts};
use crate::store::Store;

/// Rows published and not yet acknowledged, at most.
const WINDOW: usize = 32;

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

/// Everything needed to (re)connect.
#[derive(Clone)]
pub struct UplinkSink {
    opts: MqttOptions,
    id: Identity,
    status_interval: Duration,
    accept_remote_ack: bool,
}

impl UplinkSink {
    pub fn new(cfg: &crate::config::Config) -> Result<Option<UplinkSink>, UplinkError> {
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
        }))
    }

    /// Delivers the uplink queue until `shutdown`. Then, for up to `drain`,
    /// it goes on delivering what is queued, publishes the retained
    /// `offline` status and disconnects cleanly.
    pub async fn run(
        self,
        store: Arc<Store>,
        wake: Arc<Notify>,
        acks: mpsc::Sender<RemoteAck>,
        counts: Arc<Mutex<StatusCounts>>,
        shutdown: CancellationToken,
        drain: Duration,
    ) {
        let mut backoff = Backoff::default();
        loop {
            let (client, eventloop) = AsyncClient::new(self.opts.clone(), 2 * WINDOW + 16);
            let mut conn = Connection::new(&self, client, &store, &counts);
            let end = conn.serve(eventloop, &wake, &acks, &shutdown, drain).await;
            match end {
                End::Stopped => return,
                End::Lost(why) => {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    let wait = if conn.was_connected {
                        Duration::from_millis(200)
                    } else {
                        backoff.fail()
                    };
                    if conn.was_connected {
                        backoff.reset();
                    }
                    tracing::warn!(reason = %why, retry_in = ?wait, "county uplink connection lost; unacknowledged alarms stay queued");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
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

enum End {
    Stopped,
    Lost(String),
}

/// What a packet id stands for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sent {
    Row(i64),
    Status,
    Offline,
}

/// One connection's bookkeeping.
struct Connection<'a> {
    sink: &'a UplinkSink,
    client: AsyncClient,
    store: &'a Store,
    counts: &'a Mutex<StatusCounts>,
    /// Publishes handed to the client, waiting for their packet id.
    awaiting_pkid: VecDeque<Sent>,
    /// Packet ids waiting for their PUBACK.
    by_pkid: HashMap<u16, Sent>,
    /// Highest queue row id published on this connection.
    last_sent: i64,
    connected: bool,
    was_connected: bool,
    offline_acked: bool,
}

impl<'a> Connection<'a> {
    fn new(
        sink: &'a UplinkSink,
        client: AsyncClient,
        store: &'a Store,
        counts: &'a Mutex<StatusCounts>,
    ) -> Self {
        Connection {
            sink,
            client,
            store,
            counts,
            awaiting_pkid: VecDeque::new(),
            by_pkid: HashMap::new(),
            last_sent: 0,
            connected: false,
            was_connected: false,
            offline_acked: false,
        }
    }

    fn outstanding(&self) -> usize {
        self.awaiting_pkid.len() + self.by_pkid.len()
    }

    async fn serve(
        &mut self,
        mut el: EventLoop,
        wake: &Notify,
        acks: &mpsc::Sender<RemoteAck>,
        shutdown: &CancellationToken,
        drain: Duration,
    ) -> End {
        let mut status_tick = tokio::time::interval(self.sink.status_interval);
        status_tick.tick().await;
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut offline_sent = false;
        loop {
            if shutdown.is_cancelled() && drain_until.is_none() {
                if !self.connected {
                    return End::Stopped;
                }
                drain_until = Some(tokio::time::Instant::now() + drain);
            }
            if let Some(deadline) = drain_until {
                let queue_empty = self
                    .store
                    .stats("uplink")
                    .map(|s| s.depth == 0)
                    .unwrap_or(true);
                let done = queue_empty && self.outstanding() == 0;
                if !offline_sent && (done || tokio::time::Instant::now() >= deadline) {
                    offline_sent = true;
                    self.publish_status(false);
                }
                if self.offline_acked
                    || (offline_sent
                        && tokio::time::Instant::now() >= deadline + Duration::from_secs(2))
                {
                    let _ = self.client.try_disconnect();
                    // Let the event loop write the DISCONNECT.
                    let _ = tokio::time::timeout(Duration::from_millis(500), async {
                        loop {
                            match el.poll().await {
                                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                                _ => {}
                            }
                        }
                    })
                    .await;
                    tracing::info!("county uplink closed: status offline published");
                    return End::Stopped;
                }
            }
            if self.connected
                && !offline_sent
                && let Err(e) = self.fill_window()
            {
                return End::Lost(e);
            }
            let tick_deadline = drain_until.map(|d| d + Duration::from_secs(3));
            tokio::select! {
                ev = el.poll() => match ev {
                    Ok(ev) => self.on_event(ev, acks).await,
                    Err(e) => return End::Lost(e.to_string()),
                },
                _ = wake.notified(), if self.connected => {}
                _ = status_tick.tick(), if self.connected && !offline_sent => self.publish_status(true),
                _ = shutdown.cancelled(), if drain_until.is_none() => {}
                _ = sleep_until_opt(tick_deadline) => {}
            }
        }
    }

    async fn on_event(&mut self, ev: Event, acks: &mpsc::Sender<RemoteAck>) {
        match ev {
            Event::Incoming(Packet::ConnAck(ca)) => {
                tracing::info!(
                    session_present = ca.session_present,
                    "county uplink connected"
                );
                self.connected = true;
                self.was_connected = true;
                if self.sink.accept_remote_ack {
                    let _ = self
                        .client
                        .try_subscribe(self.sink.id.ack_topic(), QoS::AtLeastOnce);
                }
                self.publish_status(true);
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(s) = self.awaiting_pkid.pop_front() {
                    self.by_pkid.insert(pkid, s);
                }
            }
            Event::Incoming(Packet::PubAck(a)) => match self.by_pkid.remove(&a.pkid) {
                Some(Sent::Row(id)) => {
                    if let Err(e) = self.store.ack_uplink(&[id]) {
                        tracing::error!(error = %e, "uplink queue ack failed; the row will be sent again");
                    }
                }
                Some(Sent::Offline) => self.offline_acked = true,
                _ => {}
            },
            Event::Incoming(Packet::Publish(p)) if p.topic == self.sink.id.ack_topic() => {
                match serde_json::from_slice::<RemoteAck>(&p.payload) {
                    Ok(ack) => {
                        tracing::info!(alarm_id = %ack.alarm_id, by = %ack.by, "remote acknowledgement from the county platform");
                        let _ = acks.send(ack).await;
                    }
                    Err(e) => {
                        crate::metrics::metrics()
                            .malformed_payloads
                            .with_label_values(&["uplink-ack"])
                            .inc();
                        tracing::warn!(error = %e, "malformed remote acknowledgement ignored");
                    }
                }
            }
            _ => {}
        }
    }

    /// Publishes queued rows until WINDOW are outstanding.
    fn fill_window(&mut self) -> Result<(), String> {
        let room = WINDOW.saturating_sub(self.outstanding());
        if room == 0 {
            return Ok(());
        }
        let rows = self
            .store
            .peek_uplink(self.last_sent, room)
            .map_err(|e| e.to_string())?;
        for r in rows {
            self.client
                .try_publish(r.topic, QoS::AtLeastOnce, false, r.payload.into_bytes())
                .map_err(|e| format!("publish: {e}"))?;
            self.awaiting_pkid.push_back(Sent::Row(r.id));
            self.last_sent = r.id;
        }
        Ok(())
    }

    fn publish_status(&mut self, online: bool) {
        let mut counts = *self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.queue_depth = self.store.stats("uplink").map(|s| s.depth).unwrap_or(0)
            + self.store.stats("influx").map(|s| s.depth).unwrap_or(0);
        let payload = self
            .sink
            .id
            .status_payload(online, chrono::Utc::now(), &counts);
        if self
            .client
            .try_publish(
                self.sink.id.status_topic(),
                QoS::AtLeastOnce,
                true,
                payload.to_string(),
            )
            .is_ok()
        {
            self.awaiting_pkid
                .push_back(if online { Sent::Status } else { Sent::Offline });
        }
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
