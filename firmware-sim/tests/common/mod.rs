//! Test helpers: a raw Modbus TCP client, a raw RTU client, and polling
//! with timeouts (no sleeps as synchronisation). The socat pty pair is
//! `firmware_sim::PtyPair`, shared with riskgate's tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long we listen to make sure that NO answer comes.
pub const QUIET_WINDOW: Duration = Duration::from_millis(400);

pub fn localhost0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Poll `f` every 10 ms until it returns true; panic after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- TCP client

pub struct RawTcp {
    pub stream: TcpStream,
    next_tid: u16,
}

pub struct TcpAnswer {
    pub tid: u16,
    pub unit: u8,
    pub pdu: Vec<u8>,
}

impl RawTcp {
    pub async fn connect(addr: SocketAddr) -> RawTcp {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        RawTcp {
            stream,
            next_tid: 0x1000,
        }
    }

    pub fn from_stream(stream: TcpStream) -> RawTcp {
        stream.set_nodelay(true).unwrap();
        RawTcp {
            stream,
            next_tid: 0x1000,
        }
    }

    pub fn frame(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&tid.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
        f.push(unit);
        f.extend_from_slice(pdu);
        f
    }

    /// Send a request, return its transaction id.
    pub async fn send(&mut self, unit: u8, pdu: &[u8]) -> u16 {
        let tid = self.next_tid;
        self.next_tid = self.next_tid.wrapping_add(1);
        self.stream
            .write_all(&Self::frame(tid, unit, pdu))
            .await
            .unwrap();
        tid
    }

    /// Read one MBAP response (Err on EOF / reset; panics after IO_TIMEOUT).
    pub async fn recv(&mut self) -> std::io::Result<TcpAnswer> {
        self.recv_within(IO_TIMEOUT)
            .await
            .expect("no answer in time")
    }

    /// Read one MBAP response; None if nothing complete arrived within `t`.
    pub async fn recv_within(&mut self, t: Duration) -> Option<std::io::Result<TcpAnswer>> {
        tokio::time::timeout(t, async {
            let mut h = [0u8; 7];
            self.stream.read_exact(&mut h).await?;
            assert_eq!(u16::from_be_bytes([h[2], h[3]]), 0, "protocol id");
            let len = u16::from_be_bytes([h[4], h[5]]) as usize;
            let mut pdu = vec![0u8; len - 1];
            self.stream.read_exact(&mut pdu).await?;
            Ok(TcpAnswer {
                tid: u16::from_be_bytes([h[0], h[1]]),
                unit: h[6],
                pdu,
            })
        })
        .await
        .ok()
    }

    /// Request/response with transaction id check; returns the response PDU.
    pub async fn request(&mut self, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let tid = self.send(unit, pdu).await;
        let a = self.recv().await.expect("connection closed");
        assert_eq!(a.tid, tid, "transaction id");
        assert_eq!(a.unit, unit, "unit id");
        a.pdu
    }

    pub async fn read_registers(&mut self, function: u8, addr: u16, n: u16) -> Vec<u16> {
        let mut pdu = vec![function];
        pdu.extend_from_slice(&addr.to_be_bytes());
        pdu.extend_from_slice(&n.to_be_bytes());
        let r = self.request(1, &pdu).await;
        assert_eq!(r[0], function, "response {r:02X?}");
        assert_eq!(r[1] as usize, 2 * n as usize);
        r[2..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    pub async fn read_holding(&mut self, addr: u16, n: u16) -> Vec<u16> {
        self.read_registers(3, addr, n).await
    }

    pub async fn read_input(&mut self, addr: u16, n: u16) -> Vec<u16> {
        self.read_registers(4, addr, n).await
    }

    pub async fn read_bits(&mut self, function: u8, addr: u16, n: u16) -> Vec<bool> {
        let mut pdu = vec![function];
        pdu.extend_from_slice(&addr.to_be_bytes());
        pdu.extend_from_slice(&n.to_be_bytes());
        let r = self.request(1, &pdu).await;
        assert_eq!(r[0], function, "response {r:02X?}");
        assert_eq!(r[1] as usize, (n as usize).div_ceil(8));
        (0..n as usize)
            .map(|i| r[2 + i / 8] & (1 << (i % 8)) != 0)
            .collect()
    }
}

pub fn read_pdu(function: u8, addr: u16, n: u16) -> Vec<u8> {
    let mut pdu = vec![function];
    pdu.extend_from_slice(&addr.to_be_bytes());
    pdu.extend_from_slice(&n.to_be_bytes());
    pdu
}

pub fn f32_from_words(w: &[u16]) -> f32 {
    f32::from_bits(((w[0] as u32) << 16) | w[1] as u32)
}

// ---------------------------------------------------------------- RTU

pub fn crc(data: &[u8]) -> [u8; 2] {
    // independent bitwise implementation for the test side
    let mut c: u16 = 0xFFFF;
    for &b in data {
        c ^= b as u16;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xA001
            } else {
                c >> 1
            };
        }
    }
    c.to_le_bytes()
}

pub fn rtu_frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut f = vec![unit];
    f.extend_from_slice(pdu);
    let c = crc(&f);
    f.extend_from_slice(&c);
    f
}

/// Write `frame` and read an answer of `expect_len` bytes; None if no byte
/// arrives within `wait`. (Exception answers are 5 bytes: reading stops there.)
pub async fn rtu_exchange<P: AsyncRead + AsyncWrite + Unpin>(
    port: &mut P,
    frame: &[u8],
    expect_len: usize,
    wait: Duration,
) -> Option<Vec<u8>> {
    port.write_all(frame).await.unwrap();
    port.flush().await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    let first = tokio::time::timeout(wait, port.read(&mut buf))
        .await
        .ok()?
        .unwrap();
    out.extend_from_slice(&buf[..first]);
    while out.len() < expect_len && !(out.len() >= 5 && out[1] & 0x80 != 0) {
        let n = tokio::time::timeout(IO_TIMEOUT, port.read(&mut buf))
            .await
            .expect("rest of rtu answer")
            .unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    Some(out)
}

// ---------------------------------------------------------------- MQTT

/// A minimal MQTT 3.1.1 broker stand-in: accepts connections, answers
/// CONNECT and PINGREQ, and forwards every PUBLISH as (topic, payload).
pub struct FakeBroker {
    pub addr: SocketAddr,
    pub rx: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeBroker {
    pub async fn start() -> FakeBroker {
        Self::start_on(0).await.expect("bind fake broker")
    }

    /// Start on a given port of 127.0.0.1 (None if it cannot be bound).
    pub async fn start_on(port: u16) -> Option<FakeBroker> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .ok()?;
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    loop {
                        let mut h = [0u8; 1];
                        if s.read_exact(&mut h).await.is_err() {
                            return;
                        }
                        // remaining length varint
                        let mut len = 0usize;
                        let mut mult = 1usize;
                        loop {
                            let mut b = [0u8; 1];
                            if s.read_exact(&mut b).await.is_err() {
                                return;
                            }
                            len += (b[0] & 0x7F) as usize * mult;
                            mult *= 128;
                            if b[0] & 0x80 == 0 {
                                break;
                            }
                        }
                        let mut body = vec![0u8; len];
                        if s.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        match h[0] >> 4 {
                            1 => s.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap(),
                            3 => {
                                let qos = (h[0] >> 1) & 3;
                                let tl = u16::from_be_bytes([body[0], body[1]]) as usize;
                                let topic = String::from_utf8_lossy(&body[2..2 + tl]).into_owned();
                                let start = 2 + tl + if qos > 0 { 2 } else { 0 };
                                let _ = tx.send((topic, body[start..].to_vec()));
                            }
                            12 => s.write_all(&[0xD0, 0x00]).await.unwrap(),
                            14 => return,
                            _ => {}
                        }
                    }
                });
            }
        });
        Some(FakeBroker { addr, rx, task })
    }

    /// Next PUBLISH, or panic after `t`.
    pub async fn next(&mut self, t: Duration) -> (String, Vec<u8>) {
        tokio::time::timeout(t, self.rx.recv())
            .await
            .expect("no MQTT publish in time")
            .expect("broker gone")
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
