//! The on-line rate riskgate reports for each device: the share of its
//! polls answered over the last hour and the last day.
//!
//! A poll is one `DeviceHealth` report of a source (Modbus: one per read;
//! MQTT: one per message or missed heartbeat); it counts as answered when
//! the device answered (`ok`). Counts are kept in one-minute buckets, so a
//! window is the last 60 (or 1440) whole minutes plus the current one;
//! memory is at most 1441 buckets a device. The counts live in memory and
//! start again with the process.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};

const DAY_MINUTES: i64 = 24 * 60;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    minute: i64,
    answered: u64,
    polls: u64,
}

/// One device's rates; None while it has not been polled in the window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeviceRate {
    pub device: String,
    pub hour: Option<f64>,
    pub day: Option<f64>,
    pub polls_hour: u64,
    pub answered_hour: u64,
    pub polls_day: u64,
    pub answered_day: u64,
}

#[derive(Default)]
pub struct OnlineRate {
    devices: BTreeMap<String, VecDeque<Bucket>>,
}

impl OnlineRate {
    /// Counts one poll of `device` at `at`.
    pub fn record(&mut self, device: &str, ok: bool, at: DateTime<Utc>) {
        let minute = at.timestamp().div_euclid(60);
        let q = self.devices.entry(device.to_string()).or_default();
        match q.back_mut() {
            Some(b) if b.minute >= minute => {
                // Same minute (or a clock step back: counted in the latest).
                b.polls += 1;
                b.answered += u64::from(ok);
            }
            _ => q.push_back(Bucket {
                minute,
                answered: u64::from(ok),
                polls: 1,
            }),
        }
        while q.front().is_some_and(|b| b.minute < minute - DAY_MINUTES) {
            q.pop_front();
        }
    }

    /// Every device's rates at `now`.
    pub fn rates(&self, now: DateTime<Utc>) -> Vec<DeviceRate> {
        let minute = now.timestamp().div_euclid(60);
        self.devices
            .iter()
            .map(|(d, q)| {
                let sum = |span: i64| {
                    q.iter()
                        .filter(|b| b.minute >= minute - span)
                        .fold((0, 0), |(a, p), b| (a + b.answered, p + b.polls))
                };
                let (answered_hour, polls_hour) = sum(60);
                let (answered_day, polls_day) = sum(DAY_MINUTES);
                let ratio = |a: u64, p: u64| (p > 0).then(|| a as f64 / p as f64);
                DeviceRate {
                    device: d.clone(),
                    hour: ratio(answered_hour, polls_hour),
                    day: ratio(answered_day, polls_day),
                    polls_hour,
                    answered_hour,
                    polls_day,
                    answered_day,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_and_day_windows_by_minute() {
        let t0 = DateTime::from_timestamp(1_800_000_000 / 60 * 60, 0).unwrap();
        let mut o = OnlineRate::default();
        // Two hours ago: 10 polls, none answered.
        for _ in 0..10 {
            o.record("d", false, t0);
        }
        let now = t0 + chrono::Duration::hours(2);
        for i in 0..4 {
            o.record("d", i != 0, now);
        }
        let r = &o.rates(now)[0];
        assert_eq!((r.polls_hour, r.answered_hour), (4, 3));
        assert_eq!(r.hour, Some(0.75));
        assert_eq!((r.polls_day, r.answered_day), (14, 3));
        // A day and a bit later only nothing is left in either window.
        let later = now + chrono::Duration::minutes(DAY_MINUTES + 2);
        o.record("d", true, later);
        let r = &o.rates(later)[0];
        assert_eq!((r.polls_day, r.hour), (1, Some(1.0)));
    }
}
