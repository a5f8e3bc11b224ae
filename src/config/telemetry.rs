//! `[telemetry]`: real-time data for the county (`docs/contract/county-mqtt.md`,
//! "Real-time data"): the section as written, its check, and the typed
//! settings the telemetry builder reads.
//!
//! Invariants of the typed [`Telemetry`]: `min_interval <= interval`, both
//! and the statistics period greater than zero, every deadband finite and
//! not negative, the queue cap at least 1 MB, the replay pace at least one
//! message a second, and telemetry only with an `[uplink]` (it shares the
//! uplink's one MQTT connection).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::check::Errs;
use super::raw::Dur;

/// The section as written.
#[derive(Clone, Debug, Deserialize)]
pub struct RawTelemetry {
    /// Snapshot cadence: every point, every `interval`.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Change reports at most this often.
    #[serde(default = "default_min_interval")]
    pub min_interval: Dur,
    /// The deadband of every point without its own: a number (absolute, in
    /// the point's unit) or `"N%"` (of the last value sent).
    #[serde(default)]
    pub deadband: Option<RawDeadband>,
    /// Deadbands by point id pattern (`*` any run of characters); the first
    /// pattern in key order that matches wins over `deadband`.
    #[serde(default)]
    pub deadbands: BTreeMap<String, RawDeadband>,
    #[serde(default = "yes")]
    pub stats_5m: bool,
    /// The statistics period. Not in `docs/config.md` on purpose: the
    /// contract's period is 5 minutes; the tests compress it to seconds.
    #[serde(default = "default_stats_period")]
    pub stats_period: Dur,
    /// Point id patterns to send; every point when empty.
    #[serde(default)]
    pub include: Vec<String>,
    /// Point id patterns never sent (wins over `include`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Upper bound of the telemetry queue on disk, in MB; beyond it the
    /// oldest messages are dropped (counted; the county sees a `tseq` gap).
    #[serde(default = "default_queue_mb")]
    pub queue_mb: f64,
    /// The cap in bytes, over `queue_mb`. Not in `docs/config.md` on
    /// purpose: a test fills the queue with a few messages.
    #[serde(default)]
    pub queue_bytes: Option<u64>,
    /// Telemetry messages published per second at most (the pace of a
    /// backlog replayed after an outage).
    #[serde(default = "default_replay_rate")]
    pub replay_rate: u32,
}

/// A deadband as written: `0.05` or `"2%"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawDeadband {
    Abs(f64),
    Text(String),
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_min_interval() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_stats_period() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_queue_mb() -> f64 {
    16.0
}
fn default_replay_rate() -> u32 {
    20
}
fn yes() -> bool {
    true
}

/// How far a value must move before a change report carries it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Deadband {
    /// In the point's unit.
    Abs(f64),
    /// Percent of the magnitude of the last value sent.
    Pct(f64),
}

impl Deadband {
    /// Whether `new` is past the deadband from `last` (a deadband of 0
    /// reports every change).
    pub fn exceeded(self, last: f64, new: f64) -> bool {
        let d = (new - last).abs();
        match self {
            Deadband::Abs(a) => d > a,
            Deadband::Pct(p) => d > last.abs() * p / 100.0,
        }
    }
}

/// The checked section.
#[derive(Clone, Debug, PartialEq)]
pub struct Telemetry {
    pub interval: Duration,
    pub min_interval: Duration,
    pub deadband: Deadband,
    pub deadbands: Vec<(String, Deadband)>,
    /// The statistics period, or None without `stats_5m`.
    pub stats: Option<Duration>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub queue_bytes: u64,
    pub replay_rate: u32,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            interval: default_interval().0,
            min_interval: default_min_interval().0,
            deadband: Deadband::Abs(0.0),
            deadbands: Vec::new(),
            stats: Some(default_stats_period().0),
            include: Vec::new(),
            exclude: Vec::new(),
            queue_bytes: (default_queue_mb() * 1_048_576.0) as u64,
            replay_rate: default_replay_rate(),
        }
    }
}

impl Telemetry {
    /// Whether point `id` is sent.
    pub fn selects(&self, id: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| matches(p, id)))
            && !self.exclude.iter().any(|p| matches(p, id))
    }

    pub fn deadband_for(&self, id: &str) -> Deadband {
        self.deadbands
            .iter()
            .find(|(p, _)| matches(p, id))
            .map_or(self.deadband, |(_, d)| *d)
    }
}

/// `*` matches any run of characters (dots too); everything else itself.
pub fn matches(pattern: &str, id: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == id;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !id.starts_with(first) || id.len() < first.len() + last.len() || !id.ends_with(last) {
        return false;
    }
    let mut rest = &id[first.len()..id.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn deadband(d: &RawDeadband, path: String, e: &mut Errs) -> Deadband {
    let bad = "must be a number (absolute, in the point's unit) or a percentage such as \"2%\", not negative";
    let out = match d {
        RawDeadband::Abs(a) => Some(Deadband::Abs(*a)),
        RawDeadband::Text(t) => t
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(Deadband::Pct),
    };
    match out {
        Some(Deadband::Abs(v) | Deadband::Pct(v)) if v.is_finite() && v >= 0.0 => {
            out.expect("matched")
        }
        _ => {
            e.push(path, bad);
            Deadband::Abs(0.0)
        }
    }
}

/// Checks the section; `has_uplink` whether `[uplink]` is configured and
/// `points` every point id of the site (a pattern matching none is a
/// warning: likely a typo).
pub fn check(
    t: &RawTelemetry,
    has_uplink: bool,
    points: &[&str],
    e: &mut Errs,
    warnings: &mut Vec<String>,
) -> Telemetry {
    if !has_uplink {
        e.push(
            "telemetry",
            "needs an [uplink]: telemetry is sent over the county uplink's connection",
        );
    }
    if t.interval.0 < Duration::from_secs(1) {
        e.push("telemetry.interval", "must be at least 1s");
    }
    if t.min_interval.0.is_zero() {
        e.push("telemetry.min_interval", "must be greater than zero");
    } else if t.min_interval > t.interval {
        e.push(
            "telemetry.min_interval",
            format!(
                "{} is longer than interval {}: change reports would never come between snapshots",
                t.min_interval, t.interval
            ),
        );
    }
    if t.stats_period.0 < Duration::from_secs(1) {
        e.push("telemetry.stats_period", "must be at least 1s");
    }
    if !(t.queue_mb.is_finite() && t.queue_mb >= 1.0) {
        e.push("telemetry.queue_mb", "must be at least 1 (MB)");
    }
    if t.replay_rate == 0 {
        e.push(
            "telemetry.replay_rate",
            "must be at least 1 (messages per second)",
        );
    }
    let default = t.deadband.as_ref().map_or(Deadband::Abs(0.0), |d| {
        deadband(d, "telemetry.deadband".into(), e)
    });
    let deadbands = t
        .deadbands
        .iter()
        .map(|(p, d)| {
            (
                p.clone(),
                deadband(d, format!("telemetry.deadbands.{p}"), e),
            )
        })
        .collect::<Vec<_>>();
    let lists = [("include", &t.include), ("exclude", &t.exclude)];
    let patterns = lists
        .iter()
        .flat_map(|(name, l)| {
            l.iter()
                .enumerate()
                .map(move |(i, p)| (format!("telemetry.{name}[{i}]"), p))
        })
        .chain(
            deadbands
                .iter()
                .map(|(p, _)| (format!("telemetry.deadbands.{p}"), p)),
        );
    for (path, p) in patterns {
        if p.is_empty() {
            e.push(path, "must not be empty");
        } else if !points.iter().any(|id| matches(p, id)) {
            warnings.push(format!("{path}: `{p}` matches no point"));
        }
    }
    Telemetry {
        interval: t.interval.0,
        min_interval: t.min_interval.0,
        deadband: default,
        deadbands,
        stats: t.stats_5m.then_some(t.stats_period.0),
        include: t.include.clone(),
        exclude: t.exclude.clone(),
        queue_bytes: t
            .queue_bytes
            .unwrap_or((t.queue_mb.max(0.0) * 1_048_576.0) as u64),
        replay_rate: t.replay_rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawTelemetry {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn patterns_match_any_run_of_characters() {
        assert!(matches("ch4.*", "ch4.1301.t1"));
        assert!(matches("*.t1", "ch4.1301.t1"));
        assert!(matches("ch4.*.t1", "ch4.1301.t1"));
        assert!(matches("ch4.1301.t1", "ch4.1301.t1"));
        assert!(!matches("co.*", "ch4.1301.t1"));
        assert!(!matches("ch4.*.t2", "ch4.1301.t1"));
        assert!(matches("*", "x"));
    }

    #[test]
    fn defaults_and_every_error_at_once() {
        let mut e = Errs::default();
        let mut w = Vec::new();
        let t = check(&raw(""), true, &["a"], &mut e, &mut w);
        assert!(e.is_empty());
        assert_eq!(t, Telemetry::default());

        let bad = raw(r#"interval = "500ms"
min_interval = "0s"
deadband = "x%"
queue_mb = 0.5
replay_rate = 0
include = ["nope.*"]
[deadbands]
"a" = -1.0
"#);
        let mut e = Errs::default();
        check(&bad, false, &["a"], &mut e, &mut w);
        let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "telemetry",
                "telemetry.interval",
                "telemetry.min_interval",
                "telemetry.queue_mb",
                "telemetry.replay_rate",
                "telemetry.deadband",
                "telemetry.deadbands.a"
            ]
        );
        assert_eq!(w, ["telemetry.include[0]: `nope.*` matches no point"]);
    }

    #[test]
    fn selection_and_deadbands_by_pattern() {
        let mut e = Errs::default();
        let t = check(
            &raw(
                "deadband = \"2%\"\ninclude = [\"ch4.*\", \"co.*\"]\nexclude = [\"co.b\"]\n[deadbands]\n\"ch4.*\" = 0.05\n",
            ),
            true,
            &["ch4.a", "co.a", "co.b"],
            &mut e,
            &mut Vec::new(),
        );
        assert!(e.is_empty());
        assert!(t.selects("ch4.a") && t.selects("co.a"));
        assert!(!t.selects("co.b") && !t.selects("o2.a"));
        assert_eq!(t.deadband_for("ch4.a"), Deadband::Abs(0.05));
        assert_eq!(t.deadband_for("co.a"), Deadband::Pct(2.0));
    }
}
