//! What the SL 651 codec tests share: elements a station may send (a
//! proptest strategy), the value riskgate should read for each, and a
//! comparison that allows for decimal rounding. Included by
//! `sl651_codec.rs` (HEX frames) and `sl651_ascii.rs` (ASCII frames).

use firmware_sim::sl651::codec::Elem;
use proptest::prelude::*;
use riskgate::source::sl651::body::Observed;

/// Elements of every shape, over their formats' ranges.
pub fn elem() -> impl Strategy<Value = Elem> {
    prop_oneof![
        (0u32..99_999).prop_map(|x| Elem::pj(f64::from(x) / 10.0)),
        (0u32..999_999).prop_map(|x| Elem::pt(f64::from(x) / 10.0)),
        (0u32..9_999_999).prop_map(|x| Elem::zu(f64::from(x) / 1000.0)),
        (-99_999i32..9_999_999).prop_map(|x| Elem::z(f64::from(x) / 1000.0)),
        (0u32..9999).prop_map(|x| Elem::vt(f64::from(x) / 100.0)),
        any::<u32>().prop_map(Elem::Status),
        proptest::collection::vec(proptest::option::of(0u8..=254), 12).prop_map(|v| {
            let mut a = [None; 12];
            for (i, x) in v.into_iter().enumerate() {
                a[i] = x.map(|x| f64::from(x) / 10.0);
            }
            Elem::Drp(a)
        }),
    ]
}

pub fn expected(e: &Elem) -> (u8, Observed) {
    match e {
        Elem::Num { id, value, .. } => (*id, Observed::Number(*value)),
        Elem::Missing { id, .. } => (*id, Observed::Missing),
        Elem::Drp(v) => (0xF4, Observed::Series(v.to_vec())),
        Elem::Drz { id, values } => (*id, Observed::Series(values.to_vec())),
        Elem::Status(w) => (0x45, Observed::Status(*w)),
    }
}

pub fn close(a: &Observed, b: &Observed) -> bool {
    let eq = |x: f64, y: f64| (x - y).abs() < 1e-6;
    match (a, b) {
        (Observed::Number(x), Observed::Number(y)) => eq(*x, *y),
        (Observed::Series(x), Observed::Series(y)) => x.iter().zip(y).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => eq(*x, *y),
            (None, None) => true,
            _ => false,
        }),
        _ => a == b,
    }
}
