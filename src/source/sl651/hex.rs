//! The HEX/BCD frame of SL 651-2014 (7E7E): one frame from the front of
//! a buffer that starts with 7E7E, and a frame's bytes.
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

use super::link::{
    ACK, Claimed, Direction, ENQ, EOT, ESC, ETB, ETX, Encoding, Frame, FrameError, MAX_BODY, NAK,
    STX, SYN, Split, crc16,
};

/// Frame start of the HEX/BCD encoding (draft 6.2.2, Table 10).
pub const START: [u8; 2] = [0x7E, 0x7E];
/// Bytes from the start through STX (draft; public code agrees:
/// `PACKAGE_HEAD_STX_LEN 14`).
pub const HEADER: usize = 14;
/// The 3 bytes after SYN: total packets (high 12 bits), sequence (low 12).
pub const PACKET_INFO: usize = 3;
/// The largest frame: header, packet info, body, end byte and CRC.
pub const MAX_FRAME: usize = HEADER + PACKET_INFO + MAX_BODY + 3;

/// One HEX frame from the front of `buf`, which starts with 7E7E (the
/// caller, `frame::split`, skips anything else). Never panics.
///
/// Resynchronisation: a failed frame drops only its first byte, so a good
/// frame that began inside the bytes a bad header claimed is still found.
pub fn split(buf: &[u8]) -> Split {
    if buf.len() < HEADER {
        return Split::NeedMore;
    }
    let claimed = |b: &[u8]| Claimed {
        station: [b[3], b[4], b[5], b[6], b[7]],
        function: b[10],
        encoding: Encoding::Hex,
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
            encoding: Encoding::Hex,
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

/// A HEX frame's bytes, CRC high byte first.
pub fn encode(f: &Frame) -> Vec<u8> {
    let info = if f.packet.is_some() { PACKET_INFO } else { 0 };
    let mut out = Vec::with_capacity(HEADER + info + f.body.len() + 3);
    out.extend_from_slice(&START);
    match f.direction {
        Direction::Up => {
            out.push(f.centre);
            out.extend_from_slice(&f.station);
        }
        Direction::Down => {
            out.extend_from_slice(&f.station);
            out.push(f.centre);
        }
    }
    out.extend_from_slice(&f.password.to_be_bytes());
    out.push(f.function);
    let dir: u16 = match f.direction {
        Direction::Up => 0x0000,
        Direction::Down => 0x8000,
    };
    // Bodies are built by this crate and bounded by MAX_BODY.
    let len = (f.body.len().min(MAX_BODY)) as u16;
    out.extend_from_slice(&(dir | len).to_be_bytes());
    match f.packet {
        None => out.push(STX),
        Some((total, seq)) => {
            out.push(SYN);
            let v = (u32::from(total & 0xFFF) << 12) | u32::from(seq & 0xFFF);
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&f.body[..usize::from(len)]);
    out.push(f.end);
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}
