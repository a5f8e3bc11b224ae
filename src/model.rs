//! The data that flows through the pipeline: readings from sources, alarm
//! transitions from the rule engine, and the contract's event payload.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A point's id as written in the config (`ch4.1301.t1`). Shared, cheap to clone.
pub type PointId = Arc<str>;

/// A decoded value. Analog values are `f64` after scale and offset; bits are
/// `bool`; ASCII registers are `Text`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Num(f64),
    Text(String),
}

impl Value {
    /// Numeric view used by comparisons: `true` is 1, `false` is 0.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(v) => Some(*v),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Text(_) => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Num(v) => Some(*v != 0.0),
            Value::Text(_) => None,
        }
    }
    /// The value as the contract's JSON (`number | boolean | null`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Num(v) => serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(_) => serde_json::Value::Null,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Num(v) => write!(f, "{}", trim_float(*v)),
            Value::Text(s) => write!(f, "{s}"),
        }
    }
}

/// Formats a float the way an operator reads it: at most 3 decimals, no
/// trailing zeros (`1.62`, `1.5`, `20`).
pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Why a reading is not trustworthy. Every variant is treated as the unsafe
/// state by the rules (fail safe).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum BadReason {
    /// The request timed out.
    Timeout,
    /// The connection failed or was reset.
    Transport(String),
    /// The device answered with a Modbus exception code.
    Exception(u8),
    /// The answer could not be decoded (wrong length, NaN, bad JSON path).
    Decode(String),
    /// No good reading within the configured age.
    Stale,
    /// The source has not delivered anything yet.
    NoData,
    /// The value is outside the sensor's configured range (`[[quality]]
    /// range`): a sensor past its end of scale reads nothing trustworthy.
    OverRange,
    /// The device's own fault or status bits say this point is faulty
    /// (`[[quality]] fault`).
    DeviceFault,
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReason::Timeout => write!(f, "timeout"),
            BadReason::Transport(e) => write!(f, "transport error: {e}"),
            BadReason::Exception(c) => write!(f, "modbus exception {c:#04x}"),
            BadReason::Decode(e) => write!(f, "decode error: {e}"),
            BadReason::Stale => write!(f, "stale"),
            BadReason::NoData => write!(f, "no data"),
            BadReason::OverRange => write!(f, "over range"),
            BadReason::DeviceFault => write!(f, "device fault"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Good,
    Bad(BadReason),
}

impl Quality {
    pub fn is_good(&self) -> bool {
        matches!(self, Quality::Good)
    }
    /// The quality as stored in InfluxDB: 0 good, 1 bad.
    pub fn code(&self) -> u8 {
        if self.is_good() { 0 } else { 1 }
    }
    pub fn label(&self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Bad(BadReason::Timeout) => "timeout",
            Quality::Bad(BadReason::Transport(_)) => "transport",
            Quality::Bad(BadReason::Exception(_)) => "exception",
            Quality::Bad(BadReason::Decode(_)) => "decode",
            Quality::Bad(BadReason::Stale) => "stale",
            Quality::Bad(BadReason::NoData) => "no_data",
            Quality::Bad(BadReason::OverRange) => "over_range",
            Quality::Bad(BadReason::DeviceFault) => "device_fault",
        }
    }
}

/// One observation of one point. `at` is when the poll completed (or when the
/// MQTT message arrived), not when it is written anywhere.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub point: PointId,
    pub device: Arc<str>,
    pub value: Option<Value>,
    pub quality: Quality,
    pub at: DateTime<Utc>,
}

/// What sources send to the rule engine.
#[derive(Clone, Debug)]
pub enum Input {
    Readings(Vec<Reading>),
    /// A device answered (`ok = true`) or failed a whole poll.
    DeviceHealth {
        device: Arc<str>,
        ok: bool,
        detail: String,
        at: DateTime<Utc>,
    },
    /// A device that pushes its data sends more than its `max_rate`
    /// (`flooding`, once at the start), or has been calm again for
    /// `source::flood::CALM_AFTER` (once at the end); `dropped` messages
    /// so far in this flood.
    Flood {
        device: Arc<str>,
        flooding: bool,
        dropped: u64,
        at: DateTime<Utc>,
    },
}

/// Alarm severity: 1 red (most severe) … 4 blue, as in the Emergency Response
/// Law and GB 50863 (standards-research.md §6).
pub fn level_color(level: u8) -> &'static str {
    match level {
        1 => "red",
        2 => "orange",
        3 => "yellow",
        _ => "blue",
    }
}

/// The kinds of alarm the contract knows (`alarm-event.schema.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    Threshold,
    Rate,
    Interlock,
    Offline,
    Stale,
    Fault,
    Consistency,
    /// An escalation rule's instance (contract 1.1).
    Escalation,
    /// A sensor or cabinet opened, covered or removed (contract 1.1): an
    /// SL 651 station's cabinet door.
    Tamper,
    /// A total over a time window past its limit, e.g. rainfall (contract 1.1).
    Accumulation,
    /// An operator's calibration window (标校), and the alarms its point's
    /// rules raise inside it: sent, never suppressed (contract 1.1).
    Calibration,
}

impl AlarmKind {
    /// The contract's name of the kind, also the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Threshold => "threshold",
            AlarmKind::Rate => "rate",
            AlarmKind::Interlock => "interlock",
            AlarmKind::Offline => "offline",
            AlarmKind::Stale => "stale",
            AlarmKind::Fault => "fault",
            AlarmKind::Consistency => "consistency",
            AlarmKind::Escalation => "escalation",
            AlarmKind::Tamper => "tamper",
            AlarmKind::Accumulation => "accumulation",
            AlarmKind::Calibration => "calibration",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    Raised,
    Escalated,
    Acknowledged,
    Cleared,
}

/// The result of an action a rule took (a Modbus write, an MQTT publish).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    pub kind: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One transition of one alarm instance, as the rule engine reports it. The
/// uplink turns it into a contract event by adding `seq`, `event_id` and the
/// site's identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmTransition {
    pub alarm_id: String,
    pub rule_id: String,
    pub kind: AlarmKind,
    pub level: u8,
    pub state: AlarmState,
    pub point_id: Option<String>,
    pub point_name: Option<String>,
    pub value: Option<serde_json::Value>,
    pub unit: Option<String>,
    pub threshold: Option<serde_json::Value>,
    pub message: String,
    pub raised_at: DateTime<Utc>,
    pub ts: DateTime<Utc>,
    pub acked_by: Option<String>,
    #[serde(default)]
    pub actions: Vec<ActionResult>,
    /// Kind-specific facts (contract 1.1 `detail`), e.g. an accumulation's
    /// window and total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    /// The point's quality when the event was made (contract 1.1
    /// `quality`: `good`, a bad reason, `over_range`, `calibrating`,
    /// `device_fault`); only for an alarm about one point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
}

/// The contract's `detail`: at most 16 flat facts (strings, numbers, bools).
pub type Detail = serde_json::Map<String, serde_json::Value>;
