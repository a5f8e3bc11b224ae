//! Modbus TCP server (MBAP framing) with fault injection, power-off and reboot.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::exception::GATEWAY_TARGET_FAILED;
use super::pdu::{exception_response, handle_pdu};
use crate::bank::RegisterBank;
use crate::faults::{Fault, FaultSwitch};

/// Unit id that Modbus TCP clients use when they do not address a unit.
pub const TCP_DIRECT_UNIT: u8 = 0xFF;

#[derive(Clone)]
struct Slave {
    bank: RegisterBank,
    faults: FaultSwitch,
}

struct Routing {
    units: Vec<(u8, Slave)>,
    any: Option<Slave>,
}

impl Routing {
    fn route(&self, unit: u8) -> Option<&Slave> {
        if let Some(s) = &self.any {
            return Some(s);
        }
        self.units.iter().find(|(u, _)| *u == unit).map(|(_, s)| s)
    }
}

enum Cmd {
    Stop(oneshot::Sender<()>),
    Reboot(Duration, oneshot::Sender<io::Result<()>>),
    SwitchReboot(Duration),
}

/// A running Modbus TCP server (one simulated device, or a TCP gateway with
/// several unit ids when built with [`TcpSlave::start_multi`]).
///
/// Dropping a `TcpSlave` powers the device off like [`stop`](Self::stop).
pub struct TcpSlave {
    local_addr: SocketAddr,
    bank: RegisterBank,
    faults: FaultSwitch,
    cmd: mpsc::Sender<Cmd>,
    _supervisor: JoinHandle<()>,
}

impl std::fmt::Debug for TcpSlave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpSlave")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl TcpSlave {
    /// Bind `addr` (port 0 allowed) and serve `bank` for every unit id in
    /// `units` (empty = any unit id; a non-empty list also accepts unit 255,
    /// the Modbus TCP "no particular unit" id). Requests for other unit ids
    /// are answered with exception 0x0B (gateway target device failed to
    /// respond). Returns once listening.
    pub async fn start(
        addr: SocketAddr,
        units: Vec<u8>,
        bank: RegisterBank,
        faults: FaultSwitch,
    ) -> io::Result<TcpSlave> {
        let slave = Slave {
            bank: bank.clone(),
            faults: faults.clone(),
        };
        let routing = if units.is_empty() {
            Routing {
                units: Vec::new(),
                any: Some(slave),
            }
        } else {
            let mut list: Vec<(u8, Slave)> = units.iter().map(|&u| (u, slave.clone())).collect();
            if !units.contains(&TCP_DIRECT_UNIT) {
                list.push((TCP_DIRECT_UNIT, slave));
            }
            Routing {
                units: list,
                any: None,
            }
        };
        Self::start_routing(addr, routing, bank, faults, vec![]).await
    }

    /// Serve several slaves (unit id, bank, faults) behind one TCP port, like a
    /// serial-to-Ethernet gateway. Unknown unit ids get exception 0x0B.
    /// A reboot requested on any of the fault switches reboots the whole server.
    pub async fn start_multi(
        addr: SocketAddr,
        slaves: Vec<(u8, RegisterBank, FaultSwitch)>,
    ) -> io::Result<TcpSlave> {
        let Some((_, bank, faults)) = slaves.first().cloned() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "start_multi needs at least one slave",
            ));
        };
        let extra: Vec<FaultSwitch> = slaves.iter().skip(1).map(|s| s.2.clone()).collect();
        let routing = Routing {
            units: slaves
                .into_iter()
                .map(|(u, bank, faults)| (u, Slave { bank, faults }))
                .collect(),
            any: None,
        };
        Self::start_routing(addr, routing, bank, faults, extra).await
    }

    async fn start_routing(
        addr: SocketAddr,
        routing: Routing,
        bank: RegisterBank,
        faults: FaultSwitch,
        extra_switches: Vec<FaultSwitch>,
    ) -> io::Result<TcpSlave> {
        let listener = bind(addr)?;
        let local_addr = listener.local_addr()?;
        let routing = Arc::new(routing);
        let running = Running::spawn(listener, routing.clone());
        let (tx, rx) = mpsc::channel(16);

        let mut forwarders = Vec::new();
        for sw in std::iter::once(&faults).chain(extra_switches.iter()) {
            let mut sub = sw.subscribe_reboots();
            let tx = tx.downgrade();
            forwarders.push(tokio::spawn(async move {
                while sub.changed().await.is_ok() {
                    let down = sub.borrow_and_update().down;
                    let Some(tx) = tx.upgrade() else { break };
                    if tx.send(Cmd::SwitchReboot(down)).await.is_err() {
                        break;
                    }
                }
            }));
        }

        let supervisor = tokio::spawn(supervise(local_addr, routing, running, rx, forwarders));
        tracing::info!(%local_addr, "modbus tcp slave listening");
        Ok(TcpSlave {
            local_addr,
            bank,
            faults,
            cmd: tx,
            _supervisor: supervisor,
        })
    }

    /// The address actually bound (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bank served (the first slave's, for [`start_multi`](Self::start_multi)).
    pub fn bank(&self) -> &RegisterBank {
        &self.bank
    }

    /// The fault switch of the bank served (the first slave's for `start_multi`).
    pub fn faults(&self) -> &FaultSwitch {
        &self.faults
    }

    /// Stop listening AND close every open connection (a device power-off).
    /// Returns when the port is closed and all connections are gone. Idempotent.
    pub async fn stop(&mut self) {
        let (ack_tx, ack_rx) = oneshot::channel();
        if self.cmd.send(Cmd::Stop(ack_tx)).await.is_ok() {
            let _ = ack_rx.await;
        }
    }

    /// Simulate a reboot: [`stop`](Self::stop), then after `down` listen again
    /// on the SAME port with the same bank. Returns once listening again.
    pub async fn reboot(&mut self, down: Duration) -> io::Result<()> {
        let (ack_tx, ack_rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Reboot(down, ack_tx))
            .await
            .map_err(|_| io::Error::other("tcp slave supervisor is gone"))?;
        ack_rx
            .await
            .map_err(|_| io::Error::other("tcp slave supervisor is gone"))?
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn spawn(listener: TcpListener, routing: Arc<Routing>) -> Running {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, routing, cancel.clone()));
        Running { cancel, task }
    }

    async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

enum State {
    Running(Running),
    Stopped,
    Down {
        until: Instant,
        ack: Option<oneshot::Sender<io::Result<()>>>,
    },
}

async fn shutdown_state(state: State) {
    match state {
        State::Running(r) => r.shutdown().await,
        State::Stopped => {}
        State::Down { ack, .. } => {
            if let Some(ack) = ack {
                let _ = ack.send(Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "reboot interrupted",
                )));
            }
        }
    }
}

async fn supervise(
    addr: SocketAddr,
    routing: Arc<Routing>,
    running: Running,
    mut rx: mpsc::Receiver<Cmd>,
    forwarders: Vec<JoinHandle<()>>,
) {
    let mut state = State::Running(running);
    loop {
        let cmd = if let State::Down { until, .. } = &state {
            let until = *until;
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {
                    let State::Down { ack, .. } = std::mem::replace(&mut state, State::Stopped) else {
                        unreachable!()
                    };
                    match bind(addr) {
                        Ok(listener) => {
                            tracing::info!(%addr, "modbus tcp slave back up after reboot");
                            state = State::Running(Running::spawn(listener, routing.clone()));
                            if let Some(ack) = ack {
                                let _ = ack.send(Ok(()));
                            }
                        }
                        Err(e) => {
                            if let Some(ack) = ack {
                                let _ = ack.send(Err(e));
                            } else {
                                tracing::warn!(%addr, error = %e, "rebind after reboot failed; retrying");
                                state = State::Down {
                                    until: Instant::now() + Duration::from_millis(200),
                                    ack: None,
                                };
                            }
                        }
                    }
                    continue;
                }
                cmd = rx.recv() => cmd,
            }
        } else {
            rx.recv().await
        };

        match cmd {
            None => {
                shutdown_state(std::mem::replace(&mut state, State::Stopped)).await;
                break;
            }
            Some(Cmd::Stop(ack)) => {
                shutdown_state(std::mem::replace(&mut state, State::Stopped)).await;
                tracing::info!(%addr, "modbus tcp slave stopped");
                let _ = ack.send(());
            }
            Some(Cmd::Reboot(down, ack)) => {
                shutdown_state(std::mem::replace(&mut state, State::Stopped)).await;
                tracing::info!(%addr, ?down, "modbus tcp slave rebooting");
                state = State::Down {
                    until: Instant::now() + down,
                    ack: Some(ack),
                };
            }
            Some(Cmd::SwitchReboot(down)) => match &mut state {
                State::Stopped => {}
                State::Down { until, .. } => {
                    *until = (*until).max(Instant::now() + down);
                }
                State::Running(_) => {
                    shutdown_state(std::mem::replace(&mut state, State::Stopped)).await;
                    tracing::info!(%addr, ?down, "modbus tcp slave rebooting (fault timeline)");
                    state = State::Down {
                        until: Instant::now() + down,
                        ack: None,
                    };
                }
            },
        }
    }
    for f in forwarders {
        f.abort();
    }
}

async fn accept_loop(listener: TcpListener, routing: Arc<Routing>, cancel: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tracing::debug!(%peer, "modbus tcp connection accepted");
                    conns.spawn(serve_connection(stream, routing.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // Power-off: abort every connection task, which drops (closes) its socket.
    conns.shutdown().await;
}

/// Truncated response used for the TCP flavour of `Fault::CorruptCrc`.
fn garbage_pdu(resp: &[u8]) -> Vec<u8> {
    let n = (resp.len() / 2).max(1);
    resp[..n].to_vec()
}

fn mbap_frame(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 + pdu.len());
    out.extend_from_slice(&tid.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    out.push(unit);
    out.extend_from_slice(pdu);
    out
}

async fn serve_connection(mut stream: TcpStream, routing: Arc<Routing>) {
    let mut header = [0u8; 7];
    loop {
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let tid = u16::from_be_bytes([header[0], header[1]]);
        let protocol = u16::from_be_bytes([header[2], header[3]]);
        let len = u16::from_be_bytes([header[4], header[5]]) as usize;
        let unit = header[6];
        if protocol != 0 || !(2..=254).contains(&len) {
            tracing::debug!(protocol, len, "invalid MBAP header, closing connection");
            return;
        }
        let mut pdu = vec![0u8; len - 1];
        if stream.read_exact(&mut pdu).await.is_err() {
            return;
        }
        let function = pdu[0];
        let Some(slave) = routing.route(unit) else {
            let resp = exception_response(function, GATEWAY_TARGET_FAILED);
            if stream
                .write_all(&mbap_frame(tid, unit, &resp))
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        slave.bank.count_request(function);
        let fault = slave.faults.get_for(&pdu);
        let (resp_tid, resp) = match fault {
            // `get_for` resolved `At` to the fault of this request.
            Fault::None | Fault::At { .. } => (tid, handle_pdu(&slave.bank, &pdu)),
            Fault::Silent => continue,
            Fault::DropConnection => {
                tracing::debug!("fault: dropping connection");
                return;
            }
            Fault::Exception(code) => (tid, exception_response(function, code)),
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                (tid, handle_pdu(&slave.bank, &pdu))
            }
            Fault::CorruptCrc => (tid, garbage_pdu(&handle_pdu(&slave.bank, &pdu))),
            Fault::WrongTransactionId => (tid.wrapping_add(1), handle_pdu(&slave.bank, &pdu)),
        };
        if stream
            .write_all(&mbap_frame(resp_tid, unit, &resp))
            .await
            .is_err()
        {
            return;
        }
    }
}
