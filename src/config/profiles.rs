//! Device profiles: register maps of devices riskgate knows, shipped inside
//! the binary (their source files are `config/profiles/*.toml`, each with
//! its map as a table) and used by name from a device:
//!
//! ```toml
//! [[devices]]
//! id = "gd-1301-t1"
//! protocol = "modbus_tcp"
//! host = "192.168.10.21"
//! profile = "gas-detector"
//! point_ids = "{key}.1301.t1"     # or { ch4 = "ch4.1301.t1", co = "co.1301.t1" }
//! ```
//!
//! Expansion happens on the file's shapes, before any check, so a profile
//! point is checked like a written one. Its errors name it
//! `devices[N].profile[KEY]`, i.e. the device, its profile and the point's
//! key. An explicit `[[devices.points]]` entry whose id is one the profile
//! generates replaces that profile point; other explicit points are added.
//! A profile point's name is the device's name followed by the profile's
//! name of the point.

use serde::Deserialize;

use super::check::Errs;
use super::raw::{Device, Point, PointIds, Protocol};

/// Every shipped profile: (name, TOML text).
pub const PROFILES: &[(&str, &str)] = &[
    (
        "gas-detector",
        include_str!("../../config/profiles/gas-detector.toml"),
    ),
    (
        "kj-monitor",
        include_str!("../../config/profiles/kj-monitor.toml"),
    ),
    (
        "reservoir-rtu",
        include_str!("../../config/profiles/reservoir-rtu.toml"),
    ),
    (
        "video-box",
        include_str!("../../config/profiles/video-box.toml"),
    ),
];

const DEFAULT_IDS: &str = "{device}.{key}";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[allow(dead_code)]
    description: String,
    protocols: Vec<Protocol>,
    /// Point tables as in `[[devices.points]]`, with `key` in place of `id`.
    points: Vec<toml::Table>,
}

/// Adds the points of `d`'s profile (if it has one) to `d.points` and
/// returns, for every point of the result, the path that names it in
/// errors (`devices[0].points[2]`, `devices[0].profile[ch4]`).
pub fn expand(d: &mut Device, p: &str, e: &mut Errs) -> Vec<String> {
    let explicit: Vec<String> = (0..d.points.len())
        .map(|j| format!("{p}.points[{j}]"))
        .collect();
    let Some(name) = d.profile.clone() else {
        if d.point_ids.is_some() {
            e.push(format!("{p}.point_ids"), "only with `profile`");
        }
        return explicit;
    };
    let Some((_, text)) = PROFILES.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
        e.push(
            format!("{p}.profile"),
            format!("no profile `{name}`; shipped: {}", known.join(", ")),
        );
        return explicit;
    };
    let profile: ProfileFile = match toml::from_str(text) {
        Ok(f) => f,
        Err(err) => {
            e.push(
                format!("{p}.profile"),
                format!("profile `{name}` is broken: {err}"),
            );
            return explicit;
        }
    };
    if !profile.protocols.contains(&d.protocol) {
        e.push(
            format!("{p}.profile"),
            format!(
                "profile `{name}` is for {}, not {}",
                profile
                    .protocols
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                d.protocol.as_str()
            ),
        );
        return explicit;
    }
    let keys: Vec<String> = profile
        .points
        .iter()
        .map(|t| {
            t.get("key")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let ids = d
        .point_ids
        .clone()
        .unwrap_or_else(|| PointIds::Template(DEFAULT_IDS.into()));
    let id_of = |key: &str| -> Option<String> {
        match &ids {
            PointIds::Template(t) => Some(t.replace("{device}", &d.id).replace("{key}", key)),
            PointIds::Map(m) => m.get(key).cloned(),
        }
    };
    match &ids {
        PointIds::Template(t) if !t.contains("{key}") => {
            e.push(
                format!("{p}.point_ids"),
                "a template must contain {key}, or every point would get the same id",
            );
            return explicit;
        }
        PointIds::Map(m) => {
            for k in m.keys() {
                if !keys.contains(k) {
                    e.push(
                        format!("{p}.point_ids.{k}"),
                        format!(
                            "profile `{name}` has no point `{k}`; it has {}",
                            keys.join(", ")
                        ),
                    );
                }
            }
        }
        _ => {}
    }

    let mut points = Vec::new();
    let mut paths = Vec::new();
    for (table, key) in profile.points.into_iter().zip(&keys) {
        let Some(id) = id_of(key) else { continue };
        if d.points.iter().any(|x| x.id == id) {
            continue; // replaced by the explicit point of that id
        }
        let path = format!("{p}.profile[{key}]");
        let mut t = table;
        t.remove("key");
        t.insert("id".into(), toml::Value::String(id));
        if let (Some(dev), Some(toml::Value::String(n))) = (&d.name, t.get("name")) {
            let full = format!("{dev} {n}");
            t.insert("name".into(), toml::Value::String(full));
        }
        match toml::Value::Table(t).try_into::<Point>() {
            Ok(pt) => {
                points.push(pt);
                paths.push(path);
            }
            Err(err) => e.push(path, format!("profile `{name}` is broken: {err}")),
        }
    }
    points.append(&mut d.points);
    paths.extend(explicit);
    d.points = points;
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped profile parses, with no unknown field in its points.
    #[test]
    fn shipped_profiles_parse() {
        for (name, text) in PROFILES {
            let f: ProfileFile = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!f.points.is_empty(), "{name}");
            for t in f.points {
                let mut t = t;
                let key = t.remove("key").expect("key");
                t.insert("id".into(), key);
                let mut unknown = Vec::new();
                let _: Point = serde_ignored::deserialize(toml::Value::Table(t), |p| {
                    unknown.push(p.to_string())
                })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(unknown.is_empty(), "{name}: unknown {unknown:?}");
            }
        }
    }
}
