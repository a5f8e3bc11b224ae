//! One Modbus TCP device: one task, one connection.
//!
//! The task polls each planned read at its own interval and serves write
//! requests between polls. A timeout, a transport error or a corrupt frame
//! drops the connection (a late answer on it could be taken for the next
//! request's); it is rebuilt with capped exponential backoff. Until then
//! every due poll still produces bad-quality readings at its interval, so
//! the rule engine never mistakes silence for the last good value.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::Slave;
use tokio_modbus::client::Context;
use tokio_util::sync::CancellationToken;

use super::config::ModbusTcp;
use crate::config::Device;
use crate::metrics::metrics;
use crate::model::Input;
use crate::source::WriteRequest;

use super::exchange::{Data, Op, RequestError, Transport, perform};
use super::poller::{Closed, DevicePoller, serve_write};
use crate::backoff::Backoff;

/// Polls `device` until `shutdown` is cancelled or `tx` is closed.
pub async fn run(
    device: Arc<Device<ModbusTcp>>,
    writes: mpsc::Receiver<WriteRequest>,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    tracing::info!(device = %device.id, host = %device.host, port = device.port, unit = device.unit_id, "modbus tcp source starting");
    // Dropping the loop drops an in-flight request: shutdown never waits
    // for a device's timeout.
    tokio::select! {
        _ = shutdown.cancelled() => {}
        Err(Closed) = poll_loop(device.clone(), writes, &tx) => {
            tracing::info!(device = %device.id, "input channel closed; modbus tcp source stops");
        }
    }
    tracing::info!(device = %device.id, "modbus tcp source stopped");
}

async fn poll_loop(
    device: Arc<Device<ModbusTcp>>,
    mut writes: mpsc::Receiver<WriteRequest>,
    tx: &mpsc::Sender<Input>,
) -> Result<(), Closed> {
    let modbus = Arc::new(device.with_kind(device.modbus.clone()));
    let mut poller = DevicePoller::new(modbus.clone(), Instant::now());
    let mut session = TcpSession::new(device.clone());
    let mut writes_open = true;
    loop {
        // A device without Modbus points only serves writes.
        let next = poller.next_due();
        let due = next.map_or_else(far_future, |(_, t)| t);
        tokio::select! {
            biased;
            w = writes.recv(), if writes_open => match w {
                Some(req) => serve_write(&mut session, &modbus, req).await,
                None => writes_open = false,
            },
            _ = tokio::time::sleep_until(due), if next.is_some() => {
                let (read, _) = next.expect("guarded by the branch condition");
                poller.poll(read, &mut session, tx).await?;
            }
        }
        if next.is_none() && !writes_open {
            // Nothing to poll and nobody can write: wait for the shutdown.
            std::future::pending::<()>().await;
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// The connection to one device, and when it may be rebuilt.
struct TcpSession {
    device: Arc<Device<ModbusTcp>>,
    ctx: Option<Context>,
    backoff: Backoff,
    /// Earliest time for the next connect when not retrying inside a poll.
    reconnect_at: Instant,
}

impl TcpSession {
    fn new(device: Arc<Device<ModbusTcp>>) -> Self {
        TcpSession {
            device,
            ctx: None,
            backoff: Backoff::default(),
            reconnect_at: Instant::now(),
        }
    }

    /// The live connection, connecting first if there is none and the
    /// backoff allows it (`force`: right away, for a retry in a poll).
    async fn connected(&mut self, force: bool) -> Result<&mut Context, RequestError> {
        if self.ctx.is_none() {
            let now = Instant::now();
            if !force && now < self.reconnect_at {
                let wait = self.reconnect_at - now;
                return Err(RequestError::NotConnected(format!(
                    "reconnecting in {} ms",
                    wait.as_millis()
                )));
            }
            match connect(&self.device).await {
                Ok(ctx) => {
                    tracing::info!(device = %self.device.id, "modbus tcp connected");
                    self.ctx = Some(ctx);
                }
                Err(e) => {
                    self.schedule_reconnect(&e);
                    return Err(e);
                }
            }
        }
        Ok(self.ctx.as_mut().expect("connected above"))
    }

    /// Drops the connection and sets when the next connect may happen.
    fn schedule_reconnect(&mut self, why: &RequestError) {
        self.ctx = None;
        let delay = self.backoff.fail();
        self.reconnect_at = Instant::now() + delay;
        tracing::debug!(
            device = %self.device.id, failures = self.backoff.failures(), delay_ms = delay.as_millis() as u64,
            "modbus tcp session dropped ({why}); reconnect backoff"
        );
    }
}

/// Opens a connection to the device, within the device's timeout.
async fn connect(device: &Device<ModbusTcp>) -> Result<Context, RequestError> {
    let (host, port) = (device.host.as_str(), device.port);
    let limit = device.timeout;
    let stream = match tokio::time::timeout(limit, TcpStream::connect((host, port))).await {
        Err(_) => {
            return Err(RequestError::NotConnected(format!(
                "connect to {host}:{port} timed out after {limit:?}"
            )));
        }
        Ok(Err(e)) => {
            return Err(RequestError::NotConnected(format!(
                "connect to {host}:{port}: {e}"
            )));
        }
        Ok(Ok(s)) => s,
    };
    // Requests are small and answered one at a time: Nagle only adds latency.
    let _ = stream.set_nodelay(true);
    Ok(tokio_modbus::client::tcp::attach_slave(
        stream,
        Slave(device.unit_id),
    ))
}

impl Transport for TcpSession {
    async fn exchange(&mut self, op: &Op, retry: bool) -> Result<Data, RequestError> {
        let limit = self.device.timeout;
        let ctx = self.connected(retry).await?;
        let result = perform(ctx, op, limit).await;
        match &result {
            Ok(_) | Err(RequestError::Exception(_)) => self.backoff.reset(),
            Err(e) => {
                if let RequestError::BadFrame(detail) = e {
                    metrics()
                        .bad_frames
                        .with_label_values(&[&self.device.id])
                        .inc();
                    tracing::warn!(device = %self.device.id, "modbus tcp corrupt frame: {detail}");
                }
                if e.breaks_session() {
                    self.schedule_reconnect(e);
                }
            }
        }
        result
    }
}
