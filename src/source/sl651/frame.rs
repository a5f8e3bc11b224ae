//! The HEX/BCD frame of SL 651-2014 (7E7E): split a byte stream into
//! frames, check each one's CRC, and build the centre's answers.
//!
//! Source: standards-research.md §4.1, from a pre-publication draft of the
//! standard (header "SL/T XXXXX—XXXX") **[C, draft]**. Layout of an up
//! frame (station → centre):
//!
//! ```text
//! 7E 7E | centre 1 | station 5 | password 2 | function 1 | dir+len 2 |
//! STX 02 (or SYN 16 + 3 bytes total/seq) | body | ETX 03 / ETB 17 | CRC 2
//! ```
//!
//! A down frame (centre → station) names the station before the centre
//! (draft Table 20/21) and ends with ENQ, ACK, NAK, EOT or ESC.
//!
//! Invariants: [`split`] never panics and never reads past its input
//! whatever the bytes; a frame it returns passed its CRC; a frame longer
//! than [`MAX_FRAME`] is refused before it is buffered.

/// Frame start of the HEX/BCD encoding (draft 6.2.2, Table 10).
pub const START: [u8; 2] = [0x7E, 0x7E];
/// Start of the body of a single-packet frame.
pub const STX: u8 = 0x02;
/// Start of the body of one packet of a multi-packet message (M3).
pub const SYN: u8 = 0x16;
/// Up: last (or only) packet.
pub const ETX: u8 = 0x03;
/// Up: more packets follow.
pub const ETB: u8 = 0x17;
/// Down: a query.
pub const ENQ: u8 = 0x05;
/// Down: received, continue.
pub const ACK: u8 = 0x06;
/// Down: received with errors, send again.
pub const NAK: u8 = 0x15;
/// Down: end of the exchange, the station may leave the link.
pub const EOT: u8 = 0x04;
/// Down: end of the exchange, the station stays on line (10 min).
pub const ESC: u8 = 0x1B;

/// Bytes from the start through STX (draft; public code agrees:
/// `PACKAGE_HEAD_STX_LEN 14`).
pub const HEADER: usize = 14;
/// The 3 bytes after SYN: total packets (high 12 bits), sequence (low 12).
pub const PACKET_INFO: usize = 3;
/// A body is 1-4095 bytes (low 12 bits of the length field).
pub const MAX_BODY: usize = 0x0FFF;
/// The largest frame: header, packet info, body, end byte and CRC.
pub const MAX_FRAME: usize = HEADER + PACKET_INFO + MAX_BODY + 3;

/// CRC-16 with the reflected polynomial A001H (X^16+X^15+X^2+1) and
/// initial value FFFFH (draft Annex H.3.2). The same arithmetic as Modbus
/// RTU's CRC; only the byte order on the wire differs (high byte first
/// here, low byte first in Modbus RTU, draft 5.2).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Which way a frame travels (high 4 bits of the length field: 0000 up,
/// 1000 down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

/// One frame, CRC checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub direction: Direction,
    pub centre: u8,
    /// A5…A1 as on the wire.
    pub station: [u8; 5],
    pub password: u16,
    pub function: u8,
    /// `Some((total, seq))` for a packet of a multi-packet message (SYN);
    /// both 1-4095.
    pub packet: Option<(u16, u16)>,
    pub body: Vec<u8>,
    /// ETX, ETB (up) or ENQ, ACK, NAK, EOT, ESC (down).
    pub end: u8,
}

/// What the header of a frame that failed says, when it could be read:
/// enough to count the failure against its station.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub station: [u8; 5],
    pub function: u8,
}

/// Why bytes were not a frame. Each is counted by the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bytes before a frame start (7E7E)")]
    Garbage,
    #[error("CRC {got:04X} does not match {want:04X}")]
    BadCrc { got: u16, want: u16 },
    #[error("frame ends before its declared length")]
    Truncated,
    #[error("declared body of {0} bytes is over the 4095 a frame may carry")]
    Oversized(usize),
    #[error("direction nibble {0:#03x} is neither up (0) nor down (8)")]
    BadDirection(u8),
    #[error("body start {0:#04x} is neither STX nor SYN")]
    BadBodyStart(u8),
    #[error("end byte {0:#04x} is not one of ETX ETB ENQ ACK NAK EOT ESC")]
    BadEnd(u8),
    #[error("packet {seq} of {total}: sequence must be 1..=total")]
    BadPacket { total: u16, seq: u16 },
}

/// The result of looking at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// A frame, and the bytes it took from the front.
    Frame(Frame, usize),
    /// Not enough bytes yet for the frame that starts at the front.
    NeedMore,
    /// Drop this many bytes from the front: they are not (the start of) a
    /// valid frame. `Claimed` when the header could be read.
    Skip(usize, FrameError, Option<Claimed>),
}

/// Looks for one frame at the front of `buf`. Never panics.
///
/// Resynchronisation: a failed frame drops only its first byte, so a good
/// frame that began inside the bytes a bad header claimed is still found.
pub fn split(buf: &[u8]) -> Split {
    // Garbage before a start: drop up to the next candidate start.
    if buf.is_empty() {
        return Split::NeedMore;
    }
    if buf[0] != START[0] || (buf.len() >= 2 && buf[1] != START[1]) {
        let next = buf[1..]
            .windows(2)
            .position(|w| w == START)
            .map(|i| i + 1)
            .unwrap_or_else(|| {
                // Keep a trailing 7E: it may be the first half of a start.
                if buf.last() == Some(&START[0]) {
                    buf.len() - 1
                } else {
                    buf.len()
                }
            });
        return Split::Skip(next.max(1), FrameError::Garbage, None);
    }
    if buf.len() < HEADER {
        return Split::NeedMore;
    }
    let claimed = |b: &[u8]| Claimed {
        station: [b[3], b[4], b[5], b[6], b[7]],
        function: b[10],
    };
    let (direction, station, centre) = match buf[11] >> 4 {
        0x0 => (
            Direction::Up,
            [buf[3], buf[4], buf[5], buf[6], buf[7]],
            buf[2],
        ),
        // A down frame: station first, then the centre.
        0x8 => (
            Direction::Down,
            [buf[2], buf[3], buf[4], buf[5], buf[6]],
            buf[7],
        ),
        other => return Split::Skip(1, FrameError::BadDirection(other), None),
    };
    let len = (usize::from(buf[11] & 0x0F) << 8) | usize::from(buf[12]);
    let info = match buf[13] {
        STX => 0,
        SYN => PACKET_INFO,
        other => return Split::Skip(1, FrameError::BadBodyStart(other), Some(claimed(buf))),
    };
    if len > MAX_BODY {
        return Split::Skip(1, FrameError::Oversized(len), Some(claimed(buf)));
    }
    // The draft does not say whether a SYN frame's length counts the 3
    // packet bytes [U]; try the reading that counts them (the shorter
    // frame) first, then the one that does not. Shorter first, so that
    // waiting for more bytes never waits past a frame that is complete.
    let candidates: &[usize] = if info == 0 { &[0] } else { &[0, PACKET_INFO] };
    let mut first_err = None;
    for &extra in candidates {
        let total = HEADER + extra + len + 3;
        if buf.len() < total {
            return Split::NeedMore;
        }
        let want = crc16(&buf[..total - 2]);
        let got = u16::from_be_bytes([buf[total - 2], buf[total - 1]]);
        if want != got {
            first_err.get_or_insert(FrameError::BadCrc { got, want });
            continue;
        }
        let end = buf[total - 3];
        let ok_end = match direction {
            Direction::Up => matches!(end, ETX | ETB),
            Direction::Down => matches!(end, ENQ | ACK | NAK | EOT | ESC),
        };
        if !ok_end {
            return Split::Skip(1, FrameError::BadEnd(end), Some(claimed(buf)));
        }
        let packet = if info > 0 {
            let v = u32::from(buf[14]) << 16 | u32::from(buf[15]) << 8 | u32::from(buf[16]);
            let (t, s) = ((v >> 12) as u16, (v & 0xFFF) as u16);
            if t == 0 || s == 0 || s > t {
                let e = FrameError::BadPacket { total: t, seq: s };
                return Split::Skip(1, e, Some(claimed(buf)));
            }
            Some((t, s))
        } else {
            None
        };
        let body_from = HEADER + info;
        let body_to = total - 3;
        if body_from > body_to {
            // A SYN frame whose length cannot even hold its packet bytes.
            let e = FrameError::BadPacket { total: 0, seq: 0 };
            return Split::Skip(1, e, Some(claimed(buf)));
        }
        let body = buf[body_from..body_to].to_vec();
        let frame = Frame {
            direction,
            centre,
            station,
            password: u16::from_be_bytes([buf[8], buf[9]]),
            function: buf[10],
            packet,
            body,
            end,
        };
        return Split::Frame(frame, total);
    }
    let err = first_err.unwrap_or(FrameError::Truncated);
    // A frame start inside the claimed span: this frame was cut short and
    // the next one began (a truncated frame on a stream).
    let span = HEADER + len + 3;
    let cut = buf[2..span.min(buf.len())].windows(2).any(|w| w == START);
    let err = if cut { FrameError::Truncated } else { err };
    Split::Skip(1, err, Some(claimed(buf)))
}

impl Frame {
    /// The frame's bytes, CRC high byte first.
    pub fn encode(&self) -> Vec<u8> {
        let info = if self.packet.is_some() {
            PACKET_INFO
        } else {
            0
        };
        let mut out = Vec::with_capacity(HEADER + info + self.body.len() + 3);
        out.extend_from_slice(&START);
        match self.direction {
            Direction::Up => {
                out.push(self.centre);
                out.extend_from_slice(&self.station);
            }
            Direction::Down => {
                out.extend_from_slice(&self.station);
                out.push(self.centre);
            }
        }
        out.extend_from_slice(&self.password.to_be_bytes());
        out.push(self.function);
        let dir: u16 = match self.direction {
            Direction::Up => 0x0000,
            Direction::Down => 0x8000,
        };
        // Bodies are built by this crate and bounded by MAX_BODY.
        let len = (self.body.len().min(MAX_BODY)) as u16;
        out.extend_from_slice(&(dir | len).to_be_bytes());
        match self.packet {
            None => out.push(STX),
            Some((total, seq)) => {
                out.push(SYN);
                let v = (u32::from(total & 0xFFF) << 12) | u32::from(seq & 0xFFF);
                out.extend_from_slice(&v.to_be_bytes()[1..]);
            }
        }
        out.extend_from_slice(&self.body[..usize::from(len)]);
        out.push(self.end);
        let crc = crc16(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC catalogue's check value of CRC-16/MODBUS (reflected A001H,
    /// init FFFFH, no final XOR) over ASCII "123456789" is 4B37H: the same
    /// parameters as the draft's Annex H.3.2.
    #[test]
    fn crc_matches_the_catalogue_check_value() {
        assert_eq!(crc16(b"123456789"), 0x4B37);
    }

    fn sample() -> Frame {
        Frame {
            direction: Direction::Up,
            centre: 0x01,
            station: [0x00, 0x12, 0x34, 0x56, 0x78],
            password: 0x1234,
            function: 0x32,
            packet: None,
            body: vec![0x00, 0x01, 0x26, 0x12, 0x03, 0x10, 0x00, 0x00],
            end: ETX,
        }
    }

    #[test]
    fn crc_goes_high_byte_first() {
        let bytes = sample().encode();
        let n = bytes.len();
        let crc = crc16(&bytes[..n - 2]);
        assert_eq!(bytes[n - 2], (crc >> 8) as u8);
        assert_eq!(bytes[n - 1], crc as u8);
        assert_eq!(bytes[n - 3], ETX);
        assert_eq!(&bytes[..3], &[0x7E, 0x7E, 0x01]);
    }

    #[test]
    fn split_finds_a_frame_after_garbage_and_keeps_the_rest() {
        let f = sample();
        let mut buf = vec![0x00, 0x7E, 0x11];
        buf.extend(f.encode());
        buf.extend([0x7E]);
        let Split::Skip(n, FrameError::Garbage, None) = split(&buf) else {
            panic!("garbage first")
        };
        assert_eq!(n, 3);
        let Split::Frame(got, used) = split(&buf[n..]) else {
            panic!("then the frame")
        };
        assert_eq!(got, f);
        assert_eq!(split(&buf[n + used..]), Split::NeedMore);
    }

    #[test]
    fn a_changed_byte_is_a_bad_crc() {
        let mut bytes = sample().encode();
        bytes[16] ^= 0x40;
        assert!(matches!(
            split(&bytes),
            Split::Skip(1, FrameError::BadCrc { .. }, Some(_))
        ));
    }

    #[test]
    fn a_cut_frame_followed_by_another_is_truncated() {
        let good = sample().encode();
        let mut buf = good[..good.len() - 4].to_vec();
        buf.extend(&good);
        assert!(matches!(
            split(&buf),
            Split::Skip(1, FrameError::Truncated, Some(_))
        ));
    }

    #[test]
    fn multi_packet_frames_round_trip() {
        let f = Frame {
            packet: Some((3, 2)),
            end: ETB,
            ..sample()
        };
        let Split::Frame(got, n) = split(&f.encode()) else {
            panic!("a frame")
        };
        assert_eq!(n, f.encode().len());
        assert_eq!(got, f);
    }

    #[test]
    fn down_frames_name_the_station_first() {
        let f = Frame {
            direction: Direction::Down,
            end: EOT,
            ..sample()
        };
        let bytes = f.encode();
        assert_eq!(&bytes[2..7], &f.station);
        assert_eq!(bytes[7], f.centre);
        assert_eq!(bytes[11] >> 4, 0x8);
        let Split::Frame(got, _) = split(&bytes) else {
            panic!("a frame")
        };
        assert_eq!(got, f);
    }
}
