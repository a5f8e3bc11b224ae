//! The MQTT part of the config: the typed device and point, and the check
//! that builds them from a `protocol = "mqtt"` entry of `[[devices]]`.
//!
//! Invariant: an [`MqttDevice`] has a broker (its whole connection, see
//! `connection`), a non-empty topic, a heartbeat greater than zero, and
//! every point a parsed path.

use std::time::Duration;

pub use super::connection::Broker;
use super::connection::{self, Connection};
use super::jsonpath::JsonPath;
use crate::config::check::Errs;
use crate::config::error::positive;
use crate::config::raw::{self, DataType};
use crate::source::flood::DEFAULT_MAX_RATE;

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

/// Checks a `protocol = "mqtt"` device. `uplink` (the uplink's connection)
/// resolves `broker = "uplink"`; without an `[uplink]` section that name
/// means the local broker on 127.0.0.1, which `warnings` says.
pub fn check(
    d: &raw::Device,
    p: &str,
    point_paths: &[String],
    uplink: Option<&Connection>,
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
        Some("uplink") => {
            connection::check_uplink_use(d, p, e);
            Some(match uplink {
                Some(u) => Broker::Uplink(u.clone()),
                None => {
                    warnings.push(format!(
                        "{p}.broker: \"uplink\" but there is no [uplink] section; the source connects to 127.0.0.1:{MQTT_PORT}"
                    ));
                    Broker::Own(Connection::local(MQTT_PORT))
                }
            })
        }
        Some(b) => {
            let (host, port) = match b.rsplit_once(':') {
                None => (b, Some(MQTT_PORT)),
                Some((h, port)) => (h, port.parse().ok()),
            };
            match port {
                Some(port) if !host.is_empty() => {
                    connection::check_own(d, p, host, port, e).map(Broker::Own)
                }
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
    if d.password.is_some() {
        // `password` is an SL 651 station's; a broker password in the
        // file would be readable by whoever may read the config.
        e.push(
            format!("{p}.password"),
            "not a field of protocol mqtt: a broker password is never written in the file; give username with password_env or password_file",
        );
    }
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

    fn own(text: &str) -> super::Connection {
        let d = device_from_toml(text).unwrap_or_else(|e| panic!("{e:?}"));
        let DeviceKind::Mqtt(m) = &d.kind else {
            panic!("mqtt")
        };
        match &m.broker {
            super::Broker::Own(c) => c.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn with_broker(broker: &str, extra: &str) -> String {
        mqtt(extra).replace(
            "broker = \"127.0.0.1:1883\"",
            &format!("broker = \"{broker}\""),
        )
    }

    #[test]
    fn an_own_broker_off_this_machine_needs_tls_or_says_plain_tcp() {
        let e = errors(&with_broker("192.168.10.5:1883", ""));
        assert!(
            e.iter()
                .any(|e| e.starts_with("device.tls: broker 192.168.10.5 is off this machine")),
            "{e:?}"
        );
        let c = own(&with_broker("192.168.10.5:1883", "plain_tcp = true"));
        assert_eq!((c.tls, c.port), (None, 1883));
        let c = own(&with_broker(
            "broker.site:8883",
            "username = \"vb\"\npassword_file = \"/run/credentials/riskgate.service/vb\"\ntls = { ca_file = \"/etc/riskgate/site-ca.pem\", client_cert_file = \"c.pem\", client_key_file = \"c.key\" }",
        ));
        assert_eq!(c.host, "broker.site");
        let tls = c.tls.unwrap();
        assert_eq!(
            tls.ca_file,
            std::path::PathBuf::from("/etc/riskgate/site-ca.pem")
        );
        assert_eq!(tls.client, Some(("c.pem".into(), "c.key".into())));
        let login = c.login.unwrap();
        assert_eq!(login.username, "vb");
        assert_eq!(
            login.password,
            Some(super::super::connection::Secret::File(
                "/run/credentials/riskgate.service/vb".into()
            ))
        );
        assert_eq!(c.client_id_prefix, "riskgate");
        // Loopback stays on this machine: plain is fine.
        assert!(own(&mqtt("")).tls.is_none());
    }

    #[test]
    fn connection_fields_are_checked_together() {
        let e = errors(&with_broker(
            "10.0.0.1:8883",
            "plain_tcp = true\npassword_env = \"A\"\npassword_file = \"b\"\ntls = { ca_file = \"\", client_cert_file = \"c.pem\" }",
        ));
        for want in [
            "device.plain_tcp: plain_tcp = true contradicts device.tls",
            "device.tls.ca_file: must not be empty",
            "device.tls: client_cert_file and client_key_file go together",
            "device.password_file: give password_env or password_file, not both",
            "device.username: a password needs a username",
        ] {
            assert!(e.iter().any(|e| e == want), "{want}: {e:?}");
        }
        // A password is never inline (`password` is the SL 651 station's).
        let e = errors(&mqtt("username = \"vb\"\npassword = \"secret\""));
        assert!(
            e.iter()
                .any(|e| e.starts_with("device.password: not a field of protocol mqtt")),
            "{e:?}"
        );
    }

    #[test]
    fn broker_uplink_takes_no_connection_fields_of_its_own() {
        let e = errors(&with_broker(
            "uplink",
            "username = \"x\"\ntls = { ca_file = \"ca.pem\" }",
        ));
        for f in ["username", "tls"] {
            assert!(
                e.iter()
                    .any(|e| e.starts_with(&format!("device.{f}: not with broker = \"uplink\""))),
                "{f}: {e:?}"
            );
        }
    }

    #[test]
    fn other_protocols_reject_mqtt_connection_fields() {
        let modbus = "id = \"gd\"\nprotocol = \"modbus_tcp\"\nhost = \"127.0.0.1\"\nusername = \"u\"\nplain_tcp = true\n[[points]]\nid = \"p\"\nregister = \"holding\"\naddress = 0\n";
        let e = errors(modbus);
        for f in ["username", "plain_tcp"] {
            assert!(
                e.contains(&format!("device.{f}: only for protocol mqtt")),
                "{f}: {e:?}"
            );
        }
    }

    #[test]
    fn broker_uplink_is_the_uplinks_whole_connection() {
        let text = r#"
[site]
id = "s"
kind = "coal_mine"
[gateway]
id = "gw1"
data_dir = "/tmp/unused"
[uplink]
host = "county.example"
port = 8883
username = "gw1"
password_file = "/run/credentials/riskgate.service/uplink"
keep_alive = "45s"
[uplink.tls]
ca_file = "/etc/riskgate/county-ca.pem"
client_cert_file = "/etc/riskgate/gw.pem"
client_key_file = "/run/credentials/riskgate.service/gw.key"

[[devices]]
id = "vb"
protocol = "mqtt"
broker = "uplink"
topic = "t"
heartbeat = "5s"
  [[devices.points]]
  id = "p"
  path = "v"
"#;
        let cfg = crate::config::load_str(text, std::path::Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let DeviceKind::Mqtt(m) = &cfg.devices[0].kind else {
            panic!("mqtt")
        };
        let super::Broker::Uplink(c) = &m.broker else {
            panic!("{:?}", m.broker)
        };
        assert_eq!(
            c,
            &super::Connection::of_uplink(cfg.uplink.as_ref().unwrap(), "gw1")
        );
        assert_eq!((c.host.as_str(), c.port), ("county.example", 8883));
        assert_eq!(c.keep_alive, std::time::Duration::from_secs(45));
        assert_eq!(c.client_id_prefix, cfg.uplink_client_id());
        assert_eq!(c.client_id_prefix, "riskgate-gw1");
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(
            tls.client,
            Some((
                "/etc/riskgate/gw.pem".into(),
                "/run/credentials/riskgate.service/gw.key".into()
            ))
        );
        assert_eq!(c.login.as_ref().unwrap().username, "gw1");
        assert!(c.client_id("vb").starts_with("riskgate-gw1-src-vb-"));
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
