//! The config file as written: serde shapes and their defaults, nothing
//! checked yet, no behaviour.
//!
//! Fields that only some protocols or rule kinds use are `Option`s here and
//! are checked by each protocol's `config.rs` (and `validate()`), which can
//! then say *which* field is missing for *which* protocol instead of serde's
//! first-error-only message. What the rest of riskgate reads is the typed
//! model in `config::model`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as text: `"500ms"`, `"10s"`, `"2m"`, `"1h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{s}` is not a duration like \"500ms\", \"10s\" or \"2m\" ({e})"
            ))
        })
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct RawConfig {
    pub site: Site,
    pub gateway: Gateway,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub store: Store,
    #[serde(default)]
    pub serial_lines: Vec<SerialLine>,
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Rule sets shipped with riskgate, included by name (`config/presets/`).
    #[serde(default)]
    pub presets: Vec<PresetUse>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    pub influxdb: Option<Influx>,
    pub uplink: Option<Uplink>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    CoalMine,
    NonCoalMine,
    Reservoir,
    TailingsDam,
    Chemical,
    GasUser,
    Other,
}

impl SiteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::CoalMine => "coal_mine",
            SiteKind::NonCoalMine => "non_coal_mine",
            SiteKind::Reservoir => "reservoir",
            SiteKind::TailingsDam => "tailings_dam",
            SiteKind::Chemical => "chemical",
            SiteKind::GasUser => "gas_user",
            SiteKind::Other => "other",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Site {
    pub id: String,
    pub kind: SiteKind,
    #[serde(default)]
    pub name: Option<String>,
    /// GB/T 2260 six-digit administrative region code.
    #[serde(default)]
    pub region_code: Option<String>,
    /// IANA zone (`Asia/Shanghai`); event times carry this zone's offset.
    #[serde(default = "default_tz")]
    pub timezone: String,
}

fn default_tz() -> String {
    "Asia/Shanghai".into()
}

#[derive(Clone, Debug, Deserialize)]
pub struct Gateway {
    pub id: String,
    /// Where the durable queues, `seq` and history live.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
}

fn default_data_dir() -> String {
    "/var/lib/riskgate".into()
}

#[derive(Clone, Debug, Deserialize)]
pub struct Http {
    #[serde(default = "default_http")]
    pub listen: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: default_http(),
            enabled: true,
        }
    }
}

fn default_http() -> String {
    "127.0.0.1:8080".into()
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
pub struct Store {
    /// Upper bound of the readings queue on disk, in MB. When it is reached
    /// the oldest readings are dropped (counted, one `fault` alarm raised);
    /// alarms and status are never dropped.
    #[serde(default = "default_queue_mb")]
    pub readings_queue_mb: f64,
    /// Raw readings kept locally for the operator page and `riskgate history`
    /// (AQ 6201-2019: real-time values ≥ 7 days, standards-research.md §2).
    #[serde(default = "default_raw_days")]
    pub raw_retention_days: u32,
    /// 5-minute statistics and alarm events (AQ 6201-2019: ≥ 1 year).
    #[serde(default = "default_stats_days")]
    pub stats_retention_days: u32,
    /// Upper bound of the local raw history, in MB.
    #[serde(default = "default_history_mb")]
    pub history_mb: f64,
    /// How long readings may wait in memory before one batched commit.
    #[serde(default = "default_commit")]
    pub commit_interval: Dur,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            readings_queue_mb: default_queue_mb(),
            raw_retention_days: default_raw_days(),
            stats_retention_days: default_stats_days(),
            history_mb: default_history_mb(),
            commit_interval: default_commit(),
        }
    }
}

fn default_queue_mb() -> f64 {
    512.0
}
fn default_raw_days() -> u32 {
    7
}
fn default_stats_days() -> u32 {
    366
}
fn default_history_mb() -> f64 {
    2048.0
}
fn default_commit() -> Dur {
    Dur(Duration::from_millis(200))
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// One RS-485 line. One task owns it and polls its devices one request at a
/// time, because RTU is half-duplex.
#[derive(Clone, Debug, Deserialize)]
pub struct SerialLine {
    pub id: String,
    pub path: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_parity")]
    pub parity: Parity,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Silence kept between the end of one answer and the next request.
    #[serde(default = "default_gap")]
    pub inter_frame_gap: Dur,
    /// How long to wait for a slave's answer.
    #[serde(default = "default_rtu_timeout")]
    pub response_timeout: Dur,
}

fn default_baud() -> u32 {
    9600
}
fn default_parity() -> Parity {
    Parity::None
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_gap() -> Dur {
    Dur(Duration::from_millis(5))
}
fn default_rtu_timeout() -> Dur {
    Dur(Duration::from_millis(300))
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    ModbusTcp,
    ModbusRtu,
    Mqtt,
}

impl Protocol {
    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::ModbusTcp => "modbus_tcp",
            Protocol::ModbusRtu => "modbus_rtu",
            Protocol::Mqtt => "mqtt",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    Coil,
    Discrete,
    Holding,
    Input,
}

impl RegisterKind {
    pub fn is_bit(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::Discrete)
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    Bool,
    Ascii,
}

impl DataType {
    /// Registers (16-bit words) one value of this type takes. `Ascii` takes
    /// the point's `length`.
    pub fn words(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 | DataType::Bool => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
            DataType::Ascii => 1,
        }
    }
}

/// Byte order of a multi-register value, named by where the bytes of the
/// big-endian value `A B C D` land on the wire.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum ByteOrder {
    /// Big-endian, high word first (Modbus's own order).
    #[default]
    #[serde(alias = "abcd")]
    ABCD,
    /// Fully little-endian.
    #[serde(alias = "dcba")]
    DCBA,
    /// Bytes swapped inside each word, high word first.
    #[serde(alias = "badc")]
    BADC,
    /// Low word first, bytes big-endian inside each word ("word swap").
    #[serde(alias = "cdab")]
    CDAB,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PollGroup {
    pub id: String,
    pub interval: Dur,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Device {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub protocol: Protocol,
    // ---- Modbus TCP
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    // ---- Modbus RTU
    /// The `serial_lines[].id` this slave hangs on.
    #[serde(default)]
    pub line: Option<String>,
    // ---- Modbus (both)
    #[serde(default = "default_unit")]
    pub unit_id: u8,
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Extra attempts of a failed request inside one poll.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Device-wide byte/word order; a point may override it.
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// Largest hole (unused registers) the request planner reads through to
    /// merge two ranges into one request.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Largest request: 125 registers / 2000 bits is the protocol's limit.
    #[serde(default = "default_max_regs")]
    pub max_registers: u16,
    #[serde(default)]
    pub groups: Vec<PollGroup>,
    // ---- MQTT source
    /// `host:port` of the site broker; `"uplink"` reuses the uplink broker.
    #[serde(default)]
    pub broker: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    /// A source that sends nothing within this time makes its points bad.
    #[serde(default)]
    pub heartbeat: Option<Dur>,
    // ---- health (all protocols)
    /// Consecutive failed polls before the device's `offline` alarm.
    #[serde(default = "default_offline_after")]
    pub offline_after: u32,
    #[serde(default = "default_offline_level")]
    pub offline_level: u8,
    /// A point without a good reading for this long gets bad quality and a
    /// `stale` alarm. Default: 3 poll intervals (or 2 heartbeats for MQTT).
    #[serde(default)]
    pub stale_after: Option<Dur>,
    #[serde(default = "default_offline_level")]
    pub stale_level: u8,
    // ---- profiles (`config/profiles/`)
    /// A shipped register map, e.g. `gas-detector`: its points are added
    /// to this device's, named by `point_ids`.
    #[serde(default)]
    pub profile: Option<String>,
    /// How the profile's points are named. Default `"{device}.{key}"`.
    #[serde(default)]
    pub point_ids: Option<PointIds>,
    /// Explicit points. With a profile, a point whose id is one the profile
    /// generates replaces that profile point; the others are added.
    #[serde(default)]
    pub points: Vec<Point>,
}

pub(crate) fn default_unit() -> u8 {
    1
}
pub(crate) fn default_poll() -> Dur {
    Dur(Duration::from_secs(1))
}
pub(crate) fn default_timeout() -> Dur {
    Dur(Duration::from_millis(1000))
}
pub(crate) fn default_retries() -> u32 {
    1
}
pub(crate) fn default_max_gap() -> u16 {
    8
}
pub(crate) fn default_max_regs() -> u16 {
    125
}
pub(crate) fn default_offline_after() -> u32 {
    3
}
pub(crate) fn default_offline_level() -> u8 {
    2
}

#[derive(Clone, Debug, Deserialize)]
pub struct Point {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    // ---- Modbus
    #[serde(default)]
    pub register: Option<RegisterKind>,
    #[serde(default)]
    pub address: Option<u16>,
    #[serde(rename = "type", default)]
    pub data_type: Option<DataType>,
    #[serde(default)]
    pub byte_order: Option<ByteOrder>,
    /// For `type = "bool"` on a holding/input register: which bit (0 = LSB).
    #[serde(default)]
    pub bit: Option<u8>,
    /// For `type = "ascii"`: number of registers (2 characters each).
    #[serde(default)]
    pub length: Option<u16>,
    /// Fixed-point: the raw integer is divided by 10^decimals (before scale).
    #[serde(default)]
    pub decimals: Option<u8>,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    /// A `groups[].id` of the device with its own poll interval.
    #[serde(default)]
    pub group: Option<String>,
    /// Whether rule actions may write this point.
    #[serde(default)]
    pub writable: bool,
    // ---- MQTT
    /// Where the value is in the JSON payload: `cameras[3].online`.
    #[serde(default)]
    pub path: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// The ids of a profile device's points.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PointIds {
    /// Every point of the profile, named by a template: `{key}` is the
    /// profile's key of the point, `{device}` the device id, e.g.
    /// `"{key}.1301.t1"`.
    Template(String),
    /// Only these keys of the profile, each with its id:
    /// `{ level = "level.upstream", rain_total = "rain.total" }`.
    Map(std::collections::BTreeMap<String, String>),
}

#[derive(Clone, Debug, Deserialize)]
pub struct PresetUse {
    /// A file name under `config/presets/` without `.toml`, e.g. `coal-methane`.
    pub name: String,
    /// Binds the preset's placeholders (`{ch4}`) to this site's point ids.
    #[serde(default)]
    pub bind: toml::Table,
    /// Prefix for the generated rule ids, so one preset can be used per face.
    #[serde(default)]
    pub id_prefix: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleKindCfg {
    Threshold,
    Rate,
    Interlock,
    Consistency,
    Escalation,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum Cmp {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
}

impl Cmp {
    pub fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Cmp::Ge => v >= t,
            Cmp::Gt => v > t,
            Cmp::Le => v <= t,
            Cmp::Lt => v < t,
        }
    }
    /// True for a high alarm (value above the threshold is bad).
    pub fn is_high(self) -> bool {
        matches!(self, Cmp::Ge | Cmp::Gt)
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Ge => "≥",
            Cmp::Gt => ">",
            Cmp::Le => "≤",
            Cmp::Lt => "<",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Rule {
    pub id: String,
    pub kind: RuleKindCfg,
    /// 1 red … 4 blue. Escalation rules take theirs from `stages`.
    #[serde(default)]
    pub level: u8,
    /// Free text for the operator; the event message is built from it.
    #[serde(default)]
    pub name: Option<String>,
    /// Stays raised until acknowledged *and* the condition is gone.
    #[serde(default)]
    pub latching: bool,
    // ---- threshold / rate
    #[serde(default)]
    pub point: Option<String>,
    #[serde(default)]
    pub op: Option<Cmp>,
    #[serde(default)]
    pub value: Option<f64>,
    /// The value the reading must come back past before the alarm clears
    /// (e.g. methane cut at ≥1.5 %, recovery <1.0 %).
    #[serde(default)]
    pub recovery: Option<f64>,
    /// Alternative to `recovery`: clears at `value - deadband` (high) or
    /// `value + deadband` (low).
    #[serde(default)]
    pub deadband: Option<f64>,
    #[serde(default)]
    pub on_delay: Option<Dur>,
    #[serde(default)]
    pub off_delay: Option<Dur>,
    // ---- rate
    #[serde(default)]
    pub window: Option<Dur>,
    // ---- interlock / consistency
    /// A condition over points, e.g. `face_1301.working && !video_1301.present`.
    #[serde(default)]
    pub when: Option<String>,
    /// How long `when` must hold before the alarm is raised.
    #[serde(default)]
    pub hold: Option<Dur>,
    // ---- escalation
    /// Rule ids whose alarms are counted.
    #[serde(default)]
    pub members: Vec<String>,
    /// The stages of an escalation rule, least severe first: when `count`
    /// distinct points (or member rules without a point) have an active
    /// alarm at `count_level` or more severe, the rule's one alarm instance
    /// is raised, or escalated, to `level`.
    #[serde(default)]
    pub stages: Vec<Stage>,
    // ---- actions
    #[serde(default)]
    pub actions: Vec<ActionCfg>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
pub struct Stage {
    pub count: u32,
    pub count_level: u8,
    pub level: u8,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ActionCfg {
    /// A writable point (`devices[].points[]` with `writable = true`).
    pub write: String,
    /// Value written when the alarm is raised.
    pub value: f64,
    /// Value written when the alarm clears; nothing is written when absent.
    #[serde(default)]
    pub on_clear: Option<f64>,
    /// The read-back must show the value within this time.
    #[serde(default = "default_confirm")]
    pub confirm_within: Dur,
}

fn default_confirm() -> Dur {
    Dur(Duration::from_secs(3))
}

/// Where the InfluxDB token comes from. Never printed.
#[derive(Clone, Debug, Deserialize)]
pub struct Influx {
    pub url: String,
    pub org: String,
    pub bucket: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<String>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_flush")]
    pub flush_interval: Dur,
    #[serde(default = "default_http_timeout")]
    pub timeout: Dur,
    #[serde(default = "default_measurement")]
    pub measurement: String,
}

fn default_batch() -> usize {
    5000
}
fn default_flush() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_http_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_measurement() -> String {
    "reading".into()
}

#[derive(Clone, Debug, Deserialize)]
pub struct Uplink {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Default `riskgate-{gateway_id}` as the contract says.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Dur,
    /// How often the retained status is refreshed.
    #[serde(default = "default_status_every")]
    pub status_interval: Dur,
    /// TLS settings; the uplink refuses to run without them unless
    /// `plain_tcp = true` says so explicitly.
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub plain_tcp: bool,
    /// Accept remote acknowledgements on `{prefix}/{site}/ack`.
    #[serde(default = "yes")]
    pub accept_remote_ack: bool,
}

fn default_mqtt_port() -> u16 {
    1883
}
fn default_prefix() -> String {
    "riskgate/v1".into()
}
fn default_keep_alive() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_status_every() -> Dur {
    Dur(Duration::from_secs(60))
}

#[derive(Clone, Debug, Deserialize)]
pub struct Tls {
    /// PEM file of the CA that signed the broker's certificate. The
    /// certificate is checked against `uplink.host` (hostname verification
    /// is always on).
    pub ca_file: String,
    #[serde(default)]
    pub client_cert_file: Option<String>,
    #[serde(default)]
    pub client_key_file: Option<String>,
}
