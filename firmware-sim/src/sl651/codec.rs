//! An SL 651-2014 station's encoder, written apart from riskgate's decoder
//! so that each checks the other: up frames (7E7E, HEX/BCD), report
//! bodies, multi-packet splitting, and the reading of the centre's answer.
//!
//! Layout and rules: standards-research.md §4 (the draft of the standard,
//! [C, draft]). The CRC is CRC-16 with polynomial A001H (reflected) and
//! initial value FFFFH, sent **high byte first**.

use chrono::{Datelike, NaiveDateTime, Timelike};

/// Frame start, body starts and end bytes (draft Table 10).
pub const START: [u8; 2] = [0x7E, 0x7E];
pub const STX: u8 = 0x02;
pub const SYN: u8 = 0x16;
pub const ETX: u8 = 0x03;
pub const ETB: u8 = 0x17;
pub const ACK: u8 = 0x06;
pub const NAK: u8 = 0x15;
pub const EOT: u8 = 0x04;
pub const ESC: u8 = 0x1B;

/// Function codes the station sends (draft Annex B).
pub const KEEP_ALIVE: u8 = 0x2F;
pub const TEST: u8 = 0x30;
pub const TIMED: u8 = 0x32;
pub const ADDED: u8 = 0x33;
pub const HOURLY: u8 = 0x34;
pub const PICTURE: u8 = 0x36;

/// Table-driven CRC-16 (A001H reflected, init FFFFH): a different method
/// from riskgate's bitwise loop, the same polynomial.
pub fn crc16(data: &[u8]) -> u16 {
    static TABLE: std::sync::OnceLock<[u16; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u16; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u16;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0xA001
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    data.iter().fold(0xFFFF, |crc, &b| {
        (crc >> 8) ^ t[usize::from((crc as u8) ^ b)]
    })
}

/// Who the station is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub centre: u8,
    pub address: [u8; 5],
    pub password: u16,
    /// Station category (Annex A): 0x50 rainfall, 0x48 river, 0x4B reservoir.
    pub category: u8,
}

/// One element of a report.
#[derive(Clone, Debug, PartialEq)]
pub enum Elem {
    /// A BCD number: identifier, bytes, decimals.
    Num {
        id: u8,
        bytes: u8,
        decimals: u8,
        value: f64,
    },
    /// All F: no value.
    Missing { id: u8, bytes: u8 },
    /// DRP: 12 five-minute rainfalls in mm (0.1 mm steps), `None` invalid.
    Drp([Option<f64>; 12]),
    /// DRZ1-8 (F5H-FCH): 12 five-minute levels in m (0.01 m steps).
    Drz { id: u8, values: [Option<f64>; 12] },
    /// ZT status word.
    Status(u32),
}

impl Elem {
    /// PJ current rainfall, N(5,1).
    pub fn pj(mm: f64) -> Elem {
        Elem::Num {
            id: 0x20,
            bytes: 3,
            decimals: 1,
            value: mm,
        }
    }
    /// PT cumulative rainfall, N(6,1).
    pub fn pt(mm: f64) -> Elem {
        Elem::Num {
            id: 0x26,
            bytes: 3,
            decimals: 1,
            value: mm,
        }
    }
    /// Z river level, N(7,3).
    pub fn z(m: f64) -> Elem {
        Elem::Num {
            id: 0x39,
            bytes: 4,
            decimals: 3,
            value: m,
        }
    }
    /// ZU reservoir upstream level, N(7,3).
    pub fn zu(m: f64) -> Elem {
        Elem::Num {
            id: 0x3B,
            bytes: 4,
            decimals: 3,
            value: m,
        }
    }
    /// VT supply voltage, N(4,2).
    pub fn vt(v: f64) -> Elem {
        Elem::Num {
            id: 0x38,
            bytes: 2,
            decimals: 2,
            value: v,
        }
    }
    /// WP1-8 water pressure, N(5,2) kPa.
    pub fn wp(n: u8, kpa: f64) -> Elem {
        Elem::Num {
            id: 0x57 + n.clamp(1, 8),
            bytes: 3,
            decimals: 2,
            value: kpa,
        }
    }
    /// ZT with the given conditions; the door bit (7) is 0 when open.
    pub fn zt(mains_lost: bool, battery_low: bool, door_open: bool) -> Elem {
        let mut w = 0u32;
        if mains_lost {
            w |= 1;
        }
        if battery_low {
            w |= 1 << 1;
        }
        if !door_open {
            w |= 1 << 7;
        }
        Elem::Status(w)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Elem::Num {
                id,
                bytes,
                decimals,
                value,
            } => {
                out.push(*id);
                out.push(bytes << 3 | decimals);
                out.extend(bcd_number(*value, *bytes, *decimals));
            }
            Elem::Missing { id, bytes } => {
                out.push(*id);
                out.push(bytes << 3);
                out.extend(std::iter::repeat_n(0xFF, usize::from(*bytes)));
            }
            Elem::Drp(v) => {
                out.extend([0xF4, 12 << 3]);
                for x in v {
                    out.push(match x {
                        Some(mm) => (mm * 10.0).round().clamp(0.0, 254.0) as u8,
                        None => 0xFF,
                    });
                }
            }
            Elem::Drz { id, values } => {
                out.extend([*id, 24 << 3]);
                for x in values {
                    let w = match x {
                        Some(m) => (m * 100.0).round().clamp(0.0, 65534.0) as u16,
                        None => 0xFFFF,
                    };
                    out.extend(w.to_be_bytes());
                }
            }
            Elem::Status(w) => {
                out.extend([0x45, 4 << 3]);
                out.extend(w.to_be_bytes());
            }
        }
    }
}

/// `value` in `bytes` BCD bytes with `decimals` decimals; a negative value
/// gives FF first and the magnitude in the remaining bytes.
pub fn bcd_number(value: f64, bytes: u8, decimals: u8) -> Vec<u8> {
    let neg = value < 0.0;
    let digits = usize::from(bytes) * 2 - if neg { 2 } else { 0 };
    let scaled = (value.abs() * 10f64.powi(i32::from(decimals))).round() as u64;
    let max = 10u64.pow(digits as u32) - 1;
    let s = format!("{:0width$}", scaled.min(max), width = digits);
    let mut out = Vec::new();
    if neg {
        out.push(0xFF);
    }
    for pair in s.as_bytes().chunks(2) {
        out.push((pair[0] - b'0') << 4 | (pair[1] - b'0'));
    }
    out
}

fn bcd2(v: u32) -> u8 {
    ((v / 10 % 10) << 4 | (v % 10)) as u8
}

/// YYMMDDHHmm, with seconds when `secs`.
pub fn bcd_time(t: NaiveDateTime, secs: bool) -> Vec<u8> {
    let mut v = vec![
        bcd2(t.year().rem_euclid(100) as u32),
        bcd2(t.month()),
        bcd2(t.day()),
        bcd2(t.hour()),
        bcd2(t.minute()),
    ];
    if secs {
        v.push(bcd2(t.second()));
    }
    v
}

/// One report as a station builds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub function: u8,
    pub serial: u16,
    pub sent: NaiveDateTime,
    pub observed: NaiveDateTime,
    pub elements: Vec<Elem>,
}

impl Report {
    /// Serial, send time, F1F1 address + category, F0F0 time, elements.
    pub fn body(&self, id: &Identity) -> Vec<u8> {
        let mut b = self.serial.to_be_bytes().to_vec();
        b.extend(bcd_time(self.sent, true));
        b.extend([0xF1, 0xF1]);
        b.extend(id.address);
        b.push(id.category);
        b.extend([0xF0, 0xF0]);
        b.extend(bcd_time(self.observed, false));
        for e in &self.elements {
            e.encode(&mut b);
        }
        b
    }
}

/// One up frame. `packet`: (total, sequence) of a multi-packet message.
pub fn up_frame(
    id: &Identity,
    function: u8,
    body: &[u8],
    packet: Option<(u16, u16)>,
    last: bool,
) -> Vec<u8> {
    let mut f = START.to_vec();
    f.push(id.centre);
    f.extend(id.address);
    f.extend(id.password.to_be_bytes());
    f.push(function);
    // Up: high nibble 0; the length counts the body without SYN's 3
    // packet bytes.
    f.extend((body.len() as u16 & 0x0FFF).to_be_bytes());
    match packet {
        None => f.push(STX),
        Some((total, seq)) => {
            f.push(SYN);
            let v = (u32::from(total) << 12) | u32::from(seq);
            f.extend([(v >> 16) as u8, (v >> 8) as u8, v as u8]);
        }
    }
    f.extend(body);
    f.push(if last { ETX } else { ETB });
    let crc = crc16(&f);
    f.push((crc >> 8) as u8);
    f.push(crc as u8);
    f
}

/// A body as frames of at most `max` body bytes each: one STX frame, or
/// SYN packets 1..=n (ETB on all but the last).
pub fn frames(id: &Identity, function: u8, body: &[u8], max: usize) -> Vec<Vec<u8>> {
    let max = max.clamp(1, 4095);
    if body.len() <= max {
        return vec![up_frame(id, function, body, None, true)];
    }
    let chunks: Vec<&[u8]> = body.chunks(max).collect();
    let n = chunks.len() as u16;
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            up_frame(
                id,
                function,
                c,
                Some((n, i as u16 + 1)),
                i + 1 == chunks.len(),
            )
        })
        .collect()
}

/// The centre's answer, as far as a station reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub function: u8,
    pub serial: u16,
    /// ACK, NAK, EOT or ESC.
    pub end: u8,
}

/// Reads one down frame from the front of `buf`: the answer and its
/// length, or `None` if `buf` does not start with a whole, valid one.
pub fn read_answer(buf: &[u8]) -> Option<(Answer, usize)> {
    if buf.len() < 17 || buf[..2] != START || buf[11] >> 4 != 0x8 {
        return None;
    }
    let len = usize::from(buf[11] & 0x0F) << 8 | usize::from(buf[12]);
    let total = 14 + len + 3;
    if buf.len() < total
        || crc16(&buf[..total - 2]) != u16::from_be_bytes([buf[total - 2], buf[total - 1]])
    {
        return None;
    }
    let serial = if len >= 2 {
        u16::from_be_bytes([buf[14], buf[15]])
    } else {
        0
    };
    Some((
        Answer {
            function: buf[10],
            serial,
            end: buf[total - 3],
        },
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        // CRC-16/MODBUS check value over "123456789" (the CRC catalogue).
        assert_eq!(crc16(b"123456789"), 0x4B37);
    }

    #[test]
    fn bcd_numbers() {
        assert_eq!(bcd_number(123.4, 3, 1), vec![0x00, 0x12, 0x34]);
        assert_eq!(bcd_number(152.305, 4, 3), vec![0x00, 0x15, 0x23, 0x05]);
        assert_eq!(bcd_number(-1.25, 3, 2), vec![0xFF, 0x01, 0x25]);
    }
}
