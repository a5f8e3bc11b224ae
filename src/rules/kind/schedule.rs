//! Limits by calendar: a threshold whose value depends on the day of the
//! year in the site's time zone (e.g. 汛限水位: one level in 主汛期, another
//! in 后汛期, the normal pool level otherwise).
//!
//! Invariants (proved by `check`): every period is two real days `MM-DD`
//! (02-29 allowed; in other years that day simply does not come), no two
//! periods share a day, and a period whose `to` is before its `from` runs
//! over the new year. Outside every period `otherwise` is the limit, so a
//! day always has exactly one limit.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

use super::limit::Limit;
use crate::config::check::Errs;
use crate::config::{Cmp, Period};

/// A day of the year as `(month, day)`, ordered through the year.
pub type Day = (u32, u32);

#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub from: Day,
    pub to: Day,
    /// The name as written, or `MM-DD..MM-DD`: what the message shows.
    pub label: String,
    pub limit: Limit,
}

impl Span {
    fn contains(&self, d: Day) -> bool {
        if self.from <= self.to {
            self.from <= d && d <= self.to
        } else {
            d >= self.from || d <= self.to
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub tz: Tz,
    pub spans: Vec<Span>,
    /// The limit outside every span.
    pub otherwise: Limit,
}

impl Schedule {
    /// The limit in force at `at` (a local day of the site) and the period's
    /// label (`None` outside every period).
    pub fn at(&self, at: DateTime<Utc>) -> (&Limit, Option<&str>) {
        let local = at.with_timezone(&self.tz);
        let d = (local.month(), local.day());
        match self.spans.iter().find(|s| s.contains(d)) {
            Some(s) => (&s.limit, Some(s.label.as_str())),
            None => (&self.otherwise, None),
        }
    }
}

/// `MM-DD` → a real day (in a leap year, so 02-29 is one).
fn parse_day(s: &str) -> Result<Day, String> {
    let bad = || format!("`{s}` is not a day written MM-DD, e.g. \"06-01\"");
    let (m, d) = s.split_once('-').ok_or_else(bad)?;
    if m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (m, d): (u32, u32) = (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if NaiveDate::from_ymd_opt(2024, m, d).is_none() {
        return Err(format!("`{s}` is not a day of the year"));
    }
    Ok((m, d))
}

/// The days of the (leap) year a span covers, as ordinals 0..366.
fn days(s: &Span) -> Vec<bool> {
    let mut v = vec![false; 366];
    let mut d = NaiveDate::from_ymd_opt(2024, 1, 1).expect("a real day");
    for slot in v.iter_mut() {
        *slot = s.contains((d.month(), d.day()));
        d = d.succ_opt().expect("within 2024");
    }
    v
}

/// The limit of one value: `op`, the value and its way back by `deadband`.
pub fn limit(op: Cmp, value: f64, deadband: Option<f64>) -> Limit {
    let clear_at = match deadband {
        Some(db) if op.is_high() => value - db,
        Some(db) => value + db,
        None => value,
    };
    Limit {
        op,
        value,
        clear_at,
    }
}

/// Checks `schedule` (path `p`, e.g. `rules[3]`): every day real, no day in
/// two periods, every value finite. Every problem goes to `e`.
pub fn check(
    periods: &[Period],
    p: &str,
    otherwise: Limit,
    deadband: Option<f64>,
    tz: Tz,
    e: &mut Errs,
) -> Option<Schedule> {
    let before = e.len();
    if periods.is_empty() {
        e.push(
            format!("{p}.schedule"),
            "empty: give at least one period, or `value` instead",
        );
    }
    let mut spans: Vec<(usize, Span)> = Vec::new();
    for (i, per) in periods.iter().enumerate() {
        let pp = format!("{p}.schedule[{i}]");
        let from = parse_day(&per.from).map_err(|m| e.push(format!("{pp}.from"), m));
        let to = parse_day(&per.to).map_err(|m| e.push(format!("{pp}.to"), m));
        if !per.value.is_finite() {
            e.push(format!("{pp}.value"), "must be a finite number");
        }
        if per.name.as_ref().is_some_and(|n| n.chars().count() > 64) {
            e.push(format!("{pp}.name"), "at most 64 characters");
        }
        let (Ok(from), Ok(to)) = (from, to) else {
            continue;
        };
        let label = per
            .name
            .clone()
            .unwrap_or_else(|| format!("{}..{}", per.from, per.to));
        spans.push((
            i,
            Span {
                from,
                to,
                label,
                limit: limit(otherwise.op, per.value, deadband),
            },
        ));
    }
    // Two periods that share a day would make that day's limit depend on
    // their order in the file: refused, naming both.
    let covered: Vec<Vec<bool>> = spans.iter().map(|(_, s)| days(s)).collect();
    for (a, (ia, sa)) in spans.iter().enumerate() {
        for (b, (ib, _)) in spans.iter().enumerate().skip(a + 1) {
            if covered[a].iter().zip(&covered[b]).any(|(x, y)| *x && *y) {
                e.push(
                    format!("{p}.schedule[{ib}]"),
                    format!(
                        "{} overlaps schedule[{ia}] ({}): a day has one limit",
                        periods[*ib].from.clone() + ".." + &periods[*ib].to,
                        sa.label
                    ),
                );
            }
        }
    }
    (e.len() == before).then(|| Schedule {
        tz,
        spans: spans.into_iter().map(|(_, s)| s).collect(),
        otherwise,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn per(from: &str, to: &str, value: f64) -> Period {
        Period {
            from: from.into(),
            to: to.into(),
            value,
            name: None,
        }
    }

    fn sched(ps: &[Period]) -> (Option<Schedule>, Vec<String>) {
        let mut e = Errs::default();
        let s = check(
            ps,
            "rules[0]",
            limit(Cmp::Ge, 110.0, Some(0.05)),
            Some(0.05),
            chrono_tz::Asia::Shanghai,
            &mut e,
        );
        (
            s,
            e.0.iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect(),
        )
    }

    /// The limit changes on the local day, not the UTC one: 06-01 00:30 in
    /// Shanghai is still 05-31 in UTC.
    #[test]
    fn the_day_is_the_sites() {
        let (s, e) = sched(&[per("06-01", "08-15", 104.5), per("08-16", "09-30", 105.5)]);
        assert!(e.is_empty(), "{e:?}");
        let s = s.unwrap();
        let at = |m, d, h, mi| {
            chrono_tz::Asia::Shanghai
                .with_ymd_and_hms(2026, m, d, h, mi, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(s.at(at(5, 31, 23, 59)).0.value, 110.0);
        assert_eq!(s.at(at(6, 1, 0, 30)).0.value, 104.5);
        assert_eq!(s.at(at(8, 15, 23, 59)).0.value, 104.5);
        assert_eq!(s.at(at(8, 16, 0, 0)).0.value, 105.5);
        assert_eq!(s.at(at(9, 30, 12, 0)).1, Some("08-16..09-30"));
        assert_eq!(s.at(at(10, 1, 0, 0)).0.value, 110.0);
        assert_eq!(s.at(at(10, 1, 0, 0)).1, None);
        // the deadband applies to every period's value
        assert_eq!(s.at(at(7, 1, 0, 0)).0.clear_at, 104.45);
    }

    #[test]
    fn a_period_may_run_over_the_new_year() {
        let (s, e) = sched(&[per("11-15", "02-29", 1.0)]);
        assert!(e.is_empty(), "{e:?}");
        let s = s.unwrap();
        let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 6, 0, 0).unwrap();
        assert_eq!(s.at(at(2026, 12, 31)).0.value, 1.0);
        assert_eq!(s.at(at(2027, 1, 10)).0.value, 1.0);
        assert_eq!(s.at(at(2027, 3, 1)).0.value, 110.0);
    }

    #[test]
    fn bad_days_and_overlaps_are_all_reported() {
        let (s, e) = sched(&[
            per("06-31", "7-1", 1.0),
            per("06-01", "08-15", 2.0),
            per("08-15", "09-30", f64::NAN),
            per("12-01", "06-01", 3.0),
        ]);
        assert!(s.is_none());
        let want = [
            "rules[0].schedule[0].from: `06-31` is not a day of the year",
            "rules[0].schedule[0].to: `7-1` is not a day written MM-DD",
            "rules[0].schedule[2].value: must be a finite number",
            "rules[0].schedule[2]: 08-15..09-30 overlaps schedule[1] (06-01..08-15)",
            "rules[0].schedule[3]: 12-01..06-01 overlaps schedule[1] (06-01..08-15)",
        ];
        for w in want {
            assert!(e.iter().any(|x| x.starts_with(w)), "{w}\n{e:#?}");
        }
        assert_eq!(e.len(), want.len(), "{e:#?}");
    }
}
