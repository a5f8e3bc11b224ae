//! One Modbus request/response over a tokio-modbus [`Context`], with its
//! time limit, and the classification of what went wrong.
//!
//! The classification drives everything after it: an exception is an
//! answer (the device is alive, only that request's points are bad), while
//! a timeout, a transport error or a corrupt frame means the session can no
//! longer be trusted (a late answer could be taken for the next request's)
//! and must be rebuilt.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use thiserror::Error;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::{Request, Response};

use crate::config::RegisterKind;
use crate::model::BadReason;

use super::plan::PlannedRead;

/// One Modbus request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Read {
        kind: RegisterKind,
        start: u16,
        count: u16,
    },
    /// FC6 for one register, FC16 for several.
    WriteWords { addr: u16, words: Vec<u16> },
    /// FC5 for one coil, FC15 for several.
    WriteBits { addr: u16, bits: Vec<bool> },
}

impl Op {
    pub fn read(r: &PlannedRead) -> Op {
        Op::Read {
            kind: r.kind,
            start: r.start,
            count: r.count,
        }
    }
}

/// What a successful request returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
    Written,
}

/// Why a request has no usable answer.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    /// The device answered with a Modbus exception code.
    #[error("modbus exception {0:#04x}")]
    Exception(u8),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connection refused/reset/closed, serial I/O error.
    #[error("transport error: {0}")]
    Transport(String),
    /// An answer arrived but was not a valid frame for this request: bad
    /// CRC, wrong transaction or unit id, wrong function code, bad length.
    #[error("corrupt frame: {0}")]
    BadFrame(String),
    /// No session, and none could be made now (connect failed, or waiting
    /// for the reconnect backoff).
    #[error("not connected: {0}")]
    NotConnected(String),
    /// Not asked: the slave answered nothing for this many poll cycles
    /// and rests until its next probe (RTU `rest_every`), so it does not
    /// cost its neighbours on the line a timeout every cycle.
    #[error("not asked: no answer for {0} poll cycle(s), resting until the next probe")]
    Resting(u32),
}

impl RequestError {
    /// The device answered (an exception is an answer).
    pub fn is_answer(&self) -> bool {
        matches!(self, RequestError::Exception(_))
    }

    /// The session may be out of step and must be rebuilt before the next
    /// request.
    pub fn breaks_session(&self) -> bool {
        matches!(
            self,
            RequestError::Timeout(_) | RequestError::Transport(_) | RequestError::BadFrame(_)
        )
    }

    /// Worth another attempt inside the same poll.
    pub fn retryable(&self) -> bool {
        self.breaks_session()
    }

    /// The quality the request's points get.
    pub fn bad_reason(&self) -> BadReason {
        match self {
            RequestError::Exception(c) => BadReason::Exception(*c),
            // Resting follows a cycle of timeouts: the slave is silent.
            RequestError::Timeout(_) | RequestError::Resting(_) => BadReason::Timeout,
            RequestError::Transport(_)
            | RequestError::BadFrame(_)
            | RequestError::NotConnected(_) => BadReason::Transport(self.to_string()),
        }
    }

    /// The `result` label of the `polls` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RequestError::Exception(_) => "exception",
            RequestError::Timeout(_) => "timeout",
            RequestError::Resting(_) => "resting",
            RequestError::Transport(_)
            | RequestError::BadFrame(_)
            | RequestError::NotConnected(_) => "transport",
        }
    }
}

/// Sends `op` on `ctx` and waits at most `limit` for the answer. On a
/// timeout the request future is dropped; the caller must then treat the
/// session as out of step ([`RequestError::breaks_session`]).
pub async fn perform(ctx: &mut Context, op: &Op, limit: Duration) -> Result<Data, RequestError> {
    let request = to_request(op);
    match tokio::time::timeout(limit, ctx.call(request)).await {
        Err(_) => Err(RequestError::Timeout(limit)),
        Ok(Err(e)) => Err(classify_error(e)),
        Ok(Ok(Err(code))) => Err(RequestError::Exception(u8::from(code))),
        Ok(Ok(Ok(response))) => check_response(op, response),
    }
}

fn to_request(op: &Op) -> Request<'_> {
    match op {
        Op::Read {
            kind: RegisterKind::Coil,
            start,
            count,
        } => Request::ReadCoils(*start, *count),
        Op::Read {
            kind: RegisterKind::Discrete,
            start,
            count,
        } => Request::ReadDiscreteInputs(*start, *count),
        Op::Read {
            kind: RegisterKind::Holding,
            start,
            count,
        } => Request::ReadHoldingRegisters(*start, *count),
        Op::Read {
            kind: RegisterKind::Input,
            start,
            count,
        } => Request::ReadInputRegisters(*start, *count),
        Op::WriteWords { addr, words } if words.len() == 1 => {
            Request::WriteSingleRegister(*addr, words[0])
        }
        Op::WriteWords { addr, words } => {
            Request::WriteMultipleRegisters(*addr, Cow::Borrowed(words))
        }
        Op::WriteBits { addr, bits } if bits.len() == 1 => Request::WriteSingleCoil(*addr, bits[0]),
        Op::WriteBits { addr, bits } => Request::WriteMultipleCoils(*addr, Cow::Borrowed(bits)),
    }
}

/// Checks that the answer has what was asked for. tokio-modbus only
/// `debug_assert`s the quantity, so a short answer is caught here.
fn check_response(op: &Op, response: Response) -> Result<Data, RequestError> {
    let short = |got: usize, want: u16| {
        RequestError::BadFrame(format!("asked for {want}, answer holds {got}"))
    };
    match (op, response) {
        (
            Op::Read { count, .. },
            Response::ReadCoils(mut bits) | Response::ReadDiscreteInputs(mut bits),
        ) => {
            // Bits come in whole bytes; the padding is dropped.
            if bits.len() < usize::from(*count) {
                return Err(short(bits.len(), *count));
            }
            bits.truncate(usize::from(*count));
            Ok(Data::Bits(bits))
        }
        (
            Op::Read { count, .. },
            Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words),
        ) => {
            if words.len() != usize::from(*count) {
                return Err(short(words.len(), *count));
            }
            Ok(Data::Words(words))
        }
        (Op::WriteWords { .. } | Op::WriteBits { .. }, _) => Ok(Data::Written),
        (_, other) => Err(RequestError::BadFrame(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// Sorts a tokio-modbus error into transport trouble and corrupt frames.
/// The codecs report a frame they cannot parse as `InvalidData`, or as
/// `UnexpectedEof` when the PDU is shorter than its function code needs
/// (a socket or port at its end is reported differently).
pub fn classify_error(e: tokio_modbus::Error) -> RequestError {
    match e {
        tokio_modbus::Error::Protocol(p) => RequestError::BadFrame(p.to_string()),
        tokio_modbus::Error::Transport(io)
            if matches!(
                io.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            RequestError::BadFrame(io.to_string())
        }
        tokio_modbus::Error::Transport(io) => RequestError::Transport(describe_io(&io)),
    }
}

/// tokio-modbus reports a connection closed by the peer as
/// `io::Error::last_os_error()`, which can read "Success"; say what it is.
fn describe_io(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(0) => "connection closed by the device".to_string(),
        _ => e.to_string(),
    }
}

/// A way to run one request against one device: a TCP session or one
/// slave of an RTU line. Implementations own the session handling
/// (reconnect, rebuild, backoff, metrics for corrupt frames).
pub trait Transport {
    /// Runs `op`. `retry` is true for an extra attempt after a failure in
    /// the same poll: the implementation may then rebuild its session at
    /// once instead of waiting for its backoff.
    fn exchange(
        &mut self,
        op: &Op,
        retry: bool,
    ) -> impl Future<Output = Result<Data, RequestError>> + Send;
}

/// Runs `op` with up to `retries` extra attempts after a failure that may
/// be transient. Exceptions are answers and are not retried.
pub async fn with_retries<T: Transport>(
    t: &mut T,
    op: &Op,
    retries: u32,
) -> Result<Data, RequestError> {
    let mut result = t.exchange(op, false).await;
    for _ in 0..retries {
        match &result {
            Err(e) if e.retryable() => result = t.exchange(op, true).await,
            _ => break,
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_pick_single_or_multiple_function_codes() {
        let one = Op::WriteWords {
            addr: 5,
            words: vec![7],
        };
        assert_eq!(to_request(&one), Request::WriteSingleRegister(5, 7));
        let two = Op::WriteWords {
            addr: 5,
            words: vec![7, 8],
        };
        assert_eq!(
            to_request(&two),
            Request::WriteMultipleRegisters(5, Cow::Owned(vec![7, 8]))
        );
        let coil = Op::WriteBits {
            addr: 3,
            bits: vec![true],
        };
        assert_eq!(to_request(&coil), Request::WriteSingleCoil(3, true));
        let coils = Op::WriteBits {
            addr: 3,
            bits: vec![true, false],
        };
        assert_eq!(
            to_request(&coils),
            Request::WriteMultipleCoils(3, Cow::Owned(vec![true, false]))
        );
    }

    #[test]
    fn short_answers_are_corrupt_frames() {
        let op = Op::Read {
            kind: RegisterKind::Holding,
            start: 0,
            count: 3,
        };
        assert!(matches!(
            check_response(&op, Response::ReadHoldingRegisters(vec![1, 2])),
            Err(RequestError::BadFrame(_))
        ));
        let bits = Op::Read {
            kind: RegisterKind::Coil,
            start: 0,
            count: 3,
        };
        assert_eq!(
            check_response(
                &bits,
                Response::ReadCoils(vec![true, false, true, false, false, false, false, false])
            ),
            Ok(Data::Bits(vec![true, false, true]))
        );
    }

    #[test]
    fn classification() {
        assert!(RequestError::Exception(2).is_answer());
        assert!(!RequestError::Exception(2).breaks_session());
        assert!(RequestError::Timeout(Duration::from_millis(1)).breaks_session());
        assert!(!RequestError::NotConnected("x".into()).retryable());
        assert_eq!(
            RequestError::Timeout(Duration::ZERO).bad_reason(),
            BadReason::Timeout
        );
        let bad = classify_error(tokio_modbus::Error::Transport(io::Error::new(
            io::ErrorKind::InvalidData,
            "crc",
        )));
        assert!(matches!(bad, RequestError::BadFrame(_)));
        let short = classify_error(tokio_modbus::Error::Transport(
            io::ErrorKind::UnexpectedEof.into(),
        ));
        assert!(matches!(short, RequestError::BadFrame(_)));
        let reset = classify_error(tokio_modbus::Error::Transport(
            io::ErrorKind::ConnectionReset.into(),
        ));
        assert!(matches!(reset, RequestError::Transport(_)));
    }
}
