//! From the checked config to the engine's runtime structures: the point
//! table, the devices' health counters and the rules with their timing.
//!
//! Nothing here re-checks or re-defaults a rule: `config.rule_specs` holds
//! what validation proved, and nothing re-defaults a device: each point's
//! staleness limit was resolved by its protocol's check.

use super::health::{DeviceInfo, Devices};
use super::kind::slots::Slots;
use super::kind::{KindSpec, RuleSpec};
use super::lifecycle::Timing;
use super::points::{PointInfo, Points};
use crate::config::{Config, ValueKind};

/// A rule in the running engine: its settings, its delay bookkeeping and,
/// for an accumulation rule, its memory.
#[derive(Clone, Debug)]
pub struct LiveRule {
    pub spec: RuleSpec,
    pub timing: Timing,
    /// An accumulation rule's slots.
    pub memory: Option<Slots>,
    /// The rule's state (slots, or its rate history) changed since it was
    /// last handed to the store.
    pub dirty: bool,
    /// When it was last handed to the store.
    pub saved_at: Option<crate::time::Mono>,
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
                offline_after: d.health.offline_after,
                level: d.health.offline_level,
            },
        );
        for p in d.points() {
            let mut info = PointInfo::new(
                p.name.unwrap_or(p.id).to_string(),
                p.unit.map(str::to_string),
                d.id.clone(),
                p.stale_after,
            );
            info.health_level = d.health.stale_level;
            info.is_text = p.value == ValueKind::Text;
            info.writable = p.writable;
            info.tamper = p.tamper;
            points.insert(p.id.to_string(), info);
        }
    }
    for q in &cfg.quality {
        if let Some(p) = points.get_mut(&q.point) {
            p.range = q.range;
            p.fault_bit = q.fault.clone();
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
            memory: match &spec.kind {
                KindSpec::Accumulation(a) => Some(a.memory()),
                _ => None,
            },
            dirty: false,
            saved_at: None,
        })
        .collect();
    Compiled {
        points,
        devices,
        rules,
    }
}
