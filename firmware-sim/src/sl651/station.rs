//! A simulated SL 651 telemetry station: it connects to the centre over
//! TCP or UDP (or writes to a pty), sends reports, reads the answers, and
//! can misbehave on purpose.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::ascii;
use super::codec::{self, Answer, Identity, Report};

/// A fault for one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sl651Fault {
    None,
    /// The last CRC byte flipped.
    BadCrc,
    /// A password the centre does not expect.
    WrongPassword,
    /// The frame cut 4 bytes before its end.
    Truncated,
    /// Sent as 3 packets (SYN/ETB), last packet first.
    OutOfOrder,
    /// Sent twice with the same serial number (the answer "lost").
    Retransmit,
}

impl std::str::FromStr for Sl651Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => Sl651Fault::None,
            "bad_crc" => Sl651Fault::BadCrc,
            "wrong_password" => Sl651Fault::WrongPassword,
            "truncated" => Sl651Fault::Truncated,
            "out_of_order" => Sl651Fault::OutOfOrder,
            "retransmit" => Sl651Fault::Retransmit,
            other => return Err(format!("unknown sl651 fault `{other}`")),
        })
    }
}

enum Link {
    Tcp(TcpStream),
    Udp(UdpSocket),
    /// A serial device (a pty in tests), opened as a file.
    Serial(tokio::fs::File),
}

pub struct Station {
    pub id: Identity,
    link: Link,
    serial: u16,
    /// How long to wait for the centre's answer.
    pub answer_timeout: Duration,
    /// Bodies longer than this go as several packets.
    pub max_body: usize,
    /// Send ASCII frames (SOH) instead of HEX/BCD (7E7E).
    pub ascii: bool,
    buf: Vec<u8>,
}

impl Station {
    pub async fn tcp(centre: SocketAddr, id: Identity) -> io::Result<Station> {
        let s = TcpStream::connect(centre).await?;
        s.set_nodelay(true)?;
        Ok(Station::new(id, Link::Tcp(s)))
    }

    pub async fn udp(centre: SocketAddr, id: Identity) -> io::Result<Station> {
        let bind: SocketAddr = if centre.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(io::Error::other)?;
        let s = UdpSocket::bind(bind).await?;
        s.connect(centre).await?;
        Ok(Station::new(id, Link::Udp(s)))
    }

    /// A station on a serial device (e.g. one end of a socat pty pair).
    pub async fn serial(path: &str, id: Identity) -> io::Result<Station> {
        let f = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .await?;
        Ok(Station::new(id, Link::Serial(f)))
    }

    fn new(id: Identity, link: Link) -> Station {
        Station {
            id,
            link,
            serial: 0,
            answer_timeout: Duration::from_secs(2),
            max_body: 4095,
            ascii: false,
            buf: Vec::new(),
        }
    }

    /// The next serial number, 1-65535 cycling (draft 6.6).
    pub fn next_serial(&mut self) -> u16 {
        self.serial = if self.serial == u16::MAX {
            1
        } else {
            self.serial + 1
        };
        self.serial
    }

    /// Sends `report` (its serial number as given) with `fault`; returns
    /// the answers that came within the answer timeout.
    pub async fn send(&mut self, report: &Report, fault: Sl651Fault) -> io::Result<Vec<Answer>> {
        let mut id = self.id;
        if fault == Sl651Fault::WrongPassword {
            id.password ^= 0x5A5A;
        }
        let body = if self.ascii {
            ascii::body(report, &id)
        } else {
            report.body(&id)
        };
        let max = if fault == Sl651Fault::OutOfOrder {
            body.len().div_ceil(3)
        } else {
            self.max_body
        };
        let mut frames = if self.ascii {
            ascii::frames(&id, report.function, &body, max)
        } else {
            codec::frames(&id, report.function, &body, max)
        };
        match fault {
            Sl651Fault::BadCrc => {
                if let Some(f) = frames.last_mut()
                    && let Some(b) = f.last_mut()
                {
                    *b ^= 0xFF;
                }
            }
            Sl651Fault::Truncated => {
                if let Some(f) = frames.last_mut() {
                    f.truncate(f.len().saturating_sub(4));
                }
            }
            Sl651Fault::OutOfOrder => frames.reverse(),
            _ => {}
        }
        let rounds = if fault == Sl651Fault::Retransmit {
            2
        } else {
            1
        };
        let mut answers = Vec::new();
        for _ in 0..rounds {
            for f in &frames {
                self.write(f).await?;
            }
            let expect = !matches!(fault, Sl651Fault::WrongPassword | Sl651Fault::Truncated);
            if expect && let Some(a) = self.answer().await? {
                answers.push(a);
            }
        }
        Ok(answers)
    }

    /// A keep-alive (2FH): the last serial number and the send time.
    pub async fn keep_alive(&mut self, now: chrono::NaiveDateTime) -> io::Result<()> {
        let f = if self.ascii {
            let body = ascii::keep_alive_body(self.serial, now);
            ascii::up_frame(&self.id, codec::KEEP_ALIVE, &body, None, true)
        } else {
            let mut body = self.serial.to_be_bytes().to_vec();
            body.extend(codec::bcd_time(now, true));
            codec::up_frame(&self.id, codec::KEEP_ALIVE, &body, None, true)
        };
        self.write(&f).await
    }

    /// Any bytes, as they are.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.link {
            Link::Tcp(s) => s.write_all(bytes).await,
            Link::Udp(s) => s.send(bytes).await.map(|_| ()),
            Link::Serial(f) => {
                f.write_all(bytes).await?;
                f.flush().await
            }
        }
    }

    /// The next answer, or `None` after the answer timeout.
    pub async fn answer(&mut self) -> io::Result<Option<Answer>> {
        let deadline = tokio::time::Instant::now() + self.answer_timeout;
        loop {
            // Drop bytes before a frame start.
            while !self.buf.is_empty()
                && !self.buf.starts_with(&codec::START[..self.buf.len().min(2)])
                && self.buf[0] != ascii::SOH
            {
                self.buf.remove(0);
            }
            let read = if self.buf.first() == Some(&ascii::SOH) {
                ascii::read_answer(&self.buf)
            } else {
                codec::read_answer(&self.buf)
            };
            if let Some((a, n)) = read {
                self.buf.drain(..n);
                return Ok(Some(a));
            }
            let mut chunk = [0u8; 1024];
            let read = async {
                match &mut self.link {
                    Link::Tcp(s) => s.read(&mut chunk).await,
                    Link::Udp(s) => s.recv(&mut chunk).await,
                    Link::Serial(f) => f.read(&mut chunk).await,
                }
            };
            match tokio::time::timeout_at(deadline, read).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(e),
            }
            if self.buf.len() > 64 * 1024 {
                self.buf.clear();
            }
        }
    }
}
