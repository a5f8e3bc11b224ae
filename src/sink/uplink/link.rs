//! One MQTT connection of the uplink: the client, its event loop, and which
//! packet id stands for which publish.
//!
//! The event loop runs in a task of its own that only polls and forwards
//! events, so `EventLoop::poll()` is never cancelled half-way by the sink's
//! timers; the task ends at the first error (the link is then rebuilt from
//! scratch) or when the link is dropped.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Interval;

use crate::queue::QueueId;

/// What a packet id stands for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Sent {
    Row(QueueId, i64),
    Status,
    Offline,
}

pub(super) struct Link {
    pub client: AsyncClient,
    /// Events from the event loop task, in order; an `Err` is its last.
    pub events: mpsc::Receiver<Result<Event, String>>,
    task: JoinHandle<()>,
    pub connected: bool,
    /// A publish the client refused (its request channel was full or gone).
    pub failed: Option<String>,
    pub status_tick: Interval,
    /// Publishes handed to the client, waiting for their packet id, with
    /// the time they were handed over (for the publish latency).
    awaiting_pkid: VecDeque<(Sent, Instant)>,
    /// Packet ids waiting for their PUBACK.
    by_pkid: HashMap<u16, (Sent, Instant)>,
}

impl Link {
    /// Starts connecting; `ConnAck` arrives as an event.
    pub fn connect(opts: MqttOptions, cap: usize, status_every: Duration) -> Link {
        let (client, mut el) = AsyncClient::new(opts, cap);
        let (tx, events) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let ev = el.poll().await.map_err(|e| e.to_string());
                let last = ev.is_err();
                if tx.send(ev).await.is_err() || last {
                    return;
                }
            }
        });
        let start = tokio::time::Instant::now() + status_every;
        Link {
            client,
            events,
            task,
            connected: false,
            failed: None,
            status_tick: tokio::time::interval_at(start, status_every),
            awaiting_pkid: VecDeque::new(),
            by_pkid: HashMap::new(),
        }
    }

    /// Publishes and remembers what for; a refused publish fails the link.
    pub fn publish(&mut self, topic: String, retain: bool, payload: String, what: Sent) {
        if self.failed.is_some() {
            return;
        }
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload.into_bytes())
        {
            Ok(()) => self.awaiting_pkid.push_back((what, Instant::now())),
            Err(e) if matches!(what, Sent::Row(..)) => self.failed = Some(format!("publish: {e}")),
            // A status that could not be handed over is not worth a
            // reconnect: the next tick publishes a fresh one.
            Err(_) => {}
        }
    }

    /// `Outgoing::Publish(pkid)`: the oldest publish without an id got it.
    pub fn published(&mut self, pkid: u16) {
        if let Some(s) = self.awaiting_pkid.pop_front() {
            self.by_pkid.insert(pkid, s);
        }
    }

    /// The PUBACK of `pkid`: what it stands for. A row's time from hand-over
    /// to acknowledgement is recorded (status messages are not rows).
    pub fn acked(&mut self, pkid: u16) -> Option<Sent> {
        let (sent, at) = self.by_pkid.remove(&pkid)?;
        if matches!(sent, Sent::Row(..)) {
            crate::metrics::metrics()
                .publish_seconds
                .with_label_values(&["uplink"])
                .observe(at.elapsed().as_secs_f64());
        }
        Some(sent)
    }

    pub fn outstanding(&self) -> usize {
        self.awaiting_pkid.len() + self.by_pkid.len()
    }

    /// Rows of `q` published and not yet acknowledged.
    pub fn outstanding_of(&self, q: QueueId) -> usize {
        self.awaiting_pkid
            .iter()
            .chain(self.by_pkid.values())
            .filter(|(s, _)| matches!(s, Sent::Row(r, _) if *r == q))
            .count()
    }

    /// Sends DISCONNECT and gives the event loop a moment to write it.
    pub async fn disconnect(mut self) {
        if self.connected {
            let _ = self.client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Some(ev) = self.events.recv().await {
                    match ev {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        _ => {}
                    }
                }
            })
            .await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}
