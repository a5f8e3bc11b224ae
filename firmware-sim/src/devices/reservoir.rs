//! `reservoir-rtu`: a reservoir / dam telemetry terminal's sensor interface
//! (register layout after SL 651-2014 §5.2 sensor data: cumulative rainfall,
//! water level), plus seepage and battery.
//!
//! Holding registers, mirrored in input registers:
//!
//! | addr | signal | encoding |
//! |---|---|---|
//! | 0x0000-0x0001 | `rain_total` (mm) | cumulative rainfall in 0.1 mm, u32 high word first |
//! | 0x0002-0x0003 | `level` (mm) | water level in mm, u32 high word first |
//! | 0x0004-0x0005 | `seepage` (mm) | phreatic-line depth in mm, u32 high word first |
//! | 0x0006 | `battery` (V) | V ×100, u16 |

use crate::bank::RegisterBank;
use crate::codec::u32_hi_lo;
use crate::devices::gas_detector::scaled_u16;

pub const REG_RAIN_TOTAL: u16 = 0x0000;
pub const REG_LEVEL: u16 = 0x0002;
pub const REG_SEEPAGE: u16 = 0x0004;
pub const REG_BATTERY: u16 = 0x0006;

/// (signal, default value): rainfall mm, level mm, seepage mm, battery V.
pub const SIGNALS: &[(&str, f64)] = &[
    ("rain_total", 0.0),
    ("level", 152_300.0),
    ("seepage", 3_500.0),
    ("battery", 12.6),
];

fn u32_of(v: f64, scale: f64) -> [u16; 2] {
    u32_hi_lo((v * scale).round().clamp(0.0, u32::MAX as f64) as u32)
}

/// Write one signal into the bank; false if the signal is unknown.
pub fn write_signal(bank: &RegisterBank, signal: &str, v: f64) -> bool {
    match signal {
        "rain_total" => bank.set_mirrored_words(REG_RAIN_TOTAL, &u32_of(v, 10.0)),
        "level" => bank.set_mirrored_words(REG_LEVEL, &u32_of(v, 1.0)),
        "seepage" => bank.set_mirrored_words(REG_SEEPAGE, &u32_of(v, 1.0)),
        "battery" => bank.set_mirrored_words(REG_BATTERY, &[scaled_u16(v, 100.0)]),
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
        write_signal(&bank, "rain_total", 12.3);
        write_signal(&bank, "level", 152_300.0);
        write_signal(&bank, "battery", 12.6);
        assert_eq!(bank.holding_words(0, 2), vec![0, 123]);
        assert_eq!(
            bank.input_words(2, 2),
            vec![2, (152_300u32 - 2 * 65536) as u16]
        );
        assert_eq!(bank.holding(6), 1260);
    }
}
