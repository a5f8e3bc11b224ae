//! Encoding of typed values into Modbus registers, in the four usual byte/word
//! orders. Written independently of any gateway decoder: the typed-bank device
//! uses it to lay out known values.
//!
//! For a value whose big-endian bytes are `A B C D` (32 bit; 64 bit likewise
//! with `A..H`):
//! - `ABCD`: big-endian bytes, high word first (`AB CD`)
//! - `DCBA`: fully little-endian (`DC BA`)
//! - `BADC`: bytes swapped inside each word, high word first (`BA DC`)
//! - `CDAB`: low word first, bytes big-endian inside words (`CD AB`)
//!
//! For 16-bit values `ABCD`/`CDAB` mean `AB` and `DCBA`/`BADC` mean `BA`.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WordOrder {
    ABCD,
    DCBA,
    BADC,
    CDAB,
}

impl WordOrder {
    pub const ALL: [WordOrder; 4] = [
        WordOrder::ABCD,
        WordOrder::DCBA,
        WordOrder::BADC,
        WordOrder::CDAB,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            WordOrder::ABCD => "ABCD",
            WordOrder::DCBA => "DCBA",
            WordOrder::BADC => "BADC",
            WordOrder::CDAB => "CDAB",
        }
    }
}

impl fmt::Display for WordOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WordOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "ABCD" => Ok(WordOrder::ABCD),
            "DCBA" => Ok(WordOrder::DCBA),
            "BADC" => Ok(WordOrder::BADC),
            "CDAB" => Ok(WordOrder::CDAB),
            _ => Err(format!(
                "unknown byte/word order {s:?} (ABCD, DCBA, BADC, CDAB)"
            )),
        }
    }
}

/// Numeric register types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NumType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl NumType {
    /// Number of 16-bit registers.
    pub fn words(&self) -> usize {
        match self {
            NumType::U16 | NumType::I16 => 1,
            NumType::U32 | NumType::I32 | NumType::F32 => 2,
            NumType::U64 | NumType::I64 | NumType::F64 => 4,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            NumType::U16 => "u16",
            NumType::I16 => "i16",
            NumType::U32 => "u32",
            NumType::I32 => "i32",
            NumType::U64 => "u64",
            NumType::I64 => "i64",
            NumType::F32 => "f32",
            NumType::F64 => "f64",
        }
    }
}

impl FromStr for NumType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "u16" => NumType::U16,
            "i16" => NumType::I16,
            "u32" => NumType::U32,
            "i32" => NumType::I32,
            "u64" => NumType::U64,
            "i64" => NumType::I64,
            "f32" => NumType::F32,
            "f64" => NumType::F64,
            _ => return Err(format!("unknown numeric type {s:?}")),
        })
    }
}

/// Arrange big-endian bytes (2, 4 or 8 of them) into registers in `order`.
pub fn bytes_to_words(be: &[u8], order: WordOrder) -> Vec<u16> {
    assert!(be.len().is_multiple_of(2), "byte count must be even");
    let arranged: Vec<u8> = match order {
        WordOrder::ABCD => be.to_vec(),
        WordOrder::DCBA => be.iter().rev().copied().collect(),
        WordOrder::BADC => be.chunks(2).flat_map(|c| [c[1], c[0]]).collect(),
        WordOrder::CDAB => be.chunks(2).rev().flatten().copied().collect(),
    };
    arranged
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// Inverse of [`bytes_to_words`]: registers in `order` back to big-endian bytes.
pub fn words_to_bytes(words: &[u16], order: WordOrder) -> Vec<u8> {
    let wire: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    match order {
        WordOrder::ABCD => wire,
        WordOrder::DCBA => wire.into_iter().rev().collect(),
        WordOrder::BADC => wire.chunks(2).flat_map(|c| [c[1], c[0]]).collect(),
        WordOrder::CDAB => wire.chunks(2).rev().flatten().copied().collect(),
    }
}

/// Encode `value` as `ty` in `order`. Integers are rounded and saturated to the type's range.
pub fn encode(ty: NumType, order: WordOrder, value: f64) -> Vec<u16> {
    let be: Vec<u8> = match ty {
        NumType::U16 => (value.round() as u16).to_be_bytes().to_vec(),
        NumType::I16 => (value.round() as i16).to_be_bytes().to_vec(),
        NumType::U32 => (value.round() as u32).to_be_bytes().to_vec(),
        NumType::I32 => (value.round() as i32).to_be_bytes().to_vec(),
        NumType::U64 => (value.round() as u64).to_be_bytes().to_vec(),
        NumType::I64 => (value.round() as i64).to_be_bytes().to_vec(),
        NumType::F32 => (value as f32).to_be_bytes().to_vec(),
        NumType::F64 => value.to_be_bytes().to_vec(),
    };
    bytes_to_words(&be, order)
}

/// Decode registers as `ty` in `order` (the test-side inverse of [`encode`]).
pub fn decode(ty: NumType, order: WordOrder, words: &[u16]) -> f64 {
    assert_eq!(
        words.len(),
        ty.words(),
        "wrong register count for {}",
        ty.as_str()
    );
    let b = words_to_bytes(words, order);
    match ty {
        NumType::U16 => u16::from_be_bytes([b[0], b[1]]) as f64,
        NumType::I16 => i16::from_be_bytes([b[0], b[1]]) as f64,
        NumType::U32 => u32::from_be_bytes(b[..4].try_into().unwrap()) as f64,
        NumType::I32 => i32::from_be_bytes(b[..4].try_into().unwrap()) as f64,
        NumType::U64 => u64::from_be_bytes(b[..8].try_into().unwrap()) as f64,
        NumType::I64 => i64::from_be_bytes(b[..8].try_into().unwrap()) as f64,
        NumType::F32 => f32::from_be_bytes(b[..4].try_into().unwrap()) as f64,
        NumType::F64 => f64::from_be_bytes(b[..8].try_into().unwrap()),
    }
}

/// f32 in ABCD (high word first) — the gas detector's format.
pub fn f32_abcd(v: f64) -> [u16; 2] {
    let w = encode(NumType::F32, WordOrder::ABCD, v);
    [w[0], w[1]]
}

/// u32 high word first.
pub fn u32_hi_lo(v: u32) -> [u16; 2] {
    [(v >> 16) as u16, v as u16]
}

/// ASCII text, two characters per register. `ABCD`/`CDAB`: first character
/// in the high byte; `DCBA`/`BADC`: first character in the low byte.
/// Padded with NUL to `chars` characters (rounded up to even).
pub fn encode_ascii(text: &str, chars: usize, order: WordOrder) -> Vec<u16> {
    let mut bytes: Vec<u8> = text.bytes().take(chars).collect();
    bytes.resize(chars.div_ceil(2) * 2, 0);
    bytes
        .chunks(2)
        .map(|c| match order {
            WordOrder::ABCD | WordOrder::CDAB => u16::from_be_bytes([c[0], c[1]]),
            WordOrder::DCBA | WordOrder::BADC => u16::from_le_bytes([c[0], c[1]]),
        })
        .collect()
}

/// Inverse of [`encode_ascii`]; trailing NULs are removed.
pub fn decode_ascii(words: &[u16], order: WordOrder) -> String {
    let mut bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| match order {
            WordOrder::ABCD | WordOrder::CDAB => w.to_be_bytes(),
            WordOrder::DCBA | WordOrder::BADC => w.to_le_bytes(),
        })
        .collect();
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_one_and_a_half_in_all_orders() {
        // 1.5f32 = 0x3FC00000
        assert_eq!(
            encode(NumType::F32, WordOrder::ABCD, 1.5),
            vec![0x3FC0, 0x0000]
        );
        assert_eq!(
            encode(NumType::F32, WordOrder::DCBA, 1.5),
            vec![0x0000, 0xC03F]
        );
        assert_eq!(
            encode(NumType::F32, WordOrder::BADC, 1.5),
            vec![0xC03F, 0x0000]
        );
        assert_eq!(
            encode(NumType::F32, WordOrder::CDAB, 1.5),
            vec![0x0000, 0x3FC0]
        );
        // CDAB words read as ABCD are a denormal: garbage, not 1.5
        let misread = decode(NumType::F32, WordOrder::ABCD, &[0x0000, 0x3FC0]);
        assert!(misread.abs() < 1e-30);
    }

    #[test]
    fn u32_and_u64_orders() {
        assert_eq!(
            encode(NumType::U32, WordOrder::ABCD, 305419896.0),
            vec![0x1234, 0x5678]
        );
        assert_eq!(
            encode(NumType::U32, WordOrder::DCBA, 305419896.0),
            vec![0x7856, 0x3412]
        );
        assert_eq!(
            encode(NumType::U32, WordOrder::BADC, 305419896.0),
            vec![0x3412, 0x7856]
        );
        assert_eq!(
            encode(NumType::U32, WordOrder::CDAB, 305419896.0),
            vec![0x5678, 0x1234]
        );
        let v = 0x0011_2233_4455_6677u64 as f64; // < 2^53, exact in f64
        assert_eq!(
            encode(NumType::U64, WordOrder::ABCD, v),
            vec![0x0011, 0x2233, 0x4455, 0x6677]
        );
        assert_eq!(
            encode(NumType::U64, WordOrder::CDAB, v),
            vec![0x6677, 0x4455, 0x2233, 0x0011]
        );
        assert_eq!(
            encode(NumType::U64, WordOrder::DCBA, v),
            vec![0x7766, 0x5544, 0x3322, 0x1100]
        );
        assert_eq!(
            encode(NumType::U64, WordOrder::BADC, v),
            vec![0x1100, 0x3322, 0x5544, 0x7766]
        );
        assert_eq!(encode(NumType::I16, WordOrder::ABCD, -2.0), vec![0xFFFE]);
        assert_eq!(
            encode(NumType::U16, WordOrder::BADC, 0x1234 as f64),
            vec![0x3412]
        );
        assert_eq!(
            encode(NumType::U16, WordOrder::CDAB, 0x1234 as f64),
            vec![0x1234]
        );
    }

    #[test]
    fn round_trip_all_types_and_orders() {
        let cases: &[(NumType, f64)] = &[
            (NumType::U16, 50000.0),
            (NumType::I16, -1234.0),
            (NumType::U32, 4_000_000_000.0),
            (NumType::I32, -123456789.0),
            (NumType::U64, 1234567890123456.0),
            (NumType::I64, -1234567890123456.0),
            (NumType::F32, -1234.5),
            (NumType::F64, std::f64::consts::PI),
        ];
        for &(ty, v) in cases {
            for order in WordOrder::ALL {
                let w = encode(ty, order, v);
                assert_eq!(w.len(), ty.words());
                assert_eq!(decode(ty, order, &w), v, "{ty:?} {order}");
            }
        }
    }

    #[test]
    fn ascii() {
        assert_eq!(encode_ascii("AB", 2, WordOrder::ABCD), vec![0x4142]);
        assert_eq!(encode_ascii("AB", 2, WordOrder::BADC), vec![0x4241]);
        let w = encode_ascii("RISKGATE01", 10, WordOrder::ABCD);
        assert_eq!(w.len(), 5);
        assert_eq!(decode_ascii(&w, WordOrder::ABCD), "RISKGATE01");
        assert_eq!(
            decode_ascii(&encode_ascii("abc", 4, WordOrder::BADC), WordOrder::BADC),
            "abc"
        );
    }
}
