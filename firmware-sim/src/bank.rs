//! Register memory of one simulated Modbus slave.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of entries in each table (the whole Modbus address space).
pub const TABLE_SIZE: usize = 65536;

/// Default number of valid addresses (see [`RegisterBank::set_size`]).
pub const DEFAULT_SIZE: u16 = 10000;

pub(crate) struct Tables {
    pub(crate) holding: Vec<u16>,
    pub(crate) input: Vec<u16>,
    pub(crate) coils: Vec<bool>,
    pub(crate) discrete: Vec<bool>,
    pub(crate) size: u16,
}

struct Inner {
    tables: RwLock<Tables>,
    served_total: AtomicU64,
    served_by_fc: Vec<AtomicU64>,
}

/// Shared register memory of one Modbus slave: holding registers, input
/// registers, coils and discrete inputs, 65536 entries each, all zero at start.
///
/// Cheap to clone; every clone refers to the same memory. Multi-word writes
/// ([`set_holding_words`](Self::set_holding_words)) are atomic with respect to
/// Modbus reads, so a client never sees half of an updated f32.
#[derive(Clone)]
pub struct RegisterBank {
    inner: Arc<Inner>,
}

impl Default for RegisterBank {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RegisterBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterBank")
            .field("size", &self.size())
            .field("requests_served", &self.requests_served())
            .finish()
    }
}

impl RegisterBank {
    /// A bank with all four tables zeroed and [`DEFAULT_SIZE`] valid addresses.
    pub fn new() -> Self {
        RegisterBank {
            inner: Arc::new(Inner {
                tables: RwLock::new(Tables {
                    holding: vec![0; TABLE_SIZE],
                    input: vec![0; TABLE_SIZE],
                    coils: vec![false; TABLE_SIZE],
                    discrete: vec![false; TABLE_SIZE],
                    size: DEFAULT_SIZE,
                }),
                served_total: AtomicU64::new(0),
                served_by_fc: (0..256).map(|_| AtomicU64::new(0)).collect(),
            }),
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.inner.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.inner.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_holding(&self, addr: u16, v: u16) {
        self.write().holding[addr as usize] = v;
    }
    pub fn holding(&self, addr: u16) -> u16 {
        self.read().holding[addr as usize]
    }
    pub fn set_input(&self, addr: u16, v: u16) {
        self.write().input[addr as usize] = v;
    }
    pub fn input(&self, addr: u16) -> u16 {
        self.read().input[addr as usize]
    }
    pub fn set_coil(&self, addr: u16, v: bool) {
        self.write().coils[addr as usize] = v;
    }
    pub fn coil(&self, addr: u16) -> bool {
        self.read().coils[addr as usize]
    }
    pub fn set_discrete(&self, addr: u16, v: bool) {
        self.write().discrete[addr as usize] = v;
    }
    pub fn discrete(&self, addr: u16) -> bool {
        self.read().discrete[addr as usize]
    }

    /// Write consecutive holding registers starting at `addr` (atomically).
    /// Words past address 65535 are dropped.
    pub fn set_holding_words(&self, addr: u16, words: &[u16]) {
        let mut t = self.write();
        copy_words(&mut t.holding, addr, words);
    }

    /// Write consecutive input registers starting at `addr` (atomically).
    pub fn set_input_words(&self, addr: u16, words: &[u16]) {
        let mut t = self.write();
        copy_words(&mut t.input, addr, words);
    }

    /// Write the same words into holding AND input registers at `addr`, atomically.
    pub fn set_mirrored_words(&self, addr: u16, words: &[u16]) {
        let mut t = self.write();
        copy_words(&mut t.holding, addr, words);
        copy_words(&mut t.input, addr, words);
    }

    /// Read-modify-write one register in holding AND input tables (holding is
    /// the source), atomically.
    pub(crate) fn update_mirrored(&self, addr: u16, f: impl FnOnce(u16) -> u16) {
        let mut t = self.write();
        let v = f(t.holding[addr as usize]);
        t.holding[addr as usize] = v;
        t.input[addr as usize] = v;
    }

    /// `n` holding registers from `addr` (clipped at the end of the table).
    pub fn holding_words(&self, addr: u16, n: usize) -> Vec<u16> {
        let t = self.read();
        let end = (addr as usize + n).min(TABLE_SIZE);
        t.holding[addr as usize..end].to_vec()
    }

    /// `n` input registers from `addr` (clipped at the end of the table).
    pub fn input_words(&self, addr: u16, n: usize) -> Vec<u16> {
        let t = self.read();
        let end = (addr as usize + n).min(TABLE_SIZE);
        t.input[addr as usize..end].to_vec()
    }

    /// Number of Modbus requests addressed to this bank so far (all function
    /// codes, including requests answered with an exception and requests
    /// swallowed by a fault such as `Silent`). Use it to measure poll rates.
    pub fn requests_served(&self) -> u64 {
        self.inner.served_total.load(Ordering::Relaxed)
    }

    /// Like [`requests_served`](Self::requests_served), for one function code.
    pub fn requests_served_fc(&self, function_code: u8) -> u64 {
        self.inner.served_by_fc[function_code as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn count_request(&self, function_code: u8) {
        self.inner.served_total.fetch_add(1, Ordering::Relaxed);
        self.inner.served_by_fc[function_code as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Only addresses `< n` are valid; requests touching addresses beyond are
    /// answered with exception 02 (illegal data address). Default 10000.
    pub fn set_size(&self, n: u16) {
        self.write().size = n;
    }

    /// The current number of valid addresses.
    pub fn size(&self) -> u16 {
        self.read().size
    }
}

fn copy_words(table: &mut [u16], addr: u16, words: &[u16]) {
    let start = addr as usize;
    let end = (start + words.len()).min(TABLE_SIZE);
    table[start..end].copy_from_slice(&words[..end - start]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_memory() {
        let a = RegisterBank::new();
        let b = a.clone();
        a.set_holding(5, 77);
        a.set_input(6, 88);
        a.set_coil(7, true);
        a.set_discrete(8, true);
        assert_eq!(b.holding(5), 77);
        assert_eq!(b.input(6), 88);
        assert!(b.coil(7));
        assert!(b.discrete(8));
        assert_eq!(b.size(), DEFAULT_SIZE);
    }

    #[test]
    fn words_clip_at_end_of_table() {
        let a = RegisterBank::new();
        a.set_holding_words(65534, &[1, 2, 3]);
        assert_eq!(a.holding(65534), 1);
        assert_eq!(a.holding(65535), 2);
        assert_eq!(a.holding_words(65534, 5), vec![1, 2]);
    }
}
