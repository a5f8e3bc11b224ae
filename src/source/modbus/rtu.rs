//! One RS-485 line: one task owns the serial port and polls every slave on
//! it, one exchange at a time (RTU is half-duplex).
//!
//! The reads of all slaves are served earliest-deadline-first. Each request
//! waits at most the line's `response_timeout`, so a silent slave costs its
//! own timeout per attempt and nothing more; the others keep their rate as
//! long as the line has the time. `inter_frame_gap` of silence is kept
//! between the end of one exchange and the next request.
//!
//! After a timeout or a corrupt answer the RTU framing may be out of step:
//! a slave a little slower than its timeout answers while the next request
//! is under way, and an answer of the same size (two equal reads at other
//! addresses) would pass every check and be taken for the wrong registers.
//! So the line is drained first: bytes are read and dropped until it has
//! been quiet for a quarter of `response_timeout` (at least 20 ms, at most
//! one `response_timeout` in all), the OS input buffer is flushed and the
//! client context rebuilt. tokio-modbus checks the answer's slave id and
//! function code against the request, `exchange.rs` its length. The port
//! itself is only re-opened after an I/O error on it.
//!
//! A slave that answered nothing in a whole poll cycle rests: it is asked
//! again only every `silent_probe_every` cycles (`cycle.rs`), so two dead
//! slaves cannot make their healthy neighbours late.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::{BoxStream, SelectAll};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::Slave;
use tokio_modbus::client::Context;
use tokio_modbus::slave::SlaveContext as _;
use tokio_serial::{SerialPort as _, SerialPortBuilderExt as _, SerialStream};
use tokio_util::sync::CancellationToken;

use super::config::{Modbus, ModbusRtu};
use crate::config::{Device, Parity, SerialLine};
use crate::metrics::metrics;
use crate::model::Input;
use crate::source::WriteRequest;

use super::exchange::{Data, Op, RequestError, Transport, perform};
use super::poller::{Closed, DevicePoller, serve_write};
use crate::backoff::Backoff;

/// Polls every device of `line` until `shutdown` is cancelled or `tx` is closed.
pub async fn run(
    line: SerialLine,
    devices: Vec<(Device<ModbusRtu>, mpsc::Receiver<WriteRequest>)>,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let units: Vec<u8> = devices.iter().map(|(d, _)| d.unit_id).collect();
    // The line's task owns the line; each slave needs only its Modbus part.
    let devices = devices
        .into_iter()
        .map(|(d, rx)| (d.with_kind(d.kind.modbus.clone()), rx))
        .collect();
    tracing::info!(line = %line.id, path = %line.path, baud = line.baud, ?units, "modbus rtu line starting");
    let id = line.id.clone();
    tokio::select! {
        _ = shutdown.cancelled() => {}
        Err(Closed) = line_loop(line, devices, &tx) => {
            tracing::info!(line = %id, "input channel closed; modbus rtu line stops");
        }
    }
    tracing::info!(line = %id, "modbus rtu line stopped");
}

type Writes = SelectAll<BoxStream<'static, (usize, WriteRequest)>>;

/// One stream of every device's write requests, tagged with the device's index.
fn merge_writes(receivers: Vec<mpsc::Receiver<WriteRequest>>) -> Writes {
    futures::stream::select_all(receivers.into_iter().enumerate().map(|(d, rx)| {
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|w| (w, rx)) })
            .map(move |w| (d, w))
            .boxed()
    }))
}

async fn line_loop(
    cfg: SerialLine,
    devices: Vec<(Device<Modbus>, mpsc::Receiver<WriteRequest>)>,
    tx: &mpsc::Sender<Input>,
) -> Result<(), Closed> {
    let now = Instant::now();
    let (devices, receivers): (Vec<Device<Modbus>>, Vec<_>) = devices.into_iter().unzip();
    let mut pollers: Vec<DevicePoller> = devices
        .into_iter()
        .map(|d| DevicePoller::new(Arc::new(d), now).with_rest_every(cfg.silent_probe_every))
        .collect();
    let mut writes = merge_writes(receivers);
    let mut writes_open = !pollers.is_empty();
    let mut bus = Bus::new(cfg);
    loop {
        // Earliest deadline over every read of every slave; ties go to the
        // device listed first.
        let next = pollers
            .iter()
            .enumerate()
            .filter_map(|(d, p)| p.next_due().map(|(i, t)| (t, d, i)))
            .min();
        let due = next.map_or_else(
            || Instant::now() + Duration::from_secs(86_400),
            |(t, _, _)| t,
        );
        tokio::select! {
            biased;
            w = writes.next(), if writes_open => match w {
                Some((d, req)) => {
                    let device = pollers[d].device.clone();
                    serve_write(&mut bus.slave(&device), &device, req).await;
                }
                None => writes_open = false,
            },
            _ = wait_until(due), if next.is_some() => {
                let (_, d, i) = next.expect("guarded");
                let device = pollers[d].device.clone();
                pollers[d].poll(i, &mut bus.slave(&device), tx).await?;
            }
        }
        if next.is_none() && !writes_open {
            std::future::pending::<()>().await;
        }
    }
}

/// The serial port and the one tokio-modbus context used on it.
struct Bus {
    cfg: SerialLine,
    port: Option<SharedPort>,
    ctx: Option<Context>,
    /// Set after a timeout or corrupt frame: rebuild the context before the
    /// next request.
    out_of_step: bool,
    backoff: Backoff,
    reopen_at: Instant,
    /// End of the last exchange, for the inter-frame gap.
    last_end: Instant,
}

impl Bus {
    fn new(cfg: SerialLine) -> Self {
        let now = Instant::now();
        Bus {
            cfg,
            port: None,
            ctx: None,
            out_of_step: false,
            backoff: Backoff::default(),
            reopen_at: now,
            last_end: now,
        }
    }

    /// A handle that talks to one slave.
    fn slave<'a>(&'a mut self, device: &'a Device<Modbus>) -> SlaveHandle<'a> {
        SlaveHandle { bus: self, device }
    }

    /// Opens the port and (re)builds the context as needed.
    fn ensure_context(&mut self) -> Result<(), RequestError> {
        if self.port.is_none() {
            let now = Instant::now();
            if now < self.reopen_at {
                return Err(RequestError::NotConnected(format!(
                    "serial port {} closed; re-opening in {} ms",
                    self.cfg.path,
                    (self.reopen_at - now).as_millis()
                )));
            }
            match open_port(&self.cfg) {
                Ok(stream) => {
                    tracing::info!(line = %self.cfg.id, path = %self.cfg.path, "serial port open");
                    self.port = Some(SharedPort::new(stream));
                    self.ctx = None;
                }
                Err(e) => {
                    let delay = self.backoff.fail();
                    self.reopen_at = now + delay;
                    tracing::warn!(line = %self.cfg.id, path = %self.cfg.path, "cannot open serial port: {e}");
                    return Err(RequestError::NotConnected(format!(
                        "cannot open serial port {}: {e}",
                        self.cfg.path
                    )));
                }
            }
        }
        let port = self.port.as_ref().expect("opened above");
        if self.ctx.is_none() || self.out_of_step {
            // Whatever a slave sent after its timeout must not be read as
            // the answer to the next request.
            port.discard_input();
            self.ctx = Some(tokio_modbus::client::rtu::attach_slave(
                port.clone(),
                Slave::broadcast(),
            ));
            self.out_of_step = false;
        }
        Ok(())
    }

    fn close_port(&mut self) {
        self.ctx = None;
        self.port = None;
        self.reopen_at = Instant::now() + self.backoff.fail();
    }
}

/// One slave of a [`Bus`]: what the poller and the writer talk to.
struct SlaveHandle<'a> {
    bus: &'a mut Bus,
    device: &'a Device<Modbus>,
}

impl Transport for SlaveHandle<'_> {
    async fn exchange(&mut self, op: &Op, _retry: bool) -> Result<Data, RequestError> {
        let bus = &mut *self.bus;
        wait_until(bus.last_end + bus.cfg.inter_frame_gap.0).await;
        let limit = bus.cfg.response_timeout.0;
        bus.ensure_context()?;
        let port = bus.port.clone().expect("ensure_context opened the port");
        let ctx = bus.ctx.as_mut().expect("ensure_context built it");
        ctx.set_slave(Slave(self.device.unit_id));
        port.reset_received();
        let mut result = perform(ctx, op, limit).await;
        // Bytes within the timeout, before any drain.
        let received = port.received();
        if matches!(result, Err(RequestError::Timeout(_))) && received > 0 {
            // Bytes came back but never formed a frame with a valid CRC:
            // tokio-modbus drops such bytes and keeps waiting, so this is
            // the only place a corrupt answer shows.
            result = Err(RequestError::BadFrame(format!(
                "{received} byte(s) received within {limit:?} but no valid frame (CRC error or truncated answer)"
            )));
        }
        if matches!(
            result,
            Err(RequestError::Timeout(_) | RequestError::BadFrame(_))
        ) {
            let dropped = port.drain(drain_quiet(limit), limit).await;
            if dropped > 0 {
                tracing::debug!(device = %self.device.id, dropped, "modbus rtu: late bytes drained from the line");
            }
        }
        bus.last_end = Instant::now();

        match &result {
            Ok(_) | Err(RequestError::Exception(_)) => bus.backoff.reset(),
            Err(RequestError::BadFrame(detail)) => {
                metrics()
                    .bad_frames
                    .with_label_values(&[&self.device.id])
                    .inc();
                tracing::warn!(device = %self.device.id, unit = self.device.unit_id, "modbus rtu corrupt frame: {detail}");
                bus.out_of_step = true;
            }
            Err(RequestError::Transport(e)) => {
                tracing::warn!(line = %bus.cfg.id, "serial port error, re-opening: {e}");
                bus.close_port();
            }
            Err(RequestError::Timeout(_)) => bus.out_of_step = true,
            Err(RequestError::NotConnected(_) | RequestError::Resting(_)) => {}
        }
        result
    }
}

/// Below this, a wait is slept on a blocking thread rather than on tokio's
/// timer.
const PRECISE_BELOW: Duration = Duration::from_millis(2);

/// Waits until `t`, never before, and not a tick late. Tokio's timer works
/// in whole milliseconds and rounds a deadline up, so waiting for a
/// deadline just past (a slave polled back to back) or for a gap of 3.5
/// characters (0.33 ms at 115,200 baud) cost up to a millisecond each, a
/// quarter of a whole exchange at that baud: the line ran at 73 % of its
/// wire-time limit (docs/benchmarks.md#rtu-wire-time). The last stretch is
/// slept on a blocking thread, which wakes within tens of microseconds.
async fn wait_until(t: Instant) {
    let now = Instant::now();
    if t <= now {
        return;
    }
    if t - now > PRECISE_BELOW {
        // Rounded up, this still ends before `t`.
        tokio::time::sleep_until(t - Duration::from_millis(1)).await;
    }
    let rest = t.saturating_duration_since(Instant::now());
    if rest.is_zero() {
        return;
    }
    if tokio::task::spawn_blocking(move || std::thread::sleep(rest))
        .await
        .is_err()
    {
        // The runtime is shutting down its blocking pool.
        tokio::time::sleep_until(t).await;
    }
}

/// The silence that ends a drain: a quarter of the response timeout, at
/// least 20 ms (pseudo-terminals and schedulers add jitter).
fn drain_quiet(limit: Duration) -> Duration {
    (limit / 4).max(Duration::from_millis(20))
}

fn open_port(cfg: &SerialLine) -> tokio_serial::Result<SerialStream> {
    let data_bits = match cfg.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let parity = match cfg.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop_bits = if cfg.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    tokio_serial::new(&cfg.path, cfg.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
}

/// The serial port, shared between the line and the tokio-modbus context
/// that reads and writes it, so that the context can be rebuilt without
/// closing the port. Counts the bytes received, which is how a corrupt
/// answer is told apart from silence.
#[derive(Clone)]
struct SharedPort {
    stream: Arc<Mutex<SerialStream>>,
    received: Arc<AtomicU64>,
}

impl SharedPort {
    fn new(stream: SerialStream) -> Self {
        SharedPort {
            stream: Arc::new(Mutex::new(stream)),
            received: Arc::new(AtomicU64::new(0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SerialStream> {
        // Only one task uses the port; a poisoned lock still holds a usable port.
        self.stream.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reset_received(&self) {
        self.received.store(0, Ordering::Relaxed);
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Reads and drops bytes until the line has been quiet for `quiet`,
    /// for at most `cap` in all (a babbling line must not hold it for
    /// ever). Returns how many bytes were dropped.
    async fn drain(&self, quiet: Duration, cap: Duration) -> usize {
        let until = Instant::now() + cap;
        let mut port = self.clone();
        let mut buf = [0u8; 256];
        let mut dropped = 0;
        loop {
            let wait = quiet.min(until.saturating_duration_since(Instant::now()));
            if wait.is_zero() {
                break;
            }
            match tokio::time::timeout(wait, port.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => dropped += n,
                // quiet (or the port failed: the next request finds out)
                _ => break,
            }
        }
        self.discard_input();
        dropped
    }

    /// Drops bytes waiting in the OS input buffer.
    fn discard_input(&self) {
        if let Err(e) = self.lock().clear(tokio_serial::ClearBuffer::Input) {
            tracing::debug!("cannot clear serial input buffer: {e}");
        }
    }
}

impl AsyncRead for SharedPort {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut *self.lock()).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            self.received
                .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl AsyncWrite for SharedPort {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    /// A context being disconnected must not shut the line down for the next one.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
