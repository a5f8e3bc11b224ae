//! The pure check of a parsed config, all errors collected. No I/O happens
//! here. For rules this file keeps only what spans rules and devices: ids,
//! the points and rules they name, action targets and cycles; each rule
//! kind checks its own settings (`rules::kind`) and returns them typed.

use std::collections::{HashMap, HashSet};

use super::check::Errs;
use super::raw::*;
use super::{Config, ConfigError};
use crate::rules::expr;
use crate::rules::kind::{self, CheckCtx, PointShape, RuleSpec};

/// Where each element came from in the file, so errors name it as written.
pub struct Paths {
    pub lines: Vec<String>,
    pub devices: Vec<String>,
    pub rules: Vec<String>,
    /// Ids of points in devices that failed to parse.
    pub lenient_points: Vec<String>,
}

/// What `validate` found: every problem, and the rules typed (complete
/// only when there is no problem).
pub struct Checked {
    pub errors: Vec<ConfigError>,
    pub rules: Vec<RuleSpec>,
}

fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Point ids must be usable in rule expressions: a letter or `_` first,
/// then letters, digits, `_`, `.` and `-`.
fn point_id_ok(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && s.len() <= 128
}

fn positive(d: &Dur) -> bool {
    !d.0.is_zero()
}

pub fn validate(cfg: &Config, paths: &Paths) -> Checked {
    let mut e = Errs::default();
    let mut specs = Vec::new();

    if !id_ok(&cfg.site.id) {
        e.push(
            "site.id",
            "must be 1-64 characters of A-Z a-z 0-9 . _ - (the contract's site_id)",
        );
    }
    if let Some(rc) = &cfg.site.region_code
        && (rc.len() != 6 || !rc.chars().all(|c| c.is_ascii_digit()))
    {
        e.push(
            "site.region_code",
            format!("`{rc}` is not a six-digit GB/T 2260 region code"),
        );
    }
    if cfg.site.timezone.parse::<chrono_tz::Tz>().is_err() {
        e.push(
            "site.timezone",
            format!(
                "`{}` is not an IANA time zone such as Asia/Shanghai",
                cfg.site.timezone
            ),
        );
    }
    if !id_ok(&cfg.gateway.id) {
        e.push(
            "gateway.id",
            "must be 1-64 characters of A-Z a-z 0-9 . _ - (the contract's gateway_id)",
        );
    }
    if cfg.http.enabled && cfg.http.listen.parse::<std::net::SocketAddr>().is_err() {
        e.push(
            "http.listen",
            format!(
                "`{}` is not an address like 127.0.0.1:8080",
                cfg.http.listen
            ),
        );
    }
    if !(cfg.store.readings_queue_mb.is_finite() && cfg.store.readings_queue_mb >= 1.0) {
        e.push("store.readings_queue_mb", "must be at least 1 (MB)");
    }
    if !(cfg.store.history_mb.is_finite() && cfg.store.history_mb >= 1.0) {
        e.push("store.history_mb", "must be at least 1 (MB)");
    }
    if cfg.store.raw_retention_days == 0 {
        e.push("store.raw_retention_days", "must be at least 1");
    }
    if cfg.store.stats_retention_days == 0 {
        e.push("store.stats_retention_days", "must be at least 1");
    }

    // ---- serial lines
    let mut line_ids = HashSet::new();
    for (l, p) in cfg.serial_lines.iter().zip(&paths.lines) {
        if !line_ids.insert(l.id.as_str()) {
            e.push(
                format!("{p}.id"),
                format!("duplicate serial line id `{}`", l.id),
            );
        }
        if l.path.is_empty() {
            e.push(
                format!("{p}.path"),
                "must name the serial device, e.g. /dev/ttyS1",
            );
        }
        if !(300..=921_600).contains(&l.baud) {
            e.push(
                format!("{p}.baud"),
                format!("{} is not a usable baud rate (300-921600)", l.baud),
            );
        }
        if !(5..=8).contains(&l.data_bits) {
            e.push(format!("{p}.data_bits"), "must be 5, 6, 7 or 8");
        }
        if !(1..=2).contains(&l.stop_bits) {
            e.push(format!("{p}.stop_bits"), "must be 1 or 2");
        }
        if !positive(&l.response_timeout) {
            e.push(format!("{p}.response_timeout"), "must be greater than zero");
        }
    }

    // ---- devices and points
    let mut device_ids = HashSet::new();
    let mut points: HashMap<&str, (&Device, &Point)> = HashMap::new();
    for (d, p) in cfg.devices.iter().zip(&paths.devices) {
        if !id_ok(&d.id) {
            e.push(
                format!("{p}.id"),
                "must be 1-64 characters of A-Z a-z 0-9 . _ -",
            );
        }
        if !device_ids.insert(d.id.as_str()) {
            e.push(format!("{p}.id"), format!("duplicate device id `{}`", d.id));
        }
        check_device(d, p, &line_ids, &mut e);
        for (j, pt) in d.points.iter().enumerate() {
            let pp = format!("{p}.points[{j}]");
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
            check_point(d, pt, &pp, &mut e);
        }
        check_overlaps(d, p, &mut e);
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
    let ctx = CheckCtx {
        point: &shape,
        point_known: &point_known,
        rule_exists: &rule_exists,
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
                    if d.protocol == Protocol::Mqtt {
                        e.push(
                            format!("{ap}.write"),
                            format!(
                                "point `{}` is an MQTT point; actions write Modbus points",
                                a.write
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
            }
        }
    }
    check_cycles(cfg, paths, &rule_ids, &mut e);

    // ---- sinks
    if let Some(i) = &cfg.influxdb {
        if !(i.url.starts_with("http://") || i.url.starts_with("https://")) {
            e.push(
                "influxdb.url",
                format!("`{}` must start with http:// or https://", i.url),
            );
        }
        if i.org.is_empty() {
            e.push("influxdb.org", "must not be empty");
        }
        if i.bucket.is_empty() {
            e.push("influxdb.bucket", "must not be empty");
        }
        if i.token_env.is_some() && i.token_file.is_some() {
            e.push(
                "influxdb.token_file",
                "give token_env or token_file, not both",
            );
        }
        if i.batch_size == 0 {
            e.push("influxdb.batch_size", "must be at least 1");
        }
        if !positive(&i.timeout) {
            e.push("influxdb.timeout", "must be greater than zero");
        }
    }
    if let Some(u) = &cfg.uplink {
        if u.host.is_empty() {
            e.push("uplink.host", "must not be empty");
        }
        if u.tls.is_none() && !u.plain_tcp {
            e.push(
                "uplink.tls",
                "the county uplink is TLS by default: add [uplink.tls] with ca_file, or set plain_tcp = true to send in clear text",
            );
        }
        if u.tls.is_some() && u.plain_tcp {
            e.push(
                "uplink.plain_tcp",
                "plain_tcp = true contradicts [uplink.tls]",
            );
        }
        if let Some(t) = &u.tls
            && t.client_cert_file.is_some() != t.client_key_file.is_some()
        {
            e.push(
                "uplink.tls",
                "client_cert_file and client_key_file go together",
            );
        }
        if u.password_env.is_some() && u.password_file.is_some() {
            e.push(
                "uplink.password_file",
                "give password_env or password_file, not both",
            );
        }
        if (u.password_env.is_some() || u.password_file.is_some()) && u.username.is_none() {
            e.push("uplink.username", "a password needs a username");
        }
        if u.topic_prefix.is_empty()
            || u.topic_prefix.contains(['#', '+'])
            || u.topic_prefix.ends_with('/')
        {
            e.push(
                "uplink.topic_prefix",
                "must be a topic without wildcards or a trailing /",
            );
        }
        if u.keep_alive.0.as_secs() < 5 {
            e.push("uplink.keep_alive", "must be at least 5s");
        }
        if !positive(&u.status_interval) {
            e.push("uplink.status_interval", "must be greater than zero");
        }
    }
    Checked {
        errors: e.0,
        rules: specs,
    }
}

/// A point a rule may compare with numbers: not a bit, a bool or text.
fn numeric(pt: &Point) -> bool {
    !matches!(pt.data_type, Some(DataType::Bool | DataType::Ascii))
        && !pt.register.is_some_and(|r| r.is_bit())
}

fn check_device(d: &Device, p: &str, line_ids: &HashSet<&str>, e: &mut Errs) {
    match d.protocol {
        Protocol::ModbusTcp => {
            if d.host.as_deref().unwrap_or("").is_empty() {
                e.push(format!("{p}.host"), "required for protocol modbus_tcp");
            }
            if d.line.is_some() {
                e.push(format!("{p}.line"), "only for protocol modbus_rtu");
            }
        }
        Protocol::ModbusRtu => match &d.line {
            None => e.push(
                format!("{p}.line"),
                "required for protocol modbus_rtu: the id of a [[serial_lines]] entry",
            ),
            Some(l) if !line_ids.contains(l.as_str()) => e.push(
                format!("{p}.line"),
                format!("no serial line `{l}` in [[serial_lines]]"),
            ),
            _ => {}
        },
        Protocol::Mqtt => {
            if d.broker.is_none() {
                e.push(
                    format!("{p}.broker"),
                    "required for protocol mqtt: \"host:port\" or \"uplink\"",
                );
            }
            match &d.topic {
                None => e.push(format!("{p}.topic"), "required for protocol mqtt"),
                Some(t) if t.is_empty() => e.push(format!("{p}.topic"), "must not be empty"),
                _ => {}
            }
            match &d.heartbeat {
                None => e.push(
                    format!("{p}.heartbeat"),
                    "required for protocol mqtt: a source that goes quiet must turn its points bad",
                ),
                Some(h) if !positive(h) => {
                    e.push(format!("{p}.heartbeat"), "must be greater than zero")
                }
                _ => {}
            }
        }
    }
    if d.protocol != Protocol::Mqtt {
        if !positive(&d.poll_interval) {
            e.push(format!("{p}.poll_interval"), "must be greater than zero");
        }
        if !positive(&d.timeout) {
            e.push(format!("{p}.timeout"), "must be greater than zero");
        }
        if d.unit_id > 247 {
            e.push(
                format!("{p}.unit_id"),
                format!("{} is outside the Modbus unit range 0-247", d.unit_id),
            );
        }
        if !(1..=125).contains(&d.max_registers) {
            e.push(
                format!("{p}.max_registers"),
                "must be 1-125 (the protocol's limit for one read)",
            );
        }
    }
    if d.offline_after == 0 {
        e.push(format!("{p}.offline_after"), "must be at least 1");
    }
    if !(1..=4).contains(&d.offline_level) {
        e.push(
            format!("{p}.offline_level"),
            format!(
                "{} is not a level; levels are 1 (red) to 4 (blue)",
                d.offline_level
            ),
        );
    }
    if !(1..=4).contains(&d.stale_level) {
        e.push(
            format!("{p}.stale_level"),
            format!(
                "{} is not a level; levels are 1 (red) to 4 (blue)",
                d.stale_level
            ),
        );
    }
    if let Some(s) = &d.stale_after
        && !positive(s)
    {
        e.push(format!("{p}.stale_after"), "must be greater than zero");
    }
    let mut gids = HashSet::new();
    for (k, g) in d.groups.iter().enumerate() {
        if !gids.insert(g.id.as_str()) {
            e.push(
                format!("{p}.groups[{k}].id"),
                format!("duplicate poll group `{}`", g.id),
            );
        }
        if !positive(&g.interval) {
            e.push(
                format!("{p}.groups[{k}].interval"),
                "must be greater than zero",
            );
        }
    }
    if d.points.is_empty() {
        e.push(format!("{p}.points"), "a device needs at least one point");
    }
}

fn check_point(d: &Device, pt: &Point, pp: &str, e: &mut Errs) {
    if !pt.scale.is_finite() || pt.scale == 0.0 {
        e.push(format!("{pp}.scale"), "must be a finite, non-zero number");
    }
    if !pt.offset.is_finite() {
        e.push(format!("{pp}.offset"), "must be a finite number");
    }
    if let Some(g) = &pt.group
        && !d.groups.iter().any(|x| &x.id == g)
    {
        e.push(
            format!("{pp}.group"),
            format!("no poll group `{g}` in this device's groups"),
        );
    }
    if d.protocol == Protocol::Mqtt {
        match &pt.path {
            None => e.push(
                format!("{pp}.path"),
                "required for an MQTT point, e.g. cameras[0].online",
            ),
            Some(path) => {
                if let Err(m) = crate::source::jsonpath::JsonPath::parse(path) {
                    e.push(format!("{pp}.path"), m);
                }
            }
        }
        for (f, set) in [
            ("register", pt.register.is_some()),
            ("address", pt.address.is_some()),
        ] {
            if set {
                e.push(format!("{pp}.{f}"), "only for Modbus points");
            }
        }
        return;
    }
    if pt.path.is_some() {
        e.push(format!("{pp}.path"), "only for MQTT points");
    }
    let Some(reg) = pt.register else {
        e.push(
            format!("{pp}.register"),
            "required: coil, discrete, holding or input",
        );
        return;
    };
    let Some(addr) = pt.address else {
        e.push(
            format!("{pp}.address"),
            "required: the register address (0-65535, as on the wire)",
        );
        return;
    };
    let ty = pt.data_type.unwrap_or(if reg.is_bit() {
        DataType::Bool
    } else {
        DataType::U16
    });
    if reg.is_bit() && ty != DataType::Bool {
        e.push(
            format!("{pp}.type"),
            format!("a {reg:?} holds one bit: the type must be bool, not {ty:?}"),
        );
    }
    if reg.is_bit() && pt.bit.is_some() {
        e.push(
            format!("{pp}.bit"),
            "only for a bool taken from a holding or input register",
        );
    }
    if let Some(b) = pt.bit {
        if b > 15 {
            e.push(
                format!("{pp}.bit"),
                format!("{b} is not a bit of a 16-bit register (0-15)"),
            );
        }
        if ty != DataType::Bool {
            e.push(format!("{pp}.bit"), "only with type = \"bool\"");
        }
    }
    if !reg.is_bit() && ty == DataType::Bool && pt.bit.is_none() {
        e.push(
            format!("{pp}.bit"),
            "a bool from a register needs bit = 0-15",
        );
    }
    let words = match ty {
        DataType::Ascii => match pt.length {
            Some(n) if (1..=125).contains(&n) => n,
            Some(n) => {
                e.push(
                    format!("{pp}.length"),
                    format!("{n} registers: must be 1-125"),
                );
                1
            }
            None => {
                e.push(
                    format!("{pp}.length"),
                    "an ascii point needs length = number of registers (2 characters each)",
                );
                1
            }
        },
        _ => {
            if pt.length.is_some() {
                e.push(format!("{pp}.length"), "only for type = \"ascii\"");
            }
            ty.words()
        }
    };
    if u32::from(addr) + u32::from(words) > 65536 {
        e.push(
            format!("{pp}.address"),
            format!("{addr} + {words} registers runs past 65535"),
        );
    }
    if let Some(order) = pt.byte_order {
        let fits = match ty.words() {
            _ if reg.is_bit() || ty == DataType::Bool => order == ByteOrder::ABCD,
            1 => matches!(order, ByteOrder::ABCD | ByteOrder::BADC),
            _ => true,
        };
        if !fits {
            e.push(
                format!("{pp}.byte_order"),
                format!("{order:?} does not fit a {ty:?}: one-register values take ABCD or BADC, bits none"),
            );
        }
    }
    if let Some(dec) = pt.decimals {
        if dec > 9 {
            e.push(format!("{pp}.decimals"), "must be 0-9");
        }
        if matches!(
            ty,
            DataType::F32 | DataType::F64 | DataType::Bool | DataType::Ascii
        ) {
            e.push(
                format!("{pp}.decimals"),
                format!("fixed-point needs an integer type, not {ty:?}"),
            );
        }
    }
    if pt.writable && matches!(reg, RegisterKind::Discrete | RegisterKind::Input) {
        e.push(
            format!("{pp}.writable"),
            format!("a {reg:?} register cannot be written"),
        );
    }
}

/// Two points of one device whose register ranges overlap must read the
/// same registers the same way; a u16 inside an f32 is a map error.
fn check_overlaps(d: &Device, p: &str, e: &mut Errs) {
    let mut spans: Vec<(RegisterKind, u32, u32, DataType, Option<u8>, usize)> = Vec::new();
    for (j, pt) in d.points.iter().enumerate() {
        let (Some(reg), Some(addr)) = (pt.register, pt.address) else {
            continue;
        };
        let ty = pt.data_type.unwrap_or(if reg.is_bit() {
            DataType::Bool
        } else {
            DataType::U16
        });
        let words = if ty == DataType::Ascii {
            pt.length.unwrap_or(1)
        } else {
            ty.words()
        };
        spans.push((reg, addr as u32, addr as u32 + words as u32, ty, pt.bit, j));
    }
    for a in 0..spans.len() {
        for b in a + 1..spans.len() {
            let (ra, sa, ea, ta, _, ja) = spans[a];
            let (rb, sb, eb, tb, _, jb) = spans[b];
            if ra != rb || sa >= eb || sb >= ea {
                continue;
            }
            let same_read = ta == tb && sa == sb && ea == eb;
            let bits_of_same = ta == DataType::Bool && tb == DataType::Bool;
            if !(same_read || bits_of_same) {
                e.push(
                    format!("{p}.points[{jb}].address"),
                    format!(
                        "{rb:?} registers {sb}-{} ({tb:?}) overlap points[{ja}] at {sa}-{} ({ta:?}) with a different type",
                        eb - 1,
                        ea - 1
                    ),
                );
            }
        }
    }
}

/// Interlocks may refer to other rules with `active(rule_id)` and escalation
/// rules count other rules: a cycle among them could never settle.
fn check_cycles(cfg: &Config, paths: &Paths, rule_ids: &HashMap<&str, usize>, e: &mut Errs) {
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
