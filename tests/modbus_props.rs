//! Property tests of the Modbus value codec (`source::modbus::decode`).
//!
//! The registers a value should occupy are laid out here by a test-side
//! encoder written from the byte-order definitions (`A B C D` of the
//! big-endian value, and where each byte lands on the wire), not by calling
//! the crate: a decoder and an encoder that shared a wrong permutation would
//! agree with each other and still read every device wrongly.
//!
//! Bounded case counts (256 per property) keep `cargo test` fast.

use proptest::prelude::*;
use riskgate::config::{ByteOrder, DataType, RegisterKind};
use riskgate::model::Value;
use riskgate::source::modbus::config::ModbusPoint;
use riskgate::source::modbus::decode::{decode, decode_bit, encode, encode_bit, set_bit, width};

const ORDERS: [ByteOrder; 4] = [
    ByteOrder::ABCD,
    ByteOrder::DCBA,
    ByteOrder::BADC,
    ByteOrder::CDAB,
];

/// Wire words of a value whose big-endian bytes are `be` (A B C D …):
/// - ABCD: the bytes as they are, high word first (Modbus's own order);
/// - DCBA: every byte reversed (fully little-endian);
/// - BADC: the two bytes of each word swapped, words in order;
/// - CDAB: the words reversed, bytes big-endian inside each.
///
/// Each register goes on the wire high byte first, so a word is the
/// big-endian pair of the two wire bytes at its place.
fn layout(be: &[u8], order: ByteOrder) -> Vec<u16> {
    assert!(be.len().is_multiple_of(2));
    let wire: Vec<u8> = match order {
        ByteOrder::ABCD => be.to_vec(),
        ByteOrder::DCBA => be.iter().rev().copied().collect(),
        ByteOrder::BADC => be.chunks(2).flat_map(|p| [p[1], p[0]]).collect(),
        ByteOrder::CDAB => be.chunks(2).rev().flatten().copied().collect(),
    };
    wire.chunks(2)
        .map(|p| (u16::from(p[0]) << 8) | u16::from(p[1]))
        .collect()
}

fn point(ty: DataType, scale: f64, offset: f64, decimals: Option<u8>) -> ModbusPoint {
    let mut p = ModbusPoint::new("p", RegisterKind::Holding, 0, ty);
    p.scale = scale;
    p.offset = offset;
    p.decimals = decimals;
    p
}

/// The engineering value of a raw register number, as `docs/config.md`
/// defines it: `raw / 10^decimals * scale + offset`.
fn engineering(raw: f64, p: &ModbusPoint) -> f64 {
    let fixed = match p.decimals {
        Some(d) if d > 0 => raw / 10f64.powi(i32::from(d)),
        _ => raw,
    };
    fixed * p.scale + p.offset
}

fn order() -> impl Strategy<Value = ByteOrder> {
    prop::sample::select(ORDERS.to_vec())
}

/// Scales, offsets and decimals as sites configure them (a 0.1 °C
/// register, a 4-20 mA span with an offset, fixed point with up to the 9
/// decimals validation allows).
fn scaling() -> impl Strategy<Value = (f64, f64, Option<u8>)> {
    (
        prop::sample::select(vec![1.0, 0.1, 0.5, 2.0, 0.01, 10.0, 1.8]),
        prop::sample::select(vec![0.0, -40.0, 273.15, 1000.0, -0.5]),
        prop::option::of(0u8..=9),
    )
}

const INT_TYPES: [DataType; 6] = [
    DataType::U16,
    DataType::I16,
    DataType::U32,
    DataType::I32,
    DataType::U64,
    DataType::I64,
];

/// An integer raw value of `ty` with its big-endian bytes. `exact_64`
/// keeps 64-bit values to magnitudes whose round trip through f64 with a
/// scale stays within half a unit (≤ 2^40); without scaling any f64-exact
/// 64-bit number is allowed.
fn int_raw(ty: DataType, scaled: bool) -> BoxedStrategy<(f64, Vec<u8>)> {
    match ty {
        DataType::U16 => any::<u16>()
            .prop_map(|v| (f64::from(v), v.to_be_bytes().to_vec()))
            .boxed(),
        DataType::I16 => any::<i16>()
            .prop_map(|v| (f64::from(v), v.to_be_bytes().to_vec()))
            .boxed(),
        DataType::U32 => any::<u32>()
            .prop_map(|v| (f64::from(v), v.to_be_bytes().to_vec()))
            .boxed(),
        DataType::I32 => any::<i32>()
            .prop_map(|v| (f64::from(v), v.to_be_bytes().to_vec()))
            .boxed(),
        DataType::U64 if scaled => (0u64..(1 << 40))
            .prop_map(|v| (v as f64, v.to_be_bytes().to_vec()))
            .boxed(),
        // A 53-bit mantissa shifted anywhere in the 64 bits: exact in f64.
        DataType::U64 => (0u64..(1 << 53), 0u32..=11)
            .prop_map(|(m, k)| {
                let v = m << k;
                (v as f64, v.to_be_bytes().to_vec())
            })
            .boxed(),
        DataType::I64 if scaled => (-(1i64 << 40)..(1i64 << 40))
            .prop_map(|v| (v as f64, v.to_be_bytes().to_vec()))
            .boxed(),
        DataType::I64 => (-(1i64 << 52)..(1i64 << 52), 0u32..=10)
            .prop_map(|(m, k)| {
                let v = m << k;
                (v as f64, v.to_be_bytes().to_vec())
            })
            .boxed(),
        _ => unreachable!("integer types only"),
    }
}

fn int_case(scaled: bool) -> impl Strategy<Value = (DataType, f64, Vec<u8>)> {
    prop::sample::select(INT_TYPES.to_vec())
        .prop_flat_map(move |ty| int_raw(ty, scaled).prop_map(move |(raw, be)| (ty, raw, be)))
}

/// Any point the decoder could be handed, valid or not: every register
/// kind and type, any bit, length, decimals, scale and offset.
fn any_point() -> impl Strategy<Value = ModbusPoint> {
    let kind = prop::sample::select(vec![
        RegisterKind::Coil,
        RegisterKind::Discrete,
        RegisterKind::Holding,
        RegisterKind::Input,
    ]);
    let ty = prop::sample::select(vec![
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::U64,
        DataType::I64,
        DataType::F32,
        DataType::F64,
        DataType::Bool,
        DataType::Ascii,
    ]);
    (
        kind,
        ty,
        prop::option::of(order()),
        prop::option::of(any::<u8>()),
        prop::option::of(0u16..=130),
        prop::option::of(any::<u8>()),
        any::<f64>(),
        any::<f64>(),
    )
        .prop_map(|(kind, ty, bo, bit, length, decimals, scale, offset)| {
            let mut p = ModbusPoint::new("p", kind, 0, ty);
            p.byte_order = bo;
            p.bit = bit;
            p.length = length;
            p.decimals = decimals;
            p.scale = scale;
            p.offset = offset;
            p
        })
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f64>().prop_map(Value::Num),
        any::<bool>().prop_map(Value::Bool),
        ".{0,300}".prop_map(Value::Text),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Integer registers laid out by the test decode to
    /// `raw / 10^decimals * scale + offset`, in every order, and the
    /// encoder writes back exactly those registers.
    #[test]
    fn integers_decode_and_encode_to_the_defined_layout(
        (ty, raw, be) in int_case(true),
        order in order(),
        (scale, offset, decimals) in scaling(),
    ) {
        let p = point(ty, scale, offset, decimals);
        let words = layout(&be, order);
        prop_assert_eq!(words.len(), usize::from(width(&p)));
        let v = engineering(raw, &p);
        prop_assert_eq!(decode(&p, order, &words), Ok(Value::Num(v)));
        prop_assert_eq!(encode(&p, order, &Value::Num(v)), Ok(words));
    }

    /// Without scaling, every 64-bit value that f64 holds exactly (not
    /// only small ones) survives the trip both ways.
    #[test]
    fn wide_integers_round_trip_unscaled(
        (ty, raw, be) in int_case(false),
        order in order(),
    ) {
        let p = point(ty, 1.0, 0.0, None);
        let words = layout(&be, order);
        prop_assert_eq!(decode(&p, order, &words), Ok(Value::Num(raw)));
        prop_assert_eq!(encode(&p, order, &Value::Num(raw)), Ok(words));
    }

    /// Any finite f32 in the registers reads as the shortest decimal that
    /// names it (a detector's 1.62 is 1.62), and writing that value puts
    /// the same f32 back; NaN and infinities are errors, never numbers.
    #[test]
    fn f32_reads_as_its_decimal_and_writes_back(bits in any::<u32>(), order in order()) {
        let x = f32::from_bits(bits);
        let p = point(DataType::F32, 1.0, 0.0, None);
        let words = layout(&x.to_be_bytes(), order);
        let got = decode(&p, order, &words);
        if !x.is_finite() {
            prop_assert!(got.is_err(), "{x} gave {got:?}");
            return Ok(());
        }
        let expected: f64 = x.to_string().parse().unwrap();
        prop_assert_eq!(&got, &Ok(Value::Num(expected)));
        let back = encode(&p, order, &Value::Num(expected)).unwrap();
        let Ok(Value::Num(again)) = decode(&p, order, &back) else {
            panic!("{back:04X?} does not decode")
        };
        prop_assert_eq!(again, expected);
        // -0.0 + 0.0 (the offset) is +0.0: the value, not the sign bit, is
        // what a point carries.
        if x != 0.0 {
            prop_assert_eq!(back, words);
        }
    }

    /// Any f64 bit pattern: finite ones decode to themselves and encode to
    /// the same registers; the rest are errors.
    #[test]
    fn f64_round_trips_bit_for_bit(bits in any::<u64>(), order in order()) {
        let x = f64::from_bits(bits);
        let p = point(DataType::F64, 1.0, 0.0, None);
        let words = layout(&x.to_be_bytes(), order);
        let got = decode(&p, order, &words);
        if !x.is_finite() {
            prop_assert!(got.is_err(), "{x} gave {got:?}");
            return Ok(());
        }
        prop_assert_eq!(&got, &Ok(Value::Num(x + 0.0)));
        if x != 0.0 {
            prop_assert_eq!(encode(&p, order, &Value::Num(x)), Ok(words));
        }
    }

    /// Scaled floats: what is written reads back as the value written, to
    /// the precision of the register type.
    #[test]
    fn scaled_floats_read_back_what_was_written(
        x32 in prop::num::f32::NORMAL | prop::num::f32::ZERO,
        x64 in prop::num::f64::NORMAL | prop::num::f64::ZERO,
        order in order(),
        (scale, offset, _) in scaling(),
    ) {
        // Keep the engineering value and its raw form inside f32's range.
        let x32 = x32.clamp(-1e30, 1e30);
        let x64 = x64.clamp(-1e300, 1e300);
        for (ty, raw, rel) in [
            (DataType::F32, f64::from(x32), 1e-6),
            (DataType::F64, x64, 1e-12),
        ] {
            let p = point(ty, scale, offset, None);
            let v = raw * scale + offset;
            let words = encode(&p, order, &Value::Num(v)).unwrap();
            prop_assert_eq!(words.len(), usize::from(width(&p)));
            let Ok(Value::Num(back)) = decode(&p, order, &words) else {
                panic!("{ty:?} {v}: {words:04X?} does not decode")
            };
            let tol = rel * (v.abs() + offset.abs()) + 1e-300;
            prop_assert!((back - v).abs() <= tol, "{ty:?} {order:?} wrote {v}, read {back}");
        }
    }

    /// A bool in one bit of a register: read from that bit only, and
    /// written by read-modify-write without touching the other 15.
    #[test]
    fn register_bits_read_and_write_one_bit(current in any::<u16>(), bit in 0u8..16, on in any::<bool>()) {
        let mut p = point(DataType::Bool, 1.0, 0.0, None);
        p.bit = Some(bit);
        let expected = (current >> bit) & 1 == 1;
        prop_assert_eq!(decode(&p, ByteOrder::ABCD, &[current]), Ok(Value::Bool(expected)));
        let new = set_bit(&p, current, &Value::Bool(on)).unwrap();
        prop_assert_eq!(decode(&p, ByteOrder::ABCD, &[new]), Ok(Value::Bool(on)));
        let mask = 1u16 << bit;
        prop_assert_eq!(new & !mask, current & !mask, "other bits unchanged");
    }

    /// Coils and discrete inputs: exactly one bit; 0/1 and false/true write.
    #[test]
    fn coils_are_one_bit(bits in prop::collection::vec(any::<bool>(), 0..4), on in any::<bool>()) {
        let p = ModbusPoint::new("p", RegisterKind::Coil, 0, DataType::Bool);
        let got = decode_bit(&p, &bits);
        if bits.len() == 1 {
            prop_assert_eq!(got, Ok(Value::Bool(bits[0])));
        } else {
            prop_assert!(got.is_err());
        }
        prop_assert_eq!(encode_bit(&Value::Bool(on)), Ok(on));
        prop_assert_eq!(encode_bit(&Value::Num(if on { 1.0 } else { 0.0 })), Ok(on));
    }

    /// ASCII: two characters per register, the first in the high byte for
    /// ABCD/CDAB and in the low byte for BADC/DCBA (word order does not
    /// apply to a string), NUL padded; trailing spaces are padding too.
    #[test]
    fn ascii_round_trips(
        registers in 1u16..=20,
        text in "[ -~]{0,40}",
        order in order(),
    ) {
        let text: String = text.chars().take(usize::from(registers) * 2).collect();
        let text = text.trim_end_matches(' ').to_string();
        let mut p = point(DataType::Ascii, 1.0, 0.0, None);
        p.length = Some(registers);
        let mut bytes = text.as_bytes().to_vec();
        bytes.resize(usize::from(registers) * 2, 0);
        let low_first = matches!(order, ByteOrder::BADC | ByteOrder::DCBA);
        let words: Vec<u16> = bytes
            .chunks(2)
            .map(|c| {
                let (hi, lo) = if low_first { (c[1], c[0]) } else { (c[0], c[1]) };
                (u16::from(hi) << 8) | u16::from(lo)
            })
            .collect();
        prop_assert_eq!(decode(&p, order, &words), Ok(Value::Text(text.clone())));
        prop_assert_eq!(encode(&p, order, &Value::Text(text)), Ok(words));
    }

    /// Whatever the point and the registers, the decoder answers with a
    /// value or an error (bad quality), never a panic; a value it gives is
    /// never NaN or infinite. The same for the encoder with any value.
    #[test]
    fn the_codec_never_panics(
        p in any_point(),
        device_order in order(),
        words in prop::collection::vec(any::<u16>(), 0..12),
        bits in prop::collection::vec(any::<bool>(), 0..3),
        value in any_value(),
    ) {
        if let Ok(Value::Num(v)) = decode(&p, device_order, &words) {
            prop_assert!(v.is_finite(), "{v}");
        }
        let _ = decode_bit(&p, &bits);
        if let Ok(words) = encode(&p, device_order, &value) {
            prop_assert_eq!(words.len(), usize::from(width(&p)));
        }
        let _ = encode_bit(&value);
        let _ = set_bit(&p, words.first().copied().unwrap_or(0), &value);
    }

    /// The decoder fed the right number of registers of random content
    /// (not only wrong lengths) for every type and order.
    #[test]
    fn any_registers_of_the_right_width_decode_or_refuse(
        p in any_point(),
        device_order in order(),
        seed in prop::collection::vec(any::<u16>(), 130),
    ) {
        let n = usize::from(width(&p));
        if let Ok(Value::Num(v)) = decode(&p, device_order, &seed[..n.min(seed.len())]) {
            prop_assert!(v.is_finite(), "{v}");
        }
    }
}
