//! `kj-monitor`: state registers of a mine's certified safety monitoring
//! system (KJ system) for N zones, numbered from 1.
//!
//! | table | address | signal | meaning |
//! |---|---|---|---|
//! | discrete input | 16·z + 0 | `zone{z}.cut` | power-cut command active |
//! | discrete input | 16·z + 1 | `zone{z}.feed` | 馈电: power still present on the zone's non-intrinsically-safe circuits |
//! | discrete input | 16·z + 2 | `zone{z}.fan_running` | local fan running |
//! | holding register | 100 + z | `zone{z}.ch4` | zone CH4 % ×100, u16 |

use crate::bank::RegisterBank;
use crate::devices::gas_detector::scaled_u16;

pub const DEFAULT_ZONES: u8 = 4;

pub fn di_cut(zone: u8) -> u16 {
    16 * zone as u16
}
pub fn di_feed(zone: u8) -> u16 {
    16 * zone as u16 + 1
}
pub fn di_fan_running(zone: u8) -> u16 {
    16 * zone as u16 + 2
}
pub fn hr_ch4(zone: u8) -> u16 {
    100 + zone as u16
}

/// Per-zone signal suffixes with their defaults.
pub const ZONE_SIGNALS: &[(&str, f64)] = &[
    ("cut", 0.0),
    ("feed", 1.0),
    ("fan_running", 1.0),
    ("ch4", 0.30),
];

/// All signal names and defaults for `zones` zones.
pub fn signals(zones: u8) -> Vec<(String, f64)> {
    (1..=zones)
        .flat_map(|z| {
            ZONE_SIGNALS
                .iter()
                .map(move |(s, d)| (format!("zone{z}.{s}"), *d))
        })
        .collect()
}

fn parse(signal: &str, zones: u8) -> Option<(u8, &str)> {
    let rest = signal.strip_prefix("zone")?;
    let (num, what) = rest.split_once('.')?;
    let z: u8 = num.parse().ok()?;
    if z == 0 || z > zones {
        return None;
    }
    Some((z, what))
}

/// Write one signal into the bank; false if the signal is unknown.
pub fn write_signal(bank: &RegisterBank, zones: u8, signal: &str, v: f64) -> bool {
    let Some((z, what)) = parse(signal, zones) else {
        return false;
    };
    match what {
        "cut" => bank.set_discrete(di_cut(z), v >= 0.5),
        "feed" => bank.set_discrete(di_feed(z), v >= 0.5),
        "fan_running" => bank.set_discrete(di_fan_running(z), v >= 0.5),
        "ch4" => bank.set_holding(hr_ch4(z), scaled_u16(v, 100.0)),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map() {
        let bank = RegisterBank::new();
        assert!(write_signal(&bank, 4, "zone1.cut", 1.0));
        assert!(write_signal(&bank, 4, "zone2.feed", 1.0));
        assert!(write_signal(&bank, 4, "zone4.ch4", 1.23));
        assert!(!write_signal(&bank, 4, "zone5.ch4", 1.0));
        assert!(!write_signal(&bank, 4, "zone0.ch4", 1.0));
        assert!(bank.discrete(16));
        assert!(bank.discrete(33));
        assert_eq!(bank.holding(104), 123);
        assert_eq!(signals(2).len(), 8);
    }
}
