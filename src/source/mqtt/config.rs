//! The MQTT part of the config: the typed device and point, and the check
//! that builds them from a `protocol = "mqtt"` entry of `[[devices]]`.
//!
//! Invariant: an [`MqttDevice`] has a broker address, a non-empty topic, a
//! heartbeat greater than zero, and every point a parsed path.

use std::time::Duration;

use super::jsonpath::JsonPath;
use crate::config::check::Errs;
use crate::config::error::positive;
use crate::config::raw::{self, DataType};
use crate::source::flood::DEFAULT_MAX_RATE;

/// Where a site's MQTT device publishes, resolved at validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broker {
    /// `broker = "uplink"`: the county uplink's broker (its host and port
    /// copied here; TLS and credentials are not reused).
    Uplink { host: String, port: u16 },
    /// `broker = "host:port"`: the site's own broker.
    Site { host: String, port: u16 },
}

impl Broker {
    pub fn host(&self) -> &str {
        match self {
            Broker::Uplink { host, .. } | Broker::Site { host, .. } => host,
        }
    }
    pub fn port(&self) -> u16 {
        match self {
            Broker::Uplink { port, .. } | Broker::Site { port, .. } => *port,
        }
    }
}

/// The highest `max_rate` accepted: beyond it the limit protects nothing
/// (the source would hand the engine more than a whole site sends).
pub const MAX_RATE_LIMIT: f64 = 10_000.0;

/// The plain-MQTT port (IANA 1883).
pub const MQTT_PORT: u16 = 1883;

#[derive(Clone, Debug)]
pub struct MqttDevice {
    pub broker: Broker,
    pub topic: String,
    /// A source that sends nothing valid within this time makes its points bad.
    pub heartbeat: Duration,
    /// Messages a second admitted; more are a flood (`source::flood`).
    pub max_rate: f64,
    pub points: Vec<MqttPoint>,
}

#[derive(Clone, Debug)]
pub struct MqttPoint {
    pub id: String,
    pub name: Option<String>,
    pub unit: Option<String>,
    /// Where the value is in the JSON payload.
    pub path: JsonPath,
    /// `None`: the JSON value's own type.
    pub data_type: Option<DataType>,
    pub scale: f64,
    pub offset: f64,
    pub writable: bool,
    /// The device's `stale_after`, else two heartbeats.
    pub stale_after: Duration,
}

/// Checks a `protocol = "mqtt"` device. `uplink` resolves `broker = "uplink"`;
/// without an `[uplink]` section that name means the local broker on
/// 127.0.0.1, which `warnings` says.
pub fn check(
    d: &raw::Device,
    p: &str,
    point_paths: &[String],
    uplink: Option<&raw::Uplink>,
    e: &mut Errs,
    warnings: &mut Vec<String>,
) -> Option<MqttDevice> {
    let before = e.len();
    let broker = match d.broker.as_deref() {
        None => {
            e.push(
                format!("{p}.broker"),
                "required for protocol mqtt: \"host:port\" or \"uplink\"",
            );
            None
        }
        Some("uplink") => Some(match uplink {
            Some(u) => Broker::Uplink {
                host: u.host.clone(),
                port: u.port,
            },
            None => {
                warnings.push(format!(
                    "{p}.broker: \"uplink\" but there is no [uplink] section; the source connects to 127.0.0.1:{MQTT_PORT}"
                ));
                Broker::Site {
                    host: "127.0.0.1".into(),
                    port: MQTT_PORT,
                }
            }
        }),
        Some(b) => {
            let (host, port) = match b.rsplit_once(':') {
                None => (b, Some(MQTT_PORT)),
                Some((h, port)) => (h, port.parse().ok()),
            };
            match port {
                Some(port) if !host.is_empty() => Some(Broker::Site {
                    host: host.into(),
                    port,
                }),
                _ => {
                    e.push(
                        format!("{p}.broker"),
                        format!("`{b}` is not \"host:port\" or \"uplink\""),
                    );
                    None
                }
            }
        }
    };
    let topic = match &d.topic {
        None => {
            e.push(format!("{p}.topic"), "required for protocol mqtt");
            None
        }
        Some(t) if t.is_empty() => {
            e.push(format!("{p}.topic"), "must not be empty");
            None
        }
        Some(t) => Some(t.clone()),
    };
    let heartbeat = match &d.heartbeat {
        None => {
            e.push(
                format!("{p}.heartbeat"),
                "required for protocol mqtt: a source that goes quiet must turn its points bad",
            );
            None
        }
        Some(h) if !positive(h) => {
            e.push(format!("{p}.heartbeat"), "must be greater than zero");
            None
        }
        Some(h) => Some(h.0),
    };
    let max_rate = d.max_rate.unwrap_or(DEFAULT_MAX_RATE);
    if !(max_rate > 0.0 && max_rate <= MAX_RATE_LIMIT) {
        e.push(
            format!("{p}.max_rate"),
            format!("must be a number of messages a second, above 0 and at most {MAX_RATE_LIMIT}"),
        );
    }
    let stale_after = d
        .stale_after
        .map(|s| s.0)
        .or(heartbeat.map(|h| h * 2))
        .unwrap_or_default();
    let points: Vec<Option<MqttPoint>> = d
        .points
        .iter()
        .zip(point_paths)
        .map(|(pt, pp)| check_point(pt, pp, stale_after, e))
        .collect();
    if e.len() > before {
        return None;
    }
    Some(MqttDevice {
        broker: broker?,
        topic: topic?,
        heartbeat: heartbeat?,
        max_rate,
        points: points.into_iter().collect::<Option<Vec<_>>>()?,
    })
}

fn check_point(
    pt: &raw::Point,
    pp: &str,
    stale_after: Duration,
    e: &mut Errs,
) -> Option<MqttPoint> {
    for (f, set) in [
        ("register", pt.register.is_some()),
        ("address", pt.address.is_some()),
    ] {
        if set {
            e.push(format!("{pp}.{f}"), "only for Modbus points");
        }
    }
    if pt.group.is_some() {
        e.push(format!("{pp}.group"), "only for Modbus points");
    }
    let path = match &pt.path {
        None => {
            e.push(
                format!("{pp}.path"),
                "required for an MQTT point, e.g. cameras[0].online",
            );
            None
        }
        Some(path) => match JsonPath::parse(path) {
            Ok(p) => Some(p),
            Err(m) => {
                e.push(format!("{pp}.path"), m.to_string());
                None
            }
        },
    };
    Some(MqttPoint {
        id: pt.id.clone(),
        name: pt.name.clone(),
        unit: pt.unit.clone(),
        path: path?,
        data_type: pt.data_type,
        scale: pt.scale,
        offset: pt.offset,
        writable: pt.writable,
        stale_after,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{DeviceKind, device_from_toml};
    use crate::source::flood::DEFAULT_MAX_RATE;

    fn mqtt(extra: &str) -> String {
        format!(
            "id = \"vb\"\nprotocol = \"mqtt\"\nbroker = \"127.0.0.1:1883\"\ntopic = \"t\"\nheartbeat = \"5s\"\n{extra}\n[[points]]\nid = \"p\"\npath = \"v\"\n"
        )
    }

    fn errors(text: &str) -> Vec<String> {
        match device_from_toml(text) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect(),
        }
    }

    #[test]
    fn max_rate_has_a_default_and_bounds() {
        let d = device_from_toml(&mqtt("")).unwrap();
        let DeviceKind::Mqtt(m) = &d.kind else {
            panic!("mqtt")
        };
        assert_eq!(m.max_rate, DEFAULT_MAX_RATE);
        let d = device_from_toml(&mqtt("max_rate = 2.5")).unwrap();
        let DeviceKind::Mqtt(m) = &d.kind else {
            panic!("mqtt")
        };
        assert_eq!(m.max_rate, 2.5);
        for bad in ["0", "-1", "nan", "inf", "10001"] {
            let e = errors(&mqtt(&format!("max_rate = {bad}")));
            assert!(e.iter().any(|e| e.contains("max_rate")), "{bad}: {e:?}");
        }
        let modbus = "id = \"gd\"\nprotocol = \"modbus_tcp\"\nhost = \"127.0.0.1\"\nmax_rate = 5\n[[points]]\nid = \"p\"\nregister = \"holding\"\naddress = 0\n";
        let e = errors(modbus);
        assert!(
            e.iter()
                .any(|e| e.contains("max_rate") && e.contains("only for protocol mqtt")),
            "{e:?}"
        );
    }
}
