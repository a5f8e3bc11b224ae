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
