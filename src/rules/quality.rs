//! Point quality beyond good and bad, from `[[quality]]`:
//!
//! - `over_range`: a good reading outside the sensor's configured range
//!   (`range = [low, high]`). A sensor past its end of scale does not
//!   measure: the reading is bad, and so on the alarm side of every rule
//!   that reads it (fail safe), never a plausible number;
//! - `device_fault`: the device's own fault or status bits (a bit point,
//!   or a status word and `fault_mask`) say the point is faulty: bad too.
//!   The bits are read as last known when the point's reading arrives (the
//!   bits and the value usually come in one poll); a fault bit that is
//!   itself bad leaves the reading as it is (its own alarm speaks).
//!
//! `calibrating` is the third new state: it comes from an operator's
//! window (`calibration.rs`), not from here, and leaves the value good.
//!
//! [`qualify`] is pure and idempotent: the engine task applies it before
//! readings are stored and sent, and the engine applies it again as it
//! takes them in, so rules, store, InfluxDB and telemetry agree.

use crate::config::QualityCfg;
use crate::config::check::Errs;
use crate::model::{BadReason, Quality, Reading};
use crate::rules::kind::{CheckCtx, PointShape};
use crate::rules::points::Points;

/// One point's quality mapping, as validation proved it.
#[derive(Clone, Debug, PartialEq)]
pub struct PointQuality {
    pub point: String,
    pub range: Option<(f64, f64)>,
    /// The fault point, and the bits of it that mean a fault (`None`: a
    /// bit point, true = fault).
    pub fault: Option<(String, Option<u64>)>,
}

/// Checks every `[[quality]]` entry (all errors at once).
pub fn check(raw: &[QualityCfg], ctx: &CheckCtx<'_>, e: &mut Errs) -> Vec<PointQuality> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, q) in raw.iter().enumerate() {
        let p = format!("quality[{i}]");
        let before = e.len();
        match (ctx.point)(&q.point) {
            Some(PointShape::Number) => {}
            Some(_) => e.push(
                format!("{p}.point"),
                format!("point `{}` is not numeric", q.point),
            ),
            None if !(ctx.point_known)(&q.point) => e.push(
                format!("{p}.point"),
                format!("no point `{}` in any device", q.point),
            ),
            None => {}
        }
        if !seen.insert(q.point.as_str()) {
            e.push(
                format!("{p}.point"),
                format!("`{}` has a [[quality]] entry already", q.point),
            );
        }
        let range = match q.range.as_deref() {
            None => None,
            Some([lo, hi]) if lo.is_finite() && hi.is_finite() && lo < hi => Some((*lo, *hi)),
            Some(_) => {
                e.push(
                    format!("{p}.range"),
                    "[low, high]: two finite numbers, low < high",
                );
                None
            }
        };
        let fault = match (&q.fault, q.fault_mask) {
            (None, None) => None,
            (None, Some(_)) => {
                e.push(
                    format!("{p}.fault_mask"),
                    "only with `fault`, the status point",
                );
                None
            }
            (Some(f), mask) => {
                match ((ctx.point)(f), mask) {
                    (Some(PointShape::Bool), Some(_)) => e.push(
                        format!("{p}.fault_mask"),
                        format!("`{f}` is a bit: true means a fault, no mask"),
                    ),
                    (Some(PointShape::Number), None) => e.push(
                        format!("{p}.fault_mask"),
                        format!("required: `{f}` is a status word; name its fault bits"),
                    ),
                    (Some(PointShape::Text), _) => {
                        e.push(format!("{p}.fault"), format!("point `{f}` is text"))
                    }
                    (None, _) if !(ctx.point_known)(f) => e.push(
                        format!("{p}.fault"),
                        format!("no point `{f}` in any device"),
                    ),
                    _ => {}
                }
                if mask == Some(0) {
                    e.push(format!("{p}.fault_mask"), "must name at least one bit");
                }
                if f == &q.point {
                    e.push(format!("{p}.fault"), "must be another point than `point`");
                }
                Some((f.clone(), mask))
            }
        };
        if range.is_none() && fault.is_none() && q.range.is_none() && q.fault.is_none() {
            e.push(p.clone(), "give `range`, `fault` or both");
        }
        if e.len() == before {
            out.push(PointQuality {
                point: q.point.clone(),
                range,
                fault,
            });
        }
    }
    out
}

/// Marks the readings that are over range or faulty, by each point's
/// mapping and the fault bits' latest good values: one in the same batch
/// (one poll carries both) or else the last one `points` knows.
pub fn qualify(points: &Points, readings: &mut [Reading]) {
    let verdicts: Vec<Option<BadReason>> = readings
        .iter()
        .map(|r| {
            if !r.quality.is_good() {
                return None;
            }
            let p = points.get(&r.point)?;
            if let Some((f, mask)) = &p.fault_bit {
                let in_batch = readings
                    .iter()
                    .rev()
                    .find(|b| &*b.point == f.as_str() && b.quality.is_good())
                    .and_then(|b| b.value.clone());
                let bit = in_batch
                    .or_else(|| points.good_value(f))
                    .and_then(|v| v.as_f64());
                let faulty = match (bit, mask) {
                    (Some(b), None) => b != 0.0,
                    (Some(b), Some(m)) => (b.max(0.0) as u64) & m != 0,
                    (None, _) => false,
                };
                if faulty {
                    return Some(BadReason::DeviceFault);
                }
            }
            let (lo, hi) = p.range?;
            let x = r.value.as_ref().and_then(|v| v.as_f64())?;
            (!(lo..=hi).contains(&x)).then_some(BadReason::OverRange)
        })
        .collect();
    for (r, why) in readings.iter_mut().zip(verdicts) {
        if let Some(why) = why {
            r.quality = Quality::Bad(why);
            r.value = None;
        }
    }
}
