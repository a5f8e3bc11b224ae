//! The body of an up report (function codes 30H-35H): serial number, send
//! time, station address and category, then groups of elements, each
//! group after an observation time (F0F0).
//!
//! Source: standards-research.md §4.3, the draft's 6.6 and Annex C
//! **[C, draft]**. Times are BCD in the station's local time (the site's
//! zone); turning them into instants is the caller's job.
//!
//! Invariant: [`decode`] never panics and never reads past the body; an
//! element whose identifier riskgate does not know is skipped by the
//! length its definition byte gives.

use chrono::{NaiveDate, NaiveDateTime};

use super::element::{self, OBSERVATION_TIME, STATION_ADDRESS, Shape};

/// One decoded report body.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub serial: u16,
    /// When the station sent it (its clock, local time).
    pub sent: NaiveDateTime,
    pub station: Option<[u8; 5]>,
    /// Station category (Annex A: 50H rainfall, 48H river, 4BH reservoir …).
    pub category: Option<u8>,
    pub groups: Vec<Group>,
}

/// Elements observed at one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Local time of the observation (F0F0 YYMMDDHHmm).
    pub observed: NaiveDateTime,
    pub values: Vec<(u8, Observed)>,
}

/// One element's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    Number(f64),
    /// All digits F: the station has no value (draft: missing values are
    /// filled with F).
    Missing,
    /// Twelve five-minute values of the hour ending at the observation
    /// time, oldest first; `None` marks an invalid slot (FF / FFFF).
    Series(Vec<Option<f64>>),
    /// The ZT word, bit 0 the least significant.
    Status(u32),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body of {0} bytes is shorter than serial number and send time")]
    Short(usize),
    #[error("{0} time is not a valid BCD date")]
    BadTime(&'static str),
    #[error("element {id:02X}H: {len} bytes declared, {left} left")]
    ElementCut { id: u8, len: usize, left: usize },
    #[error("element {0:02X}H holds digits that are not BCD")]
    NotBcd(u8),
    #[error("element {0:02X}H has the wrong length for its kind")]
    BadLength(u8),
    #[error("guide {0:02X}H is cut short")]
    GuideCut(u8),
    #[error("ASCII body: {0}")]
    Text(&'static str),
}

/// Decodes an up report body. `serial_only` bodies (keep-alive) need only
/// the first 8 bytes.
pub fn decode(b: &[u8]) -> Result<Report, BodyError> {
    if b.len() < 8 {
        return Err(BodyError::Short(b.len()));
    }
    let serial = u16::from_be_bytes([b[0], b[1]]);
    let sent = decode_time(&b[2..8], true).ok_or(BodyError::BadTime("send"))?;
    let mut r = Report {
        serial,
        sent,
        station: None,
        category: None,
        groups: Vec::new(),
    };
    let mut i = 8;
    while i < b.len() {
        let id = b[i];
        match (id, b.get(i + 1)) {
            (STATION_ADDRESS, Some(&STATION_ADDRESS)) => {
                // F1F1, 5 address bytes, then the station category.
                let a = b.get(i + 2..i + 8).ok_or(BodyError::GuideCut(id))?;
                r.station = Some([a[0], a[1], a[2], a[3], a[4]]);
                r.category = Some(a[5]);
                i += 8;
            }
            (OBSERVATION_TIME, Some(&OBSERVATION_TIME)) => {
                let t = b.get(i + 2..i + 7).ok_or(BodyError::GuideCut(id))?;
                let observed = decode_time(t, false).ok_or(BodyError::BadTime("observation"))?;
                r.groups.push(Group {
                    observed,
                    values: Vec::new(),
                });
                i += 7;
            }
            (_, None) => return Err(BodyError::GuideCut(id)),
            (_, Some(&def)) => {
                // FFH leads a two-byte (user-defined) identifier.
                let (def, head) = if id == 0xFF {
                    (*b.get(i + 2).ok_or(BodyError::GuideCut(id))?, 3)
                } else {
                    (def, 2)
                };
                let len = usize::from(def >> 3);
                let decimals = def & 0x07;
                let from = i + head;
                let left = b.len() - from.min(b.len());
                let data =
                    b.get(from..from + len)
                        .ok_or(BodyError::ElementCut { id, len, left })?;
                i = from + len;
                let Some(e) = element::by_id(id).filter(|_| head == 2) else {
                    continue;
                };
                let v = value(e.shape, id, data, decimals)?;
                if r.groups.is_empty() {
                    // Elements before any observation time: observed when
                    // sent.
                    r.groups.push(Group {
                        observed: sent,
                        values: Vec::new(),
                    });
                }
                if let Some(g) = r.groups.last_mut() {
                    g.values.push((id, v));
                }
            }
        }
    }
    Ok(r)
}

/// One element's bytes as its shape reads them (the ASCII decoder hands
/// its hex-digit series here too).
pub(super) fn value(
    shape: Shape,
    id: u8,
    data: &[u8],
    decimals: u8,
) -> Result<Observed, BodyError> {
    match shape {
        Shape::Bcd => bcd_number(id, data, decimals),
        Shape::Status => {
            if data.len() != 4 {
                return Err(BodyError::BadLength(id));
            }
            Ok(Observed::Status(u32::from_be_bytes([
                data[0], data[1], data[2], data[3],
            ])))
        }
        Shape::Rain5m => {
            if data.len() != 12 {
                return Err(BodyError::BadLength(id));
            }
            Ok(Observed::Series(
                data.iter()
                    .map(|&x| (x != 0xFF).then(|| f64::from(x) / 10.0))
                    .collect(),
            ))
        }
        Shape::Level5m => {
            if data.len() != 24 {
                return Err(BodyError::BadLength(id));
            }
            Ok(Observed::Series(
                data.chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .map(|x| (x != 0xFFFF).then(|| f64::from(x) / 100.0))
                    .collect(),
            ))
        }
    }
}

/// A BCD number: FF first means negative; all nibbles F means no value.
fn bcd_number(id: u8, data: &[u8], decimals: u8) -> Result<Observed, BodyError> {
    if data.is_empty() {
        return Err(BodyError::BadLength(id));
    }
    if data.iter().all(|&x| x == 0xFF) {
        return Ok(Observed::Missing);
    }
    let (neg, digits) = match data {
        [0xFF, rest @ ..] => (true, rest),
        _ => (false, data),
    };
    let mut n: u64 = 0;
    for (k, &x) in digits.iter().enumerate() {
        for (j, nib) in [x >> 4, x & 0x0F].into_iter().enumerate() {
            // An odd digit count pads the sign's byte with a leading F
            // nibble ("FF0"): a leading F nibble reads as nothing.
            if nib == 0x0F && k == 0 && j == 0 && neg {
                continue;
            }
            if nib > 9 {
                return Err(BodyError::NotBcd(id));
            }
            n = n * 10 + u64::from(nib);
        }
    }
    let v = n as f64 / 10f64.powi(i32::from(decimals));
    Ok(Observed::Number(if neg { -v } else { v }))
}

fn from_bcd(x: u8) -> Option<u32> {
    let (h, l) = (x >> 4, x & 0x0F);
    (h <= 9 && l <= 9).then(|| u32::from(h * 10 + l))
}

/// YYMMDDHHmm(ss) in BCD; years are 2000-2099.
/// A BCD time YYMMDDHHmm(SS); `None` if not BCD or not a date.
pub(super) fn decode_time(t: &[u8], with_seconds: bool) -> Option<NaiveDateTime> {
    let d: Vec<u32> = t.iter().map(|&x| from_bcd(x)).collect::<Option<_>>()?;
    let s = if with_seconds { *d.get(5)? } else { 0 };
    NaiveDate::from_ymd_opt(2000 + *d.first()? as i32, *d.get(1)?, *d.get(2)?)?.and_hms_opt(
        *d.get(3)?,
        *d.get(4)?,
        s,
    )
}

/// The centre's send time in BCD (YYMMDDHHmmss), for answers.
pub fn bcd_send_time(t: NaiveDateTime) -> [u8; 6] {
    use chrono::{Datelike, Timelike};
    let b = |v: u32| ((v / 10 % 10) << 4 | (v % 10)) as u8;
    [
        b(t.year().rem_euclid(100) as u32),
        b(t.month()),
        b(t.day()),
        b(t.hour()),
        b(t.minute()),
        b(t.second()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    #[test]
    fn a_timed_report_body() {
        #[rustfmt::skip]
        let body = [
            0x00, 0x2A,                         // serial 42
            0x26, 0x12, 0x03, 0x08, 0x00, 0x05, // sent 2026-12-03 08:00:05
            0xF1, 0xF1, 0x00, 0x12, 0x34, 0x56, 0x78, 0x4B, // station, K
            0xF0, 0xF0, 0x26, 0x12, 0x03, 0x08, 0x00,       // observed 08:00
            0x26, 0x19, 0x00, 0x12, 0x34,       // PT N(3 bytes, 1 dec) 123.4
            0x3B, 0x23, 0x00, 0x15, 0x23, 0x05, // ZU N(4 bytes, 3 dec) 152.305
            0x45, 0x20, 0x00, 0x00, 0x00, 0x03, // ZT bits 0 and 1, door bit 7 = 0
            0x38, 0x12, 0x12, 0x45,             // VT N(2 bytes, 2 dec) 12.45
        ];
        let r = decode(&body).unwrap();
        assert_eq!(r.serial, 42);
        assert_eq!(r.sent, t(2026, 12, 3, 8, 0) + chrono::Duration::seconds(5));
        assert_eq!(r.station, Some([0x00, 0x12, 0x34, 0x56, 0x78]));
        assert_eq!(r.category, Some(0x4B));
        assert_eq!(r.groups.len(), 1);
        let g = &r.groups[0];
        assert_eq!(g.observed, t(2026, 12, 3, 8, 0));
        assert_eq!(
            g.values,
            vec![
                (0x26, Observed::Number(123.4)),
                (0x3B, Observed::Number(152.305)),
                (0x45, Observed::Status(3)),
                (0x38, Observed::Number(12.45)),
            ]
        );
    }

    #[test]
    fn negative_missing_series_and_unknown_elements() {
        #[rustfmt::skip]
        let body = [
            0x00, 0x01, 0x26, 0x12, 0x03, 0x09, 0x00, 0x00,
            0xF0, 0xF0, 0x26, 0x12, 0x03, 0x09, 0x00,
            0x39, 0x1A, 0xFF, 0x01, 0x25,       // Z = -1.25 (3 bytes, 2 decimals)
            0x20, 0x19, 0xFF, 0xFF, 0xFF,       // PJ missing
            0x99, 0x10, 0xAA, 0xBB,             // unknown element, 2 bytes: skipped
            0xF4, 0x60, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xFF, // DRP
        ];
        let r = decode(&body).unwrap();
        let v = &r.groups[0].values;
        assert_eq!(v[0], (0x39, Observed::Number(-1.25)));
        assert_eq!(v[1], (0x20, Observed::Missing));
        let Observed::Series(s) = &v[2].1 else {
            panic!()
        };
        assert_eq!(s.len(), 12);
        assert_eq!(s[10], Some(1.0));
        assert_eq!(s[11], None);
    }

    #[test]
    fn cut_and_bad_bodies_are_errors() {
        assert_eq!(decode(&[0, 1, 2]), Err(BodyError::Short(3)));
        let mut b = vec![0x00, 0x01, 0x26, 0x13, 0x03, 0x09, 0x00, 0x00];
        assert_eq!(decode(&b), Err(BodyError::BadTime("send")));
        b[3] = 0x12;
        b.extend([0x26, 0x19, 0x00]);
        assert!(matches!(decode(&b), Err(BodyError::ElementCut { .. })));
    }
}
