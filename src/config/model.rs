//! The checked configuration that the rest of riskgate reads.
//!
//! Invariants: every value here was validated; defaults are applied once,
//! here, and every protocol's impossible combination is unrepresentable
//! (a [`DeviceKind`] carries exactly the fields of its protocol, each one
//! required). Consumers match on the enum; they never fall back to a
//! default or handle "missing" again.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use super::check::{Errs, check_level};
use super::error::positive;
use super::raw::{
    DataType, Gateway, Influx, Protocol, RegisterKind, Rule, SerialLine, Site, Store, Uplink,
};
use crate::source::modbus::config::{Modbus, ModbusPoint, ModbusRtu, ModbusTcp};
use crate::source::mqtt::config::{MqttDevice, MqttPoint};
use crate::source::sl651::config::{Sl651Point, Sl651Station};

/// A checked configuration: defaults filled in, presets and profiles
/// expanded, and every cross-reference known to hold.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub site: Site,
    pub gateway: Gateway,
    /// The operator page and API; `None`: `[http] enabled = false`.
    pub http: Option<super::sections::HttpServer>,
    pub store: Store,
    pub serial_lines: Vec<SerialLine>,
    pub devices: Vec<Device>,
    /// The rules as written (presets expanded), for display and tests.
    pub rules: Vec<Rule>,
    /// The same rules typed by validation, in the same order: what the
    /// engine runs.
    pub rule_specs: Vec<crate::rules::RuleSpec>,
    /// `[[quality]]`: sensor ranges and device fault bits per point.
    pub quality: Vec<crate::rules::quality::PointQuality>,
    pub influxdb: Option<Influx>,
    pub uplink: Option<Uplink>,
    /// `[telemetry]`: real-time data for the county over the uplink.
    pub telemetry: Option<super::telemetry::Telemetry>,
    /// Settings that are allowed but looser than the standard a preset
    /// cites, or that may not mean what they say; `riskgate validate`
    /// prints them.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn tz(&self) -> chrono_tz::Tz {
        // Validated: the zone parses.
        self.site
            .timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Shanghai)
    }

    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// Finds a point and the device it belongs to.
    pub fn point(&self, id: &str) -> Option<(&Device, PointMeta<'_>)> {
        self.devices
            .iter()
            .find_map(|d| d.kind.point(id).map(|p| (d, p)))
    }

    pub fn uplink_client_id(&self) -> String {
        match &self.uplink {
            Some(u) => crate::source::mqtt::connection::uplink_client_id(u, &self.gateway.id),
            None => format!("riskgate-{}", self.gateway.id),
        }
    }
}

/// One field device. `K` is the protocol part: [`DeviceKind`] in the
/// config, one protocol's type once a source has taken its device
/// (`Device<ModbusTcp>`, `Device<MqttDevice>` …). `Device<K>` derefs to
/// `K`, so `device.points` reads the protocol's points.
#[derive(Clone, Debug)]
pub struct Device<K = DeviceKind> {
    pub id: String,
    pub name: Option<String>,
    pub health: Health,
    pub kind: K,
}

/// The protocols riskgate speaks; a new protocol is one variant here, one
/// folder under `src/source/` (with its `config.rs` check) and one line in
/// `source::build` and in `validate`.
#[derive(Clone, Debug)]
pub enum DeviceKind {
    ModbusTcp(ModbusTcp),
    ModbusRtu(ModbusRtu),
    Mqtt(MqttDevice),
    Sl651(Sl651Station),
}

/// The built-in health alarms of a device, for every protocol. How long a
/// point may go without a good reading is resolved per point
/// (`stale_after` of each protocol's point type), because it depends on the
/// point's poll group or the device's heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Consecutive failed polls before the device's `offline` alarm.
    pub offline_after: u32,
    pub offline_level: u8,
    pub stale_level: u8,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            offline_after: super::raw::default_offline_after(),
            offline_level: super::raw::default_offline_level(),
            stale_level: super::raw::default_offline_level(),
        }
    }
}

/// Checks the health settings every protocol shares.
pub(crate) fn check_health(d: &super::raw::Device, p: &str, e: &mut Errs) -> Health {
    if d.offline_after == 0 {
        e.push(format!("{p}.offline_after"), "must be at least 1");
    }
    check_level(d.offline_level, format!("{p}.offline_level"), e);
    check_level(d.stale_level, format!("{p}.stale_level"), e);
    if let Some(s) = &d.stale_after
        && !positive(s)
    {
        e.push(format!("{p}.stale_after"), "must be greater than zero");
    }
    Health {
        offline_after: d.offline_after,
        offline_level: d.offline_level,
        stale_level: d.stale_level,
    }
}

impl<K> Deref for Device<K> {
    type Target = K;
    fn deref(&self) -> &K {
        &self.kind
    }
}

impl<K> DerefMut for Device<K> {
    fn deref_mut(&mut self) -> &mut K {
        &mut self.kind
    }
}

impl<K> Device<K> {
    /// A device with default health settings.
    pub fn new(id: &str, kind: K) -> Device<K> {
        Device {
            id: id.into(),
            name: None,
            health: Health::default(),
            kind,
        }
    }

    /// The same device with another protocol part (a source taking the
    /// part it runs).
    pub fn with_kind<J>(&self, kind: J) -> Device<J> {
        Device {
            id: self.id.clone(),
            name: self.name.clone(),
            health: self.health.clone(),
            kind,
        }
    }
}

/// What every consumer outside the sources needs to know about a point,
/// whatever its protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointMeta<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub unit: Option<&'a str>,
    pub value: ValueKind,
    /// Rule actions may write it (only Modbus coils and holding registers).
    pub writable: bool,
    /// A point without a good reading for this long is stale.
    pub stale_after: Duration,
    /// While true the point raises a `tamper` alarm (an SL 651 station's
    /// cabinet door).
    pub tamper: bool,
}

/// The kind of value a point carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Number,
    Bool,
    Text,
    /// An MQTT point without a `type`: whatever the JSON holds.
    Json,
}

impl ValueKind {
    fn of(data_type: Option<DataType>) -> ValueKind {
        match data_type {
            Some(DataType::Bool) => ValueKind::Bool,
            Some(DataType::Ascii) => ValueKind::Text,
            Some(_) => ValueKind::Number,
            None => ValueKind::Json,
        }
    }
}

impl DeviceKind {
    pub fn protocol(&self) -> Protocol {
        match self {
            DeviceKind::ModbusTcp(_) => Protocol::ModbusTcp,
            DeviceKind::ModbusRtu(_) => Protocol::ModbusRtu,
            DeviceKind::Mqtt(_) => Protocol::Mqtt,
            DeviceKind::Sl651(_) => Protocol::Sl651,
        }
    }

    /// Every point of the device, in the order of the file.
    pub fn points(&self) -> Vec<PointMeta<'_>> {
        match self {
            DeviceKind::ModbusTcp(t) => t.points.iter().map(ModbusPoint::meta).collect(),
            DeviceKind::ModbusRtu(r) => r.points.iter().map(ModbusPoint::meta).collect(),
            DeviceKind::Mqtt(m) => m.points.iter().map(MqttPoint::meta).collect(),
            DeviceKind::Sl651(s) => s.points.iter().map(Sl651Point::meta).collect(),
        }
    }

    /// One point of the device, found without building the list.
    pub fn point(&self, id: &str) -> Option<PointMeta<'_>> {
        match self {
            DeviceKind::ModbusTcp(t) => t.points.iter().find(|p| p.id == id).map(ModbusPoint::meta),
            DeviceKind::ModbusRtu(r) => r.points.iter().find(|p| p.id == id).map(ModbusPoint::meta),
            DeviceKind::Mqtt(m) => m.points.iter().find(|p| p.id == id).map(MqttPoint::meta),
            DeviceKind::Sl651(s) => s.points.iter().find(|p| p.id == id).map(Sl651Point::meta),
        }
    }
}

impl ModbusPoint {
    pub fn meta(&self) -> PointMeta<'_> {
        PointMeta {
            id: &self.id,
            name: self.name.as_deref(),
            unit: self.unit.as_deref(),
            value: ValueKind::of(Some(self.data_type)),
            writable: self.writable
                && matches!(self.register, RegisterKind::Coil | RegisterKind::Holding),
            stale_after: self.stale_after,
            tamper: false,
        }
    }
}

impl MqttPoint {
    pub fn meta(&self) -> PointMeta<'_> {
        PointMeta {
            id: &self.id,
            name: self.name.as_deref(),
            unit: self.unit.as_deref(),
            value: ValueKind::of(self.data_type),
            // Actions write Modbus points only (validated).
            writable: false,
            stale_after: self.stale_after,
            tamper: false,
        }
    }
}

impl Sl651Point {
    pub fn meta(&self) -> PointMeta<'_> {
        PointMeta {
            id: &self.id,
            name: self.name.as_deref(),
            unit: self.unit.as_deref(),
            value: if self.is_bool() {
                ValueKind::Bool
            } else {
                ValueKind::Number
            },
            // Stations report; riskgate writes nothing to them.
            writable: false,
            stale_after: self.stale_after,
            tamper: self.tamper,
        }
    }
}

// Constructors for tests and benches: here rather than beside the Modbus
// config, so that the protocol modules never import the model that names them.
impl Device<ModbusTcp> {
    /// A Modbus TCP device with the file's defaults for every other field.
    pub fn modbus_tcp(id: &str, host: &str, port: u16, points: Vec<ModbusPoint>) -> Self {
        Device::new(
            id,
            ModbusTcp {
                host: host.into(),
                port,
                modbus: Modbus::with_points(points),
            },
        )
    }
}

impl Device<ModbusRtu> {
    /// A slave `unit_id` on serial line `line`, with the file's defaults.
    pub fn modbus_rtu(id: &str, line: &str, unit_id: u8, points: Vec<ModbusPoint>) -> Self {
        Device::new(
            id,
            ModbusRtu {
                line: line.into(),
                modbus: Modbus {
                    unit_id,
                    ..Modbus::with_points(points)
                },
            },
        )
    }
}
