//! A comparison with its way back: what threshold, rate and accumulation
//! rules (and each period of a schedule) judge a number against.

use super::Verdict;
use crate::config::Cmp;
use crate::rules::points::PointInfo;
use crate::rules::text;

/// A comparison with its way back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub op: Cmp,
    pub value: f64,
    /// The value the judged number must come back past to clear: the
    /// `recovery`, `value ∓ deadband`, or the value itself.
    pub clear_at: f64,
}

impl Limit {
    /// The verdict on a point whose quality is bad: over the limit.
    pub fn bad_input(&self, p: &PointInfo) -> Verdict {
        Verdict {
            on: true,
            off: false,
            value: None,
            threshold: Some(serde_json::json!(self.value)),
            detail: text::bad_input_as_over(&p.name, p.quality.label()),
            facts: None,
        }
    }

    /// The verdict on the number `x` judged for point `p`; `what` says what
    /// the number is (empty for the value itself).
    pub fn judge(&self, p: &PointInfo, x: f64, what: &str) -> Verdict {
        let on = self.op.holds(x, self.value);
        let high = self.op.is_high();
        let off = if high {
            x < self.clear_at
        } else {
            x > self.clear_at
        };
        // A clear message shows the recovery value it passed.
        let (sym, limit) = match (off, high) {
            (true, true) => ("<", self.clear_at),
            (true, false) => (">", self.clear_at),
            (false, _) => (self.op.symbol(), self.value),
        };
        let unit = p.unit.as_deref().unwrap_or_default();
        Verdict {
            on,
            off,
            value: Some(serde_json::json!(x)),
            threshold: Some(serde_json::json!(self.value)),
            detail: text::limit(&p.name, what, x, unit, sym, limit),
            facts: None,
        }
    }
}
