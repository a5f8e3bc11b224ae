//! The station's ASCII encoding (frame start SOH 01H), written apart from
//! riskgate's decoder. The draft names SOH as the ASCII frame start and
//! gives every element a symbol beside its HEX identifier; the rest of
//! the layout is the reading riskgate documents in docs/sl651.md (the
//! HEX frame's fields as hex characters, a body of space-separated
//! symbols and values), marked there as unverified.

use std::fmt::Write;

use chrono::NaiveDateTime;

use super::codec::{Answer, ETB, ETX, Elem, Identity, Report, STX, SYN, crc16};

pub const SOH: u8 = 0x01;

/// The symbol the draft's Annex C gives each identifier this simulator
/// sends.
fn symbol(id: u8) -> Option<&'static str> {
    Some(match id {
        0x20 => "PJ",
        0x26 => "PT",
        0x38 => "VT",
        0x39 => "Z",
        0x3B => "ZU",
        0x45 => "ZT",
        0x58 => "WP1",
        0x59 => "WP2",
        0x5A => "WP3",
        0x5B => "WP4",
        0x5C => "WP5",
        0x5D => "WP6",
        0x5E => "WP7",
        0x5F => "WP8",
        0xF4 => "DRP",
        0xF5 => "DRZ1",
        0xF6 => "DRZ2",
        0xF7 => "DRZ3",
        0xF8 => "DRZ4",
        0xF9 => "DRZ5",
        0xFA => "DRZ6",
        0xFB => "DRZ7",
        0xFC => "DRZ8",
        _ => return None,
    })
}

fn digits(t: NaiveDateTime, secs: bool) -> String {
    t.format(if secs { "%y%m%d%H%M%S" } else { "%y%m%d%H%M" })
        .to_string()
}

/// One element as `SYMBOL VALUE`, or nothing for an identifier without a
/// symbol here.
fn element(e: &Elem, out: &mut String) {
    let (id, value) = match e {
        Elem::Num {
            id,
            decimals,
            value,
            ..
        } => (
            *id,
            format!("{value:.prec$}", prec = usize::from(*decimals)),
        ),
        Elem::Missing { id, bytes } => (*id, "F".repeat(usize::from(*bytes) * 2)),
        Elem::Status(w) => (0x45, format!("{w:08X}")),
        Elem::Drp(v) => {
            let s = v
                .iter()
                .map(|x| match x {
                    Some(mm) => format!("{:02X}", (mm * 10.0).round().clamp(0.0, 254.0) as u8),
                    None => "FF".into(),
                })
                .collect();
            (0xF4, s)
        }
        Elem::Drz { id, values } => {
            let s = values
                .iter()
                .map(|x| match x {
                    Some(m) => format!("{:04X}", (m * 100.0).round().clamp(0.0, 65534.0) as u16),
                    None => "FFFF".into(),
                })
                .collect();
            (*id, s)
        }
    };
    if let Some(sym) = symbol(id) {
        let _ = write!(out, " {sym} {value}");
    }
}

/// `SSSS YYMMDDHHmmSS ST address category TT YYMMDDHHmm` and the elements.
pub fn body(r: &Report, id: &Identity) -> Vec<u8> {
    let mut s = format!("{:04X} {} ST ", r.serial, digits(r.sent, true));
    for b in id.address {
        let _ = write!(s, "{b:02X}");
    }
    let _ = write!(
        s,
        " {} TT {}",
        char::from(id.category),
        digits(r.observed, false)
    );
    for e in &r.elements {
        element(e, &mut s);
    }
    s.into_bytes()
}

/// The keep-alive body: serial number and send time.
pub fn keep_alive_body(serial: u16, now: NaiveDateTime) -> Vec<u8> {
    format!("{serial:04X} {}", digits(now, true)).into_bytes()
}

/// One up frame in characters; the CRC over every byte before it, as 4
/// hex digits.
pub fn up_frame(
    id: &Identity,
    function: u8,
    body: &[u8],
    packet: Option<(u16, u16)>,
    last: bool,
) -> Vec<u8> {
    let mut head = format!("{:02X}", id.centre);
    for b in id.address {
        let _ = write!(head, "{b:02X}");
    }
    let _ = write!(
        head,
        "{:04X}{function:02X}{:04X}",
        id.password,
        body.len() & 0x0FFF
    );
    let mut f = vec![SOH];
    f.extend(head.bytes());
    match packet {
        None => f.push(STX),
        Some((total, seq)) => {
            f.push(SYN);
            f.extend(format!("{total:03X}{seq:03X}").bytes());
        }
    }
    f.extend(body);
    f.push(if last { ETX } else { ETB });
    let crc = crc16(&f);
    f.extend(format!("{crc:04X}").bytes());
    f
}

/// A body as ASCII frames of at most `max` characters each.
pub fn frames(id: &Identity, function: u8, body: &[u8], max: usize) -> Vec<Vec<u8>> {
    let max = max.clamp(1, 4095);
    if body.len() <= max {
        return vec![up_frame(id, function, body, None, true)];
    }
    let chunks: Vec<&[u8]> = body.chunks(max).collect();
    let n = chunks.len();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| up_frame(id, function, c, Some((n as u16, i as u16 + 1)), i + 1 == n))
        .collect()
}

fn hex(b: &[u8]) -> Option<u16> {
    u16::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok()
}

/// Reads one ASCII down frame from the front of `buf`: the answer and its
/// length, or `None` if `buf` does not start with a whole, valid one.
pub fn read_answer(buf: &[u8]) -> Option<(Answer, usize)> {
    // SOH, station 10, centre 2, password 4, function 2, dir+len 4, STX.
    if buf.len() < 24 || buf[0] != SOH || buf[19] != b'8' || buf[23] != STX {
        return None;
    }
    let len = usize::from(hex(&buf[20..23])?);
    let total = 24 + len + 1 + 4;
    if buf.len() < total || hex(&buf[total - 4..total])? != crc16(&buf[..total - 4]) {
        return None;
    }
    let serial = buf
        .get(24..28)
        .filter(|_| len >= 4)
        .and_then(hex)
        .unwrap_or(0);
    Some((
        Answer {
            function: hex(&buf[17..19])? as u8,
            serial,
            end: buf[total - 5],
        },
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            centre: 1,
            address: [0x00, 0x12, 0x34, 0x56, 0x78],
            password: 0x1234,
            category: 0x4B,
        }
    }

    #[test]
    fn a_report_body_reads_as_text() {
        let t = NaiveDateTime::parse_from_str("2026-12-03 10:00:12", "%Y-%m-%d %H:%M:%S").unwrap();
        let r = Report {
            function: 0x32,
            serial: 42,
            sent: t,
            observed: t,
            elements: vec![
                Elem::zu(152.305),
                Elem::pj(0.5),
                Elem::zt(false, false, true),
            ],
        };
        let b = String::from_utf8(body(&r, &id())).unwrap();
        assert_eq!(
            b,
            "002A 261203100012 ST 0012345678 K TT 2612031000 ZU 152.305 PJ 0.5 ZT 00000000"
        );
        let f = up_frame(&id(), 0x32, b.as_bytes(), None, true);
        assert_eq!(&f[..24], b"\x01010012345678123432004D\x02");
    }
}
