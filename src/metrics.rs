//! Prometheus counters and gauges, served at `/metrics`. Each is updated
//! next to the log line of the same event, so logs and metrics agree.

use std::sync::OnceLock;

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    /// Polls by device and result (`ok`, `timeout`, `transport`, `exception`, `decode`).
    pub polls: IntCounterVec,
    /// Frames that failed their CRC, had a wrong transaction id or could not
    /// be parsed, by device.
    pub bad_frames: IntCounterVec,
    /// MQTT source payloads that were not valid JSON or lacked a mapped field.
    pub malformed_payloads: IntCounterVec,
    /// Messages dropped because their device sent over its `max_rate`.
    pub flood_dropped: IntCounterVec,
    /// Readings handed to the rule engine, by device.
    pub readings: IntCounterVec,
    /// Alarm transitions by kind and state.
    pub alarm_events: IntCounterVec,
    /// Clears held back because the instance was younger than the
    /// engine's minimum alarm life (a flapping rule, no event storm).
    pub alarm_clears_held: IntCounterVec,
    /// Rows waiting in each durable queue.
    pub queue_depth: IntGaugeVec,
    /// Age in seconds of the oldest row in each durable queue.
    pub queue_oldest_age: IntGaugeVec,
    /// Rows dropped from a queue because its size limit was reached.
    pub queue_dropped: IntCounterVec,
    /// Rows delivered (acknowledged by the sink), by queue.
    pub delivered: IntCounterVec,
    /// Batches set aside because the sink rejected them (4xx), by queue.
    pub rejected: IntCounterVec,
    /// Rejected rows dropped from `rejected` by its cap or its retention.
    pub rejected_pruned: IntCounterVec,
    /// Devices currently answering (1) or not (0).
    pub device_up: IntGaugeVec,
    /// Share of a device's polls answered, by window (`1h`, `24h`).
    pub device_online_ratio: GaugeVec,
    /// Telemetry messages queued for the county, by kind.
    pub telemetry_messages: IntCounterVec,
    /// Readings and alarm events held in memory because the store refused
    /// them (disk full, I/O error), by `what` (`readings`, `events`).
    pub unstored: IntGaugeVec,
    /// Readings dropped because the store refused them for longer than the
    /// memory buffer holds (oldest first).
    pub unstored_dropped: IntCounterVec,
    /// Failed logins by reason (`refused`, `locked`, `users_file`).
    pub login_failures: IntCounterVec,
    /// Remote acknowledgements not applied before the engine saw them, by
    /// reason (`retained`, `bad_by`, `malformed`).
    pub remote_acks_ignored: IntCounterVec,
    /// Seconds one device poll took (request to decoded answer or error).
    pub poll_seconds: HistogramVec,
    /// Seconds an alarm event batch took to commit (queued and logged).
    pub alarm_commit_seconds: HistogramVec,
    /// Seconds from sending to the sink's acknowledgement, by sink
    /// (`uplink` publish to PubAck, `influxdb` write request).
    pub publish_seconds: HistogramVec,
}

/// Buckets from 1 ms to 10 s: a loopback poll, an fsync and a slow
/// county broker all land inside.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let registry = Registry::new();
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registration");
            c
        };
        let gv = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registration");
            g
        };
        let hv = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("metric definition");
            registry
                .register(Box::new(h.clone()))
                .expect("metric registration");
            h
        };
        Metrics {
            polls: cv(
                "riskgate_polls_total",
                "Device polls by result",
                &["device", "result"],
            ),
            bad_frames: cv(
                "riskgate_bad_frames_total",
                "Corrupt or mismatched frames",
                &["device"],
            ),
            malformed_payloads: cv(
                "riskgate_malformed_payloads_total",
                "Malformed MQTT source payloads",
                &["device"],
            ),
            flood_dropped: cv(
                "riskgate_flood_dropped_total",
                "Messages dropped because their device sent more than its max_rate a second",
                &["device"],
            ),
            readings: cv(
                "riskgate_readings_total",
                "Readings handed to the rule engine",
                &["device"],
            ),
            alarm_events: cv(
                "riskgate_alarm_events_total",
                "Alarm transitions",
                &["kind", "state"],
            ),
            alarm_clears_held: cv(
                "riskgate_alarm_clears_held_total",
                "Alarm clears held back by the minimum alarm life",
                &[],
            ),
            queue_depth: gv(
                "riskgate_queue_depth",
                "Rows waiting in a durable queue",
                &["queue"],
            ),
            queue_oldest_age: gv(
                "riskgate_queue_oldest_age_seconds",
                "Age of the oldest queued row",
                &["queue"],
            ),
            queue_dropped: cv(
                "riskgate_queue_dropped_total",
                "Rows dropped at the size limit",
                &["queue"],
            ),
            delivered: cv(
                "riskgate_delivered_total",
                "Rows acknowledged by the sink",
                &["queue"],
            ),
            rejected: cv(
                "riskgate_rejected_total",
                "Rows set aside after a 4xx",
                &["queue"],
            ),
            rejected_pruned: cv(
                "riskgate_rejected_pruned_total",
                "Rows dropped from the rejected table by its cap or retention",
                &["why"],
            ),
            device_up: gv(
                "riskgate_device_up",
                "1 while the device answers",
                &["device"],
            ),
            device_online_ratio: {
                let g = GaugeVec::new(
                    Opts::new(
                        "riskgate_device_online_ratio",
                        "Share of the device's polls answered over the window",
                    ),
                    &["device", "window"],
                )
                .expect("metric definition");
                registry
                    .register(Box::new(g.clone()))
                    .expect("metric registration");
                g
            },
            telemetry_messages: cv(
                "riskgate_telemetry_messages_total",
                "Telemetry messages queued for the county",
                &["kind"],
            ),
            unstored: gv(
                "riskgate_unstored",
                "Held in memory while the store refuses writes",
                &["what"],
            ),
            unstored_dropped: cv(
                "riskgate_unstored_dropped_total",
                "Readings dropped beyond the memory buffer while the store refused writes",
                &["what"],
            ),
            login_failures: cv(
                "riskgate_login_failures_total",
                "Failed logins to the operator page and API",
                &["reason"],
            ),
            remote_acks_ignored: cv(
                "riskgate_remote_acks_ignored_total",
                "Remote acknowledgements ignored before reaching the engine",
                &["reason"],
            ),
            poll_seconds: hv(
                "riskgate_poll_seconds",
                "Duration of one device poll",
                &["device"],
            ),
            alarm_commit_seconds: hv(
                "riskgate_alarm_commit_seconds",
                "Duration of one alarm event commit",
                &[],
            ),
            publish_seconds: hv(
                "riskgate_publish_seconds",
                "Duration from send to the sink's acknowledgement",
                &["sink"],
            ),
            registry,
        }
    })
}

pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let enc = prometheus::TextEncoder::new();
    let _ = enc.encode(&metrics().registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
