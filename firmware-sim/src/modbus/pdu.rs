//! Protocol data unit handling shared by the TCP and RTU servers.
//!
//! A PDU is `function code + data`, without MBAP header, unit id or CRC.

use super::exception::{ILLEGAL_DATA_ADDRESS, ILLEGAL_DATA_VALUE, ILLEGAL_FUNCTION};
use crate::bank::RegisterBank;

/// Largest number of registers in one read (FC 3/4).
pub const MAX_READ_REGISTERS: u16 = 125;
/// Largest number of bits in one read (FC 1/2).
pub const MAX_READ_BITS: u16 = 2000;
/// Largest number of registers in one write (FC 16), per the Modbus spec.
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// Largest number of coils in one write (FC 15), per the Modbus spec.
pub const MAX_WRITE_COILS: u16 = 1968;

/// Build an exception response PDU.
pub fn exception_response(function: u8, code: u8) -> Vec<u8> {
    vec![function | 0x80, code]
}

/// True for the function codes that modify the bank (5, 6, 15, 16).
pub fn is_write_function(function: u8) -> bool {
    matches!(function, 5 | 6 | 15 | 16)
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

/// Whether `addr .. addr+qty` lies within the valid range `0..size`.
fn in_range(addr: u16, qty: u16, size: u16) -> bool {
    addr as u32 + qty as u32 <= size as u32
}

/// Execute one request PDU against `bank` and return the response PDU
/// (a normal response or an exception response). Never panics on malformed input.
///
/// Validation order follows the Modbus spec: unsupported function -> 01,
/// bad quantity / byte count / value / PDU length -> 03, address range -> 02.
pub fn handle_pdu(bank: &RegisterBank, pdu: &[u8]) -> Vec<u8> {
    let Some(&function) = pdu.first() else {
        return exception_response(0, ILLEGAL_FUNCTION);
    };
    match function {
        1 | 2 => read_bits(bank, function, pdu),
        3 | 4 => read_registers(bank, function, pdu),
        5 => write_single_coil(bank, pdu),
        6 => write_single_register(bank, pdu),
        15 => write_multiple_coils(bank, pdu),
        16 => write_multiple_registers(bank, pdu),
        _ => exception_response(function, ILLEGAL_FUNCTION),
    }
}

fn read_bits(bank: &RegisterBank, function: u8, pdu: &[u8]) -> Vec<u8> {
    if pdu.len() != 5 {
        return exception_response(function, ILLEGAL_DATA_VALUE);
    }
    let addr = be16(pdu, 1);
    let qty = be16(pdu, 3);
    if qty == 0 || qty > MAX_READ_BITS {
        return exception_response(function, ILLEGAL_DATA_VALUE);
    }
    let t = bank.read();
    if !in_range(addr, qty, t.size) {
        return exception_response(function, ILLEGAL_DATA_ADDRESS);
    }
    let table = if function == 1 { &t.coils } else { &t.discrete };
    let nbytes = (qty as usize).div_ceil(8);
    let mut out = Vec::with_capacity(2 + nbytes);
    out.push(function);
    out.push(nbytes as u8);
    out.extend(pack_bits(
        &table[addr as usize..addr as usize + qty as usize],
    ));
    out
}

/// Pack bits LSB first: bit 0 of the first byte is the first bit.
pub fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut bytes = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            bytes[i / 8] |= 1 << (i % 8);
        }
    }
    bytes
}

/// Unpack `n` bits, LSB first.
pub fn unpack_bits(bytes: &[u8], n: usize) -> Vec<bool> {
    (0..n)
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect()
}

fn read_registers(bank: &RegisterBank, function: u8, pdu: &[u8]) -> Vec<u8> {
    if pdu.len() != 5 {
        return exception_response(function, ILLEGAL_DATA_VALUE);
    }
    let addr = be16(pdu, 1);
    let qty = be16(pdu, 3);
    if qty == 0 || qty > MAX_READ_REGISTERS {
        return exception_response(function, ILLEGAL_DATA_VALUE);
    }
    let t = bank.read();
    if !in_range(addr, qty, t.size) {
        return exception_response(function, ILLEGAL_DATA_ADDRESS);
    }
    let table = if function == 3 { &t.holding } else { &t.input };
    let mut out = Vec::with_capacity(2 + 2 * qty as usize);
    out.push(function);
    out.push((qty * 2) as u8);
    for &w in &table[addr as usize..addr as usize + qty as usize] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out
}

fn write_single_coil(bank: &RegisterBank, pdu: &[u8]) -> Vec<u8> {
    if pdu.len() != 5 {
        return exception_response(5, ILLEGAL_DATA_VALUE);
    }
    let addr = be16(pdu, 1);
    let value = match be16(pdu, 3) {
        0xFF00 => true,
        0x0000 => false,
        _ => return exception_response(5, ILLEGAL_DATA_VALUE),
    };
    let mut t = bank.write();
    if !in_range(addr, 1, t.size) {
        return exception_response(5, ILLEGAL_DATA_ADDRESS);
    }
    t.coils[addr as usize] = value;
    pdu.to_vec()
}

fn write_single_register(bank: &RegisterBank, pdu: &[u8]) -> Vec<u8> {
    if pdu.len() != 5 {
        return exception_response(6, ILLEGAL_DATA_VALUE);
    }
    let addr = be16(pdu, 1);
    let value = be16(pdu, 3);
    let mut t = bank.write();
    if !in_range(addr, 1, t.size) {
        return exception_response(6, ILLEGAL_DATA_ADDRESS);
    }
    t.holding[addr as usize] = value;
    pdu.to_vec()
}

fn write_multiple_coils(bank: &RegisterBank, pdu: &[u8]) -> Vec<u8> {
    if pdu.len() < 6 {
        return exception_response(15, ILLEGAL_DATA_VALUE);
    }
    let addr = be16(pdu, 1);
    let qty = be16(pdu, 3);
    let byte_count = pdu[5] as usize;
    if qty == 0
        || qty > MAX_WRITE_COILS
        || byte_count != (qty as usize).div_ceil(8)
        || pdu.len() != 6 + byte_count
    {
        return exception_response(15, ILLEGAL_DATA_VALUE);
    }
    let mut t = bank.write();
    if !in_range(addr, qty, t.size) {
        return exception_response(15, ILLEGAL_DATA_ADDRESS);
    }
    let bits = unpack_bits(&pdu[6..], qty as usize);
    t.coils[addr as usize..addr as usize + qty as usize].copy_from_slice(&bits);
    pdu[..5].to_vec()
}

fn write_multiple_registers(bank: &RegisterBank, pdu: &[u8]) -> Vec<u8> {
    if pdu.len() < 6 {
        return exception_response(16, ILLEGAL_DATA_VALUE);
    }
    let addr = be16(pdu, 1);
    let qty = be16(pdu, 3);
    let byte_count = pdu[5] as usize;
    if qty == 0
        || qty > MAX_WRITE_REGISTERS
        || byte_count != qty as usize * 2
        || pdu.len() != 6 + byte_count
    {
        return exception_response(16, ILLEGAL_DATA_VALUE);
    }
    let mut t = bank.write();
    if !in_range(addr, qty, t.size) {
        return exception_response(16, ILLEGAL_DATA_ADDRESS);
    }
    for i in 0..qty as usize {
        t.holding[addr as usize + i] = be16(pdu, 6 + 2 * i);
    }
    pdu[..5].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes() {
        let bank = RegisterBank::new();
        bank.set_holding_words(10, &[0x1234, 0xABCD]);
        assert_eq!(
            handle_pdu(&bank, &[3, 0, 10, 0, 2]),
            vec![3, 4, 0x12, 0x34, 0xAB, 0xCD]
        );
        bank.set_discrete(1, true);
        bank.set_discrete(8, true);
        assert_eq!(handle_pdu(&bank, &[2, 0, 0, 0, 9]), vec![2, 2, 0b10, 1]);
        assert_eq!(
            handle_pdu(&bank, &[6, 0, 5, 0x01, 0x02]),
            vec![6, 0, 5, 1, 2]
        );
        assert_eq!(bank.holding(5), 0x0102);
        assert_eq!(
            handle_pdu(&bank, &[15, 0, 3, 0, 10, 2, 0b0000_0101, 0b10]),
            vec![15, 0, 3, 0, 10]
        );
        let coils: Vec<bool> = (3..13).map(|a| bank.coil(a)).collect();
        assert_eq!(
            coils,
            vec![
                true, false, true, false, false, false, false, false, false, true
            ]
        );
    }

    #[test]
    fn exceptions() {
        let bank = RegisterBank::new();
        assert_eq!(handle_pdu(&bank, &[3, 0, 0, 0, 0]), vec![0x83, 3]);
        assert_eq!(handle_pdu(&bank, &[3, 0, 0, 0, 126]), vec![0x83, 3]);
        assert_eq!(handle_pdu(&bank, &[1, 0, 0, 0x07, 0xD1]), vec![0x81, 3]);
        assert_eq!(handle_pdu(&bank, &[1, 0, 0, 0x07, 0xD0]).len(), 2 + 250);
        assert_eq!(handle_pdu(&bank, &[3, 0x27, 0x0F, 0, 2]), vec![0x83, 2]);
        assert_eq!(handle_pdu(&bank, &[3, 0x27, 0x0E, 0, 2])[0], 3);
        assert_eq!(handle_pdu(&bank, &[5, 0, 0, 0x12, 0x34]), vec![0x85, 3]);
        assert_eq!(handle_pdu(&bank, &[0x2B, 0x0E, 1, 0]), vec![0xAB, 1]);
        assert_eq!(
            handle_pdu(&bank, &[16, 0, 0, 0, 1, 3, 0, 0, 0]),
            vec![0x90, 3]
        );
        assert_eq!(handle_pdu(&bank, &[3, 0]), vec![0x83, 3]);
        assert_eq!(handle_pdu(&bank, &[]), vec![0x80, 1]);
    }
}
