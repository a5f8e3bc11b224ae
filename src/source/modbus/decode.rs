//! Turning Modbus registers into point values and back.
//!
//! Everything here is pure: no I/O, no clock. The poller hands a point and
//! the words (or bits) of that point, cut out of a larger read, and gets a
//! [`Value`] or a [`DecodeError`] that becomes bad quality. Writes go the
//! other way through [`encode`], with the same byte order, so that a value
//! written and read back compares equal.
//!
//! Byte orders are named by where the bytes of the big-endian value
//! `A B C D` (or `A..H` for 64-bit values) land on the wire; see
//! [`ByteOrder`]. They are applied to the whole value, so a 64-bit `CDAB`
//! value has its four words in reverse order and a one-register `DCBA`
//! value has its two bytes swapped.

use thiserror::Error;

use super::config::ModbusPoint as Point;
use crate::config::{ByteOrder, DataType, RegisterKind};
use crate::model::Value;

/// Why some registers could not be turned into a value. Becomes
/// `Quality::Bad(BadReason::Decode(..))`, never a number.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("expected {expected} register(s), got {got}")]
    Length { expected: usize, got: usize },
    #[error("expected 1 bit, got {got}")]
    BitLength { got: usize },
    #[error("the registers hold {0}, not a finite number")]
    NotFinite(f64),
    #[error("a bool from a register needs `bit` = 0-15")]
    NoBit,
}

/// Why a value cannot be written to a point.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EncodeError {
    #[error("{value} is not a number")]
    NotNumeric { value: Value },
    #[error("{value} is not a boolean (true/false or 0/1)")]
    NotBool { value: Value },
    #[error("{value} is not text")]
    NotText { value: Value },
    #[error("{raw} is not a finite number after scale/offset/decimals")]
    NotFinite { raw: f64 },
    #[error("{raw} is outside the range of {ty:?}")]
    OutOfRange { raw: f64, ty: DataType },
    #[error("text of {len} bytes does not fit in {registers} register(s)")]
    TextTooLong { len: usize, registers: u16 },
    #[error("text holds a non-ASCII character")]
    NotAscii,
    #[error("scale is zero: no register value gives this point a value")]
    ZeroScale,
    #[error("a bit of a register is written by read-modify-write (see `set_bit`)")]
    BitOfRegister,
    #[error("a {kind:?} is a single bit; encode it with `encode_bit`")]
    BitKind { kind: RegisterKind },
}

/// The point's type (resolved by validation).
pub fn data_type(point: &Point) -> DataType {
    point.data_type
}

/// How many registers (or bits, for coils/discretes) the point occupies.
pub fn width(point: &Point) -> u16 {
    if point.register.is_bit() {
        return 1;
    }
    match data_type(point) {
        DataType::Ascii => point.length.unwrap_or(1),
        t => t.words(),
    }
}

/// The byte order that applies to this point: its own, else the device's.
pub fn effective_order(point: &Point, device_order: ByteOrder) -> ByteOrder {
    point.byte_order.unwrap_or(device_order)
}

/// Decodes the registers of one point (exactly [`width`] words, starting at
/// the point's address) into its engineering value.
pub fn decode(point: &Point, device_order: ByteOrder, words: &[u16]) -> Result<Value, DecodeError> {
    let expected = usize::from(width(point));
    if words.len() != expected {
        return Err(DecodeError::Length {
            expected,
            got: words.len(),
        });
    }
    let order = effective_order(point, device_order);
    match data_type(point) {
        DataType::Bool => {
            let bit = point.bit.filter(|b| *b < 16).ok_or(DecodeError::NoBit)?;
            Ok(Value::Bool(words[0] >> bit & 1 == 1))
        }
        DataType::Ascii => Ok(Value::Text(ascii_from_words(words, order))),
        ty => {
            // `width` trusts validation to give bit registers the type
            // `bool`; a number type there would be one word short, so the
            // type's own width is checked too (an error, never a panic).
            if words.len() != usize::from(ty.words()) {
                return Err(DecodeError::Length {
                    expected: usize::from(ty.words()),
                    got: words.len(),
                });
            }
            let raw = raw_number(ty, &value_bytes(words, order));
            if !raw.is_finite() {
                return Err(DecodeError::NotFinite(raw));
            }
            let fixed = match point.decimals {
                // Divide rather than multiply by 0.1^d: the quotient of two
                // exact numbers is correctly rounded, so -1234567 with 3
                // decimals gives exactly the literal -1234.567.
                Some(d) if d > 0 => raw / 10f64.powi(i32::from(d)),
                _ => raw,
            };
            let v = fixed * point.scale + point.offset;
            if v.is_finite() {
                Ok(Value::Num(v))
            } else {
                Err(DecodeError::NotFinite(v))
            }
        }
    }
}

/// Decodes a coil or discrete input (exactly one bit).
pub fn decode_bit(_point: &Point, bits: &[bool]) -> Result<Value, DecodeError> {
    match bits {
        [b] => Ok(Value::Bool(*b)),
        _ => Err(DecodeError::BitLength { got: bits.len() }),
    }
}

/// Encodes a value for writing a register point: the inverse of [`decode`]
/// (`(v - offset) / scale`, times 10^decimals, rounded and range-checked
/// for integer types), laid out in the same byte order.
///
/// A `bool` taken from one bit of a register cannot be encoded alone,
/// because the other 15 bits are not known here: see [`set_bit`].
pub fn encode(
    point: &Point,
    device_order: ByteOrder,
    value: &Value,
) -> Result<Vec<u16>, EncodeError> {
    let kind = point.register;
    if kind.is_bit() {
        return Err(EncodeError::BitKind { kind });
    }
    let order = effective_order(point, device_order);
    match data_type(point) {
        DataType::Bool => Err(EncodeError::BitOfRegister),
        DataType::Ascii => ascii_to_words(value, point.length.unwrap_or(1), order),
        ty => {
            let raw = raw_for_write(point, value)?;
            Ok(words_from_bytes(&number_bytes(ty, raw)?, order))
        }
    }
}

/// The value of a coil write: `true`/`false`, or the numbers 1/0.
pub fn encode_bit(value: &Value) -> Result<bool, EncodeError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Num(v) if *v == 1.0 => Ok(true),
        Value::Num(v) if *v == 0.0 => Ok(false),
        _ => Err(EncodeError::NotBool {
            value: value.clone(),
        }),
    }
}

/// The new content of the register holding a `bool` bit point, given its
/// current content: the read-modify-write of a single bit.
pub fn set_bit(point: &Point, current: u16, value: &Value) -> Result<u16, EncodeError> {
    let bit = point
        .bit
        .filter(|b| *b < 16)
        .ok_or(EncodeError::BitOfRegister)?;
    let mask = 1u16 << bit;
    Ok(if encode_bit(value)? {
        current | mask
    } else {
        current & !mask
    })
}

/// Wire words → the value's big-endian bytes.
fn value_bytes(words: &[u16], order: ByteOrder) -> Vec<u8> {
    match order {
        ByteOrder::ABCD => words.iter().flat_map(|w| w.to_be_bytes()).collect(),
        ByteOrder::DCBA => words.iter().rev().flat_map(|w| w.to_le_bytes()).collect(),
        ByteOrder::BADC => words.iter().flat_map(|w| w.to_le_bytes()).collect(),
        ByteOrder::CDAB => words.iter().rev().flat_map(|w| w.to_be_bytes()).collect(),
    }
}

/// The value's big-endian bytes → wire words (inverse of [`value_bytes`]).
fn words_from_bytes(be: &[u8], order: ByteOrder) -> Vec<u16> {
    let pairs = be.chunks_exact(2).map(|c| [c[0], c[1]]);
    match order {
        ByteOrder::ABCD => pairs.map(u16::from_be_bytes).collect(),
        ByteOrder::BADC => pairs.map(u16::from_le_bytes).collect(),
        ByteOrder::DCBA => pairs.rev().map(u16::from_le_bytes).collect(),
        ByteOrder::CDAB => pairs.rev().map(u16::from_be_bytes).collect(),
    }
}

/// An f32 widened to the f64 of its shortest decimal form: a detector that
/// sends 1.62 is stored and sent as 1.62, not 1.6200000047683716. NaN and
/// infinities pass through (they are refused later).
fn f32_as_decimal(v: f32) -> f64 {
    if !v.is_finite() {
        return f64::from(v);
    }
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// The raw number held by big-endian bytes of the right length for `ty`.
fn raw_number(ty: DataType, b: &[u8]) -> f64 {
    let arr2 = || [b[0], b[1]];
    let arr4 = || [b[0], b[1], b[2], b[3]];
    let arr8 = || [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
    match ty {
        DataType::U16 => f64::from(u16::from_be_bytes(arr2())),
        DataType::I16 => f64::from(i16::from_be_bytes(arr2())),
        DataType::U32 => f64::from(u32::from_be_bytes(arr4())),
        DataType::I32 => f64::from(i32::from_be_bytes(arr4())),
        DataType::U64 => u64::from_be_bytes(arr8()) as f64,
        DataType::I64 => i64::from_be_bytes(arr8()) as f64,
        DataType::F32 => f32_as_decimal(f32::from_be_bytes(arr4())),
        DataType::F64 => f64::from_be_bytes(arr8()),
        DataType::Bool | DataType::Ascii => unreachable!("not a number type"),
    }
}

/// The raw register number for an engineering value: undoes offset, scale
/// and decimals.
fn raw_for_write(point: &Point, value: &Value) -> Result<f64, EncodeError> {
    let v = match value {
        Value::Num(v) => *v,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Text(_) => {
            return Err(EncodeError::NotNumeric {
                value: value.clone(),
            });
        }
    };
    if point.scale == 0.0 {
        return Err(EncodeError::ZeroScale);
    }
    let mut raw = (v - point.offset) / point.scale;
    if let Some(d) = point.decimals.filter(|d| *d > 0) {
        raw *= 10f64.powi(i32::from(d));
    }
    if raw.is_finite() {
        Ok(raw)
    } else {
        Err(EncodeError::NotFinite { raw })
    }
}

/// Big-endian bytes of `raw` as `ty`, rounding integers and refusing values
/// out of the type's range (a write must never wrap around silently).
fn number_bytes(ty: DataType, raw: f64) -> Result<Vec<u8>, EncodeError> {
    let out_of_range = || EncodeError::OutOfRange { raw, ty };
    let int = |min: f64, max_excl: f64| {
        let r = raw.round();
        if r >= min && r < max_excl {
            Ok(r)
        } else {
            Err(out_of_range())
        }
    };
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    Ok(match ty {
        DataType::U16 => (int(0.0, 65_536.0)? as u16).to_be_bytes().to_vec(),
        DataType::I16 => (int(-32_768.0, 32_768.0)? as i16).to_be_bytes().to_vec(),
        DataType::U32 => (int(0.0, 4_294_967_296.0)? as u32).to_be_bytes().to_vec(),
        DataType::I32 => (int(-2_147_483_648.0, 2_147_483_648.0)? as i32)
            .to_be_bytes()
            .to_vec(),
        DataType::U64 => (int(0.0, 2.0 * TWO_63)? as u64).to_be_bytes().to_vec(),
        DataType::I64 => (int(-TWO_63, TWO_63)? as i64).to_be_bytes().to_vec(),
        DataType::F32 if raw.abs() > f64::from(f32::MAX) => return Err(out_of_range()),
        DataType::F32 => (raw as f32).to_be_bytes().to_vec(),
        DataType::F64 => raw.to_be_bytes().to_vec(),
        DataType::Bool | DataType::Ascii => unreachable!("not a number type"),
    })
}

/// Two characters per register, in address order. `ABCD`/`CDAB` put the
/// first character in the high byte; `BADC`/`DCBA` in the low byte (the
/// word order does not apply to a string). Ends at the first NUL; trailing
/// spaces are padding.
fn ascii_from_words(words: &[u16], order: ByteOrder) -> String {
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| {
            if low_byte_first(order) {
                w.to_le_bytes()
            } else {
                w.to_be_bytes()
            }
        })
        .take_while(|b| *b != 0)
        .collect();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches(' ')
        .to_string()
}

fn ascii_to_words(
    value: &Value,
    registers: u16,
    order: ByteOrder,
) -> Result<Vec<u16>, EncodeError> {
    let Value::Text(s) = value else {
        return Err(EncodeError::NotText {
            value: value.clone(),
        });
    };
    if !s.is_ascii() {
        return Err(EncodeError::NotAscii);
    }
    let capacity = usize::from(registers) * 2;
    if s.len() > capacity {
        return Err(EncodeError::TextTooLong {
            len: s.len(),
            registers,
        });
    }
    let mut bytes = s.as_bytes().to_vec();
    bytes.resize(capacity, 0);
    Ok(bytes
        .chunks_exact(2)
        .map(|c| {
            if low_byte_first(order) {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        })
        .collect())
}

fn low_byte_first(order: ByteOrder) -> bool {
    matches!(order, ByteOrder::BADC | ByteOrder::DCBA)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ByteOrder::{ABCD, BADC, CDAB, DCBA};

    /// A holding-register point of `ty` at address 0, default scale.
    pub(crate) fn point(ty: DataType) -> Point {
        Point::new("p", RegisterKind::Holding, 0, ty)
    }

    fn num(ty: DataType, order: ByteOrder, words: &[u16]) -> f64 {
        match decode(&point(ty), order, words) {
            Ok(Value::Num(v)) => v,
            other => panic!("{ty:?} {order:?} {words:04X?}: {other:?}"),
        }
    }

    /// Checks one value in all four orders against hand-written words.
    fn check(ty: DataType, expected: f64, cases: [(ByteOrder, &[u16]); 4]) {
        for (order, words) in cases {
            assert_eq!(
                num(ty, order, words),
                expected,
                "{ty:?} {order:?} {words:04X?}"
            );
            let back = encode(&point(ty), order, &Value::Num(expected)).unwrap();
            assert_eq!(back, words, "encode {ty:?} {order:?}");
        }
    }

    #[test]
    fn u16_all_orders() {
        // 4660 = 0x1234
        check(
            DataType::U16,
            4660.0,
            [
                (ABCD, &[0x1234]),
                (DCBA, &[0x3412]),
                (BADC, &[0x3412]),
                (CDAB, &[0x1234]),
            ],
        );
        check(
            DataType::U16,
            50000.0,
            [
                (ABCD, &[0xC350]),
                (DCBA, &[0x50C3]),
                (BADC, &[0x50C3]),
                (CDAB, &[0xC350]),
            ],
        );
    }

    #[test]
    fn i16_all_orders() {
        // -1234 = 0xFB2E
        check(
            DataType::I16,
            -1234.0,
            [
                (ABCD, &[0xFB2E]),
                (DCBA, &[0x2EFB]),
                (BADC, &[0x2EFB]),
                (CDAB, &[0xFB2E]),
            ],
        );
    }

    #[test]
    fn u32_all_orders() {
        // 305419896 = 0x12345678
        check(
            DataType::U32,
            305_419_896.0,
            [
                (ABCD, &[0x1234, 0x5678]),
                (DCBA, &[0x7856, 0x3412]),
                (BADC, &[0x3412, 0x7856]),
                (CDAB, &[0x5678, 0x1234]),
            ],
        );
    }

    #[test]
    fn i32_all_orders() {
        // -123456789 = 0xF8A432EB
        check(
            DataType::I32,
            -123_456_789.0,
            [
                (ABCD, &[0xF8A4, 0x32EB]),
                (DCBA, &[0xEB32, 0xA4F8]),
                (BADC, &[0xA4F8, 0xEB32]),
                (CDAB, &[0x32EB, 0xF8A4]),
            ],
        );
    }

    #[test]
    fn u64_all_orders() {
        // 0x0001_0203_0405_0607 = 283686952306183 (exact in f64)
        check(
            DataType::U64,
            283_686_952_306_183.0,
            [
                (ABCD, &[0x0001, 0x0203, 0x0405, 0x0607]),
                (DCBA, &[0x0706, 0x0504, 0x0302, 0x0100]),
                (BADC, &[0x0100, 0x0302, 0x0504, 0x0706]),
                (CDAB, &[0x0607, 0x0405, 0x0203, 0x0001]),
            ],
        );
    }

    #[test]
    fn i64_all_orders() {
        // -283686952306183 = 0xFFFE_FDFC_FBFA_F9F9
        check(
            DataType::I64,
            -283_686_952_306_183.0,
            [
                (ABCD, &[0xFFFE, 0xFDFC, 0xFBFA, 0xF9F9]),
                (DCBA, &[0xF9F9, 0xFAFB, 0xFCFD, 0xFEFF]),
                (BADC, &[0xFEFF, 0xFCFD, 0xFAFB, 0xF9F9]),
                (CDAB, &[0xF9F9, 0xFBFA, 0xFDFC, 0xFFFE]),
            ],
        );
        check(
            DataType::I64,
            -2.0,
            [
                (ABCD, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]),
                (DCBA, &[0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF]),
                (BADC, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF]),
                (CDAB, &[0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]),
            ],
        );
    }

    #[test]
    fn f32_all_orders() {
        // 1.5 = 0x3FC00000
        check(
            DataType::F32,
            1.5,
            [
                (ABCD, &[0x3FC0, 0x0000]),
                (DCBA, &[0x0000, 0xC03F]),
                (BADC, &[0xC03F, 0x0000]),
                (CDAB, &[0x0000, 0x3FC0]),
            ],
        );
        // -1234.5 = 0xC49A5000
        check(
            DataType::F32,
            -1234.5,
            [
                (ABCD, &[0xC49A, 0x5000]),
                (DCBA, &[0x0050, 0x9AC4]),
                (BADC, &[0x9AC4, 0x0050]),
                (CDAB, &[0x5000, 0xC49A]),
            ],
        );
    }

    #[test]
    fn f64_all_orders() {
        // pi = 0x400921FB54442D18
        check(
            DataType::F64,
            std::f64::consts::PI,
            [
                (ABCD, &[0x4009, 0x21FB, 0x5444, 0x2D18]),
                (DCBA, &[0x182D, 0x4454, 0xFB21, 0x0940]),
                (BADC, &[0x0940, 0xFB21, 0x4454, 0x182D]),
                (CDAB, &[0x2D18, 0x5444, 0x21FB, 0x4009]),
            ],
        );
        // -0.125 = 0xBFC0000000000000
        check(
            DataType::F64,
            -0.125,
            [
                (ABCD, &[0xBFC0, 0, 0, 0]),
                (DCBA, &[0, 0, 0, 0xC0BF]),
                (BADC, &[0xC0BF, 0, 0, 0]),
                (CDAB, &[0, 0, 0, 0xBFC0]),
            ],
        );
    }

    /// The classic trap: big-endian 1.5 read with the words swapped is a
    /// tiny denormal, not 1.5. The decoder must not "guess" the order.
    #[test]
    fn f32_reads_as_its_decimal() {
        assert_eq!(f32_as_decimal(1.62), 1.62);
        assert_eq!(f32_as_decimal(-0.1), -0.1);
        assert_eq!(f32_as_decimal(1.5), 1.5);
        assert!(f32_as_decimal(f32::NAN).is_nan());
    }

    #[test]
    fn f32_word_swap_trap() {
        let v = num(DataType::F32, CDAB, &[0x3FC0, 0x0000]);
        assert_ne!(v, 1.5);
        assert!(v.abs() < 1e-37, "{v}");
        assert_eq!(num(DataType::F32, ABCD, &[0x3FC0, 0x0000]), 1.5);
    }

    #[test]
    fn nan_and_infinity_are_errors() {
        for words in [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000]] {
            assert!(
                matches!(
                    decode(&point(DataType::F32), ABCD, &words),
                    Err(DecodeError::NotFinite(_))
                ),
                "{words:04X?}"
            );
        }
        assert!(matches!(
            decode(&point(DataType::F64), ABCD, &[0x7FF8, 0, 0, 0]),
            Err(DecodeError::NotFinite(_))
        ));
        assert!(matches!(
            encode(&point(DataType::F32), ABCD, &Value::Num(f64::NAN)),
            Err(EncodeError::NotFinite { .. })
        ));
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert_eq!(
            decode(&point(DataType::F32), ABCD, &[0x3FC0]),
            Err(DecodeError::Length {
                expected: 2,
                got: 1
            })
        );
    }

    #[test]
    fn point_order_overrides_device_order() {
        let mut p = point(DataType::F32);
        p.byte_order = Some(CDAB);
        assert_eq!(decode(&p, ABCD, &[0x0000, 0x3FC0]), Ok(Value::Num(1.5)));
    }

    #[test]
    fn scale_and_offset() {
        let mut p = point(DataType::U16);
        p.scale = 0.1;
        p.offset = -40.0;
        // 652 * 0.1 - 40 = 25.2 (a 4-20 mA style temperature)
        let Value::Num(v) = decode(&p, ABCD, &[652]).unwrap() else {
            panic!()
        };
        assert!((v - 25.2).abs() < 1e-9, "{v}");
        assert_eq!(encode(&p, ABCD, &Value::Num(25.2)).unwrap(), vec![652]);
        // below zero after the offset
        let Value::Num(v) = decode(&p, ABCD, &[100]).unwrap() else {
            panic!()
        };
        assert!((v + 30.0).abs() < 1e-9, "{v}");
    }

    #[test]
    fn fixed_point_decimals() {
        let mut p = point(DataType::I32);
        p.decimals = Some(3);
        // -1234567 = 0xFFED2979
        assert_eq!(
            decode(&p, ABCD, &[0xFFED, 0x2979]),
            Ok(Value::Num(-1234.567))
        );
        assert_eq!(
            encode(&p, ABCD, &Value::Num(-1234.567)).unwrap(),
            vec![0xFFED, 0x2979]
        );
        let mut q = point(DataType::U16);
        q.decimals = Some(2);
        q.scale = 2.0;
        q.offset = -1.0;
        // 2345 / 100 * 2 - 1 = 45.9
        let Value::Num(v) = decode(&q, ABCD, &[2345]).unwrap() else {
            panic!()
        };
        assert!((v - 45.9).abs() < 1e-9, "{v}");
        assert_eq!(encode(&q, ABCD, &Value::Num(45.9)).unwrap(), vec![2345]);
    }

    #[test]
    fn bit_of_register() {
        let mut p = point(DataType::Bool);
        p.bit = Some(5);
        // 0x8024: bits 2, 5, 15
        assert_eq!(decode(&p, ABCD, &[0x8024]), Ok(Value::Bool(true)));
        p.bit = Some(3);
        assert_eq!(decode(&p, ABCD, &[0x8024]), Ok(Value::Bool(false)));
        p.bit = Some(15);
        assert_eq!(decode(&p, ABCD, &[0x8024]), Ok(Value::Bool(true)));
        assert_eq!(set_bit(&p, 0x0024, &Value::Bool(true)), Ok(0x8024));
        assert_eq!(set_bit(&p, 0x8024, &Value::Num(0.0)), Ok(0x0024));
        assert_eq!(
            encode(&p, ABCD, &Value::Bool(true)),
            Err(EncodeError::BitOfRegister)
        );
        p.bit = None;
        assert_eq!(decode(&p, ABCD, &[1]), Err(DecodeError::NoBit));
    }

    #[test]
    fn coils_and_discretes() {
        let mut p = point(DataType::Bool);
        p.register = RegisterKind::Coil;
        p.data_type = DataType::Bool;
        assert_eq!(data_type(&p), DataType::Bool);
        assert_eq!(decode_bit(&p, &[true]), Ok(Value::Bool(true)));
        assert_eq!(decode_bit(&p, &[false]), Ok(Value::Bool(false)));
        assert_eq!(decode_bit(&p, &[]), Err(DecodeError::BitLength { got: 0 }));
        assert_eq!(encode_bit(&Value::Num(1.0)), Ok(true));
        assert_eq!(encode_bit(&Value::Bool(false)), Ok(false));
        assert!(encode_bit(&Value::Num(2.0)).is_err());
        assert!(matches!(
            encode(&p, ABCD, &Value::Bool(true)),
            Err(EncodeError::BitKind { .. })
        ));
    }

    #[test]
    fn ascii() {
        let mut p = point(DataType::Ascii);
        p.length = Some(5);
        // "RISKGATE01": R=52 I=49 S=53 K=4B G=47 A=41 T=54 E=45 0=30 1=31
        let abcd = [0x5249, 0x534B, 0x4741, 0x5445, 0x3031];
        let badc = [0x4952, 0x4B53, 0x4147, 0x4554, 0x3130];
        assert_eq!(
            decode(&p, ABCD, &abcd),
            Ok(Value::Text("RISKGATE01".into()))
        );
        assert_eq!(
            decode(&p, CDAB, &abcd),
            Ok(Value::Text("RISKGATE01".into()))
        );
        assert_eq!(
            decode(&p, BADC, &badc),
            Ok(Value::Text("RISKGATE01".into()))
        );
        assert_eq!(
            decode(&p, DCBA, &badc),
            Ok(Value::Text("RISKGATE01".into()))
        );
        // NUL and space padding are trimmed
        p.length = Some(3);
        assert_eq!(
            decode(&p, ABCD, &[0x4142, 0x4300, 0x0000]),
            Ok(Value::Text("ABC".into()))
        );
        assert_eq!(
            decode(&p, ABCD, &[0x4142, 0x2020, 0x2020]),
            Ok(Value::Text("AB".into()))
        );
        assert_eq!(
            encode(&p, ABCD, &Value::Text("ABC".into())).unwrap(),
            vec![0x4142, 0x4300, 0x0000]
        );
        assert_eq!(
            encode(&p, BADC, &Value::Text("ABC".into())).unwrap(),
            vec![0x4241, 0x0043, 0x0000]
        );
        assert!(matches!(
            encode(&p, ABCD, &Value::Text("ABCDEFG".into())),
            Err(EncodeError::TextTooLong { .. })
        ));
        assert_eq!(
            encode(&p, ABCD, &Value::Text("气体".into())),
            Err(EncodeError::NotAscii)
        );
    }

    #[test]
    fn encode_range_checks_and_rounds() {
        let p = point(DataType::U16);
        assert_eq!(
            encode(&p, ABCD, &Value::Num(65535.4)).unwrap(),
            vec![0xFFFF]
        );
        assert!(matches!(
            encode(&p, ABCD, &Value::Num(65535.6)),
            Err(EncodeError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode(&p, ABCD, &Value::Num(-1.0)),
            Err(EncodeError::OutOfRange { .. })
        ));
        let q = point(DataType::I16);
        assert_eq!(
            encode(&q, ABCD, &Value::Num(-32768.0)).unwrap(),
            vec![0x8000]
        );
        assert!(matches!(
            encode(&q, ABCD, &Value::Num(32768.0)),
            Err(EncodeError::OutOfRange { .. })
        ));
        assert_eq!(
            encode(&q, ABCD, &Value::Num(2.5)).unwrap(),
            vec![3],
            "half away from zero"
        );
        assert!(matches!(
            encode(&point(DataType::F32), ABCD, &Value::Num(1e39)),
            Err(EncodeError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode(&p, ABCD, &Value::Text("1".into())),
            Err(EncodeError::NotNumeric { .. })
        ));
        assert_eq!(encode(&p, ABCD, &Value::Bool(true)).unwrap(), vec![1]);
    }

    #[test]
    fn round_trip_every_type_and_order() {
        let cases: &[(DataType, &[f64])] = &[
            (DataType::U16, &[0.0, 1.0, 65535.0]),
            (DataType::I16, &[-32768.0, -1.0, 32767.0]),
            (DataType::U32, &[0.0, 4_294_967_295.0, 70000.0]),
            (
                DataType::I32,
                &[-2_147_483_648.0, -70000.0, 2_147_483_647.0],
            ),
            (DataType::U64, &[0.0, 9_007_199_254_740_992.0]),
            (DataType::I64, &[-9_007_199_254_740_992.0, -1.0]),
            (DataType::F32, &[-2.5, 100.25, 0.0]),
            (DataType::F64, &[-98765.4321, 1e300, -0.0]),
        ];
        for &(ty, values) in cases {
            for order in [ABCD, DCBA, BADC, CDAB] {
                for &v in values {
                    let mut p = point(ty);
                    p.scale = 0.5;
                    p.offset = 10.0;
                    let engineering = v * 0.5 + 10.0;
                    let words = encode(&p, order, &Value::Num(engineering)).unwrap();
                    assert_eq!(words.len(), usize::from(width(&p)));
                    assert_eq!(
                        decode(&p, order, &words),
                        Ok(Value::Num(engineering)),
                        "{ty:?} {order:?} {v}"
                    );
                }
            }
        }
    }
}
