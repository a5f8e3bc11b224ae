//! The ASCII frame of SL 651-2014 (start SOH 01H): the same fields as the
//! HEX/BCD frame written as characters, and a body of space-separated
//! symbols and values.
//!
//! Sources and confidence. The start character SOH 01H is the draft's
//! (6.2.2, Table 10, standards-research.md §4.1) **[C, draft]**; so are the
//! symbols every element has beside its HEX identifier (Annex C), which is
//! what an ASCII body names elements by. The draft's clause 6.4 (the ASCII
//! frame) was not available, so the layout below is riskgate's reading of
//! "the HEX frame's fields in characters" **[U]**: verify it against the
//! published standard and a station's manual before relying on it.
//!
//! ```text
//! SOH | centre 2 | station 10 | password 4 | function 2 | dir+len 4 |
//! STX (or SYN + 6: total 3, seq 3) | body | ETX/ETB | CRC 4
//! ```
//!
//! - Every header field is upper- or lower-case hex digits, high first; a
//!   down frame names the station before the centre, as in HEX.
//! - The length is the number of body characters (at most 4095).
//! - The CRC is the HEX frame's CRC-16 over every byte before it, written
//!   as 4 hex digits, high first.
//! - An up report body: `SSSS YYMMDDHHmmSS ST AAAAAAAAAA C TT YYMMDDHHmm`
//!   then `SYMBOL VALUE` pairs, more `TT` groups allowed. `SSSS` is the
//!   serial number in hex, `C` the category letter (Annex A: P, H, K …:
//!   the same byte as HEX's category). A value is a decimal number
//!   (`-1.25`), all `F` for "no value", the ZT word as 8 hex digits, and
//!   DRP / DRZn as the HEX frame's bytes in hex digits (24 / 48).
//! - The centre's answer body: `SSSS YYMMDDHHmmSS`.
//!
//! Invariants: [`split`] never panics and never reads past its input; a
//! frame it returns passed its CRC; an element whose symbol riskgate does
//! not know is skipped with its value.

use chrono::NaiveDateTime;

use super::body::{self, BodyError, Group, Observed, Report};
use super::element::{self, Shape};
use super::link::{
    Claimed, Direction, ENQ, EOT, ESC, ETB, ETX, Encoding, Frame, FrameError, MAX_BODY, NAK, STX,
    SYN, Split, crc16,
};

/// Frame start of the ASCII encoding (draft 6.2.2, Table 10).
pub const SOH: u8 = 0x01;
/// SOH, centre, station, password, function, dir+len, STX.
pub const HEADER: usize = 1 + 2 + 10 + 4 + 2 + 4 + 1;
/// The 6 characters after SYN: total packets and sequence, 3 hex each.
pub const PACKET_INFO: usize = 6;
/// The largest ASCII frame: header, packet info, body, end, CRC.
pub const MAX_FRAME: usize = HEADER + PACKET_INFO + MAX_BODY + 1 + 4;

/// Whether the bytes at the front could start an ASCII frame: SOH then
/// hex digits as far as the header goes. Lets the caller treat a stray
/// 01H (common inside HEX frames and line noise) as garbage.
pub fn plausible(buf: &[u8]) -> bool {
    buf.first() == Some(&SOH)
        && buf[1..buf.len().min(HEADER - 1)]
            .iter()
            .all(u8::is_ascii_hexdigit)
}

fn hex(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 8 || !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    // All hex digits: valid UTF-8 and a valid number of at most 32 bits.
    u32::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok()
}

fn address(b: &[u8]) -> Option<[u8; 5]> {
    let mut a = [0u8; 5];
    for (i, pair) in b.chunks(2).enumerate() {
        *a.get_mut(i)? = hex(pair)? as u8;
    }
    Some(a)
}

/// Looks for one ASCII frame at the front of `buf` (which starts with a
/// plausible SOH). Never panics.
pub fn split(buf: &[u8]) -> Split {
    if buf.len() < HEADER {
        return Split::NeedMore;
    }
    let field = |from: usize, to: usize| hex(&buf[from..to]);
    let (Some(a), Some(b), Some(password), Some(function), Some(dl)) = (
        address(&buf[1..11]).zip(field(11, 13)),
        address(&buf[3..13]).zip(field(1, 3)),
        field(13, 17),
        field(17, 19),
        field(19, 23),
    ) else {
        return Split::Skip(1, FrameError::Garbage, None);
    };
    let (direction, station, centre) = match dl >> 12 {
        0x0 => (Direction::Up, b.0, b.1 as u8),
        0x8 => (Direction::Down, a.0, a.1 as u8),
        other => return Split::Skip(1, FrameError::BadDirection(other as u8), None),
    };
    let function = function as u8;
    let claimed = Claimed {
        station,
        function,
        encoding: Encoding::Ascii,
    };
    let len = (dl & 0x0FFF) as usize;
    let info = match buf[23] {
        STX => 0,
        SYN => PACKET_INFO,
        other => return Split::Skip(1, FrameError::BadBodyStart(other), Some(claimed)),
    };
    let total = HEADER + info + len + 1 + 4;
    if buf.len() < total {
        // A frame start inside what should be this frame: it was cut
        // short and the next one began.
        let cut = buf[1..].contains(&SOH) || buf[1..].windows(2).any(|w| w == [0x7E, 0x7E]);
        return if cut {
            Split::Skip(1, FrameError::Truncated, Some(claimed))
        } else {
            Split::NeedMore
        };
    }
    let want = crc16(&buf[..total - 4]);
    // CRC characters that are not hex digits are a damaged CRC too: the
    // station gets its NAK and sends again.
    let got = hex(&buf[total - 4..total]).unwrap_or(u32::MAX);
    if got != u32::from(want) {
        let cut = buf[1..total].contains(&SOH);
        let err = if cut {
            FrameError::Truncated
        } else {
            FrameError::BadCrc {
                got: got as u16,
                want,
            }
        };
        return Split::Skip(1, err, Some(claimed));
    }
    let end = buf[total - 5];
    let ok_end = match direction {
        Direction::Up => matches!(end, ETX | ETB),
        Direction::Down => matches!(end, ENQ | super::frame::ACK | NAK | EOT | ESC),
    };
    if !ok_end {
        return Split::Skip(1, FrameError::BadEnd(end), Some(claimed));
    }
    let packet = if info > 0 {
        let (Some(t), Some(s)) = (field(24, 27), field(27, 30)) else {
            let e = FrameError::BadPacket { total: 0, seq: 0 };
            return Split::Skip(1, e, Some(claimed));
        };
        let (t, s) = (t as u16, s as u16);
        if t == 0 || s == 0 || s > t {
            let e = FrameError::BadPacket { total: t, seq: s };
            return Split::Skip(1, e, Some(claimed));
        }
        Some((t, s))
    } else {
        None
    };
    let frame = Frame {
        encoding: Encoding::Ascii,
        direction,
        centre,
        station,
        password: password as u16,
        function,
        packet,
        body: buf[HEADER + info..total - 5].to_vec(),
        end,
    };
    Split::Frame(frame, total)
}

/// An ASCII frame's bytes (the body as given, characters).
pub fn encode(f: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + PACKET_INFO + f.body.len() + 5);
    out.push(SOH);
    let addr: String = f.station.iter().map(|b| format!("{b:02X}")).collect();
    let head = match f.direction {
        Direction::Up => format!("{:02X}{addr}", f.centre),
        Direction::Down => format!("{addr}{:02X}", f.centre),
    };
    out.extend(head.bytes());
    let len = f.body.len().min(MAX_BODY);
    let dir = match f.direction {
        Direction::Up => 0x0000,
        Direction::Down => 0x8000,
    };
    out.extend(format!("{:04X}{:02X}{:04X}", f.password, f.function, dir | len).bytes());
    match f.packet {
        None => out.push(STX),
        Some((total, seq)) => {
            out.push(SYN);
            out.extend(format!("{:03X}{:03X}", total & 0xFFF, seq & 0xFFF).bytes());
        }
    }
    out.extend(&f.body[..len]);
    out.push(f.end);
    let crc = crc16(&out);
    out.extend(format!("{crc:04X}").bytes());
    out
}

/// The centre's answer body: serial number and the centre's time.
pub fn answer_body(serial: u16, time: NaiveDateTime) -> Vec<u8> {
    format!("{serial:04X} {}", time.format("%y%m%d%H%M%S")).into_bytes()
}

fn time(token: &str, secs: bool) -> Option<NaiveDateTime> {
    let want = if secs { 12 } else { 10 };
    if token.len() != want || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The digits are the BCD bytes of the HEX body, one per nibble.
    let bytes: Vec<u8> = token
        .as_bytes()
        .chunks(2)
        .map(|p| (p[0] - b'0') << 4 | (p[1] - b'0'))
        .collect();
    body::decode_time(&bytes, secs)
}

fn bytes_of(token: &str) -> Option<Vec<u8>> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    token
        .as_bytes()
        .chunks(2)
        .map(|p| hex(p).map(|v| v as u8))
        .collect()
}

/// Decodes an up report body written in ASCII into the same [`Report`] a
/// HEX body gives. Never panics.
pub fn decode_body(b: &[u8]) -> Result<Report, BodyError> {
    let text = std::str::from_utf8(b).map_err(|_| BodyError::Text("not ASCII"))?;
    let mut t = text.split_ascii_whitespace();
    let serial = t
        .next()
        .filter(|s| s.len() == 4)
        .and_then(|s| hex(s.as_bytes()))
        .ok_or(BodyError::Short(b.len()))? as u16;
    let sent = t
        .next()
        .and_then(|s| time(s, true))
        .ok_or(BodyError::BadTime("send"))?;
    let mut r = Report {
        serial,
        sent,
        station: None,
        category: None,
        groups: Vec::new(),
    };
    while let Some(sym) = t.next() {
        let value = t
            .next()
            .ok_or(BodyError::Text("a symbol without a value"))?;
        match sym {
            "ST" => {
                r.station = Some(
                    address(value.as_bytes())
                        .filter(|_| value.len() == 10)
                        .ok_or(BodyError::Text(
                            "ST must be followed by a 10-digit station address",
                        ))?,
                );
                let cat = t.next().ok_or(BodyError::Text("ST without a category"))?;
                r.category = match cat.as_bytes() {
                    [c] if c.is_ascii_alphabetic() => Some(*c),
                    _ => return Err(BodyError::Text("the category is one letter")),
                };
            }
            "TT" => r.groups.push(Group {
                observed: time(value, false).ok_or(BodyError::BadTime("observation"))?,
                values: Vec::new(),
            }),
            _ => {
                let Some(e) = element::ELEMENTS.iter().find(|e| e.symbol == sym) else {
                    continue;
                };
                let v = element_value(e, value)?;
                if r.groups.is_empty() {
                    r.groups.push(Group {
                        observed: sent,
                        values: Vec::new(),
                    });
                }
                if let Some(g) = r.groups.last_mut() {
                    g.values.push((e.id, v));
                }
            }
        }
    }
    Ok(r)
}

fn element_value(e: &element::Element, v: &str) -> Result<Observed, BodyError> {
    match e.shape {
        Shape::Bcd => {
            if !v.is_empty() && v.bytes().all(|c| c == b'F' || c == b'f') {
                return Ok(Observed::Missing);
            }
            // Digits, one optional point and a leading minus only: `inf`,
            // `1e9` or `0x10` are not station numbers.
            let digits = v.strip_prefix('-').unwrap_or(v);
            let ok = !digits.is_empty()
                && digits.bytes().all(|c| c.is_ascii_digit() || c == b'.')
                && digits.bytes().filter(|&c| c == b'.').count() <= 1
                && digits.len() <= 12;
            ok.then(|| v.parse::<f64>().ok())
                .flatten()
                .map(Observed::Number)
                .ok_or(BodyError::NotBcd(e.id))
        }
        Shape::Status | Shape::Rain5m | Shape::Level5m => {
            let bytes = bytes_of(v).ok_or(BodyError::NotBcd(e.id))?;
            body::value(e.shape, e.id, &bytes, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(body: &str) -> Frame {
        Frame {
            encoding: Encoding::Ascii,
            direction: Direction::Up,
            centre: 0x01,
            station: [0x00, 0x12, 0x34, 0x56, 0x78],
            password: 0x1234,
            function: 0x32,
            packet: None,
            body: body.as_bytes().to_vec(),
            end: ETX,
        }
    }

    const BODY: &str = "002A 261203100012 ST 0012345678 K TT 2612031000 ZU 152.305 PJ 0.5 \
                        VT 12.10 ZT 00000080 XX 7 PT FFFFFF";

    #[test]
    fn a_frame_is_characters_with_a_hex_crc() {
        let f = up(BODY);
        let bytes = encode(&f);
        assert_eq!(bytes[0], SOH);
        assert_eq!(&bytes[1..23], b"0100123456781234320065");
        assert_eq!(bytes[23], STX);
        let n = bytes.len();
        assert_eq!(bytes[n - 5], ETX);
        let crc = format!("{:04X}", crc16(&bytes[..n - 4]));
        assert_eq!(&bytes[n - 4..], crc.as_bytes());
        assert_eq!(split(&bytes), Split::Frame(f, n));
    }

    #[test]
    fn the_body_reads_like_a_hex_one() {
        let r = decode_body(BODY.as_bytes()).unwrap();
        assert_eq!(r.serial, 0x2A);
        assert_eq!(r.station, Some([0x00, 0x12, 0x34, 0x56, 0x78]));
        assert_eq!(r.category, Some(b'K'));
        assert_eq!(r.groups.len(), 1);
        let g = &r.groups[0];
        assert_eq!(g.observed.to_string(), "2026-12-03 10:00:00");
        assert_eq!(
            g.values,
            vec![
                (0x3B, Observed::Number(152.305)),
                (0x20, Observed::Number(0.5)),
                (0x38, Observed::Number(12.10)),
                (0x45, Observed::Status(0x80)),
                // XX is unknown: skipped with its value.
                (0x26, Observed::Missing),
            ]
        );
    }

    #[test]
    fn a_changed_character_is_a_bad_crc_and_a_cut_frame_is_truncated() {
        let mut bytes = encode(&up(BODY));
        bytes[40] = b'9';
        assert!(matches!(
            split(&bytes),
            Split::Skip(1, FrameError::BadCrc { .. }, Some(_))
        ));
        let good = encode(&up(BODY));
        let mut cut = good[..good.len() - 10].to_vec();
        cut.extend(&good);
        assert!(matches!(
            split(&cut),
            Split::Skip(1, FrameError::Truncated, Some(_))
        ));
    }

    #[test]
    fn packets_and_down_frames_round_trip() {
        let f = Frame {
            packet: Some((3, 2)),
            end: ETB,
            ..up("0001 261203100012")
        };
        let bytes = encode(&f);
        assert_eq!(split(&bytes), Split::Frame(f, bytes.len()));
        let d = Frame {
            direction: Direction::Down,
            end: EOT,
            ..up("0001 261203100012")
        };
        let bytes = encode(&d);
        assert_eq!(&bytes[1..13], b"001234567801");
        assert_eq!(split(&bytes), Split::Frame(d, bytes.len()));
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        for body in [
            "",
            "00",
            "0001 26120310",
            "0001 261203100012 ST 00123 K",
            "0001 261203100012 PJ",
            "0001 261203100012 PJ 1e9",
            "0001 261203100012 PJ inf",
            "0001 261203100012 ZT 12",
            "0001 261203100012 TT 2613031000",
        ] {
            assert!(decode_body(body.as_bytes()).is_err(), "{body:?}");
        }
    }
}
