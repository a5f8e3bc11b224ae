//! `gas-detector`: a fixed multi-gas detector (CH4 / CO / O2 / temperature).
//!
//! Holding registers, mirrored in input registers at the same addresses:
//!
//! | addr | signal | encoding |
//! |---|---|---|
//! | 0-1 | `ch4` | % CH4, f32 ABCD (high word first) |
//! | 2-3 | `co` | ppm, f32 ABCD |
//! | 4-5 | `o2` | % vol, f32 ABCD |
//! | 6 | `temp` | °C ×10, i16 |
//! | 7 | `fault`/`calibrating`/`low_battery` | status bits 0/1/2 |
//! | 8 | (`ch4`) | CH4 % ×100, u16 |
//!
//! Coil 0 `alarm_lamp` is writable by the gateway and not driven by scenarios.

use crate::bank::RegisterBank;
use crate::codec::f32_abcd;

pub const REG_CH4: u16 = 0;
pub const REG_CO: u16 = 2;
pub const REG_O2: u16 = 4;
pub const REG_TEMP: u16 = 6;
pub const REG_STATUS: u16 = 7;
pub const REG_CH4_X100: u16 = 8;
pub const COIL_ALARM_LAMP: u16 = 0;

pub const STATUS_SENSOR_FAULT: u16 = 1 << 0;
pub const STATUS_CALIBRATING: u16 = 1 << 1;
pub const STATUS_LOW_BATTERY: u16 = 1 << 2;

/// (signal, default value)
pub const SIGNALS: &[(&str, f64)] = &[
    ("ch4", 0.30),
    ("co", 5.0),
    ("o2", 20.8),
    ("temp", 22.0),
    ("fault", 0.0),
    ("calibrating", 0.0),
    ("low_battery", 0.0),
];

pub(crate) fn scaled_u16(v: f64, scale: f64) -> u16 {
    (v * scale).round().clamp(0.0, u16::MAX as f64) as u16
}

pub(crate) fn set_status_bit(bank: &RegisterBank, bit: u16, on: bool) {
    bank.update_mirrored(REG_STATUS, |s| if on { s | bit } else { s & !bit });
}

/// Write one signal into the bank; false if the signal is unknown.
pub fn write_signal(bank: &RegisterBank, signal: &str, v: f64) -> bool {
    match signal {
        "ch4" => {
            bank.set_mirrored_words(REG_CH4, &f32_abcd(v));
            bank.set_mirrored_words(REG_CH4_X100, &[scaled_u16(v, 100.0)]);
        }
        "co" => bank.set_mirrored_words(REG_CO, &f32_abcd(v)),
        "o2" => bank.set_mirrored_words(REG_O2, &f32_abcd(v)),
        "temp" => {
            let t = (v * 10.0).round().clamp(i16::MIN as f64, i16::MAX as f64) as i16;
            bank.set_mirrored_words(REG_TEMP, &[t as u16]);
        }
        "fault" => set_status_bit(bank, STATUS_SENSOR_FAULT, v >= 0.5),
        "calibrating" => set_status_bit(bank, STATUS_CALIBRATING, v >= 0.5),
        "low_battery" => set_status_bit(bank, STATUS_LOW_BATTERY, v >= 0.5),
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
        assert!(write_signal(&bank, "ch4", 1.5));
        assert!(write_signal(&bank, "temp", -5.0));
        assert!(write_signal(&bank, "low_battery", 1.0));
        assert!(write_signal(&bank, "fault", 1.0));
        assert!(write_signal(&bank, "fault", 0.0));
        assert!(!write_signal(&bank, "level", 1.0));
        assert_eq!(bank.holding_words(0, 2), vec![0x3FC0, 0x0000]);
        assert_eq!(bank.input_words(0, 2), vec![0x3FC0, 0x0000]);
        assert_eq!(bank.holding(6), (-50i16) as u16);
        assert_eq!(bank.holding(7), STATUS_LOW_BATTERY);
        assert_eq!(bank.input(8), 150);
    }
}
