//! Sources: the tasks that read field devices and send [`Input`]s to the
//! rule engine over one bounded channel.
//!
//! One closed enum, one variant per transport. Each variant's task owns its
//! connection: a Modbus TCP device, a whole RS-485 line (RTU is half-duplex,
//! so one task schedules every slave on it), or an MQTT subscription.

pub mod flood;
pub mod modbus;
pub mod mqtt;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Device, DeviceKind, SerialLine};
use crate::model::{Input, Value};
use modbus::config::{ModbusRtu, ModbusTcp};
use mqtt::config::MqttDevice;

/// A request from a rule action to write a point and read it back.
#[derive(Debug)]
pub struct WriteRequest {
    pub point: String,
    pub value: Value,
    /// `Ok(read_back_value)` once the device answered the write and the
    /// read-back; `Err(why)` otherwise.
    pub reply: oneshot::Sender<Result<Value, WriteError>>,
}

/// Why a write request failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no point `{point}` on device `{device}`")]
    NoPoint { point: String, device: String },
    #[error("point `{0}` is not writable")]
    NotWritable(String),
    #[error("point `{point}` is a read-only {kind:?}")]
    ReadOnly {
        point: String,
        kind: crate::config::RegisterKind,
    },
    #[error("{0}")]
    Encode(#[from] modbus::decode::EncodeError),
    #[error("{0}")]
    Request(#[from] modbus::exchange::RequestError),
    #[error("unexpected answer reading the register")]
    UnexpectedAnswer,
    #[error("read-back: {0}")]
    ReadBack(modbus::decode::DecodeError),
}

/// Where to send write requests for the points of each device.
#[derive(Clone, Default)]
pub struct Writers {
    by_device: HashMap<String, mpsc::Sender<WriteRequest>>,
}

impl Writers {
    pub fn insert(&mut self, device: &str, tx: mpsc::Sender<WriteRequest>) {
        self.by_device.insert(device.to_string(), tx);
    }
    pub fn get(&self, device: &str) -> Option<&mpsc::Sender<WriteRequest>> {
        self.by_device.get(device)
    }
}

/// A slave on a serial line and its write queue.
pub type RtuSlave = (Device<ModbusRtu>, mpsc::Receiver<WriteRequest>);

pub enum Source {
    ModbusTcp {
        device: Device<ModbusTcp>,
        writes: mpsc::Receiver<WriteRequest>,
    },
    /// One serial line and every slave on it, with each slave's write queue.
    RtuLine {
        line: SerialLine,
        devices: Vec<RtuSlave>,
    },
    Mqtt {
        device: Device<MqttDevice>,
    },
}

/// Builds one source per TCP device, per serial line and per MQTT device.
pub fn build(cfg: &Config) -> (Vec<Source>, Writers) {
    let mut out = Vec::new();
    let mut writers = Writers::default();
    let mut lines: HashMap<&str, Vec<RtuSlave>> = HashMap::new();
    for d in &cfg.devices {
        match &d.kind {
            DeviceKind::ModbusTcp(t) => {
                let (tx, rx) = mpsc::channel(16);
                writers.insert(&d.id, tx);
                out.push(Source::ModbusTcp {
                    device: d.with_kind(t.clone()),
                    writes: rx,
                });
            }
            DeviceKind::ModbusRtu(r) => {
                let (tx, rx) = mpsc::channel(16);
                writers.insert(&d.id, tx);
                lines
                    .entry(r.line.as_str())
                    .or_default()
                    .push((d.with_kind(r.clone()), rx));
            }
            DeviceKind::Mqtt(m) => out.push(Source::Mqtt {
                device: d.with_kind(m.clone()),
            }),
        }
    }
    for line in &cfg.serial_lines {
        if let Some(devices) = lines.remove(line.id.as_str()) {
            out.push(Source::RtuLine {
                line: line.clone(),
                devices,
            });
        }
    }
    (out, writers)
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::ModbusTcp { device, .. } => format!("modbus-tcp:{}", device.id),
            Source::RtuLine { line, .. } => format!("modbus-rtu:{}", line.id),
            Source::Mqtt { device, .. } => format!("mqtt:{}", device.id),
        }
    }

    /// Runs until `shutdown` is cancelled. Never returns early on a device
    /// error: failures become bad-quality readings and health inputs.
    pub async fn run(self, tx: mpsc::Sender<Input>, shutdown: CancellationToken) {
        match self {
            Source::ModbusTcp { device, writes } => {
                modbus::tcp::run(Arc::new(device), writes, tx, shutdown).await
            }
            Source::RtuLine { line, devices } => {
                modbus::rtu::run(line, devices, tx, shutdown).await
            }
            Source::Mqtt { device } => {
                let broker = (device.broker.host().to_string(), device.broker.port());
                mqtt::run(device, broker, tx, shutdown).await
            }
        }
    }
}
