//! Sources: the tasks that read field devices and send [`Input`]s to the
//! rule engine over one bounded channel.
//!
//! One closed enum, one variant per transport. Each variant's task owns its
//! connection: a Modbus TCP device, a whole RS-485 line (RTU is half-duplex,
//! so one task schedules every slave on it), an MQTT subscription, or an
//! SL 651 listener (riskgate is the centre; every station that reports to
//! one address or serial line shares it).

pub mod flood;
pub mod modbus;
pub mod mqtt;
pub mod sl651;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Device, DeviceKind, SerialLine};
use crate::model::{Input, Value};
use modbus::config::{ModbusRtu, ModbusTcp};
use mqtt::config::MqttDevice;
use sl651::config::{Listen, Sl651Station};

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
    /// One SL 651 listener and the stations that report to it.
    Sl651 {
        listen: Listen,
        stations: Vec<Device<Sl651Station>>,
        tz: chrono_tz::Tz,
        data_dir: std::path::PathBuf,
    },
}

/// Builds one source per TCP device, per serial line and per MQTT device.
pub fn build(cfg: &Config) -> (Vec<Source>, Writers) {
    let mut out = Vec::new();
    let mut writers = Writers::default();
    let mut lines: HashMap<&str, Vec<RtuSlave>> = HashMap::new();
    let mut listeners: Vec<(Listen, Vec<Device<Sl651Station>>)> = Vec::new();
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
            DeviceKind::Sl651(s) => {
                let dev = d.with_kind(s.clone());
                match listeners
                    .iter_mut()
                    .find(|(l, _)| l.key() == s.listen.key())
                {
                    Some((_, v)) => v.push(dev),
                    None => listeners.push((s.listen.clone(), vec![dev])),
                }
            }
        }
    }
    for (listen, stations) in listeners {
        out.push(Source::Sl651 {
            listen,
            stations,
            tz: cfg.tz(),
            data_dir: std::path::PathBuf::from(&cfg.gateway.data_dir),
        });
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
            Source::Sl651 { listen, .. } => format!("sl651:{}", listen.key()),
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
            Source::Mqtt { device } => mqtt::run(device, tx, shutdown).await,
            Source::Sl651 {
                listen,
                stations,
                tz,
                data_dir,
            } => sl651::run(listen, stations, tz, data_dir, tx, shutdown).await,
        }
    }
}
