//! The memory of an accumulation rule: amounts in 5-minute slots by the
//! readings' own (observation) time, so a late report fills its own slot
//! and a window's total is a sum of slots.
//!
//! A slot is named by its end: slot `e` holds what was observed in
//! `(e - 5 min, e]`, as an SL 651 DRP value for 10:05 covers 10:00-10:05.
//!
//! Invariants:
//! - every slot total is ≥ 0: an increment below 0 counts as 0, and a
//!   running total (`Cumulative`) that goes backwards is a reset, whose new
//!   value is the amount since the reset (counted from 0, never negative,
//!   never lost);
//! - for a running total, a slot's total is the sum of the steps from the
//!   reading before each of its readings; a slot keeps its first and last
//!   reading, so a late reading before, after or between slots moves its
//!   step to its own slot exactly. A reading between the first and last of
//!   a slot already seen changes nothing (the 5-minute resolution);
//! - the same observation time reported twice (a retransmission) counts
//!   once;
//! - slots older than the rule's horizon are pruned (a running total keeps
//!   the last reading pruned as the base of the next step); slots far in
//!   the future (a station clock ahead) are capped, latest dropped first.
//!
//! This is the state the store keeps across restarts (`rule_state`), as
//! JSON: the serde shape below is a stored format.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use serde::{Deserialize, Serialize};

use crate::config::InputKind;

/// The slot length, in ms.
pub const SLOT_MS: i64 = 300_000;

/// Distinct observation times remembered per slot for de-duplication;
/// beyond that (a poll faster than every 10 s) amounts are only summed.
const SEEN_PER_SLOT: usize = 32;

/// A reading: observation time (ms since the epoch) and value.
pub type Obs = (i64, f64);

/// The end of the slot that holds time `t`.
pub fn slot_end(t: i64) -> i64 {
    -(-t).div_euclid(SLOT_MS) * SLOT_MS
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IncSlot {
    /// Amounts by observation time.
    seen: Vec<Obs>,
    /// Amounts beyond `SEEN_PER_SLOT`, summed without their times.
    #[serde(default, skip_serializing_if = "is_zero")]
    extra: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CumSlot {
    first: Obs,
    last: Obs,
    /// The sum of the steps that end in this slot.
    total: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Slots {
    Increment {
        #[serde(with = "by_end")]
        slots: BTreeMap<i64, IncSlot>,
    },
    Cumulative {
        /// The last reading of the newest pruned slot: the reading before
        /// the first one kept.
        base: Option<Obs>,
        #[serde(with = "by_end")]
        slots: BTreeMap<i64, CumSlot>,
    },
}

/// Slots stored as a list of `[end, slot]`: JSON object keys are text, and
/// a tagged enum cannot read numbers back from text keys.
mod by_end {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        m: &BTreeMap<i64, T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<i64, T>, D::Error> {
        Ok(Vec::<(i64, T)>::deserialize(d)?.into_iter().collect())
    }
}

/// The amount between two readings of a running total: a value lower than
/// the one before is a reset, and the new value is what came since.
pub fn step(before: f64, after: f64) -> f64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

impl Slots {
    pub fn new(input: InputKind) -> Slots {
        match input {
            InputKind::Increment => Slots::Increment {
                slots: BTreeMap::new(),
            },
            InputKind::Cumulative => Slots::Cumulative {
                base: None,
                slots: BTreeMap::new(),
            },
        }
    }

    pub fn input(&self) -> InputKind {
        match self {
            Slots::Increment { .. } => InputKind::Increment,
            Slots::Cumulative { .. } => InputKind::Cumulative,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Slots::Increment { slots } => slots.len(),
            Slots::Cumulative { slots, .. } => slots.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one good reading in; `max_slots` caps the slots kept. Returns
    /// whether anything changed (a value to save).
    pub fn add(&mut self, (t, v): Obs, max_slots: usize) -> bool {
        if !v.is_finite() {
            return false;
        }
        let changed = match self {
            Slots::Increment { slots } => add_increment(slots, t, v),
            Slots::Cumulative { base, slots } => add_cumulative(base, slots, t, v),
        };
        // A station whose clock runs ahead fills slots no window reaches
        // yet: the farthest are dropped first, the memory stays bounded.
        while self.len() > max_slots {
            match self {
                Slots::Increment { slots } => {
                    slots.pop_last();
                }
                Slots::Cumulative { slots, .. } => {
                    slots.pop_last();
                }
            }
        }
        changed
    }

    /// Drops the slots that end at or before `oldest_end`.
    pub fn prune(&mut self, oldest_end: i64) {
        match self {
            Slots::Increment { slots } => {
                *slots = slots.split_off(&(oldest_end + 1));
            }
            Slots::Cumulative { base, slots } => {
                let kept = slots.split_off(&(oldest_end + 1));
                if let Some((_, s)) = slots.last_key_value() {
                    *base = Some(s.last);
                }
                *slots = kept;
            }
        }
    }

    /// The total of the slots ending after `after` that have begun by
    /// `now` (both ms since the epoch). A slot that overlaps the window's
    /// start counts whole: at most 5 minutes more, never less (the alarm
    /// side).
    pub fn total(&self, after: i64, now: i64) -> f64 {
        let range = (Excluded(after), Excluded(now.saturating_add(SLOT_MS)));
        let t: f64 = match self {
            Slots::Increment { slots } => slots
                .range(range)
                .map(|(_, s)| s.seen.iter().map(|o| o.1).sum::<f64>() + s.extra)
                .sum(),
            Slots::Cumulative { slots, .. } => slots.range(range).map(|(_, s)| s.total).sum(),
        };
        // Sums of differences carry binary noise (0.1 + 0.2); a total is
        // reported to a millionth.
        ((t * 1e6).round() / 1e6).max(0.0)
    }
}

fn add_increment(slots: &mut BTreeMap<i64, IncSlot>, t: i64, v: f64) -> bool {
    // No negative rain: a negative amount counts as none.
    let v = v.max(0.0);
    let s = slots.entry(slot_end(t)).or_default();
    if let Some(o) = s.seen.iter_mut().find(|o| o.0 == t) {
        // The same observation again (a retransmission, or a timed and an
        // hourly report of one moment): the latest value stands, once.
        let changed = o.1 != v;
        o.1 = v;
        return changed;
    }
    if s.seen.len() < SEEN_PER_SLOT {
        s.seen.push((t, v));
    } else {
        s.extra += v;
    }
    true
}

fn add_cumulative(
    base: &mut Option<Obs>,
    slots: &mut BTreeMap<i64, CumSlot>,
    t: i64,
    v: f64,
) -> bool {
    // A running total is never negative; older than what is kept, it is
    // outside every window.
    if v < 0.0 || base.is_some_and(|b| t <= b.0) {
        return false;
    }
    let k = slot_end(t);
    let before = slots.range(..k).next_back().map(|(_, s)| s.last).or(*base);
    let after_key = slots
        .range((Excluded(k), Unbounded))
        .next()
        .map(|(k, _)| *k);
    let x = (t, v);
    let fix_next = |slots: &mut BTreeMap<i64, CumSlot>, old_prev: Option<Obs>, new_prev: Obs| {
        // The slot after the insertion: its first step now starts at the
        // new reading instead of the one before it.
        if let Some(nk) = after_key {
            let n = slots.get_mut(&nk).expect("key found above");
            let old = old_prev.map_or(0.0, |p| step(p.1, n.first.1));
            n.total = (n.total - old + step(new_prev.1, n.first.1)).max(0.0);
        }
    };
    match slots.get_mut(&k) {
        None => {
            let total = before.map_or(0.0, |p| step(p.1, v));
            slots.insert(
                k,
                CumSlot {
                    first: x,
                    last: x,
                    total,
                },
            );
            fix_next(slots, before, x);
            true
        }
        Some(s) if t < s.first.0 => {
            let old = before.map_or(0.0, |p| step(p.1, s.first.1));
            let new = before.map_or(0.0, |p| step(p.1, v)) + step(v, s.first.1);
            s.total = (s.total - old + new).max(0.0);
            s.first = x;
            true
        }
        Some(s) if t > s.last.0 => {
            let old_last = s.last;
            s.total += step(old_last.1, v);
            s.last = x;
            fix_next(slots, Some(old_last), x);
            true
        }
        // Between the slot's first and last, or a time already seen: the
        // slot's amount is known to 5 minutes already.
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;

    fn total_all(s: &Slots) -> f64 {
        s.total(i64::MIN / 2, i64::MAX / 2)
    }

    #[test]
    fn slots_are_named_by_their_end() {
        assert_eq!(slot_end(0), 0);
        assert_eq!(slot_end(1), 5 * M);
        assert_eq!(slot_end(5 * M), 5 * M);
        assert_eq!(slot_end(5 * M + 1), 10 * M);
        assert_eq!(slot_end(-1), 0);
    }

    #[test]
    fn a_counter_reset_counts_from_zero() {
        let mut s = Slots::new(InputKind::Cumulative);
        for (i, v) in [100.0, 104.0, 110.0, 2.0, 5.0].into_iter().enumerate() {
            s.add((i as i64 * 5 * M, v), 1000);
        }
        // 4 + 6, then the reset: 2 since it, then 3
        assert_eq!(total_all(&s), 15.0);
    }

    #[test]
    fn a_late_counter_reading_moves_its_step_to_its_own_slot() {
        let mut s = Slots::new(InputKind::Cumulative);
        s.add((0, 100.0), 1000);
        s.add((60 * M, 130.0), 1000);
        // all 30 mm in the slot of 60 min
        assert_eq!(s.total(55 * M, 60 * M), 30.0);
        s.add((20 * M, 120.0), 1000);
        assert_eq!(s.total(15 * M, 20 * M), 20.0);
        assert_eq!(s.total(55 * M, 60 * M), 10.0);
        assert_eq!(total_all(&s), 30.0);
        // a late reading before the first one kept
        s.add((-10 * M, 90.0), 1000);
        assert_eq!(total_all(&s), 40.0);
        // the same late reading again changes nothing
        assert!(!s.add((20 * M, 120.0), 1000));
        assert_eq!(total_all(&s), 40.0);
    }

    #[test]
    fn a_late_reading_after_a_reset_keeps_every_amount() {
        let mut s = Slots::new(InputKind::Cumulative);
        s.add((0, 100.0), 1000);
        s.add((30 * M, 6.0), 1000); // reset in between: 6 since it
        assert_eq!(total_all(&s), 6.0);
        // the late reading shows 10 more before the reset
        s.add((10 * M, 110.0), 1000);
        assert_eq!(total_all(&s), 16.0);
    }

    #[test]
    fn increments_count_once_per_observation_time_and_never_negative() {
        let mut s = Slots::new(InputKind::Increment);
        s.add((5 * M, 1.5), 1000);
        s.add((5 * M, 1.5), 1000);
        s.add((10 * M, -3.0), 1000);
        s.add((10 * M + 1, f64::NAN), 1000);
        assert_eq!(total_all(&s), 1.5);
    }

    #[test]
    fn pruning_keeps_the_base_of_the_next_step() {
        let mut s = Slots::new(InputKind::Cumulative);
        s.add((5 * M, 10.0), 1000);
        s.add((10 * M, 12.0), 1000);
        s.prune(10 * M);
        assert!(s.is_empty());
        s.add((15 * M, 15.0), 1000);
        assert_eq!(total_all(&s), 3.0);
        // older than what is kept: outside every window
        assert!(!s.add((7 * M, 11.0), 1000));
    }

    #[test]
    fn far_future_slots_are_capped() {
        let mut s = Slots::new(InputKind::Increment);
        for i in 0..10 {
            s.add((i * 5 * M, 1.0), 4);
        }
        assert_eq!(s.len(), 4);
        assert_eq!(s.total(-1, 15 * M), 4.0);
    }

    #[test]
    fn the_stored_shape_round_trips() {
        let mut s = Slots::new(InputKind::Cumulative);
        s.add((5 * M, 10.0), 1000);
        s.add((12 * M, 12.5), 1000);
        let j = serde_json::to_string(&s).unwrap();
        assert!(j.starts_with(r#"{"input":"cumulative""#), "{j}");
        let back: Slots = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
    }
}
