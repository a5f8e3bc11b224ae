//! `typed-bank`: a test bank with KNOWN values in every type and byte/word
//! order, for checking a gateway's decoder.
//!
//! [`EXPECTED`] lists every point as
//! `(name, register_kind, address, type, order, value)`:
//! - `register_kind`: `"holding"`, `"input"`, `"coil"`, `"discrete"`
//! - `type`: `u16 i16 u32 i32 u64 i64 f32 f64`; `bool` (coils / discrete
//!   inputs); `bit:N` (bit N of the register, 0 = LSB); `ascii:N` (N
//!   characters, 2 per register); `fixed_i32:D` (an i32 holding value ×10^D)
//! - `order`: `ABCD DCBA BADC CDAB` (see [`crate::codec`]); `-` for bits
//! - `value`: [`Value::Num`] (for `fixed_i32:D` the real value, e.g.
//!   -1234.567 for the raw integer -1234567) or [`Value::Text`]
//!
//! Everything not listed is 0 / false. The bank is written by
//! [`install`] with the sim's own encoder ([`crate::codec`]).

use crate::bank::RegisterBank;
use crate::codec::{NumType, WordOrder, encode, encode_ascii};

/// Expected value of a typed-bank point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Num(f64),
    Text(&'static str),
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(v) => Some(*v),
            Value::Text(_) => None,
        }
    }
    pub fn as_str(&self) -> Option<&'static str> {
        match self {
            Value::Text(s) => Some(s),
            Value::Num(_) => None,
        }
    }
}

/// `(name, register_kind, address, type, order, value)`
pub type Expected = (
    &'static str,
    &'static str,
    u16,
    &'static str,
    &'static str,
    Value,
);

use Value::{Num, Text};

/// Every known point of the typed bank.
pub const EXPECTED: &[Expected] = &[
    // --- holding registers: one block per type, the four orders side by side
    ("u16_abcd", "holding", 0, "u16", "ABCD", Num(4660.0)),
    ("u16_dcba", "holding", 1, "u16", "DCBA", Num(4660.0)),
    ("u16_badc", "holding", 2, "u16", "BADC", Num(4660.0)),
    ("u16_cdab", "holding", 3, "u16", "CDAB", Num(4660.0)),
    ("u16_big_abcd", "holding", 4, "u16", "ABCD", Num(50000.0)),
    ("i16_abcd", "holding", 10, "i16", "ABCD", Num(-1234.0)),
    ("i16_dcba", "holding", 11, "i16", "DCBA", Num(-1234.0)),
    ("i16_badc", "holding", 12, "i16", "BADC", Num(-1234.0)),
    ("i16_cdab", "holding", 13, "i16", "CDAB", Num(-1234.0)),
    ("u32_abcd", "holding", 20, "u32", "ABCD", Num(305419896.0)),
    ("u32_dcba", "holding", 22, "u32", "DCBA", Num(305419896.0)),
    ("u32_badc", "holding", 24, "u32", "BADC", Num(305419896.0)),
    ("u32_cdab", "holding", 26, "u32", "CDAB", Num(305419896.0)),
    ("i32_abcd", "holding", 30, "i32", "ABCD", Num(-123456789.0)),
    ("i32_dcba", "holding", 32, "i32", "DCBA", Num(-123456789.0)),
    ("i32_badc", "holding", 34, "i32", "BADC", Num(-123456789.0)),
    ("i32_cdab", "holding", 36, "i32", "CDAB", Num(-123456789.0)),
    (
        "u64_abcd",
        "holding",
        40,
        "u64",
        "ABCD",
        Num(1234567890123456.0),
    ),
    (
        "u64_dcba",
        "holding",
        44,
        "u64",
        "DCBA",
        Num(1234567890123456.0),
    ),
    (
        "u64_badc",
        "holding",
        48,
        "u64",
        "BADC",
        Num(1234567890123456.0),
    ),
    (
        "u64_cdab",
        "holding",
        52,
        "u64",
        "CDAB",
        Num(1234567890123456.0),
    ),
    (
        "i64_abcd",
        "holding",
        60,
        "i64",
        "ABCD",
        Num(-1234567890123456.0),
    ),
    (
        "i64_dcba",
        "holding",
        64,
        "i64",
        "DCBA",
        Num(-1234567890123456.0),
    ),
    (
        "i64_badc",
        "holding",
        68,
        "i64",
        "BADC",
        Num(-1234567890123456.0),
    ),
    (
        "i64_cdab",
        "holding",
        72,
        "i64",
        "CDAB",
        Num(-1234567890123456.0),
    ),
    ("f32_abcd", "holding", 80, "f32", "ABCD", Num(1.5)),
    ("f32_dcba", "holding", 82, "f32", "DCBA", Num(1.5)),
    ("f32_badc", "holding", 84, "f32", "BADC", Num(1.5)),
    ("f32_cdab", "holding", 86, "f32", "CDAB", Num(1.5)),
    ("f32_neg_abcd", "holding", 90, "f32", "ABCD", Num(-1234.5)),
    ("f32_neg_dcba", "holding", 92, "f32", "DCBA", Num(-1234.5)),
    ("f32_neg_badc", "holding", 94, "f32", "BADC", Num(-1234.5)),
    ("f32_neg_cdab", "holding", 96, "f32", "CDAB", Num(-1234.5)),
    (
        "f64_abcd",
        "holding",
        100,
        "f64",
        "ABCD",
        Num(std::f64::consts::PI),
    ),
    (
        "f64_dcba",
        "holding",
        104,
        "f64",
        "DCBA",
        Num(std::f64::consts::PI),
    ),
    (
        "f64_badc",
        "holding",
        108,
        "f64",
        "BADC",
        Num(std::f64::consts::PI),
    ),
    (
        "f64_cdab",
        "holding",
        112,
        "f64",
        "CDAB",
        Num(std::f64::consts::PI),
    ),
    (
        "f64_neg_abcd",
        "holding",
        120,
        "f64",
        "ABCD",
        Num(-98765.4321),
    ),
    (
        "f64_neg_dcba",
        "holding",
        124,
        "f64",
        "DCBA",
        Num(-98765.4321),
    ),
    (
        "f64_neg_badc",
        "holding",
        128,
        "f64",
        "BADC",
        Num(-98765.4321),
    ),
    (
        "f64_neg_cdab",
        "holding",
        132,
        "f64",
        "CDAB",
        Num(-98765.4321),
    ),
    // register 140 = 0x8024: bits 2, 5 and 15 set
    ("bits_word", "holding", 140, "u16", "ABCD", Num(32804.0)),
    ("bit_2", "holding", 140, "bit:2", "-", Num(1.0)),
    ("bit_3", "holding", 140, "bit:3", "-", Num(0.0)),
    ("bit_5", "holding", 140, "bit:5", "-", Num(1.0)),
    ("bit_15", "holding", 140, "bit:15", "-", Num(1.0)),
    (
        "ascii_abcd",
        "holding",
        150,
        "ascii:10",
        "ABCD",
        Text("RISKGATE01"),
    ),
    (
        "ascii_badc",
        "holding",
        160,
        "ascii:10",
        "BADC",
        Text("SN-2024-XY"),
    ),
    (
        "fixed3_abcd",
        "holding",
        170,
        "fixed_i32:3",
        "ABCD",
        Num(-1234.567),
    ),
    (
        "fixed3_cdab",
        "holding",
        172,
        "fixed_i32:3",
        "CDAB",
        Num(98765.432),
    ),
    // --- input registers: different values, so reading the wrong table shows
    ("in_u16", "input", 0, "u16", "ABCD", Num(4321.0)),
    ("in_i16", "input", 1, "i16", "ABCD", Num(-42.0)),
    ("in_f32_abcd", "input", 2, "f32", "ABCD", Num(-2.5)),
    ("in_f32_cdab", "input", 4, "f32", "CDAB", Num(100.25)),
    ("in_u32_cdab", "input", 6, "u32", "CDAB", Num(70000.0)),
    ("in_i32_abcd", "input", 8, "i32", "ABCD", Num(-70000.0)),
    ("in_f64_dcba", "input", 10, "f64", "DCBA", Num(-0.125)),
    (
        "in_ascii",
        "input",
        20,
        "ascii:10",
        "ABCD",
        Text("INPUT-REGS"),
    ),
    // --- coils and discrete inputs (unlisted ones are false)
    ("coil_0", "coil", 0, "bool", "-", Num(1.0)),
    ("coil_1", "coil", 1, "bool", "-", Num(0.0)),
    ("coil_2", "coil", 2, "bool", "-", Num(1.0)),
    ("coil_3", "coil", 3, "bool", "-", Num(1.0)),
    ("coil_9", "coil", 9, "bool", "-", Num(1.0)),
    ("coil_10", "coil", 10, "bool", "-", Num(0.0)),
    ("di_0", "discrete", 0, "bool", "-", Num(0.0)),
    ("di_1", "discrete", 1, "bool", "-", Num(1.0)),
    ("di_7", "discrete", 7, "bool", "-", Num(1.0)),
    ("di_8", "discrete", 8, "bool", "-", Num(1.0)),
];

/// Registers occupied by a register point of type `ty` (0 for coils/discretes).
pub fn register_count(ty: &str) -> usize {
    if let Ok(t) = ty.parse::<NumType>() {
        return t.words();
    }
    if ty.starts_with("bit:") {
        return 1;
    }
    if let Some(n) = ty.strip_prefix("ascii:") {
        return n.parse::<usize>().unwrap_or(0).div_ceil(2);
    }
    if ty.starts_with("fixed_i32:") {
        return 2;
    }
    0
}

/// Encode one register point to words (None for bits / bools).
pub fn encode_point(ty: &str, order: &str, value: Value) -> Option<Vec<u16>> {
    let order: WordOrder = order.parse().ok()?;
    if let Ok(t) = ty.parse::<NumType>() {
        return Some(encode(t, order, value.as_f64()?));
    }
    if let Some(n) = ty.strip_prefix("ascii:") {
        return Some(encode_ascii(value.as_str()?, n.parse().ok()?, order));
    }
    if let Some(d) = ty.strip_prefix("fixed_i32:") {
        let d: i32 = d.parse().ok()?;
        return Some(encode(NumType::I32, order, value.as_f64()? * 10f64.powi(d)));
    }
    None
}

/// Write every point of [`EXPECTED`] into `bank`.
pub fn install(bank: &RegisterBank) {
    for &(name, kind, addr, ty, order, value) in EXPECTED {
        let on = value.as_f64().is_some_and(|v| v != 0.0);
        match (kind, ty) {
            ("coil", _) => bank.set_coil(addr, on),
            ("discrete", _) => bank.set_discrete(addr, on),
            ("holding", t) | ("input", t) if t.starts_with("bit:") => {
                let bit: u16 = t[4..].parse().expect("bit index");
                let cur = if kind == "holding" {
                    bank.holding(addr)
                } else {
                    bank.input(addr)
                };
                let v = if on {
                    cur | (1 << bit)
                } else {
                    cur & !(1 << bit)
                };
                if kind == "holding" {
                    bank.set_holding(addr, v)
                } else {
                    bank.set_input(addr, v)
                }
            }
            ("holding", _) => bank.set_holding_words(
                addr,
                &encode_point(ty, order, value).unwrap_or_else(|| panic!("cannot encode {name}")),
            ),
            ("input", _) => bank.set_input_words(
                addr,
                &encode_point(ty, order, value).unwrap_or_else(|| panic!("cannot encode {name}")),
            ),
            _ => panic!("bad register kind {kind} for {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, decode_ascii};

    /// Install, then decode every point back from the bank with the sim's decoder.
    #[test]
    fn encoder_round_trips_every_expected_point() {
        let bank = RegisterBank::new();
        install(&bank);
        for &(name, kind, addr, ty, order, value) in EXPECTED {
            let words = |n: usize| {
                if kind == "holding" {
                    bank.holding_words(addr, n)
                } else {
                    bank.input_words(addr, n)
                }
            };
            match ty {
                "bool" => {
                    let got = if kind == "coil" {
                        bank.coil(addr)
                    } else {
                        bank.discrete(addr)
                    };
                    assert_eq!(got, value.as_f64().unwrap() != 0.0, "{name}");
                }
                t if t.starts_with("bit:") => {
                    let bit: u16 = t[4..].parse().unwrap();
                    let got = (words(1)[0] >> bit) & 1;
                    assert_eq!(got as f64, value.as_f64().unwrap(), "{name}");
                }
                t if t.starts_with("ascii:") => {
                    let w = words(register_count(t));
                    assert_eq!(
                        decode_ascii(&w, order.parse().unwrap()),
                        value.as_str().unwrap(),
                        "{name}"
                    );
                }
                t if t.starts_with("fixed_i32:") => {
                    let d: i32 = t[10..].parse().unwrap();
                    let raw = decode(NumType::I32, order.parse().unwrap(), &words(2));
                    assert_eq!(raw / 10f64.powi(d), value.as_f64().unwrap(), "{name}");
                }
                t => {
                    let nt: NumType = t.parse().unwrap();
                    let got = decode(nt, order.parse().unwrap(), &words(nt.words()));
                    assert_eq!(got, value.as_f64().unwrap(), "{name}");
                }
            }
        }
    }

    #[test]
    fn no_overlapping_points() {
        let mut used = std::collections::HashMap::new();
        for &(name, kind, addr, ty, _, _) in EXPECTED {
            if ty.starts_with("bit:") || name == "bits_word" {
                continue;
            }
            for a in addr..addr + register_count(ty).max(1) as u16 {
                if let Some(prev) = used.insert((kind, a), name) {
                    panic!("{name} overlaps {prev} at {kind} {a}");
                }
            }
        }
    }

    #[test]
    fn known_words() {
        let bank = RegisterBank::new();
        install(&bank);
        assert_eq!(
            bank.holding_words(80, 8),
            vec![0x3FC0, 0, 0, 0xC03F, 0xC03F, 0, 0, 0x3FC0]
        );
        assert_eq!(
            bank.holding_words(0, 4),
            vec![0x1234, 0x3412, 0x3412, 0x1234]
        );
        assert_eq!(bank.holding(140), 0x8024);
        assert_eq!(bank.holding_words(150, 1), vec![u16::from_be_bytes(*b"RI")]);
        assert_eq!(bank.holding_words(160, 1), vec![u16::from_be_bytes(*b"NS")]);
    }
}
