//! The MQTT client of one device: one subscription (an AI video box, a gas
//! monitor with an MQTT uplink …), each JSON message mapped to the device's
//! points by their `path`.
//!
//! Fail safe: a box that goes quiet, or only sends garbage, turns its points
//! bad after `heartbeat` and keeps them bad (re-sent every `heartbeat`) until
//! a valid message arrives. The last good value is never left standing.
//!
//! What counts as a *valid* message: a live (not retained) publish on the
//! device's topic whose payload is at most [`MAX_PAYLOAD`] bytes of JSON.
//! Points whose path is missing or whose value has the wrong type are bad
//! (`Decode`) in that message's readings; the message still counts as a sign
//! of life (the box is talking, its data is what is wrong).
//!
//! Retained messages are ignored: the broker hands them out on (re)subscribe
//! as the last thing the box once said, which may be hours old.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Packet, Publish, QoS, StateError,
    SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::MqttDevice;
use super::jsonpath::JsonPath;
use crate::backoff::Backoff;
use crate::config::{DataType, Device};
use crate::metrics::metrics;
use crate::model::{BadReason, Input, Quality, Reading, Value};
use crate::source::flood::{FloodGuard, Verdict};

/// Payloads larger than this are counted as malformed and dropped.
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// The client accepts packets up to this size so that a payload a bit over
/// [`MAX_PAYLOAD`] is dropped by us (counted) instead of breaking the
/// connection. Anything larger makes rumqttc drop the connection; that is
/// counted as a malformed payload too, and the source reconnects.
const MAX_PACKET: usize = 2 * 1024 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A heartbeat shorter than this would turn points bad between two
/// messages of a healthy box; it is raised to this.
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);
/// Malformed payloads are logged the first time and then every this many.
const LOG_EVERY: u64 = 100;

/// Converts the JSON value found at a point's path to the point's value.
///
/// - `Bool`: `true`/`false`, or the numbers `0`/`1`.
/// - `Ascii`: a string.
/// - any other type: a number, then `value * scale + offset`.
/// - no type: the JSON type as it comes (bool, number with scale/offset, or
///   string).
///
/// Everything else (null, objects, arrays, a string where a number or bool
/// is expected …) is an error, which the source turns into `Decode`.
pub fn json_to_value(
    v: &serde_json::Value,
    data_type: Option<DataType>,
    scale: f64,
    offset: f64,
) -> Result<Value, JsonValueError> {
    use serde_json::Value as J;
    let num = |n: &serde_json::Number| -> Result<Value, JsonValueError> {
        let x = n
            .as_f64()
            .ok_or_else(|| JsonValueError::OutOfRange(n.to_string()))?
            * scale
            + offset;
        if x.is_finite() {
            Ok(Value::Num(x))
        } else {
            Err(JsonValueError::OutOfRangeScaled(n.to_string()))
        }
    };
    let wrong = |expected, got: &J| JsonValueError::Type {
        expected,
        got: kind(got),
    };
    const BOOL: &str = "a boolean (true/false or 0/1)";
    match (data_type, v) {
        (Some(DataType::Bool), J::Bool(b)) => Ok(Value::Bool(*b)),
        (Some(DataType::Bool), J::Number(n)) => match n.as_f64() {
            Some(0.0) => Ok(Value::Bool(false)),
            Some(1.0) => Ok(Value::Bool(true)),
            _ => Err(JsonValueError::NotABool(n.to_string())),
        },
        (Some(DataType::Bool), other) => Err(wrong(BOOL, other)),
        (Some(DataType::Ascii), J::String(s)) => Ok(Value::Text(s.clone())),
        (Some(DataType::Ascii), other) => Err(wrong("a string", other)),
        (Some(_), J::Number(n)) => num(n),
        (Some(_), other) => Err(wrong("a number", other)),
        (None, J::Bool(b)) => Ok(Value::Bool(*b)),
        (None, J::Number(n)) => num(n),
        (None, J::String(s)) => Ok(Value::Text(s.clone())),
        (None, other) => Err(wrong("a boolean, number or string", other)),
    }
}

/// Why a JSON value is not a value of the point.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonValueError {
    #[error("the number {0} is out of range")]
    OutOfRange(String),
    #[error("the number {0} is out of range after scale/offset")]
    OutOfRangeScaled(String),
    #[error("expected a boolean (true/false or 0/1), got the number {0}")]
    NotABool(String),
    #[error("expected {expected}, got {got}")]
    Type {
        expected: &'static str,
        got: &'static str,
    },
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Why a payload is dropped as a whole (counted as malformed; not a
/// sign of life).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum Malformed {
    #[error("{0} bytes (over {MAX_PAYLOAD}) dropped")]
    TooLarge(usize),
    #[error("not JSON ({len} bytes): {why}")]
    NotJson { len: usize, why: String },
}

/// A payload's readings, one per point: good with a value, or bad
/// (`Decode`) with none.
#[derive(Debug)]
struct Decoded {
    readings: Vec<Reading>,
    /// How many points are bad.
    bad: usize,
    /// The first bad point and why, for the log.
    first_failure: Option<String>,
}

/// Maps one payload to the device's points. Pure (no I/O, no clock), so
/// any bytes a box or a stranger on the broker sends can be tried on it.
fn decode_payload(
    points: &[Mapped],
    device: &Arc<str>,
    payload: &[u8],
    now: chrono::DateTime<Utc>,
) -> Result<Decoded, Malformed> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Malformed::TooLarge(payload.len()));
    }
    let json: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| Malformed::NotJson {
            len: payload.len(),
            why: e.to_string(),
        })?;
    let mut first_failure: Option<String> = None;
    let mut bad = 0usize;
    let readings = points
        .iter()
        .map(|pt| {
            let res = match pt.path.get(&json) {
                None => Err(format!("`{}` not in the payload", pt.path)),
                Some(v) => json_to_value(v, pt.data_type, pt.scale, pt.offset)
                    .map_err(|e| format!("`{}`: {e}", pt.path)),
            };
            let (value, quality) = match res {
                Ok(v) => (Some(v), Quality::Good),
                Err(e) => {
                    bad += 1;
                    if first_failure.is_none() {
                        first_failure = Some(format!("point {}: {e}", pt.id));
                    }
                    (None, Quality::Bad(BadReason::Decode(e)))
                }
            };
            Reading {
                point: pt.id.clone(),
                device: device.clone(),
                value,
                quality,
                at: now,
            }
        })
        .collect();
    Ok(Decoded {
        readings,
        bad,
        first_failure,
    })
}

/// One point of the device.
struct Mapped {
    id: Arc<str>,
    path: JsonPath,
    data_type: Option<DataType>,
    scale: f64,
    offset: f64,
}

/// The state shared by the connection loop and the heartbeat.
struct Src {
    device: Arc<str>,
    topic: String,
    points: Vec<Mapped>,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
    heartbeat: Duration,
    /// When the points go bad unless a valid message arrives first.
    deadline: Instant,
    /// A valid message has arrived since the start.
    seen_valid: bool,
    /// Malformed payloads seen by this task (for log rate limiting).
    malformed: u64,
    /// The device's `max_rate`: messages over it are dropped undecoded.
    flood: FloodGuard,
    max_rate: f64,
}

/// Runs the MQTT source of one device until `shutdown` is cancelled,
/// connected to its [`Broker`](super::config::Broker) with that broker's
/// TLS, login and client-id prefix (`broker = "uplink"`: the uplink's).
/// Never returns early: a broker that is down or cannot be trusted, a
/// missing key file, a disconnect or a bad payload become bad-quality
/// readings and health inputs (the device's `offline` alarm).
pub async fn run(device: Device<MqttDevice>, tx: mpsc::Sender<Input>, shutdown: CancellationToken) {
    let heartbeat = device.heartbeat.max(MIN_HEARTBEAT);
    let points = device
        .points
        .iter()
        .map(|p| Mapped {
            id: Arc::from(p.id.as_str()),
            path: p.path.clone(),
            data_type: p.data_type,
            scale: p.scale,
            offset: p.offset,
        })
        .collect();
    let topic = device.topic.clone();
    let mut src = Src {
        device: Arc::from(device.id.as_str()),
        topic,
        points,
        tx,
        shutdown,
        heartbeat,
        deadline: Instant::now() + heartbeat,
        seen_valid: false,
        malformed: 0,
        flood: FloodGuard::new(device.max_rate, Instant::now()),
        max_rate: device.max_rate,
    };
    let conn = device.broker.connection();
    tracing::info!(device = %src.device, broker = %format!("{}://{}", conn.scheme(), conn.addr()), topic = ?src.topic, "mqtt source starting");

    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    // One session per turn: after an error the client is rebuilt from the
    // config, so a renewed certificate or password is read again.
    loop {
        let failure = match conn.options(conn.client_id(&device.id)) {
            Ok(mut opts) => {
                opts.set_clean_session(true);
                opts.set_max_packet_size(MAX_PACKET, 64 * 1024);
                match src.session(opts, &mut backoff).await {
                    Some(e) => e,
                    None => break,
                }
            }
            Err(e) => e.to_string(),
        };
        let delay = backoff.fail();
        let mut detail = format!("mqtt broker {}://{}: {failure}", conn.scheme(), conn.addr());
        if let Some(hint) = super::connection::tls_hint(&failure, conn) {
            detail = format!("{detail} ({hint})");
        }
        if backoff.failures() == 1 {
            tracing::warn!(device = %src.device, "{detail}; retrying");
        } else {
            tracing::debug!(device = %src.device, attempt = backoff.failures(), "{detail}");
        }
        metrics()
            .polls
            .with_label_values(&[&*src.device, "transport"])
            .inc();
        metrics()
            .device_up
            .with_label_values(&[&*src.device])
            .set(0);
        if !src.health(false, detail).await {
            break;
        }
        if src.until(tokio::time::sleep(delay)).await.is_none() {
            break;
        }
    }
    tracing::info!(device = %src.device, "mqtt source stopped");
}

impl Src {
    /// One MQTT session until its first error (returned, for the health
    /// detail) or shutdown (`None`).
    async fn session(&mut self, opts: MqttOptions, backoff: &mut Backoff) -> Option<String> {
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        let failure = loop {
            let event = self.until(eventloop.poll()).await?;
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if backoff.failures() > 0 {
                        tracing::info!(device = %self.device, "mqtt broker reachable again after {} failed attempts", backoff.failures());
                    }
                    backoff.reset();
                    // Clean session: the broker forgot the subscription.
                    if let Err(e) = client.try_subscribe(self.topic.clone(), QoS::AtLeastOnce) {
                        tracing::error!(device = %self.device, topic = %self.topic, "cannot subscribe: {e}");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure))
                    {
                        // A broker's ACL that does not let this login read
                        // the topic: the device can never be heard.
                        let detail = format!("broker refused the subscription to {:?}", self.topic);
                        tracing::error!(device = %self.device, "{detail}");
                        if !self.health(false, detail).await {
                            return None;
                        }
                    } else {
                        tracing::debug!(device = %self.device, topic = ?self.topic, "subscribed");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if !self.on_publish(p).await {
                        return None;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if let ConnectionError::MqttState(StateError::Deserialization(
                        rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n),
                    )) = &e
                    {
                        self.count_malformed(format_args!(
                            "a packet of {n} bytes (over {MAX_PACKET}) broke the connection"
                        ));
                    }
                    break e.to_string();
                }
            }
        };
        let _ = client.try_disconnect();
        Some(failure)
    }

    /// Drives `fut` to completion while keeping the heartbeat: every time
    /// the deadline passes, the points are sent bad. `None` on shutdown.
    /// `fut` is never dropped half-way except on shutdown.
    async fn until<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let shutdown = self.shutdown.clone();
        let mut fut = std::pin::pin!(fut);
        loop {
            let calm_at = self.flood.calm_at();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                out = &mut fut => return Some(out),
                _ = tokio::time::sleep_until(self.deadline) => {
                    if !self.expired().await {
                        return None;
                    }
                }
                // A flood ends by time passing, whether or not the device
                // sends anything more.
                _ = tokio::time::sleep_until(calm_at.unwrap_or(self.deadline)), if calm_at.is_some() => {
                    if !self.flood_ended().await {
                        return None;
                    }
                }
            }
        }
    }

    /// No valid message within the heartbeat: every point bad, device not ok.
    async fn expired(&mut self) -> bool {
        let now = Utc::now();
        let reason = if self.seen_valid {
            BadReason::Timeout
        } else {
            BadReason::NoData
        };
        let readings: Vec<Reading> = self
            .points
            .iter()
            .map(|p| Reading {
                point: p.id.clone(),
                device: self.device.clone(),
                value: None,
                quality: Quality::Bad(reason.clone()),
                at: now,
            })
            .collect();
        tracing::debug!(device = %self.device, "no message within heartbeat ({:?})", self.heartbeat);
        let m = metrics();
        m.polls.with_label_values(&[&*self.device, "timeout"]).inc();
        m.device_up.with_label_values(&[&*self.device]).set(0);
        m.readings
            .with_label_values(&[&*self.device])
            .inc_by(readings.len() as u64);
        self.deadline = Instant::now() + self.heartbeat;
        if !readings.is_empty() && !self.send(Input::Readings(readings)).await {
            return false;
        }
        self.health(false, "no message within heartbeat".into())
            .await
    }

    /// Handles one publish. `false` when the task must stop.
    async fn on_publish(&mut self, p: Publish) -> bool {
        if p.retain {
            tracing::debug!(device = %self.device, topic = %p.topic, "ignoring a retained message (not live)");
            return true;
        }
        // Before any decoding: a flood costs a counter, not a JSON parse.
        if let Verdict::Drop { started, log } = self.flood.check(Instant::now()) {
            return self.flood_drop(started, log).await;
        }
        let now = Utc::now();
        let m = metrics();
        let decoded = match decode_payload(&self.points, &self.device, &p.payload, now) {
            Ok(d) => d,
            Err(why) => {
                self.count_malformed(format_args!("payload on {}: {why}", p.topic));
                m.polls.with_label_values(&[&*self.device, "decode"]).inc();
                return true;
            }
        };
        let readings = decoded.readings;
        let detail = match &decoded.first_failure {
            Some(first) => {
                self.count_malformed(format_args!(
                    "payload on {}: {} of {} points not decodable, first {first}",
                    p.topic,
                    decoded.bad,
                    readings.len()
                ));
                m.polls.with_label_values(&[&*self.device, "decode"]).inc();
                format!(
                    "message received; {} of {} points not decodable",
                    decoded.bad,
                    readings.len()
                )
            }
            None => {
                m.polls.with_label_values(&[&*self.device, "ok"]).inc();
                "message received".to_string()
            }
        };
        self.seen_valid = true;
        self.deadline = Instant::now() + self.heartbeat;
        m.device_up.with_label_values(&[&*self.device]).set(1);
        m.readings
            .with_label_values(&[&*self.device])
            .inc_by(readings.len() as u64);
        if !readings.is_empty() && !self.send(Input::Readings(readings)).await {
            return false;
        }
        self.health(true, detail).await
    }

    /// One message over `max_rate` dropped: counted; logged when due; the
    /// first of a flood tells the engine (one `{device}.flood` alarm).
    async fn flood_drop(&mut self, started: bool, log: Option<u64>) -> bool {
        metrics()
            .flood_dropped
            .with_label_values(&[&*self.device])
            .inc();
        if let Some(n) = log {
            tracing::warn!(
                device = %self.device,
                dropped = n,
                in_flood = self.flood.dropped(),
                max_rate = self.max_rate,
                "device sends more than max_rate messages a second: the excess is dropped"
            );
        }
        if !started {
            return true;
        }
        self.send(Input::Flood {
            device: self.device.clone(),
            flooding: true,
            dropped: self.flood.dropped(),
            at: Utc::now(),
        })
        .await
    }

    /// The calm time after the last dropped message has passed: the
    /// flood is over. `false` on shutdown.
    async fn flood_ended(&mut self) -> bool {
        let Some(dropped) = self.flood.end(Instant::now()) else {
            return true;
        };
        tracing::info!(device = %self.device, dropped, "device back under max_rate: flood over");
        self.send(Input::Flood {
            device: self.device.clone(),
            flooding: false,
            dropped,
            at: Utc::now(),
        })
        .await
    }

    /// Counts one malformed payload; logs the first and then every
    /// [`LOG_EVERY`]th, so a flood of garbage does not flood the log.
    fn count_malformed(&mut self, what: std::fmt::Arguments<'_>) {
        self.malformed += 1;
        metrics()
            .malformed_payloads
            .with_label_values(&[&*self.device])
            .inc();
        if self.malformed == 1 || self.malformed.is_multiple_of(LOG_EVERY) {
            tracing::warn!(device = %self.device, count = self.malformed, "malformed mqtt payload: {what}");
        }
    }

    async fn health(&self, ok: bool, detail: String) -> bool {
        self.send(Input::DeviceHealth {
            device: self.device.clone(),
            ok,
            detail,
            at: Utc::now(),
        })
        .await
    }

    /// Sends to the rule engine; `false` on shutdown. If the engine is gone,
    /// waits for the shutdown that must follow.
    async fn send(&self, input: Input) -> bool {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            r = self.tx.send(input) => {
                if r.is_err() {
                    tracing::debug!(device = %self.device, "input channel closed; waiting for shutdown");
                    self.shutdown.cancelled().await;
                    return false;
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn points() -> Vec<Mapped> {
        let p = |id: &str, path: &str, data_type, scale| Mapped {
            id: Arc::from(id),
            path: JsonPath::parse(path).unwrap(),
            data_type,
            scale,
            offset: 0.0,
        };
        vec![
            p("online", "cameras[0].online", Some(DataType::Bool), 1.0),
            p("ch4", "data.ch4", Some(DataType::F32), 0.01),
            p("tag", "id", Some(DataType::Ascii), 1.0),
            p("any", "[1]", None, 1e300),
        ]
    }

    /// Payloads a broker could hand over: random bytes, JSON with random
    /// values where the points look, and JSON cut or spliced at random.
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        let json_value = prop_oneof![
            Just("null".to_string()),
            Just("1e308".to_string()),
            Just("-0".to_string()),
            Just("18446744073709551616".to_string()),
            any::<f64>().prop_map(|v| v.to_string()),
            any::<i64>().prop_map(|v| v.to_string()),
            any::<bool>().prop_map(|v| v.to_string()),
            "\\PC{0,8}".prop_map(|s| serde_json::Value::String(s).to_string()),
            Just("[]".to_string()),
            Just("{}".to_string()),
        ];
        let doc = (
            json_value.clone(),
            json_value.clone(),
            json_value.clone(),
            json_value,
        )
            .prop_map(|(a, b, c, d)| {
                format!(r#"{{"cameras":[{{"online":{a}}}],"data":{{"ch4":{b}}},"id":{c},"x":{d}}}"#)
            });
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            doc.clone().prop_map(String::into_bytes),
            (
                doc,
                any::<prop::sample::Index>(),
                prop::collection::vec(any::<u8>(), 0..8)
            )
                .prop_map(|(d, at, junk)| {
                    let mut b = d.into_bytes();
                    let i = at.index(b.len() + 1);
                    b.splice(i..i, junk);
                    b
                }),
            "\\[.{0,40}\\]".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever the payload, the source answers with one reading per
        /// point or drops it as malformed, never a panic; a good reading
        /// has a value (finite if a number), a bad one none.
        #[test]
        fn any_payload_never_panics(bytes in payload()) {
            let pts = points();
            let device: Arc<str> = Arc::from("vb");
            if let Ok(d) = decode_payload(&pts, &device, &bytes, Utc::now()) {
                prop_assert_eq!(d.readings.len(), pts.len());
                let bad = d.readings.iter().filter(|r| !r.quality.is_good()).count();
                prop_assert_eq!(bad, d.bad);
                prop_assert_eq!(d.first_failure.is_some(), bad > 0);
                for r in &d.readings {
                    match (&r.quality, &r.value) {
                        (Quality::Good, Some(Value::Num(v))) => prop_assert!(v.is_finite()),
                        (Quality::Good, Some(_)) => {}
                        (Quality::Bad(BadReason::Decode(_)), None) => {}
                        other => prop_assert!(false, "{other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn oversized_payloads_are_malformed() {
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert!(matches!(
            decode_payload(&points(), &Arc::from("vb"), &big, Utc::now()),
            Err(Malformed::TooLarge(_))
        ));
    }
}
