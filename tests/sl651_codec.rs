//! SL 651 frames between two independent codecs: firmware-sim's station
//! encoder and riskgate's decoder (issue 12 item 7).
//!
//! Golden frames: the domain notes (standards-research.md §8) record a
//! real device's test report ending `…03E43B`, but not its other bytes, so
//! it cannot be decoded here. Four up frames and two answers published in
//! a public walk-through of the protocol are decoded (and the answers
//! re-encoded) byte for byte at the end of this file. The golden frame
//! below was produced by firmware-sim's encoder and its CRC checked by
//! hand against the draft's rule (A001H, init FFFFH, high byte first),
//! written out byte by byte so that a change in either codec shows.

use chrono::{NaiveDate, NaiveDateTime};
use firmware_sim::sl651::codec::{self, Elem, Identity, Report};
use proptest::prelude::*;
use riskgate::source::sl651::body::{self, Observed};
use riskgate::source::sl651::frame::{self, Direction, Split};

mod sl651_elems;
use sl651_elems::{close, elem, expected};

fn t(h: u32, m: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 7, 21)
        .unwrap()
        .and_hms_opt(h, m, 0)
        .unwrap()
}

const ID: Identity = Identity {
    centre: 0x01,
    address: [0x00, 0x12, 0x34, 0x56, 0x78],
    password: 0x1234,
    category: 0x4B,
};

/// A bit-by-bit CRC written from the draft's words, independent of both
/// codecs' loops.
fn crc_by_the_rule(bytes: &[u8]) -> u16 {
    let mut reg: u32 = 0xFFFF;
    for &b in bytes {
        reg ^= u32::from(b);
        for _ in 0..8 {
            let lsb = reg & 1;
            reg >>= 1;
            if lsb == 1 {
                reg ^= 0xA001;
            }
        }
    }
    reg as u16
}

/// A 定时报 (32H) of a reservoir station: PT 123.4 mm, ZU 152.305 m,
/// VT 12.45 V, ZT with the cabinet door closed.
#[rustfmt::skip]
const TIMED_REPORT: &[u8] = &[
    0x7E, 0x7E, 0x01, 0x00, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x32, 0x00, 0x2C, 0x02,
    0x00, 0x07,                               // serial 7
    0x26, 0x07, 0x21, 0x08, 0x00, 0x00,       // sent 2026-07-21 08:00:00
    0xF1, 0xF1, 0x00, 0x12, 0x34, 0x56, 0x78, 0x4B,
    0xF0, 0xF0, 0x26, 0x07, 0x21, 0x08, 0x00, // observed 08:00
    0x26, 0x19, 0x00, 0x12, 0x34,             // PT
    0x3B, 0x23, 0x00, 0x15, 0x23, 0x05,       // ZU
    0x38, 0x12, 0x12, 0x45,                   // VT
    0x45, 0x20, 0x00, 0x00, 0x00, 0x80,       // ZT: door closed
    0x03,
];

#[test]
fn golden_timed_report() {
    let report = Report {
        function: codec::TIMED,
        serial: 7,
        sent: t(8, 0),
        observed: t(8, 0),
        elements: vec![
            Elem::pt(123.4),
            Elem::zu(152.305),
            Elem::vt(12.45),
            Elem::zt(false, false, false),
        ],
    };
    let bytes = codec::up_frame(&ID, report.function, &report.body(&ID), None, true);
    let n = bytes.len();
    assert_eq!(&bytes[..n - 2], TIMED_REPORT, "the encoder's bytes");
    let crc = crc_by_the_rule(TIMED_REPORT);
    assert_eq!(
        [bytes[n - 2], bytes[n - 1]],
        crc.to_be_bytes(),
        "CRC high byte first"
    );

    let Split::Frame(f, used) = frame::split(&bytes) else {
        panic!("riskgate takes the golden frame")
    };
    assert_eq!(used, n);
    assert_eq!(f.direction, Direction::Up);
    assert_eq!(f.station, ID.address);
    assert_eq!(f.password, 0x1234);
    assert_eq!(f.function, 0x32);
    let r = body::decode(&f.body).unwrap();
    assert_eq!(r.serial, 7);
    assert_eq!(r.category, Some(0x4B));
    assert_eq!(r.groups[0].observed, t(8, 0));
    assert_eq!(
        r.groups[0].values,
        vec![
            (0x26, Observed::Number(123.4)),
            (0x3B, Observed::Number(152.305)),
            (0x38, Observed::Number(12.45)),
            (0x45, Observed::Status(0x80)),
        ]
    );
}

proptest! {
    /// Whatever a station encodes, riskgate decodes to the same values,
    /// sent whole or as packets (reassembled in sequence order).
    #[test]
    fn encode_then_decode(
        serial in 1u16..,
        minute in 0u32..60,
        elements in proptest::collection::vec(elem(), 0..12),
        max_body in 8usize..200,
    ) {
        let report = Report {
            function: codec::ADDED,
            serial,
            sent: t(9, minute),
            observed: t(9, minute),
            elements: elements.clone(),
        };
        let body_bytes = report.body(&ID);
        let frames = codec::frames(&ID, report.function, &body_bytes, max_body);
        let mut stream: Vec<u8> = frames.concat();
        let mut packets = Vec::new();
        while !stream.is_empty() {
            match frame::split(&stream) {
                Split::Frame(f, n) => {
                    packets.push(f);
                    stream.drain(..n);
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
        prop_assert_eq!(packets.len(), frames.len());
        packets.sort_by_key(|f| f.packet.map(|p| p.1));
        let body: Vec<u8> = packets.iter().flat_map(|f| f.body.clone()).collect();
        prop_assert_eq!(&body, &body_bytes);
        let r = body::decode(&body).unwrap();
        prop_assert_eq!(r.serial, serial);
        prop_assert_eq!(r.groups[0].observed, t(9, minute));
        let want: Vec<(u8, Observed)> = elements.iter().map(expected).collect();
        let got = &r.groups[0].values;
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(g.0, w.0);
            prop_assert!(close(&g.1, &w.1), "{:?} != {:?}", g, w);
        }
    }

    /// The splitter and the body decoder never panic, never read past the
    /// input, and always make progress, whatever the bytes.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut rest: &[u8] = &bytes;
        loop {
            match frame::split(rest) {
                Split::NeedMore => break,
                Split::Frame(f, n) => {
                    prop_assert!(n > 0 && n <= rest.len());
                    let _ = body::decode(&f.body);
                    rest = &rest[n..];
                }
                Split::Skip(n, _, _) => {
                    prop_assert!(n > 0 && n <= rest.len());
                    rest = &rest[n..];
                }
            }
        }
        let _ = body::decode(&bytes);
    }

    /// Bytes that start like a frame (7E7E and a plausible header) but
    /// carry anything after it.
    #[test]
    fn frame_shaped_garbage_never_panics(
        len in 0u16..0x1000,
        start in prop_oneof![Just(0x02u8), Just(0x16u8), any::<u8>()],
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut b = vec![0x7E, 0x7E, 0x01, 0, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x32];
        b.extend(len.to_be_bytes());
        b.push(start);
        b.extend(tail);
        let _ = frame::split(&b);
        let _ = body::decode(&b[14.min(b.len())..]);
    }
}

/// Frames published in a public walk-through of the protocol ("SL651-2014
/// 全协议解析(HEX编码格式)", toymoban.com/news/detail-686475.html) [S]:
/// frames a station and a centre exchanged, with the values the author
/// read from them. Decoded here with riskgate's codec, not firmware-sim's.
fn published(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn published_frames_decode_to_the_published_values() {
    // 测试报 30H: current rainfall 0.5 mm, cumulative 0.5 mm, river level
    // 0.127 m, supply 11.15 V (the page's reading).
    let test_report = published(
        "7E7E010012345678123430002B020003591011154947F1F1001234567848F0F0\
         591011154920190000052619000005392300000127381211150320FA",
    );
    let Split::Frame(f, n) = frame::split(&test_report) else {
        panic!("the test report is one frame")
    };
    assert_eq!(n, test_report.len());
    assert_eq!(
        (f.centre, f.station, f.password, f.function),
        (0x01, [0x00, 0x12, 0x34, 0x56, 0x78], 0x1234, 0x30)
    );
    let r = body::decode(&f.body).unwrap();
    assert_eq!(r.serial, 3);
    assert_eq!(r.category, Some(0x48), "river station (H)");
    assert_eq!(
        r.groups[0].values,
        vec![
            (0x20, Observed::Number(0.5)),
            (0x26, Observed::Number(0.5)),
            (0x39, Observed::Number(0.127)),
            (0x38, Observed::Number(11.15)),
        ]
    );

    // 定时报 32H from centre 05 with password 03E8: 4 mm, 4 mm, 10.49 m,
    // 10.99 V.
    let timed = published(
        "7E7E05001122334403E832002B020034170718110016F1F1001122334448F0F0\
         1707181100201900004026190000403923000104903812109903A421",
    );
    let Split::Frame(f, _) = frame::split(&timed) else {
        panic!("the timed report is one frame")
    };
    assert_eq!((f.centre, f.password, f.function), (0x05, 0x03E8, 0x32));
    let r = body::decode(&f.body).unwrap();
    assert_eq!(r.serial, 0x34);
    assert_eq!(r.sent.to_string(), "2017-07-18 11:00:16");
    assert_eq!(r.groups[0].observed.to_string(), "2017-07-18 11:00:00");
    assert_eq!(
        r.groups[0].values,
        vec![
            (0x20, Observed::Number(4.0)),
            (0x26, Observed::Number(4.0)),
            (0x39, Observed::Number(10.49)),
            (0x38, Observed::Number(10.99)),
        ]
    );

    // Keep-alives 2FH, one whose serial number holds 7E (not a start).
    for hex in [
        "7E7E01001234567812342F0008020003591011155111036BCA",
        "7E7E00987654321012342F0008027E0822101110074703C3AE",
    ] {
        let bytes = published(hex);
        let Split::Frame(f, n) = frame::split(&bytes) else {
            panic!("{hex} is one frame")
        };
        assert_eq!((f.function, n), (0x2F, bytes.len()));
    }
}

/// The centre's answers on the same page: riskgate's encoder writes the
/// same bytes, CRC included, for the same fields.
#[test]
fn answers_match_the_published_down_frames() {
    for (station, centre, password, function, body_hex, end, want) in [
        (
            [0x00, 0x12, 0x34, 0x56, 0x78],
            0x01,
            0x1234,
            0x30,
            "0003591011154947",
            frame::ESC,
            "7E7E00123456780112343080080200035910111549471B75D4",
        ),
        (
            [0x00, 0x11, 0x22, 0x33, 0x44],
            0x05,
            0x03E8,
            0x32,
            "0034170718110016",
            frame::ESC,
            "7E7E00112233440503E83280080200341707181100161BE5D4",
        ),
    ] {
        let f = frame::Frame {
            encoding: frame::Encoding::Hex,
            direction: Direction::Down,
            centre,
            station,
            password,
            function,
            packet: None,
            body: published(body_hex),
            end,
        };
        assert_eq!(f.encode(), published(want));
    }
}
