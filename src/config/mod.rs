//! Loading and checking the config file.
//!
//! `load()` reads the TOML file with the `config` crate (so that
//! `RISKGATE__SECTION__FIELD` environment variables can override scalar
//! fields on an installed gateway), deserializes it section by section and
//! element by element, and then runs the pure `validate()`. Every problem
//! found on the way is collected, so an installer sees all of them at once,
//! each with the file, the field path and what is wrong.
//!
//! Unknown fields are errors. They are found with `serde_ignored` rather than
//! `#[serde(deny_unknown_fields)]`, because the latter stops at the first
//! unknown field and hides every other error in the file.

pub mod check;
pub mod error;
pub mod model;
pub mod presets;
pub mod profiles;
pub mod raw;
pub mod sections;
pub mod telemetry;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use model::{Config, Device, DeviceKind, Health, PointMeta, ValueKind};
pub use sections::HttpServer;
pub use telemetry::{Deadband, Telemetry};
// The file's shapes that are also the checked model's (nothing in them is
// optional or protocol-specific). `raw::Device` and `raw::Point` are the
// file's union shapes; the checked ones are `Device` and the protocols'
// point types.
pub use crate::source::modbus::config::{Modbus, ModbusPoint, ModbusRtu, ModbusTcp};
pub use crate::source::mqtt::config::{Broker, MqttDevice, MqttPoint};
pub use crate::source::mqtt::connection::{Connection, Login, Secret, TlsFiles};
pub use raw::{
    ActionCfg, ByteOrder, Cmp, DataType, Dur, EscalateCfg, EscalateTo, Gateway, Http, Influx,
    InputKind, Parity, Period, PointIds, PollGroup, PresetUse, Protocol, QualityCfg, RegisterKind,
    Rule, RuleKindCfg, SerialLine, Site, SiteKind, Stage, Store, TamperCheck, Tls, Uplink,
};

/// Reads, parses and checks a config file.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.display().to_string(),
            path: String::new(),
            message: format!("cannot read: {e}"),
        }]
    })?;
    load_str(&text, path)
}

/// Parses and checks config text; `path` names the file in errors and is the
/// base for relative preset look-ups.
pub fn load_str(text: &str, path: &Path) -> Result<Config, Vec<ConfigError>> {
    let file = path.display().to_string();
    let err = |p: &str, m: String| ConfigError {
        file: file.clone(),
        path: p.to_string(),
        message: m,
    };
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            // Only RISKGATE__SECTION__FIELD: variables such as
            // RISKGATE_INFLUX_TOKEN (single _) are secrets, not overrides.
            config::Environment::with_prefix("RISKGATE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .map_err(|e| vec![err("", format!("not valid TOML: {e}"))])?;
    let tree: config::Map<String, config::Value> = built
        .try_deserialize()
        .map_err(|e| vec![err("", format!("not valid TOML: {e}"))])?;

    let mut errors = Vec::new();
    let known = [
        "site",
        "gateway",
        "http",
        "store",
        "serial_lines",
        "devices",
        "presets",
        "rules",
        "quality",
        "influxdb",
        "uplink",
        "telemetry",
    ];
    let mut keys: Vec<&String> = tree.keys().collect();
    keys.sort();
    for k in keys {
        if !known.contains(&k.as_str()) {
            errors.push(err(
                k,
                format!("unknown field; expected one of {}", known.join(", ")),
            ));
        }
    }

    let site: Option<Site> = section(&tree, "site", true, &file, &mut errors);
    let gateway: Option<Gateway> = section(&tree, "gateway", true, &file, &mut errors);
    let http: Option<Http> = section(&tree, "http", false, &file, &mut errors);
    let store: Option<Store> = section(&tree, "store", false, &file, &mut errors);
    let influxdb: Option<Influx> = section(&tree, "influxdb", false, &file, &mut errors);
    let uplink: Option<Uplink> = section(&tree, "uplink", false, &file, &mut errors);
    let telemetry: Option<telemetry::RawTelemetry> =
        section(&tree, "telemetry", false, &file, &mut errors);
    let (serial_lines, line_paths) = list::<SerialLine>(&tree, "serial_lines", &file, &mut errors);
    let (mut devices, device_paths) = list::<raw::Device>(&tree, "devices", &file, &mut errors);
    let (preset_uses, _) = list::<PresetUse>(&tree, "presets", &file, &mut errors);
    let (rules, own_rule_paths) = list::<Rule>(&tree, "rules", &file, &mut errors);
    let (quality, _) = list::<QualityCfg>(&tree, "quality", &file, &mut errors);

    // Point ids of devices that failed to parse are still known, so that a
    // rule naming them is not reported as naming a missing point.
    let mut lenient_points = Vec::new();
    if let Some(config::Value {
        kind: config::ValueKind::Array(devs),
        ..
    }) = tree.get("devices")
    {
        for d in devs {
            if let Ok(t) = d.clone().into_table()
                && let Some(Ok(pts)) = t.get("points").map(|p| p.clone().into_array())
            {
                for p in pts {
                    if let Ok(pt) = p.into_table()
                        && let Some(Ok(id)) = pt.get("id").map(|i| i.clone().into_string())
                    {
                        lenient_points.push(id);
                    }
                }
            }
        }
    }

    // Profiles first: their points are then checked like written ones.
    let mut profile_errors = check::Errs::default();
    let point_paths: Vec<Vec<String>> = devices
        .iter_mut()
        .zip(&device_paths)
        .map(|(d, p)| profiles::expand(d, p, &mut profile_errors))
        .collect();
    errors.extend(profile_errors.0.into_iter().map(|mut e| {
        e.file = file.clone();
        e
    }));

    let expanded = presets::expand(&preset_uses, &file, &mut errors);
    let (all_rules, rule_paths, warnings) = presets::merge(expanded, rules, own_rule_paths);

    let (Some(site), Some(gateway)) = (site, gateway) else {
        return Err(errors);
    };
    let parsed = validate::Parsed {
        site,
        gateway,
        http: http.unwrap_or_default(),
        store: store.unwrap_or_default(),
        serial_lines,
        devices,
        rules: all_rules,
        quality,
        influxdb,
        uplink,
        telemetry,
    };
    let paths = validate::Paths {
        lines: line_paths,
        devices: device_paths,
        points: point_paths,
        rules: rule_paths,
        lenient_points,
    };
    match validate::validate(path, parsed, &paths, warnings) {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        Ok(_) => Err(errors),
        Err(verrors) => {
            errors.extend(verrors.into_iter().map(|mut e| {
                e.file = file.clone();
                e
            }));
            Err(errors)
        }
    }
}

/// Checks one `[[devices]]` table on its own (e.g. a test's or a tool's
/// device): its profile expanded, every error with its path under
/// `device`. A `line` is taken as known; `broker = "uplink"` means the
/// local broker, as with no `[uplink]` section.
pub fn device_from_toml(text: &str) -> Result<Device, Vec<ConfigError>> {
    let mut errors = check::Errs::default();
    let mut raw: raw::Device = toml::from_str(text).map_err(|e| {
        vec![ConfigError {
            file: String::new(),
            path: "device".into(),
            message: e.to_string(),
        }]
    })?;
    let paths = profiles::expand(&mut raw, "device", &mut errors);
    // The named line, with the file's defaults (its timeout is the slave's).
    let line: Option<raw::SerialLine> = raw.line.as_ref().and_then(|l| {
        toml::from_str(&format!(
            "id = {}\npath = \"\"",
            toml::Value::from(l.as_str())
        ))
        .ok()
    });
    let lines = line.iter().map(|l| (l.id.as_str(), l)).collect();
    let mut warnings = Vec::new();
    match validate::device(
        &raw,
        "device",
        &paths,
        &lines,
        None,
        &mut errors,
        &mut warnings,
    ) {
        Some(d) if errors.is_empty() => Ok(d),
        _ => Err(errors.0),
    }
}

/// Deserializes `value` into `T`, reporting every unknown field and every
/// type error, each with its full path under `prefix`.
///
/// serde stops at the first type error; to report the others too, the
/// offending field is taken out and the element deserialized again (a
/// field taken out is not reported a second time as missing).
fn typed<T: serde::de::DeserializeOwned>(
    value: &config::Value,
    prefix: &str,
    file: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    // Through JSON, so serde's own messages ("unknown variant `x`, expected
    // one of ...") reach the user rather than the config crate's.
    let mut json: serde_json::Value = match value.clone().try_deserialize() {
        Ok(j) => j,
        Err(e) => {
            errors.push(ConfigError {
                file: file.into(),
                path: prefix.into(),
                message: e.to_string(),
            });
            return None;
        }
    };
    let mut removed: Vec<String> = Vec::new();
    let mut unknown_seen = std::collections::HashSet::new();
    for _ in 0..32 {
        let mut unknown = Vec::new();
        let mut note = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
        let de = serde_ignored::Deserializer::new(json.clone(), &mut note);
        let result: Result<T, _> = serde_path_to_error::deserialize(de);
        for u in unknown {
            if unknown_seen.insert(u.clone()) {
                errors.push(ConfigError {
                    file: file.into(),
                    path: join(prefix, &u),
                    message: "unknown field".into(),
                });
            }
        }
        match result {
            // With bad fields taken out the element may still parse (their
            // defaults stand in); it is checked further so that its other
            // errors are reported too. The load fails on the errors above.
            Ok(v) => return Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let msg = e.inner().to_string();
                // "missing field `x`" for a field we took out: already reported.
                let missing_removed = removed.iter().any(|r| {
                    let (parent, last) = r.rsplit_once('.').unwrap_or(("", r));
                    let here = if inner == "." { "" } else { inner.as_str() };
                    parent == here && msg.contains(&format!("missing field `{last}`"))
                });
                let p = if inner == "." {
                    prefix.to_string()
                } else {
                    join(prefix, &inner)
                };
                if !missing_removed {
                    errors.push(ConfigError {
                        file: file.into(),
                        path: p,
                        message: msg,
                    });
                }
                if inner == "." || !remove_path(&mut json, &inner) {
                    return None;
                }
                removed.push(inner);
            }
        }
    }
    None
}

/// Removes the field at a serde path such as `points[4].type`.
fn remove_path(v: &mut serde_json::Value, path: &str) -> bool {
    let mut segs: Vec<String> = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                segs.push(rest[..i].to_string());
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                segs.push(rest[..=end].to_string());
                rest = &rest[end + 1..];
            }
        } else {
            segs.push(rest.to_string());
        }
    }
    let Some(last) = segs.pop() else { return false };
    let mut cur = v;
    for s in &segs {
        cur = match s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            Some(i) => match i.parse::<usize>().ok().and_then(|i| cur.get_mut(i)) {
                Some(c) => c,
                None => return false,
            },
            None => match cur.get_mut(s.as_str()) {
                Some(c) => c,
                None => return false,
            },
        };
    }
    match cur.as_object_mut() {
        Some(o) => o.remove(&last).is_some(),
        None => false,
    }
}

fn join(prefix: &str, inner: &str) -> String {
    let inner = inner.trim_start_matches('.');
    if prefix.is_empty() {
        inner.to_string()
    } else if inner.starts_with('[') || inner.is_empty() {
        format!("{prefix}{inner}")
    } else {
        format!("{prefix}.{inner}")
    }
}

fn section<T: serde::de::DeserializeOwned>(
    tree: &config::Map<String, config::Value>,
    name: &str,
    required: bool,
    file: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match tree.get(name) {
        Some(v) => typed(v, name, file, errors),
        None => {
            if required {
                errors.push(ConfigError {
                    file: file.into(),
                    path: name.into(),
                    message: "missing section".into(),
                });
            }
            None
        }
    }
}

/// Deserializes an array of tables element by element, so that one bad
/// element does not hide the errors of the others. Returns the elements that
/// parsed and, beside them, the path each came from (`devices[3]`), so later
/// errors name the element as written even when an earlier one was dropped.
fn list<T: serde::de::DeserializeOwned>(
    tree: &config::Map<String, config::Value>,
    name: &str,
    file: &str,
    errors: &mut Vec<ConfigError>,
) -> (Vec<T>, Vec<String>) {
    let mut out = (Vec::new(), Vec::new());
    let Some(v) = tree.get(name) else { return out };
    match v.clone().into_array() {
        Ok(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{name}[{i}]");
                if let Some(t) = typed(item, &p, file, errors) {
                    out.0.push(t);
                    out.1.push(p);
                }
            }
        }
        Err(_) => errors.push(ConfigError {
            file: file.into(),
            path: name.into(),
            message: format!("must be an array of tables ([[{name}]])"),
        }),
    }
    out
}
