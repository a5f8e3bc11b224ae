//! Modbus RTU: several simulated slaves sharing one serial line (RS-485).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;

use super::pdu::{exception_response, handle_pdu, is_write_function};
use super::wire::{Wire, write_paced};
use super::{append_crc, check_crc};
use crate::bank::RegisterBank;
use crate::faults::{Fault, FaultSwitch};

/// Shortest silence (in addition to 3.5 character times) that ends a frame
/// whose length cannot be derived from its function code. Generous, because
/// pseudo-terminals and schedulers add jitter that real UARTs do not have.
pub const MIN_SILENCE: Duration = Duration::from_millis(20);

/// Outcome of looking at the start of the receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameLen {
    /// Not enough bytes yet to know the length.
    NeedMore,
    /// The request frame (including CRC) is this many bytes long.
    Known(usize),
    /// Unknown function code: the frame ends at the next silence.
    UntilSilence,
}

/// Length of the RTU *request* frame starting at `buf[0]`, by function code.
pub fn request_frame_len(buf: &[u8]) -> FrameLen {
    if buf.len() < 2 {
        return FrameLen::NeedMore;
    }
    match buf[1] {
        1..=6 => FrameLen::Known(8),
        15 | 16 => {
            if buf.len() < 7 {
                FrameLen::NeedMore
            } else {
                FrameLen::Known(9 + buf[6] as usize)
            }
        }
        _ => FrameLen::UntilSilence,
    }
}

/// Silence that ends a frame at `baud`: max(3.5 character times, [`MIN_SILENCE`]).
pub fn silence_for_baud(baud: u32) -> Duration {
    let char_time = Duration::from_secs_f64(11.0 / baud.max(1) as f64);
    (char_time.mul_f64(3.5)).max(MIN_SILENCE)
}

/// When a line's answers come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pace {
    /// As soon as the request is decoded, the whole frame at once.
    #[default]
    Instant,
    /// As a real line at the baud rate would carry them ([`super::wire`]):
    /// a byte takes 11/baud s, and 3.5 characters of silence separate frames.
    Wire,
}

#[derive(Default)]
struct Stats {
    frames_ok: AtomicU64,
    frames_bad: AtomicU64,
    /// Paced lines: requests that arrived while the wire was still busy.
    early: AtomicU64,
}

struct Slave {
    unit: u8,
    bank: RegisterBank,
    faults: FaultSwitch,
}

/// One serial line (e.g. a pty made by
/// `socat -d -d pty,raw,echo=0 pty,raw,echo=0`) with several slaves on it.
///
/// Dropping an `RtuLine` stops it too (the port is closed shortly after, by
/// the line task); [`stop`](Self::stop) waits until it is closed.
pub struct RtuLine {
    path: String,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for RtuLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtuLine").field("path", &self.path).finish()
    }
}

impl RtuLine {
    /// Open the serial device at `path` (8N1 at `baud`) and answer for each
    /// (unit id, bank, faults). Requests for unknown unit ids are ignored;
    /// broadcast (unit 0) writes are applied to every slave without answer.
    pub async fn start(
        path: &str,
        baud: u32,
        slaves: Vec<(u8, RegisterBank, FaultSwitch)>,
    ) -> io::Result<RtuLine> {
        Self::start_paced(path, baud, Pace::Instant, slaves).await
    }

    /// [`start`](Self::start) with the answers' timing chosen.
    pub async fn start_paced(
        path: &str,
        baud: u32,
        pace: Pace,
        slaves: Vec<(u8, RegisterBank, FaultSwitch)>,
    ) -> io::Result<RtuLine> {
        let mut port = tokio_serial::new(path, baud)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None)
            .open_native_async()
            .map_err(io::Error::from)?;
        let _ = port.set_exclusive(false);
        tracing::info!(path, baud, ?pace, units = ?slaves.iter().map(|s| s.0).collect::<Vec<_>>(), "modbus rtu line open");
        Ok(Self::start_on_paced(port, path, baud, pace, slaves))
    }

    /// Run the line on any byte stream (a serial port, a pipe, a socket).
    pub fn start_on<P>(
        port: P,
        name: &str,
        baud: u32,
        slaves: Vec<(u8, RegisterBank, FaultSwitch)>,
    ) -> RtuLine
    where
        P: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::start_on_paced(port, name, baud, Pace::Instant, slaves)
    }

    /// [`start_on`](Self::start_on) with the answers' timing chosen.
    pub fn start_on_paced<P>(
        port: P,
        name: &str,
        baud: u32,
        pace: Pace,
        slaves: Vec<(u8, RegisterBank, FaultSwitch)>,
    ) -> RtuLine
    where
        P: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let stats = Arc::new(Stats::default());
        let cancel = CancellationToken::new();
        let slaves: Vec<Slave> = slaves
            .into_iter()
            .map(|(unit, bank, faults)| Slave { unit, bank, faults })
            .collect();
        let silence = silence_for_baud(baud);
        let wire = (pace == Pace::Wire).then(|| Wire::new(baud));
        let task = {
            let stats = stats.clone();
            let cancel = cancel.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    res = run_line(port, slaves, stats, silence, wire) => {
                        if let Err(e) = res {
                            tracing::warn!(path = %name, error = %e, "modbus rtu line ended");
                        }
                    }
                }
            })
        };
        RtuLine {
            path: name.to_string(),
            cancel,
            task: Some(task),
            stats,
        }
    }

    /// Close the serial port and stop answering. Idempotent.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Frames received with a bad CRC (including truncated frames ended by silence).
    pub fn frames_bad(&self) -> u64 {
        self.stats.frames_bad.load(Ordering::Relaxed)
    }

    /// Frames received with a good CRC (for any unit id).
    pub fn frames_ok(&self) -> u64 {
        self.stats.frames_ok.load(Ordering::Relaxed)
    }

    /// Paced lines: requests that arrived while the wire was still busy with
    /// the previous frame or the silence after it (a master that does not
    /// keep the 3.5-character gap).
    pub fn early_requests(&self) -> u64 {
        self.stats.early.load(Ordering::Relaxed)
    }

    /// The device path given to `start`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for RtuLine {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn run_line<P>(
    mut port: P,
    slaves: Vec<Slave>,
    stats: Arc<Stats>,
    silence: Duration,
    mut wire: Option<Wire>,
) -> io::Result<()>
where
    P: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    // When the first byte in `buf` arrived: when its sender began to send it.
    let mut arrived = Instant::now();
    loop {
        // Take every complete frame out of the buffer.
        loop {
            match request_frame_len(&buf) {
                FrameLen::Known(n) if buf.len() >= n => {
                    let frame: Vec<u8> = buf.drain(..n).collect();
                    let answer_at = received(&mut wire, &stats, arrived, n);
                    if check_crc(&frame) {
                        stats.frames_ok.fetch_add(1, Ordering::Relaxed);
                        process_frame(&mut port, &slaves, &frame, answer_at, wire.as_mut()).await?;
                    } else {
                        stats.frames_bad.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(frame = ?frame, "rtu frame with bad crc dropped");
                        // Resynchronise: whatever follows a broken frame is suspect.
                        buf.clear();
                    }
                }
                _ => break,
            }
        }

        let n = if buf.is_empty() {
            let n = port.read(&mut chunk).await?;
            arrived = Instant::now();
            n
        } else {
            match tokio::time::timeout(silence, port.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => {
                    // Silence: the buffered bytes are one frame (unknown function
                    // code or a truncated frame).
                    let frame = std::mem::take(&mut buf);
                    let answer_at = received(&mut wire, &stats, arrived, frame.len());
                    if frame.len() >= 4 && check_crc(&frame) {
                        stats.frames_ok.fetch_add(1, Ordering::Relaxed);
                        process_frame(&mut port, &slaves, &frame, answer_at, wire.as_mut()).await?;
                    } else {
                        stats.frames_bad.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(frame = ?frame, "incomplete or corrupt rtu frame dropped at silence");
                    }
                    continue;
                }
            }
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "serial line closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A paced line: the request of `len` bytes that began to arrive at
/// `arrived` is on the wire; returns when an answer may start.
fn received(wire: &mut Option<Wire>, stats: &Stats, arrived: Instant, len: usize) -> Instant {
    let Some(w) = wire else {
        return arrived;
    };
    let early = w.early();
    let answer_at = w.request(arrived, len);
    stats.early.fetch_add(w.early() - early, Ordering::Relaxed);
    answer_at
}

/// Answers `frame` if it is for one of `slaves`; on a paced line (`wire`)
/// not before `answer_at` and at the wire's pace.
async fn process_frame<P>(
    port: &mut P,
    slaves: &[Slave],
    frame: &[u8],
    answer_at: Instant,
    wire: Option<&mut Wire>,
) -> io::Result<()>
where
    P: AsyncWrite + Unpin,
{
    let unit = frame[0];
    let pdu = &frame[1..frame.len() - 2];
    let function = pdu[0];

    if unit == 0 {
        // Broadcast: writes are applied by every slave, nobody answers.
        for s in slaves {
            s.bank.count_request(function);
            if is_write_function(function)
                && !s.faults.is_rebooting()
                && !matches!(
                    s.faults.get(),
                    Fault::Silent | Fault::DropConnection | Fault::Exception(_)
                )
            {
                let _ = handle_pdu(&s.bank, pdu);
            }
        }
        return Ok(());
    }

    let Some(slave) = slaves.iter().find(|s| s.unit == unit) else {
        return Ok(());
    };
    slave.bank.count_request(function);
    if slave.faults.is_rebooting() {
        return Ok(());
    }
    let mut corrupt = false;
    let resp = match slave.faults.get_for(pdu) {
        Fault::Silent | Fault::DropConnection => return Ok(()),
        Fault::Exception(code) => exception_response(function, code),
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            handle_pdu(&slave.bank, pdu)
        }
        Fault::CorruptCrc => {
            corrupt = true;
            handle_pdu(&slave.bank, pdu)
        }
        // `get_for` resolved `At` to the fault of this request.
        Fault::None | Fault::WrongTransactionId | Fault::At { .. } => handle_pdu(&slave.bank, pdu),
    };
    let mut out = Vec::with_capacity(resp.len() + 3);
    out.push(unit);
    out.extend_from_slice(&resp);
    append_crc(&mut out);
    if corrupt {
        let n = out.len();
        out[n - 2] ^= 0xFF;
        out[n - 1] ^= 0xFF;
    }
    match wire {
        Some(w) => {
            let start = answer_at.max(Instant::now());
            w.answer(start, out.len());
            write_paced(port, &out, start, w.char_time()).await?;
        }
        None => {
            port.write_all(&out).await?;
            port.flush().await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths() {
        assert_eq!(request_frame_len(&[1]), FrameLen::NeedMore);
        assert_eq!(request_frame_len(&[1, 3]), FrameLen::Known(8));
        assert_eq!(request_frame_len(&[1, 16, 0, 0, 0, 2]), FrameLen::NeedMore);
        assert_eq!(
            request_frame_len(&[1, 16, 0, 0, 0, 2, 4]),
            FrameLen::Known(13)
        );
        assert_eq!(
            request_frame_len(&[1, 15, 0, 0, 0, 9, 2]),
            FrameLen::Known(11)
        );
        assert_eq!(request_frame_len(&[1, 0x2B]), FrameLen::UntilSilence);
        assert_eq!(silence_for_baud(9600), MIN_SILENCE);
        assert!(silence_for_baud(300) > MIN_SILENCE);
    }

    #[tokio::test]
    async fn line_over_duplex_pipe() {
        let (mut master, line_end) = tokio::io::duplex(1024);
        let bank = RegisterBank::new();
        bank.set_holding(0, 0x1234);
        let mut line = RtuLine::start_on(
            line_end,
            "duplex",
            9600,
            vec![(7, bank.clone(), FaultSwitch::new())],
        );
        let mut req = vec![7, 3, 0, 0, 0, 1];
        append_crc(&mut req);
        master.write_all(&req).await.unwrap();
        let mut resp = [0u8; 7];
        master.read_exact(&mut resp).await.unwrap();
        assert!(check_crc(&resp));
        assert_eq!(&resp[..5], &[7, 3, 2, 0x12, 0x34]);
        line.stop().await;
        assert_eq!(line.frames_ok(), 1);
    }
}
