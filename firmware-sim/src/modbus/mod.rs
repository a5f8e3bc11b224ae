//! Hand-written Modbus server side: PDU handling, CRC, TCP server, RTU line.

pub mod pdu;
pub mod rtu;
pub mod tcp;
pub mod wire;

pub use pdu::{handle_pdu, is_write_function};
pub use rtu::{Pace, RtuLine};
pub use tcp::TcpSlave;

/// Modbus CRC-16: init 0xFFFF, reflected polynomial 0xA001.
/// On the wire the CRC is appended low byte first.
pub fn crc16_modbus(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= b as u16;
        for _ in 0..8 {
            if crc & 1 != 0 {
                crc = (crc >> 1) ^ 0xA001;
            } else {
                crc >>= 1;
            }
        }
    }
    crc
}

/// Append the Modbus CRC (low byte first) to `frame`.
pub fn append_crc(frame: &mut Vec<u8>) {
    let crc = crc16_modbus(frame);
    frame.push((crc & 0xFF) as u8);
    frame.push((crc >> 8) as u8);
}

/// True if the last two bytes of `frame` are the correct CRC of the rest.
pub fn check_crc(frame: &[u8]) -> bool {
    if frame.len() < 3 {
        return false;
    }
    let (body, crc) = frame.split_at(frame.len() - 2);
    crc16_modbus(body) == u16::from_le_bytes([crc[0], crc[1]])
}

/// Modbus exception codes.
pub mod exception {
    pub const ILLEGAL_FUNCTION: u8 = 0x01;
    pub const ILLEGAL_DATA_ADDRESS: u8 = 0x02;
    pub const ILLEGAL_DATA_VALUE: u8 = 0x03;
    pub const SERVER_DEVICE_FAILURE: u8 = 0x04;
    pub const GATEWAY_TARGET_FAILED: u8 = 0x0B;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_known_vectors() {
        let mut f = vec![0x01, 0x03, 0x00, 0x00, 0x00, 0x01];
        append_crc(&mut f);
        assert_eq!(&f[6..], &[0x84, 0x0A]);
        assert!(check_crc(&f));
        // 01 03 00 00 00 0A -> C5 CD
        assert_eq!(crc16_modbus(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A]), 0xCDC5);
        assert!(!check_crc(&[
            0x01, 0x03, 0x00, 0x00, 0x00, 0x01, 0x0A, 0x84
        ]));
    }
}
