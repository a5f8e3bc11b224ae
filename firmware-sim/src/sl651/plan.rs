//! Reports from a scenario: what a station would have sent over a stretch
//! of observation time, computed at once so that a test can replay hours
//! of weather in seconds.
//!
//! Signals read from the scenario (at scenario time = observation time −
//! `start`): `rain_total` (mm, cumulative), `level` (m), `voltage` (V),
//! `door` (1 = cabinet open), `mains_lost` and `battery_low` (1 = yes).
//!
//! Every 5 minutes: a 小时报 (34H) on the hour (PT, PJ, DRP, level, DRZ1,
//! VT, ZT); else a 定时报 (32H) every `timed_every` (PT, level, VT, ZT);
//! else a 加报 (33H) when it rained, the level moved by 1 cm or more, or a
//! status bit changed (PJ, PT, level, VT, ZT). PJ is the rain of the last
//! 5 minutes, so PJ covers every 5-minute slot once.

use std::time::Duration;

use chrono::NaiveDateTime;

use super::codec::{ADDED, Elem, HOURLY, Report, TIMED};
use crate::Scenario;

const STEP: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct Plan {
    /// Observation time of scenario time 0 (the station's local time).
    pub start: NaiveDateTime,
    pub duration: Duration,
    pub timed_every: Duration,
    /// 0x39 (Z, river) or 0x3B (ZU, reservoir).
    pub level_element: u8,
    /// The cumulative counter restarts from 0 at this scenario time.
    pub counter_reset_at: Option<Duration>,
}

fn level(id: u8, m: f64) -> Elem {
    if id == 0x39 { Elem::z(m) } else { Elem::zu(m) }
}

/// The reports of `plan`, oldest first, serial numbers 0 (the station
/// numbers them as it sends).
pub fn reports(s: &Scenario, plan: &Plan) -> Vec<Report> {
    let v = |name: &str, t: Duration| s.value_at(name, t).unwrap_or(0.0);
    let reset_base = |t: Duration| match plan.counter_reset_at {
        Some(r) if t >= r => v("rain_total", r),
        _ => 0.0,
    };
    let pt = |t: Duration| (v("rain_total", t) - reset_base(t)).max(0.0);
    let rain5 = |t: Duration| {
        let prev = t.saturating_sub(STEP);
        (v("rain_total", t) - v("rain_total", prev)).max(0.0)
    };
    let flags = |t: Duration| {
        (
            v("mains_lost", t) >= 0.5,
            v("battery_low", t) >= 0.5,
            v("door", t) >= 0.5,
        )
    };
    let mut out = Vec::new();
    let mut t = STEP;
    while t <= plan.duration {
        let observed = plan.start + chrono::Duration::from_std(t).unwrap_or_default();
        let (m, b, d) = flags(t);
        let common = |mut e: Vec<Elem>| {
            e.push(Elem::vt(v("voltage", t)));
            e.push(Elem::zt(m, b, d));
            e
        };
        let secs = t.as_secs();
        let (function, elements) = if secs.is_multiple_of(3600) {
            let mut drp = [None; 12];
            let mut drz = [None; 12];
            for i in 0..12 {
                let ti = t - STEP * (11 - i as u32);
                drp[i] = Some(rain5(ti));
                drz[i] = Some(v("level", ti));
            }
            (
                HOURLY,
                common(vec![
                    Elem::pt(pt(t)),
                    Elem::pj(rain5(t)),
                    Elem::Drp(drp),
                    level(plan.level_element, v("level", t)),
                    Elem::Drz {
                        id: 0xF5,
                        values: drz,
                    },
                ]),
            )
        } else if !plan.timed_every.is_zero()
            && secs.is_multiple_of(plan.timed_every.as_secs().max(1))
        {
            (
                TIMED,
                common(vec![
                    Elem::pt(pt(t)),
                    level(plan.level_element, v("level", t)),
                ]),
            )
        } else {
            let moved = (v("level", t) - v("level", t - STEP)).abs() >= 0.01;
            let changed = flags(t) != flags(t - STEP);
            if rain5(t) <= 0.0 && !moved && !changed {
                t += STEP;
                continue;
            }
            (
                ADDED,
                common(vec![
                    Elem::pj(rain5(t)),
                    Elem::pt(pt(t)),
                    level(plan.level_element, v("level", t)),
                ]),
            )
        };
        out.push(Report {
            function,
            serial: 0,
            sent: observed,
            observed,
            elements,
        });
        t += STEP;
    }
    out
}
