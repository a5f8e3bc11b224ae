//! Fault injection for simulated Modbus slaves.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How a slave misbehaves. Set it at run time through a [`FaultSwitch`].
///
/// | variant | Modbus TCP | Modbus RTU |
/// |---|---|---|
/// | `None` | normal answers | normal answers |
/// | `Silent` | request read, never answered (connection stays open) | never answered |
/// | `Delay(d)` | answered after `d` | answered after `d` (the line is busy meanwhile) |
/// | `CorruptCrc` | answer is a truncated PDU (first half of the real one) with a consistent MBAP length | answer with both CRC bytes inverted |
/// | `WrongTransactionId` | answer carries transaction id + 1 | no effect (RTU has no transaction id) |
/// | `Exception(c)` | every request answered with exception `c` | same |
/// | `DropConnection` | socket closed on the next request, no answer | behaves like `Silent` |
/// | `At { addresses, fault }` | `fault` for requests whose start address is in `addresses`, normal answers for the others | same |
///
/// Writes are applied for `None`, `Delay`, `CorruptCrc` and `WrongTransactionId`;
/// they are NOT applied for `Silent`, `Exception` and `DropConnection`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Read the request, never answer.
    Silent,
    /// Answer late.
    Delay(Duration),
    /// RTU: flip CRC bytes; TCP: send a garbage PDU (truncated frame).
    CorruptCrc,
    /// TCP: answer with transaction id + 1.
    WrongTransactionId,
    /// Answer every request with this exception code (e.g. 2 or 4).
    Exception(u8),
    /// TCP: close the socket on the next request without answering.
    DropConnection,
    /// `fault` only for requests whose start address lies in `addresses`
    /// (any register kind); every other request is answered normally. A
    /// device whose second block never answers, or answers late, while the
    /// first is fine: the half-dead slaves real sites have.
    At {
        addresses: std::ops::Range<u16>,
        fault: Box<Fault>,
    },
}

impl Fault {
    /// The fault that applies to one request PDU (function code first, then
    /// the start address for every read and write function).
    pub fn for_request(&self, pdu: &[u8]) -> Fault {
        match self {
            Fault::At { addresses, fault } => {
                let start = match pdu {
                    [_, hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
                    _ => None,
                };
                if start.is_some_and(|a| addresses.contains(&a)) {
                    fault.for_request(pdu)
                } else {
                    Fault::None
                }
            }
            other => other.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RebootRequest {
    pub(crate) seq: u64,
    pub(crate) down: Duration,
}

struct Inner {
    fault: Mutex<Fault>,
    reboot_until: Mutex<Option<Instant>>,
    reboot_tx: watch::Sender<RebootRequest>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            fault: Mutex::new(Fault::None),
            reboot_until: Mutex::new(None),
            reboot_tx: watch::Sender::new(RebootRequest::default()),
        }
    }
}

/// Runtime-switchable fault of one slave. `Clone` = the same switch, so a
/// test can keep one clone and flip the fault of a running server.
#[derive(Clone, Default)]
pub struct FaultSwitch {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FaultSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultSwitch")
            .field("fault", &self.get())
            .finish()
    }
}

impl FaultSwitch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the current fault; takes effect for the next request.
    pub fn set(&self, f: Fault) {
        *self.inner.fault.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// The fault that applies to this request PDU (see [`Fault::for_request`]).
    pub fn get_for(&self, pdu: &[u8]) -> Fault {
        self.get().for_request(pdu)
    }

    /// The current fault.
    pub fn get(&self) -> Fault {
        self.inner
            .fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ask every server using this switch to simulate a reboot: a
    /// [`TcpSlave`](crate::TcpSlave) closes its listener and all connections
    /// and listens again on the same port after `down`; an
    /// [`RtuLine`](crate::RtuLine) slave stays silent for `down`.
    pub fn reboot(&self, down: Duration) {
        *self
            .inner
            .reboot_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + down);
        self.inner.reboot_tx.send_modify(|r| {
            r.seq += 1;
            r.down = down;
        });
    }

    /// True while a reboot requested with [`reboot`](Self::reboot) is in progress.
    pub fn is_rebooting(&self) -> bool {
        match *self
            .inner
            .reboot_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some(until) => Instant::now() < until,
            None => false,
        }
    }

    pub(crate) fn subscribe_reboots(&self) -> watch::Receiver<RebootRequest> {
        self.inner.reboot_tx.subscribe()
    }
}
