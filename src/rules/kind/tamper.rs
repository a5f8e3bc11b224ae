//! `tamper`: a sensor, cabinet or camera tampered with, or data that looks
//! alive but is not (contract 1.1 kind `tamper`). One rule looks for one
//! pattern (`check`):
//!
//! - `frozen`: the value changes by less than `floor` over `window` while
//!   the area works (a sensor that should vary reports a constant);
//! - `covered`: the value sits within `margin` of its clean-air value while
//!   a `neighbour` in the same airflow reads at least `neighbour_above` (a
//!   covered probe, 遮挡探头);
//! - `removed`: the `device` is offline while the area works (拆除);
//! - `opened`: a cabinet-door or enclosure bit reads true (an SL 651
//!   station's door bit raises the same kind on its own, `health.rs`);
//! - `blocked`: a camera's blocked flag reads true;
//! - `test_gas`: a step to the `test_gas` value and back within `within`
//!   while no calibration window was open on the point (私自标校).
//!
//! Invariants: a bad input never raises a tamper alarm and never clears one
//! (the point's own stale or fault alarm speaks for it, fail safe, and a
//! sensor that went silent was not thereby un-tampered); an unknown
//! `working` condition counts as working (the alarm side). Every verdict
//! carries `detail` facts saying what was seen.

use std::time::Duration;

use super::interlock::{self, Condition};
use super::{CheckCtx, PointShape, Verdict, View, need_point};
use crate::config::check::Errs;
use crate::config::{Rule, TamperCheck};
use crate::model::{Detail, trim_float};
use crate::rules::expr;
use crate::rules::text;

/// The longest window a frozen or test-gas check keeps in memory.
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);

#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Frozen {
        floor: f64,
        window: Duration,
    },
    Covered {
        clean: f64,
        margin: f64,
        neighbour: String,
        above: f64,
    },
    Removed {
        device: String,
    },
    Opened,
    Blocked,
    TestGas {
        value: f64,
        tolerance: f64,
        within: Duration,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tamper {
    pub check: Check,
    /// The sensor, door bit or camera flag looked at (none for `removed`).
    pub point: Option<String>,
    pub working: Option<Condition>,
    /// Every point read: the subject first, then the neighbour and the
    /// points of `working`.
    pub inputs: Vec<String>,
}

/// A verdict that changes nothing: neither raise nor clear.
fn hold(detail: String) -> Verdict {
    Verdict {
        on: false,
        off: false,
        value: None,
        threshold: None,
        detail,
        facts: None,
    }
}

fn facts(check: &str, pairs: &[(&str, serde_json::Value)]) -> Detail {
    let mut d = Detail::new();
    d.insert("check".into(), serde_json::json!(check));
    for (k, v) in pairs {
        d.insert((*k).into(), v.clone());
    }
    d
}

impl Tamper {
    /// The one point the alarm is about, for the event's `point_id`.
    pub fn subject(&self) -> Option<&str> {
        self.point.as_deref()
    }

    /// The point whose good values the check needs over a window.
    pub fn history(&self) -> Option<(&str, Duration)> {
        match (&self.check, &self.point) {
            (Check::Frozen { window, .. }, Some(p)) => Some((p, *window)),
            (Check::TestGas { within, .. }, Some(p)) => Some((p, *within)),
            _ => None,
        }
    }

    pub fn judge(&self, name: &str, view: &View<'_>) -> Option<Verdict> {
        // Like an interlock: nothing is judged before every input reported.
        if self
            .inputs
            .iter()
            .any(|p| !view.points.get(p).is_some_and(|x| x.reported))
        {
            return None;
        }
        // Unknown (a bad input) counts as working: the alarm side.
        let works = self
            .working
            .as_ref()
            .is_none_or(|c| expr::eval(&c.when, view) != Some(false));
        let point = self.point.as_deref().and_then(|p| view.points.get(p));
        let pname = point.map_or(name, |p| p.name.as_str());
        let good = |id: &str| view.points.good_value(id).and_then(|v| v.as_f64());
        let subject = self.point.as_deref().map(good);
        if matches!(subject, Some(None)) {
            return Some(hold(name.to_string()));
        }
        let x = subject.flatten();
        let v = match &self.check {
            Check::Frozen { floor, window } => {
                let h = view.points.history(self.point.as_deref()?, *window)?;
                let first = h.front()?;
                let now = view.mono.since(crate::time::Mono::default()).as_millis() as i64;
                let full = now - first.at >= window.as_millis() as i64;
                let (lo, hi) = recent(h, now, *window)
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, u), s| {
                        (l.min(s.v), u.max(s.v))
                    });
                let range = hi - lo;
                let w = humantime::format_duration(*window).to_string();
                Verdict {
                    on: full && range < *floor && works,
                    off: range >= *floor || !works,
                    value: x.map(|x| serde_json::json!(x)),
                    threshold: Some(serde_json::json!(floor)),
                    detail: text::frozen(pname, &w, range, *floor),
                    facts: Some(facts(
                        "frozen",
                        &[
                            ("window", serde_json::json!(w)),
                            ("range", serde_json::json!(range)),
                            ("floor", serde_json::json!(floor)),
                            ("min", serde_json::json!(lo)),
                            ("max", serde_json::json!(hi)),
                        ],
                    )),
                }
            }
            Check::Covered {
                clean,
                margin,
                neighbour,
                above,
            } => {
                let (Some(x), Some(n)) = (x, good(neighbour)) else {
                    return Some(hold(name.to_string()));
                };
                let nname = view
                    .points
                    .get(neighbour)
                    .map_or(neighbour.as_str(), |p| p.name.as_str());
                let on = (x - clean).abs() <= *margin && n >= *above;
                Verdict {
                    on,
                    off: !on,
                    value: Some(serde_json::json!(x)),
                    threshold: Some(serde_json::json!(clean)),
                    detail: text::covered(pname, x, *clean, nname, n, *above),
                    facts: Some(facts(
                        "covered",
                        &[
                            ("value", serde_json::json!(x)),
                            ("clean", serde_json::json!(clean)),
                            ("neighbour", serde_json::json!(neighbour)),
                            ("neighbour_value", serde_json::json!(n)),
                            ("neighbour_above", serde_json::json!(above)),
                        ],
                    )),
                }
            }
            Check::Removed { device } => {
                let offline = (view.offline)(device);
                Verdict {
                    on: offline && works,
                    off: !offline || !works,
                    value: None,
                    threshold: None,
                    detail: text::removed(name, device),
                    facts: Some(facts(
                        "removed",
                        &[
                            ("device", serde_json::json!(device)),
                            ("working", serde_json::json!(works)),
                        ],
                    )),
                }
            }
            Check::Opened | Check::Blocked => {
                let set = x? != 0.0;
                let (word, opened) = match self.check {
                    Check::Opened => ("opened", true),
                    _ => ("blocked", false),
                };
                Verdict {
                    on: set && works,
                    off: !set || !works,
                    value: Some(serde_json::json!(set)),
                    threshold: None,
                    detail: text::opened_or_blocked(pname, opened, set),
                    facts: Some(facts(word, &[("working", serde_json::json!(works))])),
                }
            }
            Check::TestGas {
                value,
                tolerance,
                within,
            } => {
                let p = point?;
                let h = view.points.history(self.point.as_deref()?, *within)?;
                // A window open now, or closed within the last `within`,
                // explains a step: that is what a calibration looks like.
                let now = view.mono;
                let explained = p.calibration.is_some()
                    || p.calibrated_until.is_some_and(|t| now.since(t) <= *within);
                let below = |v: f64| v < value - tolerance;
                let near = |v: f64| (v - value).abs() <= *tolerance;
                // before (below) → near → after (below), in this order.
                let mut stage = 0;
                let mut peak = f64::NEG_INFINITY;
                let now_ms = now.since(crate::time::Mono::default()).as_millis() as i64;
                for s in recent(h, now_ms, *within) {
                    stage = match stage {
                        0 if below(s.v) => 1,
                        1 if near(s.v) => {
                            peak = peak.max(s.v);
                            2
                        }
                        2 if near(s.v) => {
                            peak = peak.max(s.v);
                            2
                        }
                        2 if below(s.v) => 3,
                        st => st,
                    };
                }
                let seen = stage == 3 && !explained;
                let w = humantime::format_duration(*within).to_string();
                Verdict {
                    on: seen,
                    off: !seen,
                    value: x.map(|x| serde_json::json!(x)),
                    threshold: Some(serde_json::json!(value)),
                    detail: text::test_gas(pname, peak, *value, &w),
                    facts: Some(facts(
                        "test_gas",
                        &[
                            ("test_gas", serde_json::json!(value)),
                            ("within", serde_json::json!(w)),
                        ],
                    ))
                    .map(|mut f| {
                        if peak.is_finite() {
                            f.insert("peak".into(), serde_json::json!(trim_float(peak)));
                        }
                        f
                    }),
                }
            }
        };
        Some(v)
    }
}

/// The samples of the last `window` before `now` (ms on the history's
/// scale), with the last one at or before its start (the value the window
/// starts with). The history is pruned only as readings arrive; a check
/// judged on the clock alone must not look further back.
fn recent(
    h: &crate::rules::points::History,
    now: i64,
    window: Duration,
) -> impl Iterator<Item = &crate::rules::points::Sample> {
    let cutoff = now - window.as_millis() as i64;
    let start = h.iter().rposition(|s| s.at <= cutoff).unwrap_or(0);
    h.iter().skip(start)
}

/// Which checks take which fields, for the refusal of the others.
const FIELDS: [(&str, &[TamperCheck]); 9] = [
    ("floor", &[TamperCheck::Frozen]),
    ("window", &[TamperCheck::Frozen]),
    ("clean", &[TamperCheck::Covered]),
    ("margin", &[TamperCheck::Covered]),
    ("neighbour", &[TamperCheck::Covered]),
    ("neighbour_above", &[TamperCheck::Covered]),
    ("device", &[TamperCheck::Removed]),
    ("test_gas", &[TamperCheck::TestGas]),
    ("tolerance", &[TamperCheck::TestGas]),
];

/// The tamper fields given in `r`, by name.
pub fn given(r: &Rule) -> Vec<&'static str> {
    [
        ("check", r.check.is_some()),
        ("working", r.working.is_some()),
        ("floor", r.floor.is_some()),
        ("clean", r.clean.is_some()),
        ("margin", r.margin.is_some()),
        ("neighbour", r.neighbour.is_some()),
        ("neighbour_above", r.neighbour_above.is_some()),
        ("device", r.device.is_some()),
        ("test_gas", r.test_gas.is_some()),
        ("tolerance", r.tolerance.is_some()),
    ]
    .into_iter()
    .filter(|(_, g)| *g)
    .map(|(f, _)| f)
    .collect()
}

fn need_f64(v: Option<f64>, p: &str, f: &str, what: &str, e: &mut Errs) -> Option<f64> {
    match v {
        None => {
            e.push(format!("{p}.{f}"), format!("required: {what}"));
            None
        }
        Some(x) if !x.is_finite() => {
            e.push(format!("{p}.{f}"), "must be a finite number");
            None
        }
        Some(x) => Some(x),
    }
}

fn need_window(w: Option<crate::config::Dur>, p: &str, f: &str, e: &mut Errs) -> Option<Duration> {
    match w {
        None => {
            e.push(format!("{p}.{f}"), "required: a duration like \"30m\"");
            None
        }
        Some(w) if w.0.is_zero() => {
            e.push(format!("{p}.{f}"), "must be greater than zero");
            None
        }
        Some(w) if w.0 > MAX_WINDOW => {
            e.push(format!("{p}.{f}"), "at most 24h: it is kept in memory");
            None
        }
        Some(w) => Some(w.0),
    }
}

pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<Tamper> {
    let before = e.len();
    let Some(c) = r.check else {
        e.push(
            format!("{p}.check"),
            "required: frozen, covered, removed, opened, blocked or test_gas",
        );
        return None;
    };
    for (f, allowed) in FIELDS {
        let is_given = match f {
            "window" => r.window.is_some(),
            _ => given(r).contains(&f),
        };
        if is_given && !allowed.contains(&c) {
            e.push(
                format!("{p}.{f}"),
                format!("a {} check does not take `{f}`", name(c)),
            );
        }
    }
    if r.within.is_some() && c != TamperCheck::TestGas {
        e.push(
            format!("{p}.within"),
            format!("a {} check does not take `within`", name(c)),
        );
    }
    let working = match (&r.working, c) {
        (Some(_), TamperCheck::Covered | TamperCheck::TestGas) => {
            e.push(
                format!("{p}.working"),
                format!("a {} check does not depend on work", name(c)),
            );
            None
        }
        (Some(w), _) => interlock::condition(w, &format!("{p}.working"), ctx, e),
        (None, _) => None,
    };
    let point = if c == TamperCheck::Removed {
        if r.point.is_some() {
            e.push(
                format!("{p}.point"),
                "a removed check looks at a `device`, not a point",
            );
        }
        None
    } else {
        let shape = need_point(r, p, ctx, e);
        let want_bool = matches!(c, TamperCheck::Opened | TamperCheck::Blocked);
        match shape {
            Some(PointShape::Text) => e.push(
                format!("{p}.point"),
                "a text point cannot be judged for tamper",
            ),
            Some(PointShape::Number) if want_bool => e.push(
                format!("{p}.point"),
                format!("a {} check reads a bit or bool point", name(c)),
            ),
            Some(PointShape::Bool) if !want_bool => e.push(
                format!("{p}.point"),
                format!("a {} check reads a numeric point", name(c)),
            ),
            _ => {}
        }
        r.point.clone()
    };
    let check = match c {
        TamperCheck::Frozen => {
            let floor = need_f64(
                r.floor,
                p,
                "floor",
                "the least change of a live sensor over the window",
                e,
            );
            if floor.is_some_and(|f| f <= 0.0) {
                e.push(format!("{p}.floor"), "must be greater than zero");
            }
            let window = need_window(r.window, p, "window", e);
            Check::Frozen {
                floor: floor?,
                window: window?,
            }
        }
        TamperCheck::Covered => {
            let clean = need_f64(r.clean, p, "clean", "the sensor's clean-air value", e);
            let margin = need_f64(r.margin, p, "margin", "how near `clean` counts", e);
            if margin.is_some_and(|m| m < 0.0) {
                e.push(format!("{p}.margin"), "must be zero or positive");
            }
            let above = need_f64(
                r.neighbour_above,
                p,
                "neighbour_above",
                "the neighbour's value from which it counts as high",
                e,
            );
            let neighbour = match &r.neighbour {
                None => {
                    e.push(
                        format!("{p}.neighbour"),
                        "required: a point in the same airflow",
                    );
                    None
                }
                Some(n) if !(ctx.point_known)(n) => {
                    e.push(
                        format!("{p}.neighbour"),
                        format!("no point `{n}` in any device"),
                    );
                    None
                }
                Some(n) if Some(n) == r.point.as_ref() => {
                    e.push(
                        format!("{p}.neighbour"),
                        "must be another point than `point`",
                    );
                    None
                }
                Some(n) => Some(n.clone()),
            };
            Check::Covered {
                clean: clean?,
                margin: margin?,
                neighbour: neighbour?,
                above: above?,
            }
        }
        TamperCheck::Removed => {
            let device = match &r.device {
                None => {
                    e.push(format!("{p}.device"), "required: the device's id");
                    None
                }
                Some(d) if !(ctx.device_known)(d) => {
                    e.push(format!("{p}.device"), format!("no device `{d}`"));
                    None
                }
                Some(d) => Some(d.clone()),
            };
            Check::Removed { device: device? }
        }
        TamperCheck::Opened => Check::Opened,
        TamperCheck::Blocked => Check::Blocked,
        TamperCheck::TestGas => {
            let value = need_f64(r.test_gas, p, "test_gas", "the test gas's value", e);
            if value.is_some_and(|v| v <= 0.0) {
                e.push(format!("{p}.test_gas"), "must be greater than zero");
            }
            let tolerance = match r.tolerance {
                // 10 % of the test gas: the reading of a sensor within its
                // basic error while test gas flows over it.
                None => value.map(|v| v * 0.1),
                Some(t) if !(t.is_finite() && t > 0.0) => {
                    e.push(format!("{p}.tolerance"), "must be greater than zero");
                    None
                }
                Some(t) => Some(t),
            };
            let within = need_window(r.within, p, "within", e);
            Check::TestGas {
                value: value?,
                tolerance: tolerance?,
                within: within?,
            }
        }
    };
    if e.len() != before {
        return None;
    }
    let mut inputs: Vec<String> = point.iter().cloned().collect();
    if let Check::Covered { neighbour, .. } = &check {
        inputs.push(neighbour.clone());
    }
    for w in working.iter().flat_map(|w| &w.points) {
        if !inputs.contains(w) {
            inputs.push(w.clone());
        }
    }
    Some(Tamper {
        check,
        point,
        working,
        inputs,
    })
}

fn name(c: TamperCheck) -> &'static str {
    match c {
        TamperCheck::Frozen => "frozen",
        TamperCheck::Covered => "covered",
        TamperCheck::Removed => "removed",
        TamperCheck::Opened => "opened",
        TamperCheck::Blocked => "blocked",
        TamperCheck::TestGas => "test_gas",
    }
}

/// Refuses the tamper fields on a rule of another kind.
pub fn refuse_on_other_kinds(r: &Rule, p: &str, e: &mut Errs) {
    for f in given(r) {
        e.push(format!("{p}.{f}"), "only a tamper rule takes this field");
    }
}
