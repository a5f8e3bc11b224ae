//! The centre's side of the link, without I/O: frames in, answers and
//! engine inputs out. One [`Receiver`] serves every station of one
//! listener (a TCP or UDP address, or a serial line); the transport tasks
//! share it behind a mutex and hold the lock only while it works on bytes
//! already read.
//!
//! Invariants:
//! - every frame is either taken in, or counted with its station and its
//!   reason (`sl651::metrics`) and logged in the same place;
//! - a retransmission (same function, serial number and observation time)
//!   is answered again but yields no readings twice;
//! - a multi-packet message is taken in once all its packets arrived, in
//!   any order, or dropped (counted) [`REASSEMBLY_TIMEOUT`] after its
//!   first packet; it is bounded by [`MAX_MESSAGE`] bytes;
//! - readings carry the observation time of the frame (F0F0, the site's
//!   zone), never the arrival time; one engine input per observation time,
//!   oldest first, so every rule judges each moment in order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use tokio::time::Instant;

use super::ascii;
use super::body::{self, Observed, Report};
use super::config::{Read, Sl651Station, address_text};
use super::frame::{Claimed, Direction, EOT, ESC, Encoding, Frame, FrameError, NAK};
use super::metrics::{self, Outcome};
use crate::config::Device;
use crate::model::{BadReason, Input, Quality, Reading, Value};

/// A multi-packet message still missing packets this long after its first
/// one is dropped. The draft names no figure [U]; a station sends its
/// packets back to back, so a minute is generous.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest reassembled message (a picture of a few hundred KiB fits).
pub const MAX_MESSAGE: usize = 4 << 20;
/// Messages remembered per station to recognise a retransmission.
const RECENT: usize = 64;

/// Picture of a 36H report, to be written to the data directory.
#[derive(Debug, PartialEq)]
pub struct Picture {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// What taking some bytes in produced.
#[derive(Debug, Default)]
pub struct Handled {
    /// Frames to send back, in order.
    pub answers: Vec<Vec<u8>>,
    pub inputs: Vec<Input>,
    pub pictures: Vec<Picture>,
    /// The station the bytes came from, once a frame of it was accepted:
    /// a stream remembers it to count later failures against it.
    pub station: Option<[u8; 5]>,
}

struct Partial {
    function: u8,
    total: u16,
    packets: BTreeMap<u16, Vec<u8>>,
    bytes: usize,
    started: Instant,
}

struct Station {
    dev: Arc<Device<Sl651Station>>,
    recent: VecDeque<(u8, u16, NaiveDateTime)>,
    partial: Option<Partial>,
    last_report: Instant,
    overdue: bool,
}

pub struct Receiver {
    stations: HashMap<[u8; 5], Station>,
    tz: chrono_tz::Tz,
    /// Pictures go to `{data_dir}/sl651/{device}/`.
    data_dir: PathBuf,
}

impl Receiver {
    pub fn new(
        devices: Vec<Device<Sl651Station>>,
        tz: chrono_tz::Tz,
        data_dir: PathBuf,
        now: Instant,
    ) -> Receiver {
        let stations = devices
            .into_iter()
            .map(|d| {
                (
                    d.address,
                    Station {
                        dev: Arc::new(d),
                        recent: VecDeque::new(),
                        partial: None,
                        last_report: now,
                        overdue: false,
                    },
                )
            })
            .collect();
        Receiver {
            stations,
            tz,
            data_dir,
        }
    }

    /// The device id of a station address, for counting.
    fn label(&self, a: Option<[u8; 5]>) -> String {
        a.and_then(|a| self.stations.get(&a))
            .map(|s| s.dev.id.clone())
            .unwrap_or_else(|| "unknown".into())
    }

    /// Bytes that were not a frame. `conn` is the station a stream already
    /// belongs to. A bad CRC from a known station is answered NAK, so it
    /// sends again (draft 6.3.2.3: up to 2 retransmissions).
    pub fn failed(
        &mut self,
        err: &FrameError,
        claimed: Option<Claimed>,
        conn: Option<[u8; 5]>,
    ) -> Handled {
        let mut h = Handled::default();
        let known = claimed
            .map(|c| c.station)
            .filter(|a| self.stations.contains_key(a));
        let label = self.label(known.or(conn));
        let outcome = match err {
            FrameError::Garbage => Outcome::Garbage,
            FrameError::BadCrc { .. } => Outcome::BadCrc,
            FrameError::Truncated => Outcome::Truncated,
            FrameError::Oversized(_) => Outcome::Oversized,
            _ => Outcome::Malformed,
        };
        metrics::count(&label, outcome, err);
        if let (FrameError::BadCrc { .. }, Some(c), Some(a)) = (err, claimed, known)
            && let Some(s) = self.stations.get(&a)
        {
            let to = To {
                encoding: c.encoding,
                centre: s.dev.centre.unwrap_or(DEFAULT_CENTRE),
            };
            h.answers
                .push(answer(&s.dev, to, c.function, 0, NAK, Utc::now(), self.tz));
        }
        h
    }

    /// Bytes a stream or datagram ended on: a frame cut short. Counted
    /// against the station its header names, if known.
    pub fn cut_short(&mut self, rest: &[u8], conn: Option<[u8; 5]>) {
        let claimed = rest
            .get(3..8)
            .filter(|_| rest.starts_with(&super::frame::START))
            .and_then(|a| <[u8; 5]>::try_from(a).ok())
            .filter(|a| self.stations.contains_key(a));
        let label = self.label(claimed.or(conn));
        metrics::count(&label, Outcome::Truncated, &FrameError::Truncated);
    }

    /// Takes one frame in (its CRC already checked).
    pub fn frame(&mut self, f: Frame, now: Instant, wall: DateTime<Utc>) -> Handled {
        let mut h = Handled::default();
        let tz = self.tz;
        let Some(st) = self.stations.get_mut(&f.station) else {
            metrics::count(
                "unknown",
                Outcome::UnknownStation,
                &format!("station {}", address_text(&f.station)),
            );
            return h;
        };
        let dev = st.dev.clone();
        if f.direction != Direction::Up {
            metrics::count(&dev.id, Outcome::Malformed, &"a down frame from a station");
            return h;
        }
        if let Some(c) = dev.centre.filter(|&c| c != f.centre) {
            metrics::count(
                &dev.id,
                Outcome::WrongCentre,
                &format!("centre {:02X} where {c:02X} is configured", f.centre),
            );
            return h;
        }
        if f.password != dev.password {
            metrics::count(
                &dev.id,
                Outcome::WrongPassword,
                &format!("password {:04X}", f.password),
            );
            return h;
        }
        h.station = Some(f.station);
        // Answers go back in the frame's encoding, to the centre it named.
        let to = To {
            encoding: f.encoding,
            centre: f.centre,
        };
        let body = match f.function {
            // Keep-alive: no reply (draft 6.6.4.2). It shows the link is
            // up, not that the station still measures: the report
            // deadline is not moved.
            0x2F => {
                metrics::count(&dev.id, Outcome::KeepAlive, &"");
                return h;
            }
            0x30..=0x36 => match f.packet {
                None => f.body,
                Some((total, seq)) => match st.packet(f.function, total, seq, f.body, now) {
                    Ok(Some(body)) => body,
                    Ok(None) => return h,
                    Err(why) => {
                        metrics::count(&dev.id, Outcome::Malformed, &why);
                        return h;
                    }
                },
            },
            // Queries and parameter codes (37H-51H) are the centre's to
            // send: a station sending one gets NAK.
            0x37..=0x51 => {
                metrics::count(
                    &dev.id,
                    Outcome::NotSupported,
                    &format!("function {:02X}H", f.function),
                );
                h.answers
                    .push(answer(&dev, to, f.function, 0, NAK, wall, tz));
                return h;
            }
            other => {
                metrics::count(
                    &dev.id,
                    Outcome::NotSupported,
                    &format!("function {other:02X}H (reserved or user-defined)"),
                );
                return h;
            }
        };
        let end = if dev.keep_online { ESC } else { EOT };
        if f.function == 0x36 && f.encoding == Encoding::Ascii {
            // A picture is binary JPEG data: the draft's ASCII frame has no
            // reading riskgate could check [U].
            metrics::count(
                &dev.id,
                Outcome::NotSupported,
                &"a picture in an ASCII frame",
            );
            return h;
        }
        if f.function == 0x36 {
            match picture(&body) {
                Some((serial, observed, bytes)) => {
                    h.answers
                        .push(answer(&dev, to, f.function, serial, end, wall, tz));
                    if st.seen(f.function, serial, observed) {
                        metrics::count(&dev.id, Outcome::Duplicate, &serial);
                        return h;
                    }
                    st.reported(now);
                    let name = format!("{}-{serial:05}.jpg", observed.format("%Y%m%d%H%M"));
                    h.pictures.push(Picture {
                        path: self.data_dir.join("sl651").join(&dev.id).join(name),
                        bytes,
                    });
                    metrics::count(&dev.id, Outcome::Picture, &serial);
                    h.inputs.push(health(&dev, true, "picture report", wall));
                }
                None => metrics::count(&dev.id, Outcome::Malformed, &"picture without F3F3"),
            }
            return h;
        }
        let decoded = match f.encoding {
            Encoding::Hex => body::decode(&body),
            Encoding::Ascii => ascii::decode_body(&body),
        };
        let report = match decoded {
            Ok(r) => r,
            Err(e) => {
                metrics::count(&dev.id, Outcome::Malformed, &e);
                return h;
            }
        };
        h.answers
            .push(answer(&dev, to, f.function, report.serial, end, wall, tz));
        let first = report.groups.first().map_or(report.sent, |g| g.observed);
        if st.seen(f.function, report.serial, first) {
            metrics::count(&dev.id, Outcome::Duplicate, &report.serial);
            return h;
        }
        st.reported(now);
        metrics::count(&dev.id, Outcome::Ok, &report.serial);
        h.inputs.push(health(&dev, true, "report", wall));
        h.inputs.extend(readings(&dev, &report, tz));
        h
    }

    /// Time passing: stations late with their report, and multi-packet
    /// messages that will not complete.
    pub fn tick(&mut self, now: Instant, wall: DateTime<Utc>) -> Vec<Input> {
        let mut out = Vec::new();
        for st in self.stations.values_mut() {
            let dev = &st.dev;
            let due = dev.report_interval + dev.report_margin;
            if !st.overdue && now.duration_since(st.last_report) > due {
                st.overdue = true;
                tracing::warn!(device = %dev.id, "sl651: no report within {}", humantime::format_duration(due));
                let detail = format!(
                    "no report within {} (interval + margin)",
                    humantime::format_duration(due)
                );
                out.push(health(dev, false, &detail, wall));
            }
            if st
                .partial
                .as_ref()
                .is_some_and(|p| now.duration_since(p.started) > REASSEMBLY_TIMEOUT)
            {
                let p = st.partial.take();
                let got = p.as_ref().map_or(0, |p| p.packets.len());
                let total = p.as_ref().map_or(0, |p| p.total);
                metrics::count(
                    &dev.id,
                    Outcome::Incomplete,
                    &format!("{got} of {total} packets"),
                );
            }
        }
        out
    }
}

impl Station {
    /// Whether this message was taken in already; remembers it if not.
    fn seen(&mut self, function: u8, serial: u16, observed: NaiveDateTime) -> bool {
        let key = (function, serial, observed);
        if self.recent.contains(&key) {
            return true;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(key);
        false
    }

    fn reported(&mut self, now: Instant) {
        self.last_report = now;
        self.overdue = false;
    }

    /// One packet of a multi-packet message; the whole body once complete.
    fn packet(
        &mut self,
        function: u8,
        total: u16,
        seq: u16,
        body: Vec<u8>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, String> {
        // Only one message per station is in flight: packets after the
        // first carry no serial number to tell two apart (draft 6.6).
        let fresh = match &self.partial {
            Some(p) => p.function != function || p.total != total,
            None => true,
        };
        if fresh {
            if let Some(p) = self.partial.take() {
                metrics::count(
                    &self.dev.id,
                    Outcome::Incomplete,
                    &format!(
                        "{} of {} packets, replaced by a new message",
                        p.packets.len(),
                        p.total
                    ),
                );
            }
            self.partial = Some(Partial {
                function,
                total,
                packets: BTreeMap::new(),
                bytes: 0,
                started: now,
            });
        }
        let Some(p) = self.partial.as_mut() else {
            return Ok(None);
        };
        if p.bytes + body.len() > MAX_MESSAGE {
            self.partial = None;
            return Err(format!("message over {MAX_MESSAGE} bytes"));
        }
        p.bytes += body.len();
        // A packet sent again replaces its first copy.
        if let Some(old) = p.packets.insert(seq, body) {
            p.bytes -= old.len();
        }
        if p.packets.len() < usize::from(p.total) {
            return Ok(None);
        }
        Ok(self
            .partial
            .take()
            .map(|p| p.packets.into_values().flatten().collect()))
    }
}

fn health(dev: &Device<Sl651Station>, ok: bool, detail: &str, at: DateTime<Utc>) -> Input {
    Input::DeviceHealth {
        device: dev.id.as_str().into(),
        ok,
        detail: detail.into(),
        at,
    }
}

/// The centre address answers carry when no frame named one (a NAK to a
/// frame whose header could not be fully read).
const DEFAULT_CENTRE: u8 = 0x01;

/// Whom an answer goes to: the encoding and centre address of the frame
/// it answers.
#[derive(Clone, Copy)]
struct To {
    encoding: Encoding,
    centre: u8,
}

/// The centre's answer: the message's serial number and the centre's
/// time as body, `end` as the end byte (draft 6.3, Table 10).
fn answer(
    dev: &Device<Sl651Station>,
    to: To,
    function: u8,
    serial: u16,
    end: u8,
    wall: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Vec<u8> {
    let local = wall.with_timezone(&tz).naive_local();
    let b = match to.encoding {
        Encoding::Hex => {
            let mut b = serial.to_be_bytes().to_vec();
            b.extend(body::bcd_send_time(local));
            b
        }
        Encoding::Ascii => ascii::answer_body(serial, local),
    };
    Frame {
        encoding: to.encoding,
        direction: Direction::Down,
        centre: to.centre,
        station: dev.address,
        password: dev.password,
        function,
        packet: None,
        body: b,
        end,
    }
    .encode()
}

/// A 36H body: serial, send time, F1F1 station + category, F0F0 time,
/// then F3F3 and the JPEG bytes.
fn picture(b: &[u8]) -> Option<(u16, NaiveDateTime, Vec<u8>)> {
    let serial = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    let at = b.windows(2).position(|w| w == [0xF3, 0xF3])?;
    let head = body::decode(&b[..at]).ok()?;
    let observed = head.groups.first().map_or(head.sent, |g| g.observed);
    Some((serial, observed, b[at + 2..].to_vec()))
}

/// The readings of a report, one engine input per observation time.
fn readings(dev: &Device<Sl651Station>, r: &Report, tz: chrono_tz::Tz) -> Vec<Input> {
    let mut by_time: BTreeMap<DateTime<Utc>, Vec<Reading>> = BTreeMap::new();
    let device: Arc<str> = dev.id.as_str().into();
    for g in &r.groups {
        // China keeps no daylight saving; `earliest` still resolves any
        // zone's ambiguous local time without a panic.
        let Some(at) = tz.from_local_datetime(&g.observed).earliest() else {
            continue;
        };
        let at = at.with_timezone(&Utc);
        for p in &dev.points {
            for (id, v) in g.values.iter().filter(|(id, _)| *id == p.element.id) {
                let mut push = |at: DateTime<Utc>, value: Option<Value>, quality: Quality| {
                    by_time.entry(at).or_default().push(Reading {
                        point: p.id.as_str().into(),
                        device: device.clone(),
                        value,
                        quality,
                        at,
                    })
                };
                let num = |x: f64| Value::Num(x * p.scale + p.offset);
                match (v, p.read) {
                    (Observed::Number(x), Read::Value) => push(at, Some(num(*x)), Quality::Good),
                    (Observed::Missing, _) => push(
                        at,
                        None,
                        Quality::Bad(BadReason::Decode(format!(
                            "station reports no value for {:02X}H",
                            id
                        ))),
                    ),
                    (Observed::Series(xs), Read::Value) => {
                        // Slot i covers the 5 minutes ending at
                        // observed - 55 min + 5 i min; the last one ends at
                        // the observation time [U: the draft's figure
                        // shows the hour ending at the report].
                        for (i, x) in xs.iter().enumerate() {
                            let t = at - chrono::Duration::minutes(55 - 5 * i as i64);
                            if let Some(x) = x {
                                push(t, Some(num(*x)), Quality::Good);
                            }
                        }
                    }
                    (Observed::Status(w), Read::Bit { bit, set_means }) => {
                        let set = (w >> bit) & 1 == 1;
                        push(at, Some(Value::Bool(set == set_means)), Quality::Good)
                    }
                    (Observed::Status(w), Read::Value) => {
                        push(at, Some(Value::Num(f64::from(*w))), Quality::Good)
                    }
                    // Validation ties bit reads to ZT, whose value is a
                    // status word.
                    (Observed::Number(_) | Observed::Series(_), Read::Bit { .. }) => {}
                }
            }
        }
    }
    by_time.into_values().map(Input::Readings).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::sl651::config::{Listen, Sl651Point};
    use crate::source::sl651::element;
    use crate::source::sl651::frame::ETX;

    const ADDR: [u8; 5] = [0, 0, 0, 0x30, 0x01];

    fn receiver(now: Instant) -> Receiver {
        let dev = Device::new(
            "st-1",
            Sl651Station {
                listen: Listen::Udp("127.0.0.1:0".into()),
                address: ADDR,
                password: 0x1111,
                report_interval: Duration::from_secs(60),
                report_margin: Duration::from_secs(10),
                keep_online: false,
                centre: None,
                points: vec![Sl651Point {
                    id: "st-1.pt".into(),
                    name: None,
                    unit: None,
                    element: element::lookup("PT").unwrap(),
                    read: Read::Value,
                    scale: 1.0,
                    offset: 0.0,
                    tamper: false,
                    stale_after: Duration::from_secs(70),
                }],
            },
        );
        Receiver::new(
            vec![dev],
            chrono_tz::Asia::Shanghai,
            "/nonexistent".into(),
            now,
        )
    }

    fn body(serial: u16, pt: [u8; 3]) -> Vec<u8> {
        let mut b = serial.to_be_bytes().to_vec();
        b.extend([0x26, 0x07, 0x21, 0x10, 0x00, 0x00]);
        b.extend([0xF0, 0xF0, 0x26, 0x07, 0x21, 0x10, 0x00]);
        b.extend([0x26, 0x19]);
        b.extend(pt);
        b
    }

    fn up(body: Vec<u8>, packet: Option<(u16, u16)>) -> Frame {
        Frame {
            encoding: Encoding::Hex,
            direction: Direction::Up,
            centre: 1,
            station: ADDR,
            password: 0x1111,
            function: 0x33,
            packet,
            body,
            end: ETX,
        }
    }

    fn readings(h: &Handled) -> usize {
        h.inputs
            .iter()
            .map(|i| match i {
                Input::Readings(r) => r.len(),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn a_retransmission_is_answered_but_taken_once() {
        let t0 = Instant::now();
        let mut r = receiver(t0);
        let h = r.frame(up(body(5, [0, 0x12, 0x34]), None), t0, Utc::now());
        assert_eq!((h.answers.len(), readings(&h)), (1, 1));
        let h = r.frame(up(body(5, [0, 0x12, 0x34]), None), t0, Utc::now());
        assert_eq!((h.answers.len(), readings(&h)), (1, 0));
        let h = r.frame(up(body(6, [0, 0x12, 0x35]), None), t0, Utc::now());
        assert_eq!(readings(&h), 1);
    }

    #[test]
    fn packets_in_any_order_and_the_reassembly_timeout() {
        let t0 = Instant::now();
        let mut r = receiver(t0);
        let b = body(9, [0, 0x00, 0x10]);
        let (p1, p2) = b.split_at(7);
        let h = r.frame(up(p2.to_vec(), Some((2, 2))), t0, Utc::now());
        assert!(h.answers.is_empty() && h.inputs.is_empty());
        let h = r.frame(up(p1.to_vec(), Some((2, 1))), t0, Utc::now());
        assert_eq!((h.answers.len(), readings(&h)), (1, 1));

        // Half a message, then silence past the timeout: dropped, counted.
        let before = metrics::get("st-1", Outcome::Incomplete);
        let b = body(10, [0, 0x00, 0x11]);
        r.frame(up(b[..7].to_vec(), Some((2, 1))), t0, Utc::now());
        r.tick(t0 + REASSEMBLY_TIMEOUT + Duration::from_secs(1), Utc::now());
        assert_eq!(metrics::get("st-1", Outcome::Incomplete), before + 1);
        let h = r.frame(up(b[7..].to_vec(), Some((2, 2))), t0, Utc::now());
        assert!(h.inputs.is_empty(), "the late half alone is not a message");
    }

    #[test]
    fn a_missed_report_is_offline_once_and_a_report_clears_it() {
        let t0 = Instant::now();
        let mut r = receiver(t0);
        assert!(r.tick(t0 + Duration::from_secs(69), Utc::now()).is_empty());
        let late = r.tick(t0 + Duration::from_secs(71), Utc::now());
        assert!(matches!(late[..], [Input::DeviceHealth { ok: false, .. }]));
        assert!(r.tick(t0 + Duration::from_secs(80), Utc::now()).is_empty());
        let h = r.frame(
            up(body(1, [0, 0, 1]), None),
            t0 + Duration::from_secs(81),
            Utc::now(),
        );
        assert!(matches!(h.inputs[0], Input::DeviceHealth { ok: true, .. }));
    }

    #[test]
    fn wrong_password_and_strangers_get_nothing() {
        let t0 = Instant::now();
        let mut r = receiver(t0);
        let mut f = up(body(2, [0, 0, 2]), None);
        f.password = 0x2222;
        let h = r.frame(f.clone(), t0, Utc::now());
        assert!(h.answers.is_empty() && h.inputs.is_empty());
        f.password = 0x1111;
        f.station = [9, 9, 9, 9, 9];
        let h = r.frame(f, t0, Utc::now());
        assert!(h.answers.is_empty() && h.inputs.is_empty());
    }
}
