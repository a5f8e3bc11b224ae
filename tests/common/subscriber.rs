//! The one MQTT subscriber of the tests: the county platform's side of the
//! uplink, and what checks the contract's consumer guarantees
//! (de-duplication on `event_id`, gap-free `seq`).

use std::time::Duration;

/// One message a `Subscriber` received.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: serde_json::Value,
    pub retain: bool,
}

/// How a `Subscriber` connects.
#[derive(Clone, Debug)]
pub struct SubscriberOpts {
    pub port: u16,
    pub client_id: String,
    pub topic: String,
    /// false: a persistent session, so that the broker queues QoS 1
    /// messages for the subscriber while it is away (or the broker restarts).
    pub clean_session: bool,
    pub credentials: Option<(String, String)>,
}

impl SubscriberOpts {
    pub fn new(port: u16, client_id: &str, topic: &str) -> SubscriberOpts {
        SubscriberOpts {
            port,
            client_id: client_id.to_string(),
            topic: topic.to_string(),
            clean_session: true,
            credentials: None,
        }
    }
}

/// An independent MQTT subscriber (QoS 1), standing in for the county
/// platform: it keeps every message it got in `seen` and reconnects by
/// itself after the broker went away.
pub struct Subscriber {
    rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    pub seen: Vec<Msg>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connects and returns once the subscription is acknowledged.
    pub async fn connect(o: SubscriberOpts) -> Subscriber {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut opts = MqttOptions::new(o.client_id.clone(), "127.0.0.1", o.port);
        opts.set_keep_alive(Duration::from_secs(10));
        opts.set_clean_session(o.clean_session);
        if let Some((u, p)) = &o.credentials {
            opts.set_credentials(u.clone(), p.clone());
        }
        let (client, mut el) = AsyncClient::new(opts, 1000);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let topic = o.topic.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Again after every reconnection: harmless on a
                        // resumed session, needed on a fresh one.
                        let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload =
                            serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                        let _ = tx.send(Msg {
                            topic: p.topic.clone(),
                            payload,
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("subscribed within 10 s")
            .unwrap();
        Subscriber {
            rx,
            seen: Vec::new(),
            task,
        }
    }

    /// The next message (also kept in `seen`); None once the connection task
    /// has ended. Callers bound the wait with a timeout.
    pub async fn next(&mut self) -> Option<Msg> {
        let m = self.rx.recv().await?;
        self.seen.push(m.clone());
        Some(m)
    }

    /// Moves what has arrived so far into `seen`.
    pub fn pump(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.seen.push(m);
        }
    }

    /// Receives until `done(self)` holds; panics after `limit`.
    pub async fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&Subscriber) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        self.pump();
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => self.seen.push(m),
                _ => panic!(
                    "timed out after {limit:?} waiting for {what}; {} messages seen, alarm seqs {:?}",
                    self.seen.len(),
                    self.alarms()
                        .iter()
                        .map(|a| a["seq"].as_u64().unwrap_or(0))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for a message matching `f(topic, payload)`, returning its
    /// payload; every message up to and including it is appended to `seen`
    /// as (topic, payload, retain) (and kept in `self.seen` too).
    pub async fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        seen: &mut Vec<(String, serde_json::Value, bool)>,
        f: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    let hit = f(&m.topic, &m.payload);
                    seen.push((m.topic.clone(), m.payload.clone(), m.retain));
                    self.seen.push(m.clone());
                    if hit {
                        return m.payload;
                    }
                }
                _ => panic!("timed out waiting for {what}; seen: {seen:#?}"),
            }
        }
    }

    /// Every alarm event received, duplicates included, in arrival order.
    pub fn alarms(&self) -> Vec<&serde_json::Value> {
        self.seen
            .iter()
            .filter(|m| m.topic.ends_with("/alarm"))
            .map(|m| &m.payload)
            .collect()
    }

    /// The distinct alarm seqs received.
    pub fn alarm_seqs(&self) -> std::collections::BTreeSet<u64> {
        self.alarms()
            .iter()
            .filter_map(|a| a["seq"].as_u64())
            .collect()
    }

    /// Waits until every seq 1..=`last` has arrived, then returns the alarm
    /// events de-duplicated on `event_id`, asserted gap-free.
    pub async fn every_event(
        &mut self,
        last: u64,
        limit: Duration,
    ) -> std::collections::BTreeMap<u64, serde_json::Value> {
        self.until(&format!("every seq 1..={last}"), limit, |c| c.has_all(last))
            .await;
        let got = dedupe_alarms(&self.alarms());
        assert_gap_free(&got, last);
        got
    }

    /// True once every seq 1..=n has arrived.
    pub fn has_all(&self, n: u64) -> bool {
        let s = self.alarm_seqs();
        (1..=n).all(|q| s.contains(&q))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects a clean-session subscriber as `id` to the broker on
/// 127.0.0.1:`port`, subscribed to `topic`; returns once the subscription is
/// acknowledged.
pub async fn subscribe(port: u16, topic: &str, id: &str) -> Subscriber {
    Subscriber::connect(SubscriberOpts::new(port, id, topic)).await
}

/// The contract's consumer side: de-duplicates alarm events on `event_id`
/// and checks what at-least-once allows and nothing more: a repeated
/// `event_id` carries the very same payload (no seq reused for another
/// event), `event_id` and `seq` agree, and first arrivals come in seq
/// order. Returns seq → event.
pub fn dedupe_alarms(
    events: &[&serde_json::Value],
) -> std::collections::BTreeMap<u64, serde_json::Value> {
    let mut by_id: std::collections::HashMap<String, serde_json::Value> = Default::default();
    let mut by_seq = std::collections::BTreeMap::new();
    let mut last_first = 0u64;
    for e in events {
        let id = e["event_id"].as_str().expect("event_id").to_string();
        let seq = e["seq"].as_u64().expect("seq");
        assert!(
            id.ends_with(&format!(":{seq:012}")),
            "event_id {id} and seq {seq} disagree"
        );
        match by_id.get(&id) {
            Some(prev) => assert_eq!(
                prev, *e,
                "event_id {id} arrived twice with different payloads"
            ),
            None => {
                assert!(
                    seq > last_first,
                    "first arrivals out of seq order: {seq} after {last_first}"
                );
                last_first = seq;
                by_id.insert(id, (*e).clone());
                by_seq.insert(seq, (*e).clone());
            }
        }
    }
    by_seq
}

/// Asserts that `events` holds exactly seq 1..=n.
pub fn assert_gap_free(events: &std::collections::BTreeMap<u64, serde_json::Value>, n: u64) {
    let seqs: Vec<u64> = events.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "seq must be gap-free 1..={n}"
    );
}
