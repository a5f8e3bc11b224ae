//! What the HEX/BCD (`hex`) and ASCII (`ascii`) frames of SL 651-2014
//! share: the control characters, the CRC, a frame's fields once read,
//! and why bytes were not a frame. `frame` puts the two encodings behind
//! one splitter.
//!
//! Source: standards-research.md §4.1, from a pre-publication draft of the
//! standard **[C, draft]**.

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

/// A body is 1-4095 bytes (low 12 bits of the length field).
pub const MAX_BODY: usize = 0x0FFF;
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

/// How a frame is written: HEX/BCD bytes (7E7E) or ASCII characters
/// (SOH, module `ascii`). A station answers in the encoding it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Ascii,
}

/// One frame, CRC checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub encoding: Encoding,
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
    pub encoding: Encoding,
}

/// Why bytes were not a frame. Each is counted by the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bytes before a frame start (7E7E or SOH)")]
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
