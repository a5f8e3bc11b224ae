//! The pure check of a parsed config, all errors collected, and the typed
//! [`Config`] built from it. No I/O happens here.
//!
//! This file keeps what spans elements: ids, the lines, points and rules
//! they name, action targets and cycles, and the sections that belong to
//! no protocol or rule kind. Each protocol checks its own part of a device
//! next to its code (`source/modbus/config.rs`, `source/mqtt/config.rs`)
//! and returns its typed [`DeviceKind`]; each rule kind checks its own
//! settings (`rules::kind`) and returns them typed.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::ConfigError;
use super::check::Errs;
use super::error::positive;
use super::model::{Config, Device as TypedDevice, DeviceKind};
use super::raw::*;
use super::sections;
use crate::rules::expr;
use crate::rules::kind::{self, CheckCtx, PointShape};
use crate::source::{modbus, mqtt, sl651};

/// The file's sections as parsed, profiles expanded, nothing checked.
pub struct Parsed {
    pub site: Site,
    pub gateway: Gateway,
    pub http: Http,
    pub store: Store,
    pub serial_lines: Vec<SerialLine>,
    pub devices: Vec<Device>,
    pub rules: Vec<Rule>,
    pub quality: Vec<super::QualityCfg>,
    pub influxdb: Option<Influx>,
    pub uplink: Option<Uplink>,
    pub telemetry: Option<super::telemetry::RawTelemetry>,
}

/// Where each element came from in the file, so errors name it as written.
pub struct Paths {
    pub lines: Vec<String>,
    pub devices: Vec<String>,
    /// Per device, the path of each of its points (profile points too).
    pub points: Vec<Vec<String>>,
    pub rules: Vec<String>,
    /// Ids of points in devices that failed to parse.
    pub lenient_points: Vec<String>,
}

fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The longest wait for an action's read-back.
pub const MAX_CONFIRM_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Point ids must be usable in rule expressions: a letter or `_` first,
/// then letters, digits, `_`, `.` and `-`.
fn point_id_ok(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && s.len() <= 128
}

/// Checks `cfg` and builds the typed [`Config`]; on failure, every error
/// found (without the file name, which the loader adds).
pub fn validate(
    file: &Path,
    cfg: Parsed,
    paths: &Paths,
    mut warnings: Vec<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut e = Errs::default();
    let mut specs = Vec::new();

    if !id_ok(&cfg.site.id) {
        e.push(
            "site.id",
            "must be 1-64 characters of A-Z a-z 0-9 . _ - (the contract's site_id)",
        );
    }
    // Sections of their own: no ids of others, no protocol.
    sections::check_site(&cfg.site, &mut e);
    if !id_ok(&cfg.gateway.id) {
        e.push(
            "gateway.id",
            "must be 1-64 characters of A-Z a-z 0-9 . _ - (the contract's gateway_id)",
        );
    }
    let http = sections::check_http(&cfg.http, file, &mut e);
    sections::check_store(&cfg.store, &mut e);
    if let Some(i) = &cfg.influxdb {
        sections::check_influx(i, &mut e);
    }
    if let Some(u) = &cfg.uplink {
        sections::check_uplink(u, &mut e);
    }
    // What `broker = "uplink"` sources connect with: the uplink's own
    // connection, every setting of it.
    let uplink = cfg
        .uplink
        .as_ref()
        .map(|u| mqtt::connection::Connection::of_uplink(u, &cfg.gateway.id));

    // ---- serial lines
    let mut line_ids = HashMap::new();
    for (l, p) in cfg.serial_lines.iter().zip(&paths.lines) {
        if line_ids.insert(l.id.as_str(), l).is_some() {
            e.push(
                format!("{p}.id"),
                format!("duplicate serial line id `{}`", l.id),
            );
        }
        modbus::config::check_line(l, p, &mut e);
    }

    // ---- devices and points
    let mut device_ids = HashSet::new();
    let mut points: HashMap<&str, (&Device, &Point)> = HashMap::new();
    let mut devices = Vec::new();
    for ((d, p), pps) in cfg.devices.iter().zip(&paths.devices).zip(&paths.points) {
        if !id_ok(&d.id) {
            e.push(
                format!("{p}.id"),
                "must be 1-64 characters of A-Z a-z 0-9 . _ -",
            );
        }
        if !device_ids.insert(d.id.as_str()) {
            e.push(format!("{p}.id"), format!("duplicate device id `{}`", d.id));
        }
        for (pt, pp) in d.points.iter().zip(pps) {
            if !point_id_ok(&pt.id) {
                e.push(
                    format!("{pp}.id"),
                    "must start with a letter or _ and hold only letters, digits, _ . - (it is used in rule expressions)",
                );
            }
            if points.insert(pt.id.as_str(), (d, pt)).is_some() {
                e.push(
                    format!("{pp}.id"),
                    format!("duplicate point id `{}`", pt.id),
                );
            }
        }
        if let Some(typed) = device(d, p, pps, &line_ids, uplink.as_ref(), &mut e, &mut warnings) {
            devices.push(typed);
        }
    }
    let point_known =
        |id: &str| points.contains_key(id) || paths.lenient_points.iter().any(|p| p == id);

    // ---- rules
    let mut rule_ids: HashMap<&str, usize> = HashMap::new();
    for (i, r) in cfg.rules.iter().enumerate() {
        let p = &paths.rules[i];
        if r.id.is_empty() || r.id.len() > 128 {
            e.push(format!("{p}.id"), "must be 1-128 characters");
        }
        if rule_ids.insert(r.id.as_str(), i).is_some() {
            e.push(format!("{p}.id"), format!("duplicate rule id `{}`", r.id));
        }
    }
    let shape = |id: &str| {
        points.get(id).map(|(_, pt)| {
            if pt.data_type == Some(DataType::Ascii) {
                PointShape::Text
            } else if numeric(pt) {
                PointShape::Number
            } else {
                PointShape::Bool
            }
        })
    };
    let rule_exists = |id: &str| rule_ids.contains_key(id);
    let device_known = |id: &str| cfg.devices.iter().any(|d| d.id == id);
    let ctx = CheckCtx {
        device_known: &device_known,
        point: &shape,
        point_known: &point_known,
        rule_exists: &rule_exists,
        // An unknown zone is reported with `site.timezone`.
        tz: cfg
            .site
            .timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Shanghai),
    };
    for (i, r) in cfg.rules.iter().enumerate() {
        let p = &paths.rules[i];
        specs.extend(kind::check(r, p, &ctx, &mut e));
        for (k, a) in r.actions.iter().enumerate() {
            let ap = format!("{p}.actions[{k}]");
            match points.get(a.write.as_str()) {
                None => e.push(format!("{ap}.write"), format!("no point `{}`", a.write)),
                Some((d, pt)) => {
                    if !pt.writable {
                        e.push(
                            format!("{ap}.write"),
                            format!("point `{}` is not marked writable = true", a.write),
                        );
                    }
                    if matches!(d.protocol, Protocol::Mqtt | Protocol::Sl651) {
                        e.push(
                            format!("{ap}.write"),
                            format!(
                                "point `{}` is an {} point; actions write Modbus points",
                                a.write,
                                if d.protocol == Protocol::Mqtt {
                                    "MQTT"
                                } else {
                                    "SL 651"
                                }
                            ),
                        );
                    }
                    if matches!(
                        pt.register,
                        Some(RegisterKind::Discrete | RegisterKind::Input)
                    ) {
                        e.push(
                            format!("{ap}.write"),
                            format!(
                                "point `{}` is read-only ({:?})",
                                a.write,
                                pt.register.unwrap()
                            ),
                        );
                    }
                }
            }
            if !a.value.is_finite() {
                e.push(format!("{ap}.value"), "must be a finite number");
            }
            if !positive(&a.confirm_within) {
                e.push(format!("{ap}.confirm_within"), "must be greater than zero");
            } else if a.confirm_within.0 > MAX_CONFIRM_WITHIN {
                // The read-back is awaited while the event waits; a long
                // wait is a unit mistake and would hold the event back.
                e.push(
                    format!("{ap}.confirm_within"),
                    format!(
                        "at most {}: a read-back slower than that is a failed action",
                        humantime::format_duration(MAX_CONFIRM_WITHIN)
                    ),
                );
            }
        }
    }
    check_cycles(&cfg, paths, &rule_ids, &mut e);
    let quality = crate::rules::quality::check(&cfg.quality, &ctx, &mut e);

    let telemetry = cfg.telemetry.as_ref().map(|t| {
        let ids: Vec<&str> = points.keys().copied().collect();
        super::telemetry::check(t, cfg.uplink.is_some(), &ids, &mut e, &mut warnings)
    });
    if !e.is_empty() {
        return Err(e.0);
    }
    Ok(Config {
        file: file.to_path_buf(),
        site: cfg.site,
        gateway: cfg.gateway,
        http,
        store: cfg.store,
        serial_lines: cfg.serial_lines,
        devices,
        rules: cfg.rules,
        rule_specs: specs,
        quality,
        influxdb: cfg.influxdb,
        uplink: cfg.uplink,
        telemetry,
        warnings,
    })
}

/// A point a rule may compare with numbers: not a bit, a bool or text.
fn numeric(pt: &Point) -> bool {
    !matches!(pt.data_type, Some(DataType::Bool | DataType::Ascii))
        && !pt.register.is_some_and(|r| r.is_bit())
        // An SL 651 status bit (element ZT) is a bool.
        && !(pt.element.is_some() && (pt.status.is_some() || pt.bit.is_some()))
}

/// Checks one device apart from its ids (unique ids and point ids are the
/// caller's): what every protocol shares, then its protocol's part.
pub(super) fn device(
    d: &Device,
    p: &str,
    point_paths: &[String],
    line_ids: &HashMap<&str, &SerialLine>,
    uplink: Option<&mqtt::connection::Connection>,
    e: &mut Errs,
    warnings: &mut Vec<String>,
) -> Option<TypedDevice> {
    for (pt, pp) in d.points.iter().zip(point_paths) {
        if !pt.scale.is_finite() || pt.scale == 0.0 {
            e.push(format!("{pp}.scale"), "must be a finite, non-zero number");
        }
        if !pt.offset.is_finite() {
            e.push(format!("{pp}.offset"), "must be a finite number");
        }
    }
    if d.points.is_empty() {
        e.push(format!("{p}.points"), "a device needs at least one point");
    }
    let mut health = super::model::check_health(d, p, e);
    if d.protocol == Protocol::Sl651 {
        // A station is not polled: one missed report (interval + margin)
        // is the whole failure, so it raises `offline` at once.
        health.offline_after = 1;
    }
    mqtt::connection::reject_on_other_protocols(d, p, e);
    // One line per protocol: each checks its own fields and points.
    let kind = match d.protocol {
        Protocol::ModbusTcp => {
            modbus::config::check_tcp(d, p, point_paths, e).map(DeviceKind::ModbusTcp)
        }
        Protocol::ModbusRtu => {
            modbus::config::check_rtu(d, p, point_paths, line_ids, e).map(DeviceKind::ModbusRtu)
        }
        Protocol::Mqtt => {
            mqtt::config::check(d, p, point_paths, uplink, e, warnings).map(DeviceKind::Mqtt)
        }
        Protocol::Sl651 => {
            sl651::config::check(d, p, point_paths, line_ids, e).map(DeviceKind::Sl651)
        }
    }?;
    Some(TypedDevice {
        id: d.id.clone(),
        name: d.name.clone(),
        health,
        kind,
    })
}

/// Interlocks may refer to other rules with `active(rule_id)` and escalation
/// rules count other rules: a cycle among them could never settle.
fn check_cycles(cfg: &Parsed, paths: &Paths, rule_ids: &HashMap<&str, usize>, e: &mut Errs) {
    let n = cfg.rules.len();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    // From the rules as written, so that a cycle is reported even among
    // rules that have errors of their own (all errors at once).
    for (i, r) in cfg.rules.iter().enumerate() {
        for m in &r.members {
            if let Some(&j) = rule_ids.get(m.as_str()) {
                deps[i].push(j);
            }
        }
        if let Some(Ok(x)) = r.when.as_deref().map(expr::parse) {
            for id in expr::rule_refs(&x) {
                if let Some(&j) = rule_ids.get(id.as_str()) {
                    deps[i].push(j);
                }
            }
        }
    }
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state = vec![0u8; n];
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[i] = 1;
        stack.push(i);
        for &j in &deps[i] {
            if state[j] == 1 {
                let from = stack.iter().position(|&s| s == j).unwrap_or(0);
                return Some(stack[from..].to_vec());
            }
            if state[j] == 0
                && let Some(c) = visit(j, deps, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[i] = 2;
        None
    }
    for i in 0..n {
        if state[i] == 0 {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(i, &deps, &mut state, &mut stack) {
                let names: Vec<&str> = cycle.iter().map(|&k| cfg.rules[k].id.as_str()).collect();
                e.push(
                    paths.rules[cycle[0]].clone(),
                    format!(
                        "rules depend on each other in a cycle: {} -> {}",
                        names.join(" -> "),
                        names[0]
                    ),
                );
                return;
            }
        }
    }
}
