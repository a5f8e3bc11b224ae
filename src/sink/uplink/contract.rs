//! The county uplink contract (`docs/contract/county-mqtt.md`, a copy of
//! `shared/contracts/`): topics and payloads, built in one place. The
//! uplink owns this encoding; the store keeps the bytes it produces.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value as J, json};

use crate::config::Config;
use crate::model::{AlarmState, AlarmTransition, level_color};
use crate::queue::LoggedEvent;

pub const ALARM_SCHEMA: &str = "riskgate.alarm.v1";
pub const STATUS_SCHEMA: &str = "riskgate.status.v1";

/// The site's identity and the uplink's topic names.
#[derive(Clone, Debug)]
pub struct Identity {
    pub gateway_id: String,
    pub site_id: String,
    pub site_kind: &'static str,
    pub region_code: Option<String>,
    pub prefix: String,
    pub tz: chrono_tz::Tz,
    /// The store's epoch (`queue::Store::epoch`), carried in `event_id`.
    pub epoch: Option<u32>,
}

impl Identity {
    pub fn from_config(cfg: &Config) -> Identity {
        Identity {
            gateway_id: cfg.gateway.id.clone(),
            site_id: cfg.site.id.clone(),
            site_kind: cfg.site.kind.as_str(),
            region_code: cfg.site.region_code.clone(),
            prefix: cfg
                .uplink
                .as_ref()
                .map(|u| u.topic_prefix.clone())
                .unwrap_or_else(|| "riskgate/v1".into()),
            tz: cfg.tz(),
            epoch: None,
        }
    }

    /// The identity whose `event_id`s carry the store's epoch.
    pub fn with_epoch(mut self, epoch: u32) -> Identity {
        self.epoch = Some(epoch);
        self
    }

    pub fn alarm_topic(&self) -> String {
        format!("{}/{}/alarm", self.prefix, self.site_id)
    }
    pub fn status_topic(&self) -> String {
        format!("{}/{}/status", self.prefix, self.site_id)
    }
    pub fn telemetry_topic(&self) -> String {
        format!("{}/{}/telemetry", self.prefix, self.site_id)
    }
    pub fn ack_topic(&self) -> String {
        format!("{}/{}/ack", self.prefix, self.site_id)
    }

    /// RFC 3339 with milliseconds and the site's offset, as the contract asks.
    pub fn time(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz)
            .to_rfc3339_opts(SecondsFormat::Millis, false)
    }

    /// `event_id` is the gateway id, the store's epoch and the zero-padded
    /// `seq`: unique per gateway for ever, because `seq` is persisted and
    /// never reused within an epoch, and a store made afresh (disk lost) or
    /// restored from an older copy gets a new epoch. At most 64 + 1 + 8 + 1
    /// + 20 characters, within the contract's 128.
    pub fn event_id(&self, seq: u64) -> String {
        match self.epoch {
            Some(e) => format!("{}:{e:08x}:{seq:012}", self.gateway_id),
            None => format!("{}:{seq:012}", self.gateway_id),
        }
    }

    /// The event as queued for the uplink and kept in the alarm log, once
    /// the store has given it `seq` (inside the transaction that persists
    /// that `seq`).
    pub fn alarm_event(&self, seq: u64, t: &AlarmTransition) -> LoggedEvent {
        LoggedEvent {
            event_id: self.event_id(seq),
            alarm_id: t.alarm_id.clone(),
            at_ms: t.ts.timestamp_millis(),
            body: self.alarm_payload(seq, t).to_string(),
        }
    }

    pub fn alarm_payload(&self, seq: u64, t: &AlarmTransition) -> J {
        let mut v = json!({
            "schema": ALARM_SCHEMA,
            "event_id": self.event_id(seq),
            "seq": seq,
            "gateway_id": self.gateway_id,
            "site_id": self.site_id,
            "site_kind": self.site_kind,
            "alarm_id": t.alarm_id,
            "rule_id": t.rule_id,
            "kind": t.kind,
            "level": t.level,
            "level_color": level_color(t.level),
            "state": match t.state {
                AlarmState::Raised => "raised",
                AlarmState::Escalated => "escalated",
                AlarmState::Acknowledged => "acknowledged",
                AlarmState::Cleared => "cleared",
            },
            "message": truncate(&t.message, 1024),
            "raised_at": self.time(t.raised_at),
            "ts": self.time(t.ts),
        });
        let o = v.as_object_mut().expect("object");
        if let Some(rc) = &self.region_code {
            o.insert("region_code".into(), json!(rc));
        }
        if let Some(p) = &t.point_id {
            o.insert("point_id".into(), json!(truncate(p, 128)));
        }
        if let Some(p) = &t.point_name {
            o.insert("point_name".into(), json!(truncate(p, 256)));
        }
        if let Some(x) = &t.value {
            o.insert("value".into(), x.clone());
        } else if t.point_id.is_some() {
            // A point alarm without a value: the reading was bad (fail safe).
            o.insert("value".into(), J::Null);
        }
        if let Some(u) = &t.unit {
            o.insert("unit".into(), json!(truncate(u, 32)));
        }
        if let Some(x) = &t.threshold {
            o.insert("threshold".into(), x.clone());
        }
        if let Some(b) = &t.acked_by {
            o.insert("acked_by".into(), json!(truncate(b, 128)));
        }
        if let Some(q) = &t.quality {
            o.insert("quality".into(), json!(q));
        }
        if let Some(d) = t.detail.as_ref().filter(|d| !d.is_empty()) {
            // Contract 1.1: at most 16 flat facts.
            let d: serde_json::Map<String, J> = d
                .iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .take(16)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            o.insert("detail".into(), J::Object(d));
        }
        if !t.actions.is_empty() {
            o.insert(
                "actions".into(),
                serde_json::to_value(&t.actions).unwrap_or(J::Null),
            );
        }
        v
    }

    pub fn status_payload(&self, online: bool, now: DateTime<Utc>, extra: &StatusCounts) -> J {
        let mut v = json!({
            "schema": STATUS_SCHEMA,
            "gateway_id": self.gateway_id,
            "site_id": self.site_id,
            "state": if online { "online" } else { "offline" },
            "ts": self.time(now),
            "version": env!("CARGO_PKG_VERSION"),
        });
        if online {
            let o = v.as_object_mut().expect("object");
            o.insert("active_alarms".into(), json!(extra.active_alarms));
            o.insert("devices_online".into(), json!(extra.devices_online));
            o.insert("devices_total".into(), json!(extra.devices_total));
            o.insert("queue_depth".into(), json!(extra.queue_depth));
            if let Some(t) = extra.telemetry_queue_depth {
                o.insert("telemetry_queue_depth".into(), json!(t));
            }
            // Contract 1.1: degraded while a fault of the gateway itself
            // (store, sink, task) is active; the schema caps the list at 32.
            let health = if extra.faults.is_empty() {
                "ok"
            } else {
                "degraded"
            };
            o.insert("health".into(), json!(health));
            let faults: Vec<String> = extra
                .faults
                .iter()
                .take(32)
                .map(|f| truncate(f, 128))
                .collect();
            o.insert("faults".into(), json!(faults));
        }
        v
    }
}

/// Numbers for the retained status.
#[derive(Clone, Debug, Default)]
pub struct StatusCounts {
    pub active_alarms: u64,
    pub devices_online: u64,
    pub devices_total: u64,
    pub queue_depth: u64,
    /// With `[telemetry]` only (status 1.1).
    pub telemetry_queue_depth: Option<u64>,
    /// Rule ids of the gateway's own active fault alarms
    /// (`rules::health::is_gateway_fault`).
    pub faults: Vec<String>,
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// A remote acknowledgement from the county platform.
#[derive(Clone, Debug, serde::Deserialize, PartialEq)]
pub struct RemoteAck {
    pub alarm_id: String,
    pub by: String,
    #[serde(default)]
    pub at: Option<String>,
    /// Set by the uplink when the message fails its checks (`by`): the
    /// engine task then only writes the refusal to the audit log.
    #[serde(skip)]
    pub refused: Option<String>,
    /// The broker it came from (`host:port`), for the audit log.
    #[serde(skip)]
    pub from: String,
}

impl RemoteAck {
    /// `by` names a person or a console: non-empty, at most 64
    /// characters, no control characters (it reaches logs, the audit log
    /// and the page).
    pub fn check_by(&self) -> Result<(), String> {
        if self.by.trim().is_empty() {
            Err("`by` is empty".into())
        } else if self.by.chars().count() > 64 {
            Err("`by` is longer than 64 characters".into())
        } else if self.by.chars().any(char::is_control) {
            Err("`by` holds control characters".into())
        } else {
            Ok(())
        }
    }
}
