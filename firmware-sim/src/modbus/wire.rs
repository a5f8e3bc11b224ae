//! The time frames take on a real RS-485 line, for a line that must not
//! answer faster than its baud rate allows.
//!
//! A pseudo-terminal or a pipe moves a whole frame at once, so a master
//! polling a simulated slave through one would see an answer the moment it
//! asked, and no benchmark of RTU polling would mean anything. A paced line
//! instead keeps a model of the wire: a character is 11 bits (start, 8 data,
//! parity or a second stop bit, stop) and takes 11/baud s; a request of n
//! bytes occupies the wire for n characters from the moment its first byte
//! arrived (that is when the master began to send it), but not before the
//! wire was free; the answer starts 3.5 characters of silence after the
//! request's last character, each of its bytes is handed over when its
//! character is complete, and the wire is free 3.5 characters after the
//! answer's last one. A master that sends before the wire is free is counted
//! (`early`), and its request is taken as sent when it could have been.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Bits of one RTU character: start, 8 data, parity (or a second stop), stop.
pub const BITS_PER_CHAR: u32 = 11;

/// The silence between two frames, in characters.
pub const GAP_CHARS: f64 = 3.5;

/// Tokio's timer fires on whole milliseconds; closer to a deadline than
/// this, a paced write sleeps on a blocking thread, which wakes within tens
/// of microseconds (a character at 115,200 baud is 95 µs).
const COARSE_MARGIN: Duration = Duration::from_millis(2);

/// The wire of one paced line.
#[derive(Debug)]
pub struct Wire {
    char_time: Duration,
    gap: Duration,
    /// When the next frame may start (the last frame's end plus the gap).
    free_at: Option<Instant>,
    early: u64,
}

impl Wire {
    pub fn new(baud: u32) -> Wire {
        let char_time = Duration::from_secs_f64(f64::from(BITS_PER_CHAR) / f64::from(baud.max(1)));
        Wire {
            char_time,
            gap: char_time.mul_f64(GAP_CHARS),
            free_at: None,
            early: 0,
        }
    }

    /// One character's time on the wire.
    pub fn char_time(&self) -> Duration {
        self.char_time
    }

    /// A request of `len` bytes whose first byte arrived at `arrived` has
    /// been received: returns when an answer may start (its end plus the
    /// silence). The wire is busy until then even if nobody answers.
    pub fn request(&mut self, arrived: Instant, len: usize) -> Instant {
        let start = match self.free_at {
            Some(free) if arrived < free => {
                self.early += 1;
                free
            }
            _ => arrived,
        };
        let answer_at = start + self.span(len) + self.gap;
        self.free_at = Some(answer_at);
        answer_at
    }

    /// An answer of `len` bytes starting at `start`: returns when its last
    /// character is complete; the wire is free a gap later.
    pub fn answer(&mut self, start: Instant, len: usize) -> Instant {
        let end = start + self.span(len);
        self.free_at = Some(end + self.gap);
        end
    }

    /// Requests that arrived while the wire was still busy.
    pub fn early(&self) -> u64 {
        self.early
    }

    fn span(&self, chars: usize) -> Duration {
        self.char_time * u32::try_from(chars).unwrap_or(u32::MAX)
    }
}

/// Writes `frame` as a UART starting at `start` would deliver it: byte i
/// once its character is complete, at `start + (i + 1) × char_time`.
/// Bytes whose time has come are written together, so a late wake-up
/// never makes the frame longer than its last byte's lateness.
pub async fn write_paced<P>(
    port: &mut P,
    frame: &[u8],
    start: Instant,
    char_time: Duration,
) -> io::Result<()>
where
    P: AsyncWrite + Unpin,
{
    let due = |i: usize| start + char_time * u32::try_from(i + 1).unwrap_or(u32::MAX);
    let mut sent = 0;
    while sent < frame.len() {
        let now = Instant::now();
        let mut ready = sent;
        while ready < frame.len() && due(ready) <= now {
            ready += 1;
        }
        if ready > sent {
            port.write_all(&frame[sent..ready]).await?;
            port.flush().await?;
            sent = ready;
            continue;
        }
        sleep_until_precise(due(sent), due(frame.len() - 1)).await;
    }
    Ok(())
}

/// Sleeps until `t`. Far from `last` (the frame's end) the millisecond
/// timer is good enough, since only when the frame is complete matters to a
/// master; near it the last stretch is slept on a blocking thread.
async fn sleep_until_precise(t: Instant, last: Instant) {
    let now = Instant::now();
    if t <= now {
        return;
    }
    if let Some(coarse_until) = last.checked_sub(COARSE_MARGIN)
        && coarse_until > now
    {
        tokio::time::sleep_until(t.min(coarse_until)).await;
        return;
    }
    let rest = t - now;
    if tokio::task::spawn_blocking(move || std::thread::sleep(rest))
        .await
        .is_err()
    {
        // The blocking pool is shutting down: the runtime is going away.
        tokio::time::sleep(rest).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn request_and_answer_occupy_the_wire() {
        let mut w = Wire::new(9600);
        let c = w.char_time();
        assert_eq!(c, Duration::from_secs_f64(11.0 / 9600.0));
        let t0 = Instant::now();
        // 8-byte request, answer after 8 characters + 3.5 of silence.
        let answer_at = w.request(t0, 8);
        assert_eq!(answer_at, t0 + c * 8 + c.mul_f64(3.5));
        let end = w.answer(answer_at, 25);
        assert_eq!(end, answer_at + c * 25);
        // A request sent right at the answer's end is early: taken as sent
        // once the silence has passed.
        let next = w.request(end, 8);
        assert_eq!(w.early(), 1);
        assert_eq!(next, end + c.mul_f64(3.5) + c * 8 + c.mul_f64(3.5));
        // One sent after the wire was free starts when it arrived.
        let late = next + Duration::from_millis(50);
        assert_eq!(w.request(late, 8), late + c * 8 + c.mul_f64(3.5));
        assert_eq!(w.early(), 1);
    }

    #[tokio::test]
    async fn paced_write_takes_the_frame_time() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let char_time = Wire::new(9600).char_time();
        let frame: Vec<u8> = (0..10).collect();
        let start = Instant::now();
        let writer = tokio::spawn(async move {
            write_paced(&mut a, &frame, start, char_time).await.unwrap();
            a
        });
        let mut got = [0u8; 10];
        let mut first = None;
        let mut n = 0;
        while n < got.len() {
            n += b.read(&mut got[n..]).await.unwrap();
            first.get_or_insert_with(Instant::now);
        }
        let last = Instant::now();
        let _a = writer.await.unwrap();
        assert_eq!(got.to_vec(), (0..10).collect::<Vec<u8>>());
        // Never early: the first byte after one character, the last after ten.
        assert!(first.unwrap() >= start + char_time);
        assert!(last >= start + char_time * 10);
    }
}
