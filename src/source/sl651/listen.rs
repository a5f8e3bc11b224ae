//! The transports of one listener: a TCP server (one task per connected
//! station), a UDP socket, or a serial line (a radio modem), and the timer
//! that finds stations late with their report.
//!
//! Invariants: no task of a listener returns before shutdown (a failed
//! bind or open is logged and retried); a connection that sends nothing
//! for [`IDLE`] is closed; the receiver's lock is never held across an
//! await, so one slow station stalls no other.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{Listen, Sl651Station};
use super::frame::{self, MAX_FRAME, Split};
use super::receiver::{Handled, Receiver};
use crate::config::{Device, SerialLine};
use crate::model::Input;

/// A connection silent this long is closed: longer than the 10 minutes an
/// ESC keeps a station on line (draft Table 10).
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// How often late stations are looked for.
const TICK: Duration = Duration::from_millis(250);
/// Wait before binding or opening again after a failure.
const RETRY: Duration = Duration::from_secs(5);

struct Shared {
    receiver: Mutex<Receiver>,
    tx: mpsc::Sender<Input>,
}

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut Receiver) -> T) -> T {
        // A panic elsewhere while holding the lock must not silence every
        // station: take the state as it is.
        let mut g = self
            .receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut g)
    }

    /// Splits `buf` into frames and takes each in; leaves an incomplete
    /// frame's bytes in `buf`.
    fn feed(&self, buf: &mut Vec<u8>, conn: &mut Option<[u8; 5]>) -> Handled {
        let mut all = Handled::default();
        loop {
            let step = frame::split(buf);
            let (h, used) = match step {
                Split::NeedMore => break,
                Split::Frame(f, n) => {
                    let h = self.with(|r| r.frame(f, Instant::now(), chrono::Utc::now()));
                    (h, n)
                }
                Split::Skip(n, err, claimed) => (self.with(|r| r.failed(&err, claimed, *conn)), n),
            };
            buf.drain(..used.min(buf.len()));
            if h.station.is_some() {
                *conn = h.station;
            }
            all.answers.extend(h.answers);
            all.inputs.extend(h.inputs);
            all.pictures.extend(h.pictures);
        }
        all
    }

    /// Hands inputs to the engine and writes pictures.
    async fn deliver(&self, h: &mut Handled) {
        for p in h.pictures.drain(..) {
            let write = async {
                if let Some(dir) = p.path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                tokio::fs::write(&p.path, &p.bytes).await
            };
            match write.await {
                Ok(()) => {
                    tracing::info!(path = %p.path.display(), bytes = p.bytes.len(), "sl651 picture stored")
                }
                Err(e) => tracing::warn!(path = %p.path.display(), "sl651 picture not stored: {e}"),
            }
        }
        for i in h.inputs.drain(..) {
            if self.tx.send(i).await.is_err() {
                return;
            }
        }
    }
}

/// Runs one listener and its stations until `shutdown`.
pub async fn run(
    listen: Listen,
    stations: Vec<Device<Sl651Station>>,
    tz: chrono_tz::Tz,
    data_dir: PathBuf,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        receiver: Mutex::new(Receiver::new(stations, tz, data_dir, Instant::now())),
        tx,
    });
    let ticker = {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                let mut h = Handled {
                    inputs: shared.with(|r| r.tick(Instant::now(), chrono::Utc::now())),
                    ..Handled::default()
                };
                shared.deliver(&mut h).await;
            }
        }
    };
    let serve = async {
        match listen {
            Listen::Tcp(addr) => tcp(&addr, shared.clone(), shutdown.clone()).await,
            Listen::Udp(addr) => udp(&addr, shared.clone(), shutdown.clone()).await,
            Listen::Serial(line) => serial(&line, shared.clone(), shutdown.clone()).await,
        }
    };
    tokio::join!(ticker, serve);
}

async fn tcp(addr: &str, shared: Arc<Shared>, shutdown: CancellationToken) {
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::error!(addr, "sl651: cannot listen on TCP: {e}; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    };
    tracing::info!(addr, "sl651: listening on TCP");
    loop {
        let (sock, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("sl651: accept failed: {e}");
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        tokio::spawn(stream(
            sock,
            peer.to_string(),
            shared.clone(),
            shutdown.clone(),
        ));
    }
}

/// One byte stream (a TCP connection or a serial line) until it closes,
/// idles out, or shutdown.
async fn stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    peer: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 4096];
    let mut conn = None;
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(IDLE, io.read(&mut chunk)) => match r {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::info!(peer, "sl651: connection error: {e}");
                    0
                }
                Err(_) => {
                    tracing::info!(peer, "sl651: idle connection closed");
                    0
                }
            },
        };
        if n == 0 {
            if !buf.is_empty() {
                shared.with(|r| r.cut_short(&buf, conn));
            }
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut h = shared.feed(&mut buf, &mut conn);
        // `split` asks for more only within one frame's length.
        debug_assert!(buf.len() <= MAX_FRAME.max(super::ascii::MAX_FRAME) + chunk.len());
        for a in &h.answers {
            if let Err(e) = io.write_all(a).await {
                tracing::info!(peer, "sl651: answer not sent: {e}");
            }
        }
        shared.deliver(&mut h).await;
    }
}

async fn udp(addr: &str, shared: Arc<Shared>, shutdown: CancellationToken) {
    let sock = loop {
        match UdpSocket::bind(addr).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::error!(addr, "sl651: cannot listen on UDP: {e}; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    };
    tracing::info!(addr, "sl651: listening on UDP");
    let mut dgram = vec![0u8; 65536];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sock.recv_from(&mut dgram) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("sl651: UDP receive failed: {e}");
                    continue;
                }
            },
        };
        // A datagram holds whole frames: what is left is a cut frame.
        let mut buf = dgram[..n].to_vec();
        let mut conn = None;
        let mut h = shared.feed(&mut buf, &mut conn);
        if !buf.is_empty() {
            shared.with(|r| r.cut_short(&buf, conn));
        }
        for a in &h.answers {
            if let Err(e) = sock.send_to(a, peer).await {
                tracing::info!(%peer, "sl651: answer not sent: {e}");
            }
        }
        shared.deliver(&mut h).await;
    }
}

async fn serial(line: &SerialLine, shared: Arc<Shared>, shutdown: CancellationToken) {
    use crate::config::raw::Parity;
    use tokio_serial::SerialPortBuilderExt;
    loop {
        let builder = tokio_serial::new(&line.path, line.baud)
            .data_bits(match line.data_bits {
                5 => tokio_serial::DataBits::Five,
                6 => tokio_serial::DataBits::Six,
                7 => tokio_serial::DataBits::Seven,
                _ => tokio_serial::DataBits::Eight,
            })
            .stop_bits(if line.stop_bits == 2 {
                tokio_serial::StopBits::Two
            } else {
                tokio_serial::StopBits::One
            })
            .parity(match line.parity {
                Parity::None => tokio_serial::Parity::None,
                Parity::Even => tokio_serial::Parity::Even,
                Parity::Odd => tokio_serial::Parity::Odd,
            });
        match builder.open_native_async() {
            Ok(port) => {
                tracing::info!(line = %line.id, path = %line.path, "sl651: serial line open");
                stream(port, line.id.clone(), shared.clone(), shutdown.clone()).await;
            }
            Err(e) => tracing::error!(line = %line.id, "sl651: cannot open {}: {e}", line.path),
        }
        if shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}
