//! The file's shapes of `[[serial_lines]]` and `[[devices]]`: one union of
//! every protocol's fields, each protocol's `config.rs` checks its part.

use std::time::Duration;

use serde::Deserialize;

use super::Dur;

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
    /// A slave that answered nothing in a whole poll cycle is asked again
    /// only every this many cycles (1: every cycle), so dead slaves cannot
    /// make their healthy neighbours late.
    #[serde(default = "default_silent_probe_every")]
    pub silent_probe_every: u32,
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
pub(crate) fn default_silent_probe_every() -> u32 {
    5
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
    /// SL 651-2014 telemetry stations reporting to riskgate (the centre).
    Sl651,
}

impl Protocol {
    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::ModbusTcp => "modbus_tcp",
            Protocol::ModbusRtu => "modbus_rtu",
            Protocol::Mqtt => "mqtt",
            Protocol::Sl651 => "sl651",
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
    /// `host:port` of the site broker; `"uplink"` reaches the uplink's
    /// broker with all of the uplink's connection settings.
    #[serde(default)]
    pub broker: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    /// A source that sends nothing within this time makes its points bad.
    #[serde(default)]
    pub heartbeat: Option<Dur>,
    /// Messages a second the device may publish; more are dropped, counted
    /// and raise `{device}.flood` (`source::flood`).
    #[serde(default)]
    pub max_rate: Option<f64>,
    /// Login on the device's own broker (`broker = "uplink"` uses the
    /// uplink's); the password only by reference, never inline.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<String>,
    /// TLS to the device's own broker: the CA, and a client certificate
    /// if the broker requires one. The host name is always checked.
    #[serde(default)]
    pub tls: Option<super::Tls>,
    /// Says that a broker off this machine is reached without TLS.
    #[serde(default)]
    pub plain_tcp: bool,
    // ---- SL 651 station (`line` above for a radio modem's serial line)
    /// `"tcp://0.0.0.0:5001"` or `"udp://0.0.0.0:5002"`: where riskgate
    /// listens for the station.
    #[serde(default)]
    pub listen: Option<String>,
    /// The station address, 10 hex digits (A5…A1).
    #[serde(default)]
    pub station: Option<String>,
    /// The station's password, 4 hex digits.
    #[serde(default)]
    pub password: Option<String>,
    /// How often the station owes a timed or hourly report.
    #[serde(default)]
    pub report_interval: Option<Dur>,
    /// How late that report may be before `offline` (default a fifth of
    /// the interval).
    #[serde(default)]
    pub report_margin: Option<Dur>,
    /// Answer reports with ESC (stay on line) instead of EOT.
    #[serde(default)]
    pub keep_online: bool,
    /// The centre address (1-255) the station's frames must carry; none:
    /// any centre address is taken.
    #[serde(default)]
    pub centre: Option<u32>,
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
    // ---- SL 651
    /// The element: its hex identifier (`"39"`) or symbol (`"Z"`).
    #[serde(default)]
    pub element: Option<String>,
    /// For element ZT: a named status bit (`door_open`, `mains_lost`,
    /// `battery_low`, …); `bit` names a raw one.
    #[serde(default)]
    pub status: Option<String>,
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
