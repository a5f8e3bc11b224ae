//! The point table: what the engine knows of every configured point now.
//!
//! Invariants: `value` is the last *good* value and is kept while the
//! quality is bad (the operator page shows it, greyed); `reported` turns true
//! with the first reading of any quality and never back, and until then no
//! rule reading the point judges (an unpolled point is not an alarm at every
//! restart). Rate rules read their window of good values from here, one
//! history per (point, window), pruned as each value arrives.
//!
//! Ages are measured on the monotonic clock: `last_good` (wall time) is
//! only shown; staleness and rate windows use the monotonic moment the
//! engine took the reading in, so a wall-clock step changes neither.
//!
//! A rate history survives a restart through the store: each sample keeps
//! its wall time too, and a history given back at start-up (`restore`) is
//! placed on this run's monotonic scale by the age its wall times show at
//! the first moment the engine is told (`settle`); its samples may lie
//! before this run's origin, hence signed milliseconds.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{BadReason, PointId, Quality, Reading, Value};
use crate::time::Mono;

/// What the engine knows of a point now, for the operator page.
#[derive(Clone, Debug, PartialEq)]
pub struct PointState {
    pub id: String,
    pub value: Option<Value>,
    pub quality: Quality,
    /// The quality as the contract names it (`calibrating` inside a
    /// calibration window).
    pub label: &'static str,
    pub last_good: Option<DateTime<Utc>>,
}

/// One configured point with its current state.
#[derive(Clone, Debug)]
pub struct PointInfo {
    pub name: String,
    pub unit: Option<String>,
    pub device: String,
    pub value: Option<Value>,
    pub quality: Quality,
    pub last_good: Option<DateTime<Utc>>,
    /// When the engine took the last good reading in (monotonic): the
    /// point's age for staleness.
    pub last_good_mono: Option<Mono>,
    /// No good reading for this long turns the quality `Stale`.
    pub stale_after: Duration,
    /// Level of the point's stale and fault alarms.
    pub health_level: u8,
    /// A good reading since start-up: actions run only on such inputs.
    pub seen_good: bool,
    /// Any reading at all (good or bad) since start-up.
    pub reported: bool,
    /// When the first reading arrived: a point never good since then goes
    /// stale `stale_after` later, like one whose good value got too old.
    pub first_reading: Option<DateTime<Utc>>,
    /// The same moment on the monotonic clock, for its age.
    pub first_reading_mono: Option<Mono>,
    pub is_text: bool,
    pub writable: bool,
    /// A good `true` raises the point's `tamper` alarm (a station's
    /// cabinet door open); `false` clears it.
    pub tamper: bool,
    /// Listed in `Points::changed` since the last `take_changed`.
    changed: bool,
    /// An operator's calibration window open on the point (标校): its
    /// quality reads `calibrating` and its rules' alarms go out as
    /// `calibration` events.
    pub calibration: Option<CalWindow>,
    /// When the last window closed (a step to test gas shortly after is
    /// still the calibration's).
    pub calibrated_until: Option<Mono>,
    /// The sensor's configured range `[low, high]`: a good reading outside
    /// it is `over_range`, bad (fail safe).
    pub range: Option<(f64, f64)>,
    /// The point holding the device's own fault bits for this point, and
    /// the mask of a status word: while set this point is `device_fault`.
    pub fault_bit: Option<(String, Option<u64>)>,
}

impl PointInfo {
    /// The quality as the contract names it: `calibrating` while a window
    /// is open on a point that reads well, else the reading's own.
    pub fn quality_label(&self) -> &'static str {
        match (&self.quality, &self.calibration) {
            (crate::model::Quality::Good, Some(_)) => "calibrating",
            (q, _) => q.label(),
        }
    }
}

/// An open calibration window.
#[derive(Clone, Debug, PartialEq)]
pub struct CalWindow {
    /// Who calibrates (the operator's name as given).
    pub by: String,
    /// It closes by itself at this moment (monotonic) ...
    pub until: Mono,
    /// ... shown as this wall time.
    pub until_wall: DateTime<Utc>,
    pub opened_at: DateTime<Utc>,
    /// The window's length as asked (`30m`).
    pub length: Duration,
    /// When the test gas first reached a cut test's cut value.
    pub cut_armed: Option<Mono>,
    /// The cut test's result: passed, and the ms the cut took.
    pub cut_test: Option<(bool, Option<u64>)>,
}

impl PointInfo {
    /// A configured point before its first reading: no data, bad.
    pub fn new(name: String, unit: Option<String>, device: String, stale_after: Duration) -> Self {
        PointInfo {
            name,
            unit,
            device,
            value: None,
            quality: Quality::Bad(BadReason::NoData),
            last_good: None,
            last_good_mono: None,
            stale_after,
            health_level: 2,
            seen_good: false,
            reported: false,
            first_reading: None,
            first_reading_mono: None,
            is_text: false,
            writable: false,
            tamper: false,
            changed: false,
            calibration: None,
            calibrated_until: None,
            range: None,
            fault_bit: None,
        }
    }
}

/// One good value of a rate history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When the engine took it in: ms on the monotonic scale of this run
    /// (below 0 for a sample restored from before the start).
    pub at: i64,
    /// The reading's own time (ms since the epoch), kept for the store.
    pub wall: i64,
    pub v: f64,
}

/// Good values of one point over one rate window, oldest first.
pub type History = VecDeque<Sample>;

/// A moment on the monotonic scale, in signed ms.
/// When a point whose last good (or first) reading came at `base` turns
/// too old: `check_stale` says so once `now.since(base) > stale_after`.
fn deadline(base: Mono, stale_after: Duration) -> Mono {
    Mono::from_origin(base.since(Mono::default()) + stale_after)
}

fn mono_ms(m: Mono) -> i64 {
    m.since(Mono::default()).as_millis() as i64
}

#[derive(Debug, Default)]
pub struct Points {
    map: HashMap<String, PointInfo>,
    /// Per point, one history per distinct rate window reading it.
    histories: HashMap<String, Vec<(Duration, History)>>,
    /// Histories given back by the store, as (wall ms, value), waiting for
    /// the first moment to be placed on the monotonic scale.
    restored: Vec<Restored>,
    /// Points whose value, quality or last good time changed since the
    /// last `take_changed`, each once: the operator views follow them
    /// without looking at every point (bounded by the point count even
    /// when nobody takes them, as in tests driving the engine alone).
    changed: Vec<PointId>,
    /// Counts changes to the calibration windows (opened, closed, a cut
    /// test decided), so their list is rebuilt only when one changed.
    calibrations_version: u64,
    /// The point ids in order, made once after the last `insert`: a tick
    /// walks them, and sorting 10,000 ids five times a second cost more
    /// than the readings (issue 15).
    sorted: Option<Arc<[String]>>,
    /// The points with an open calibration window, in id order (kept by
    /// `mark_calibration`), so closing due windows does not look at every
    /// point.
    calibrating: BTreeSet<String>,
    /// No point can be too old before this: a lower bound of the earliest
    /// `base + stale_after` over the points that have a base (last good
    /// or first reading). A reading only moves its point's deadline later,
    /// or gives a first one, which lowers the bound here; a sweep sets it
    /// exactly. `None`: no point has a base yet.
    stale_bound: Option<Mono>,
    /// The last sweep found a point too old or stale: sweep again on the
    /// next tick (its alarm's state is re-judged every tick, as before).
    stale_seen: bool,
}

/// A stored history waiting for `settle`: point, window, (wall ms, value).
type Restored = (String, Duration, Vec<(i64, f64)>);

impl Points {
    pub fn insert(&mut self, id: String, info: PointInfo) {
        self.map.insert(id, info);
        self.sorted = None;
    }

    /// A rate rule reads `point` over `window`: keep that history.
    pub fn keep_history(&mut self, point: &str, window: Duration) {
        let hs = self.histories.entry(point.to_string()).or_default();
        if !hs.iter().any(|(w, _)| *w == window) {
            hs.push((window, History::new()));
        }
    }

    pub fn get(&self, id: &str) -> Option<&PointInfo> {
        self.map.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut PointInfo> {
        self.map.get_mut(id)
    }

    /// Point ids in order, so one tick raises its stale alarms in the same
    /// order every run. Sorted once; the clone is a reference count.
    pub fn ids(&mut self) -> Arc<[String]> {
        if let Some(v) = &self.sorted {
            return v.clone();
        }
        let mut v: Vec<String> = self.map.keys().cloned().collect();
        v.sort();
        let v: Arc<[String]> = v.into();
        self.sorted = Some(v.clone());
        v
    }

    /// The points with an open calibration window, in id order.
    pub fn calibrating(&self) -> impl Iterator<Item = &String> {
        self.calibrating.iter()
    }

    /// Whether a tick must look for stale points: one may have become too
    /// old since the last sweep, or the last sweep found some.
    pub fn stale_sweep_due(&self, now: Mono) -> bool {
        self.stale_seen || self.stale_bound.is_some_and(|b| now > b)
    }

    /// After a sweep at `now` that found (`seen`) a point too old or stale
    /// or not: the next deadline, exactly.
    pub fn stale_swept(&mut self, now: Mono, seen: bool) {
        self.stale_seen = seen;
        self.stale_bound = self
            .map
            .values()
            .filter_map(|p| {
                let base = p.last_good_mono.or(p.first_reading_mono)?;
                Some(deadline(base, p.stale_after))
            })
            .filter(|d| *d >= now)
            .min();
    }

    /// A history the store kept (wall ms, value), put back once `settle` is
    /// told the first moment. Ignored for a (point, window) not kept.
    pub fn restore(&mut self, point: &str, window: Duration, samples: Vec<(i64, f64)>) {
        if self.history(point, window).is_some() {
            self.restored.push((point.to_string(), window, samples));
        }
    }

    /// Places restored histories on this run's monotonic scale: a sample
    /// as old (by wall time) as it is now, never in the future. A no-op
    /// once done; called before every step.
    pub fn settle(&mut self, now_wall: DateTime<Utc>, now: Mono) {
        if self.restored.is_empty() {
            return;
        }
        let (wall, mono) = (now_wall.timestamp_millis(), mono_ms(now));
        for (point, window, mut samples) in std::mem::take(&mut self.restored) {
            samples.sort_by_key(|s| s.0);
            let Some(hs) = self.histories.get_mut(&point) else {
                continue;
            };
            let Some((_, h)) = hs.iter_mut().find(|(w, _)| *w == window) else {
                continue;
            };
            // In front of anything taken in since the start (nothing, when
            // settled before the first step).
            for (t, v) in samples.into_iter().rev() {
                if !v.is_finite() {
                    continue;
                }
                let at = mono - (wall - t).max(0);
                h.push_front(Sample { at, wall: t, v });
            }
            let last = h.back().map_or(mono, |s| s.at);
            while h.len() > 2 && last - h[1].at >= window.as_millis() as i64 {
                h.pop_front();
            }
        }
    }

    pub fn history(&self, point: &str, window: Duration) -> Option<&History> {
        self.histories
            .get(point)?
            .iter()
            .find(|(w, _)| *w == window)
            .map(|(_, h)| h)
    }

    /// Takes one reading in, taken in at `mono`. Returns false for a point
    /// not in the table.
    pub fn apply(&mut self, r: &Reading, mono: Mono) -> bool {
        let Some(p) = self.map.get_mut(&*r.point) else {
            return false;
        };
        if !p.changed {
            p.changed = true;
            self.changed.push(r.point.clone());
        }
        p.quality = r.quality.clone();
        p.reported = true;
        p.first_reading.get_or_insert(r.at);
        if p.first_reading_mono.is_none() {
            p.first_reading_mono = Some(mono);
            // A first deadline may come before every other one.
            let d = deadline(mono, p.stale_after);
            self.stale_bound = Some(self.stale_bound.map_or(d, |b| b.min(d)));
        }
        if r.quality.is_good() {
            p.value = r.value.clone();
            p.last_good = Some(r.at);
            p.last_good_mono = Some(mono);
            p.seen_good = true;
        }
        if let (true, Some(v), Some(hs)) = (
            r.quality.is_good(),
            r.value.as_ref().and_then(|v| v.as_f64()),
            self.histories.get_mut(&*r.point),
        ) {
            let at = mono_ms(mono);
            for (window, h) in hs {
                h.push_back(Sample {
                    at,
                    wall: r.at.timestamp_millis(),
                    v,
                });
                // Keep the newest value at or before the window's start, so
                // the change is measured over the whole window.
                while h.len() > 2 && at - h[1].at >= window.as_millis() as i64 {
                    h.pop_front();
                }
            }
        }
        true
    }

    /// Turns a point stale when its last good value (or, never good, its
    /// first reading) is too old: good, or bad because its device did not
    /// answer (timeout, transport). A half-dead device's silent block stays
    /// `timeout` with the device online, and must raise its stale alarm
    /// whether or not a rule reads the point. Exceptions and decode errors
    /// keep their own `fault` alarm. Returns whether the point is stale now
    /// (just turned, or still).
    pub fn check_stale(&mut self, id: &str, now: Mono) -> bool {
        let Some(p) = self.map.get_mut(id) else {
            return false;
        };
        let too_old = p
            .last_good_mono
            .or(p.first_reading_mono)
            .is_some_and(|t| now.since(t) > p.stale_after);
        let silent = matches!(
            p.quality,
            Quality::Good | Quality::Bad(BadReason::Timeout | BadReason::Transport(_))
        );
        if too_old && silent {
            p.quality = Quality::Bad(BadReason::Stale);
            if !p.changed {
                p.changed = true;
                self.changed.push(id.into());
            }
        }
        too_old || matches!(p.quality, Quality::Bad(BadReason::Stale))
    }

    /// A point's calibration window opened, closed or got its cut test's
    /// result: its shown quality may differ, and so does the windows' list.
    pub fn mark_calibration(&mut self, id: &str) {
        self.calibrations_version += 1;
        if self.map.get(id).is_some_and(|p| p.calibration.is_some()) {
            self.calibrating.insert(id.to_string());
        } else {
            self.calibrating.remove(id);
        }
        self.mark_changed(id);
    }

    /// Grows with every `mark_calibration`.
    pub fn calibrations_version(&self) -> u64 {
        self.calibrations_version
    }

    /// Lists a point as changed for a reason outside its readings.
    pub fn mark_changed(&mut self, id: &str) {
        if let Some(p) = self.map.get_mut(id)
            && !p.changed
        {
            p.changed = true;
            self.changed.push(id.into());
        }
    }

    /// The points changed since the last call, each once, in the order
    /// they first changed.
    pub fn take_changed(&mut self) -> Vec<PointId> {
        for id in &self.changed {
            if let Some(p) = self.map.get_mut(&**id) {
                p.changed = false;
            }
        }
        std::mem::take(&mut self.changed)
    }

    /// Latest value and quality of one point.
    pub fn state(&self, id: &str) -> Option<PointState> {
        self.map.get(id).map(|p| PointState {
            id: id.to_string(),
            value: p.value.clone(),
            quality: p.quality.clone(),
            label: p.quality_label(),
            last_good: p.last_good,
        })
    }

    /// Latest value and quality of every point, sorted by point id.
    pub fn states(&self) -> Vec<PointState> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|(k, p)| PointState {
                id: k.clone(),
                value: p.value.clone(),
                quality: p.quality.clone(),
                label: p.quality_label(),
                last_good: p.last_good,
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The good value of a point; `None` while its quality is bad.
    pub fn good_value(&self, id: &str) -> Option<Value> {
        let p = self.map.get(id)?;
        if p.quality.is_good() {
            p.value.clone()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;

    fn reading(q: Quality, at: DateTime<Utc>) -> Reading {
        Reading {
            point: "p".into(),
            device: "d".into(),
            value: q.is_good().then_some(Value::Num(1.0)),
            quality: q,
            at,
        }
    }

    /// Issue 10 item 5: a block that times out while its device answers
    /// goes stale after `stale_after`, never good or once good.
    #[test]
    fn a_point_stuck_at_timeout_goes_stale() {
        let t0 = Utc::now();
        let s = chrono::Duration::seconds;
        // Ages run on the monotonic clock, here in step with the wall.
        let m = |secs: u64| Mono::from_millis(secs * 1000);
        for first in [Quality::Bad(BadReason::Timeout), Quality::Good] {
            let mut pts = Points::default();
            let info = PointInfo::new("p".into(), None, "d".into(), Duration::from_secs(5));
            pts.insert("p".into(), info);
            pts.apply(&reading(first, t0), m(0));
            pts.apply(&reading(Quality::Bad(BadReason::Timeout), t0 + s(1)), m(1));
            assert!(!pts.check_stale("p", m(4)));
            assert!(pts.check_stale("p", m(6)));
            assert_eq!(
                pts.get("p").unwrap().quality,
                Quality::Bad(BadReason::Stale)
            );
        }
        // an exception keeps its own fault alarm
        let mut pts = Points::default();
        let info = PointInfo::new("p".into(), None, "d".into(), Duration::from_secs(5));
        pts.insert("p".into(), info);
        pts.apply(&reading(Quality::Bad(BadReason::Exception(2)), t0), m(0));
        pts.check_stale("p", m(6));
        assert_eq!(
            pts.get("p").unwrap().quality,
            Quality::Bad(BadReason::Exception(2))
        );
    }

    /// The views follow `take_changed`: each changed point once, a
    /// reading or a turn to stale, and nothing when nothing changed.
    #[test]
    fn changed_points_are_listed_once_until_taken() {
        let t0 = Utc::now();
        let m = |secs: u64| Mono::from_millis(secs * 1000);
        let mut pts = Points::default();
        for id in ["a", "b"] {
            let info = PointInfo::new(id.into(), None, "d".into(), Duration::from_secs(5));
            pts.insert(id.into(), info);
        }
        assert!(pts.take_changed().is_empty());
        // "p" is not a point of the table; "a" read twice is listed once.
        let mut r = reading(Quality::Good, t0);
        assert!(!pts.apply(&r, m(0)));
        r.point = "a".into();
        pts.apply(&r, m(0));
        pts.apply(&r, m(1));
        let ids: Vec<String> = pts.take_changed().iter().map(|p| p.to_string()).collect();
        assert_eq!(ids, ["a"]);
        assert!(pts.take_changed().is_empty());
        // "a" goes stale on a tick: listed again, once.
        assert!(pts.check_stale("a", m(7)));
        assert!(pts.check_stale("a", m(8)));
        let ids: Vec<String> = pts.take_changed().iter().map(|p| p.to_string()).collect();
        assert_eq!(ids, ["a"]);
        assert_eq!(
            pts.state("a").unwrap().quality,
            Quality::Bad(BadReason::Stale)
        );
    }

    /// The sweep's shortcut (issue 15) skips only ticks on which a full
    /// sweep finds nothing: over random readings (good, timeout, exception)
    /// of points with different `stale_after` and random time steps, a
    /// table that sweeps only when `stale_sweep_due` says so agrees after
    /// every tick with one that sweeps every point every tick.
    mod sweep_props {
        use super::*;
        use proptest::prelude::*;

        const POINTS: [(&str, u64); 3] = [("fast", 1_000), ("mid", 5_000), ("slow", 30_000)];

        fn table() -> Points {
            let mut pts = Points::default();
            for (id, ms) in POINTS {
                let info = PointInfo::new(id.into(), None, "d".into(), Duration::from_millis(ms));
                pts.insert(id.into(), info);
            }
            pts
        }

        #[derive(Clone, Debug)]
        enum Step {
            Read(usize, u8),
            Wait(u64),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0..POINTS.len(), 0u8..3).prop_map(|(p, q)| Step::Read(p, q)),
                (0u64..8_000).prop_map(Step::Wait),
            ]
        }

        proptest! {
            #[test]
            fn the_shortcut_never_skips_a_stale_point(steps in prop::collection::vec(step(), 1..80)) {
                let (mut every, mut lazy) = (table(), table());
                let (t0, mut ms) = (Utc::now(), 0u64);
                for s in steps {
                    match s {
                        Step::Read(p, q) => {
                            let quality = match q {
                                0 => Quality::Good,
                                1 => Quality::Bad(BadReason::Timeout),
                                _ => Quality::Bad(BadReason::Exception(2)),
                            };
                            let mut r = reading(quality, t0 + chrono::Duration::milliseconds(ms as i64));
                            r.point = POINTS[p].0.into();
                            every.apply(&r, Mono::from_millis(ms));
                            lazy.apply(&r, Mono::from_millis(ms));
                        }
                        Step::Wait(d) => ms += d,
                    }
                    // One tick.
                    let now = Mono::from_millis(ms);
                    let found: Vec<bool> = every.ids().iter().map(|id| every.check_stale(id, now)).collect();
                    if lazy.stale_sweep_due(now) {
                        let seen: Vec<bool> = lazy.ids().iter().map(|id| lazy.check_stale(id, now)).collect();
                        prop_assert_eq!(&seen, &found);
                        lazy.stale_swept(now, seen.iter().any(|s| *s));
                    } else {
                        prop_assert!(!found.iter().any(|f| *f), "skipped a tick that finds {:?} at {} ms", found, ms);
                    }
                    for (id, _) in POINTS {
                        prop_assert_eq!(&every.get(id).unwrap().quality, &lazy.get(id).unwrap().quality);
                    }
                }
            }
        }
    }
}
