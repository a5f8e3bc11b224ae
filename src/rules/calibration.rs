//! Calibration windows (标校/调校): an operator says a point is being
//! calibrated for a while (`riskgate calibrate POINT --for 30m --by NAME`,
//! `POST /api/calibrations`).
//!
//! Invariants:
//! - while a window is open the point's quality reads `calibrating` (when
//!   its reading is good) and every alarm its rules raise goes out with
//!   kind `calibration` (contract 1.1): sent, never suppressed, and without
//!   actions (the value is test gas, not the air);
//! - the window itself is an alarm instance `{point}.calibration` (kind
//!   `calibration`, level 4): raised when it opens, cleared when it closes,
//!   its `detail` naming the operator, the length and, once known, the cut
//!   test's result;
//! - a window closes by itself at its end, on the engine's clock: no
//!   person has to remember to close it. At the close the calibration
//!   alarms of its rules are cleared and the rules judge afresh, so a
//!   condition that still holds raises a real alarm at once;
//! - windows live in memory: a restart ends them (the restored window
//!   alarm and its rules' calibration alarms are cleared at the first
//!   tick), the safe side;
//! - a cut test (`kind = "cut_test"`) is decided once per window, by the
//!   first time the test gas reaches the cut value: passed when the cut
//!   state shows within `within`, failed otherwise.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::compile::LiveRule;
use super::kind::KindSpec;
use super::lifecycle::{Alarms, Output, Raise, Timing};
use super::points::{CalWindow, Points};
use super::text;
use crate::model::{AlarmKind, Detail};
use crate::time::Now;

/// The longest window: a calibration takes minutes; a window of days is a
/// point taken out of monitoring, which is not what this is for.
pub const MAX_WINDOW: Duration = Duration::from_secs(4 * 3600);

/// Level of the window's own alarm: blue, it is information.
const WINDOW_LEVEL: u8 = 4;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CalibrateError {
    #[error("no point `{0}`")]
    UnknownPoint(String),
    #[error("`by` must name who calibrates")]
    NoName,
    #[error("a calibration window lasts more than 0 s and at most 4 h")]
    Length,
    #[error("point `{point}` is being calibrated already, by {by} until {until}")]
    Open {
        point: String,
        by: String,
        until: String,
    },
}

/// An open window, for the API.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CalibrationView {
    pub point: String,
    pub by: String,
    pub opened_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// `passed` or `failed` once a cut test decided.
    pub cut_test: Option<&'static str>,
}

/// The key of a window's alarm instance.
pub fn key(point: &str) -> String {
    format!("{point}.calibration")
}

fn local(alarms: &Alarms, t: DateTime<Utc>) -> String {
    t.with_timezone(&alarms.tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// Opens a window on `point` for `length`, by `by`.
pub fn open(
    alarms: &mut Alarms,
    points: &mut Points,
    point: &str,
    length: Duration,
    by: &str,
    now: Now,
) -> Result<Output, CalibrateError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(CalibrateError::NoName);
    }
    if length.is_zero() || length > MAX_WINDOW {
        return Err(CalibrateError::Length);
    }
    let p = points
        .get(point)
        .ok_or_else(|| CalibrateError::UnknownPoint(point.to_string()))?;
    if let Some(w) = &p.calibration {
        return Err(CalibrateError::Open {
            point: point.to_string(),
            by: w.by.clone(),
            until: local(alarms, w.until_wall),
        });
    }
    let until_wall = now.wall + chrono::Duration::from_std(length).unwrap_or_default();
    let name = text::calibration_name(&p.name);
    let msg = text::calibration_open(&p.name, by, &local(alarms, until_wall));
    let mut detail = Detail::new();
    detail.insert("by".into(), serde_json::json!(by));
    detail.insert(
        "for".into(),
        serde_json::json!(humantime::format_duration(length).to_string()),
    );
    detail.insert("until".into(), serde_json::json!(local(alarms, until_wall)));
    if let Some(p) = points.get_mut(point) {
        p.calibration = Some(CalWindow {
            by: by.to_string(),
            until: crate::time::Mono::from_origin(
                now.mono.since(crate::time::Mono::default()) + length,
            ),
            until_wall,
            opened_at: now.wall,
            length,
            cut_armed: None,
            cut_test: None,
        });
    }
    points.mark_calibration(point);
    let mut out = Output::default();
    let k = key(point);
    let r = Raise {
        point: Some(point),
        detail: Some(detail),
        ..Raise::plain(
            &k,
            AlarmKind::Calibration,
            WINDOW_LEVEL,
            &name,
            now.wall,
            msg,
        )
    };
    alarms.raise(r, points, &mut out);
    Ok(out)
}

/// Open windows, by point id.
pub fn list(points: &Points) -> Vec<CalibrationView> {
    points
        .calibrating()
        .filter_map(|id| {
            let w = points.get(id)?.calibration.as_ref()?;
            Some(CalibrationView {
                point: id.clone(),
                by: w.by.clone(),
                opened_at: w.opened_at,
                until: w.until_wall,
                cut_test: w.cut_test.map(|(passed, _)| verdict(passed)),
            })
        })
        .collect()
}

fn verdict(passed: bool) -> &'static str {
    if passed { "passed" } else { "failed" }
}

/// Closes the windows whose time is up, and clears every calibration
/// alarm no open window explains any more (a window closed now, or one
/// lost with a restart). Their rules judge afresh.
pub fn settle(
    alarms: &mut Alarms,
    points: &mut Points,
    rules: &mut [LiveRule],
    now: Now,
    out: &mut Output,
) {
    let open: Vec<String> = points.calibrating().cloned().collect();
    for id in open {
        let due = points
            .get(&id)
            .and_then(|p| p.calibration.as_ref())
            .is_some_and(|w| now.mono >= w.until);
        if !due {
            continue;
        }
        let Some(p) = points.get_mut(&id) else {
            continue;
        };
        let w = p.calibration.take().expect("due above");
        p.calibrated_until = Some(now.mono);
        let pname = p.name.clone();
        points.mark_calibration(&id);
        let k = key(&id);
        let msg = text::calibration_closed(&pname, &w.by);
        alarms.clear(&k, now.wall, None, msg, points, out);
    }
    let stray: Vec<(String, Option<usize>)> = alarms
        .iter()
        .filter(|a| a.kind == AlarmKind::Calibration)
        .filter_map(|a| {
            let calibrating = |p: &str| points.get(p).is_some_and(|x| x.calibration.is_some());
            if let Some(point) = a.rule_id.strip_suffix(".calibration")
                && points.get(point).is_some()
            {
                return (!calibrating(point)).then(|| (a.rule_id.clone(), None));
            }
            let i = rules.iter().position(|r| r.spec.id == a.rule_id)?;
            let explained = rules[i].spec.kind.inputs().iter().any(|p| calibrating(p));
            (!explained).then(|| (a.rule_id.clone(), Some(i)))
        })
        .collect();
    for (k, rule) in stray {
        let msg = match rule {
            Some(i) => {
                rules[i].timing = Timing::default();
                text::calibration_over(&rules[i].spec.name)
            }
            None => text::calibration_closed(&k, "-"),
        };
        alarms.clear(&k, now.wall, None, msg, points, out);
    }
}

/// Decides the cut tests of open windows: armed when the test gas first
/// reaches the cut value, passed when the cut shows within the rule's
/// `within`, failed when it has not by then. The result goes into the
/// window's alarm `detail` (and so into its `cleared` event).
pub fn cut_tests(alarms: &mut Alarms, points: &mut Points, rules: &[LiveRule], now: Now) {
    for r in rules {
        let KindSpec::CutTest(c) = &r.spec.kind else {
            continue;
        };
        let x = points.good_value(c.point()).and_then(|v| v.as_f64());
        let cut = points
            .good_value(c.cut())
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let Some(w) = points
            .get_mut(c.point())
            .and_then(|p| p.calibration.as_mut())
        else {
            continue;
        };
        if w.cut_test.is_some() {
            continue;
        }
        let over = x.is_some_and(|x| x >= c.value);
        if over && w.cut_armed.is_none() {
            w.cut_armed = Some(now.mono);
        }
        let Some(armed) = w.cut_armed else { continue };
        let took = now.mono.since(armed);
        let result = if cut && took <= c.within {
            (true, Some(took))
        } else if took > c.within {
            (false, None)
        } else {
            continue;
        };
        w.cut_test = Some((result.0, result.1.map(|d| d.as_millis() as u64)));
        if let Some(inst) = alarms.active.get_mut(&key(c.point())) {
            let d = inst.detail.get_or_insert_with(Detail::new);
            d.insert("cut_test".into(), serde_json::json!(verdict(result.0)));
            d.insert("cut_rule".into(), serde_json::json!(r.spec.id));
            if let Some(t) = result.1 {
                d.insert("cut_ms".into(), serde_json::json!(t.as_millis() as u64));
            }
        }
        points.mark_calibration(c.point());
    }
}
