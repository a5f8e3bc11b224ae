//! The SL 651 part of the config: a `protocol = "sl651"` entry of
//! `[[devices]]` is one telemetry station (遥测站) reporting to riskgate,
//! which is the centre. Stations that name the same `listen` address (or
//! serial `line`) share one listener.
//!
//! Invariant: an [`Sl651Station`] has a 5-byte address, a password, a
//! report interval and margin greater than zero, and every point a known
//! element (and for ZT, one bit).

use std::collections::HashMap;
use std::time::Duration;

use super::element::{self, Element, Shape};
use crate::config::check::Errs;
use crate::config::error::positive;
use crate::config::raw::{self, SerialLine};

/// Where the stations of a device reach riskgate.
#[derive(Clone, Debug)]
pub enum Listen {
    /// `listen = "tcp://0.0.0.0:5001"`: stations connect over TCP (GPRS/4G).
    Tcp(String),
    /// `listen = "udp://0.0.0.0:5002"`: one datagram, one or more frames.
    Udp(String),
    /// `line = "radio"`: a `[[serial_lines]]` entry (radio modem).
    Serial(SerialLine),
}

impl Listen {
    /// Stations with the same key share one listener task.
    pub fn key(&self) -> String {
        match self {
            Listen::Tcp(a) => format!("tcp://{a}"),
            Listen::Udp(a) => format!("udp://{a}"),
            Listen::Serial(l) => format!("serial:{}", l.id),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Sl651Station {
    pub listen: Listen,
    /// A5…A1 as the frames carry it.
    pub address: [u8; 5],
    pub password: u16,
    /// The timed or hourly report the station owes this often.
    pub report_interval: Duration,
    /// How late a report may be before the station is `offline`.
    pub report_margin: Duration,
    /// Answer ESC (stay on line) rather than EOT after a report.
    pub keep_online: bool,
    /// The centre address the station must report to (draft Table 20:
    /// 1-255); `None` takes any. Answers echo the frame's centre address.
    pub centre: Option<u8>,
    pub points: Vec<Sl651Point>,
}

/// How a point reads its element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// The element's value (a series gives one reading per 5 minutes).
    Value,
    /// One ZT bit as a bool: true when the bit equals `set_means`.
    Bit { bit: u8, set_means: bool },
}

#[derive(Clone, Debug)]
pub struct Sl651Point {
    pub id: String,
    pub name: Option<String>,
    pub unit: Option<String>,
    pub element: &'static Element,
    pub read: Read,
    pub scale: f64,
    pub offset: f64,
    /// The point feeds a `tamper` alarm while true (the cabinet door).
    pub tamper: bool,
    pub stale_after: Duration,
}

impl Sl651Point {
    pub fn is_bool(&self) -> bool {
        matches!(self.read, Read::Bit { .. })
    }
}

/// Parses `"0012345678"`: the 5 address bytes as 10 hex digits.
pub fn parse_address(s: &str) -> Option<[u8; 5]> {
    let s = s.trim();
    if s.len() != 10 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut a = [0u8; 5];
    for (i, b) in a.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(a)
}

/// The address as written in the config and the logs.
pub fn address_text(a: &[u8; 5]) -> String {
    a.iter().map(|b| format!("{b:02X}")).collect()
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    let (scheme, addr) = s
        .split_once("://")
        .ok_or_else(|| format!("`{s}` is not \"tcp://host:port\" or \"udp://host:port\""))?;
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !ok {
        return Err(format!("`{addr}` is not host:port"));
    }
    match scheme {
        "tcp" => Ok(Listen::Tcp(addr.into())),
        "udp" => Ok(Listen::Udp(addr.into())),
        other => Err(format!("scheme `{other}`: use tcp:// or udp://")),
    }
}

/// Checks a `protocol = "sl651"` device.
pub fn check(
    d: &raw::Device,
    p: &str,
    point_paths: &[String],
    line_ids: &HashMap<&str, &SerialLine>,
    e: &mut Errs,
) -> Option<Sl651Station> {
    let before = e.len();
    for (f, set) in [
        ("host", d.host.is_some()),
        ("port", d.port.is_some()),
        ("broker", d.broker.is_some()),
        ("topic", d.topic.is_some()),
        ("heartbeat", d.heartbeat.is_some()),
        ("profile", d.profile.is_some()),
    ] {
        if set {
            e.push(format!("{p}.{f}"), "not a field of protocol sl651");
        }
    }
    let listen = match (&d.listen, &d.line) {
        (Some(_), Some(_)) => {
            e.push(
                format!("{p}.listen"),
                "give either listen (tcp/udp) or line (serial), not both",
            );
            None
        }
        (None, None) => {
            e.push(
                format!("{p}.listen"),
                "required for protocol sl651: \"tcp://0.0.0.0:5001\", \"udp://0.0.0.0:5002\", or line = a serial_lines id",
            );
            None
        }
        (Some(l), None) => match parse_listen(l) {
            Ok(l) => Some(l),
            Err(m) => {
                e.push(format!("{p}.listen"), m);
                None
            }
        },
        (None, Some(line)) => match line_ids.get(line.as_str()) {
            Some(l) => Some(Listen::Serial((*l).clone())),
            None => {
                e.push(format!("{p}.line"), format!("no serial line `{line}`"));
                None
            }
        },
    };
    let address = match d.station.as_deref().map(|s| (s, parse_address(s))) {
        None => {
            e.push(
                format!("{p}.station"),
                "required for protocol sl651: the station address as 10 hex digits, e.g. \"0012345678\"",
            );
            None
        }
        Some((_, Some(a))) if a == [0; 5] => {
            e.push(
                format!("{p}.station"),
                "address 0 is invalid (draft 6.2.3.2)",
            );
            None
        }
        Some((_, Some(a))) => Some(a),
        Some((s, None)) => {
            e.push(
                format!("{p}.station"),
                format!("`{s}` is not 10 hex digits (5 address bytes A5…A1)"),
            );
            None
        }
    };
    let password = match d.password.as_deref() {
        None => {
            e.push(
                format!("{p}.password"),
                "required for protocol sl651: 4 hex digits, e.g. \"1234\"",
            );
            None
        }
        Some(s) => match u16::from_str_radix(s, 16) {
            Ok(v) if s.len() == 4 => Some(v),
            _ => {
                e.push(
                    format!("{p}.password"),
                    format!("`{s}` is not 4 hex digits"),
                );
                None
            }
        },
    };
    let centre = match d.centre {
        Some(c) if !(1..=255).contains(&c) => {
            e.push(
                format!("{p}.centre"),
                format!("{c} is not a centre address (1-255)"),
            );
            None
        }
        c => Some(c.map(|c| c as u8)),
    };
    let interval = match &d.report_interval {
        None => {
            e.push(
                format!("{p}.report_interval"),
                "required for protocol sl651: how often the station owes a timed or hourly report, e.g. \"1h\"",
            );
            None
        }
        Some(i) if !positive(i) => {
            e.push(format!("{p}.report_interval"), "must be greater than zero");
            None
        }
        Some(i) => Some(i.0),
    };
    let margin = match &d.report_margin {
        None => interval.map(|i| i / 5),
        Some(m) if !positive(m) => {
            e.push(format!("{p}.report_margin"), "must be greater than zero");
            None
        }
        Some(m) => Some(m.0),
    };
    let stale_after = d
        .stale_after
        .map(|s| s.0)
        .or(interval.zip(margin).map(|(i, m)| i + m))
        .unwrap_or_default();
    let points: Vec<Option<Sl651Point>> = d
        .points
        .iter()
        .zip(point_paths)
        .map(|(pt, pp)| check_point(pt, pp, stale_after, e))
        .collect();
    if e.len() > before {
        return None;
    }
    Some(Sl651Station {
        listen: listen?,
        address: address?,
        password: password?,
        report_interval: interval?,
        report_margin: margin?,
        keep_online: d.keep_online,
        centre: centre?,
        points: points.into_iter().collect::<Option<Vec<_>>>()?,
    })
}

fn check_point(
    pt: &raw::Point,
    pp: &str,
    stale_after: Duration,
    e: &mut Errs,
) -> Option<Sl651Point> {
    for (f, set) in [
        ("register", pt.register.is_some()),
        ("address", pt.address.is_some()),
        ("type", pt.data_type.is_some()),
        ("byte_order", pt.byte_order.is_some()),
        ("length", pt.length.is_some()),
        ("group", pt.group.is_some()),
        ("path", pt.path.is_some()),
        ("writable", pt.writable),
    ] {
        if set {
            e.push(format!("{pp}.{f}"), "not a field of an sl651 point");
        }
    }
    if pt.decimals.is_some() {
        e.push(
            format!("{pp}.decimals"),
            "an sl651 element's decimals come from its definition byte in each frame",
        );
    }
    let element = match pt.element.as_deref() {
        None => {
            e.push(
                format!("{pp}.element"),
                "required for an sl651 point: an identifier like \"39\" or a symbol like \"Z\"",
            );
            None
        }
        Some(name) => match element::lookup(name) {
            Some(el) => Some(el),
            None => {
                let known: Vec<&str> = element::ELEMENTS.iter().map(|e| e.symbol).collect();
                e.push(
                    format!("{pp}.element"),
                    format!(
                        "`{name}` is not an element riskgate reads; one of {}",
                        known.join(", ")
                    ),
                );
                None
            }
        },
    };
    let status = element.is_some_and(|el| el.shape == Shape::Status);
    let mut tamper = false;
    let read = match (pt.status.as_deref(), pt.bit) {
        _ if !status => {
            if pt.status.is_some() || pt.bit.is_some() {
                e.push(
                    format!(
                        "{pp}.{}",
                        if pt.status.is_some() { "status" } else { "bit" }
                    ),
                    "only for element ZT (45)",
                );
            }
            Some(Read::Value)
        }
        (Some(_), Some(_)) => {
            e.push(format!("{pp}.bit"), "give status or bit, not both");
            None
        }
        (Some(name), None) => match element::status_bit(name) {
            Some(s) => {
                tamper = s.name == "door_open";
                Some(Read::Bit {
                    bit: s.bit,
                    set_means: s.set_means,
                })
            }
            None => {
                let known: Vec<&str> = element::STATUS_BITS.iter().map(|s| s.name).collect();
                e.push(
                    format!("{pp}.status"),
                    format!("`{name}` is not a ZT status; one of {}", known.join(", ")),
                );
                None
            }
        },
        (None, Some(b)) if b < 32 => Some(Read::Bit {
            bit: b,
            set_means: true,
        }),
        (None, Some(b)) => {
            e.push(format!("{pp}.bit"), format!("{b}: ZT has bits 0-31"));
            None
        }
        (None, None) => {
            e.push(
                format!("{pp}.status"),
                "a ZT point names a status (door_open, mains_lost, battery_low …) or a bit",
            );
            None
        }
    };
    Some(Sl651Point {
        id: pt.id.clone(),
        name: pt.name.clone(),
        unit: pt.unit.clone().or_else(|| {
            element
                .filter(|el| !el.unit.is_empty())
                .map(|el| el.unit.to_string())
        }),
        element: element?,
        read: read?,
        scale: pt.scale,
        offset: pt.offset,
        tamper,
        stale_after,
    })
}
