//! One splitter for both encodings of SL 651-2014: a byte stream becomes
//! HEX/BCD frames (7E7E, `hex`) and ASCII frames (SOH, `ascii`), whatever
//! lies between them is skipped as garbage, and a frame encodes itself in
//! its own encoding. The shared pieces (`link`) are re-exported here.
//!
//! Invariants: [`split`] never panics and never reads past its input
//! whatever the bytes; a frame it returns passed its CRC; a frame longer
//! than its encoding's largest (`hex::MAX_FRAME`, `ascii::MAX_FRAME`) is
//! refused before it is buffered.

use super::{ascii, hex};

pub use super::hex::{HEADER, MAX_FRAME, PACKET_INFO, START};
pub use super::link::*;

/// Where the next frame could start: 7E7E (HEX) or a plausible SOH
/// (ASCII), at or after `from`.
fn next_start(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&i| {
        buf[i..].starts_with(&START) || (buf[i] == ascii::SOH && ascii::plausible(&buf[i..]))
    })
}

/// Looks for one frame at the front of `buf`. Never panics.
///
/// Resynchronisation: a failed frame drops only its first byte, so a good
/// frame that began inside the bytes a bad header claimed is still found.
pub fn split(buf: &[u8]) -> Split {
    if buf.is_empty() {
        return Split::NeedMore;
    }
    if buf[0] == ascii::SOH && ascii::plausible(buf) {
        return ascii::split(buf);
    }
    // Garbage before a start: drop up to the next candidate start.
    if buf[0] != START[0] || (buf.len() >= 2 && buf[1] != START[1]) {
        let next = next_start(buf, 1).unwrap_or_else(|| {
            // Keep a trailing 7E: it may be the first half of a start.
            if buf.last() == Some(&START[0]) {
                buf.len() - 1
            } else {
                buf.len()
            }
        });
        return Split::Skip(next.max(1), FrameError::Garbage, None);
    }
    hex::split(buf)
}

impl Frame {
    /// The frame's bytes in its encoding, CRC high byte first.
    pub fn encode(&self) -> Vec<u8> {
        match self.encoding {
            Encoding::Hex => hex::encode(self),
            Encoding::Ascii => ascii::encode(self),
        }
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
            encoding: Encoding::Hex,
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
