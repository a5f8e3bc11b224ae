//! From the checked config to the engine's runtime structures: the point
//! table, the devices' health counters and the rules with their timing.
//!
//! Nothing here re-checks or re-defaults a rule: `config.rule_specs` holds
//! what validation proved. Device settings are read as the config gives
//! them (the default staleness per protocol is worked out here).

use std::time::Duration;

use super::health::{DeviceInfo, Devices};
use super::kind::RuleSpec;
use super::lifecycle::Timing;
use super::points::{PointInfo, Points};
use crate::config::{Config, DataType, Protocol};

/// A rule in the running engine: its settings and its delay bookkeeping.
#[derive(Clone, Debug)]
pub struct LiveRule {
    pub spec: RuleSpec,
    pub timing: Timing,
}

pub struct Compiled {
    pub points: Points,
    pub devices: Devices,
    pub rules: Vec<LiveRule>,
}

pub fn compile(cfg: &Config) -> Compiled {
    let mut points = Points::default();
    let mut devices = Devices::new();
    for d in &cfg.devices {
        devices.insert(
            d.id.clone(),
            DeviceInfo {
                name: d.name.clone().unwrap_or_else(|| d.id.clone()),
                failures: 0,
                offline_after: d.offline_after,
                level: d.offline_level,
            },
        );
        for p in &d.points {
            let interval = p
                .group
                .as_ref()
                .and_then(|g| d.groups.iter().find(|x| &x.id == g))
                .map(|g| g.interval.0)
                .unwrap_or(d.poll_interval.0);
            // A point is stale after missing three polls, each of which may
            // have taken every retry to time out; an MQTT point after two
            // heartbeats.
            let default_stale = match d.protocol {
                Protocol::Mqtt => d.heartbeat.map(|h| h.0).unwrap_or_default() * 2,
                _ => interval * 3 + d.timeout.0 * (d.retries + 1),
            };
            let stale_after: Duration = d.stale_after.map(|s| s.0).unwrap_or(default_stale);
            let mut info = PointInfo::new(
                p.name.clone().unwrap_or_else(|| p.id.clone()),
                p.unit.clone(),
                d.id.clone(),
                stale_after,
            );
            info.health_level = d.stale_level;
            info.is_text = p.data_type == Some(DataType::Ascii);
            info.writable = p.writable;
            points.insert(p.id.clone(), info);
        }
    }
    for r in &cfg.rule_specs {
        if let Some((point, window)) = r.kind.history() {
            points.keep_history(point, window);
        }
    }
    let rules = cfg
        .rule_specs
        .iter()
        .map(|spec| LiveRule {
            spec: spec.clone(),
            timing: Timing::default(),
        })
        .collect();
    Compiled {
        points,
        devices,
        rules,
    }
}
