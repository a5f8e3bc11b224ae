//! Sources: the tasks that read field devices and send [`Input`]s to the
//! rule engine over one bounded channel.
//!
//! One closed enum, one variant per transport. Each variant's task owns its
//! connection: a Modbus TCP device, a whole RS-485 line (RTU is half-duplex,
//! so one task schedules every slave on it), or an MQTT subscription.

pub mod jsonpath;
pub mod modbus;
pub mod mqtt;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Device, Protocol, SerialLine};
use crate::model::{Input, Value};

/// A request from a rule action to write a point and read it back.
#[derive(Debug)]
pub struct WriteRequest {
    pub point: String,
    pub value: Value,
    /// `Ok(read_back_value)` once the device answered the write and the
    /// read-back; `Err(why)` otherwise.
    pub reply: oneshot::Sender<Result<Value, String>>,
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

pub enum Source {
    ModbusTcp {
        device: Device,
        writes: mpsc::Receiver<WriteRequest>,
    },
    /// One serial line and every slave on it, with each slave's write queue.
    RtuLine {
        line: SerialLine,
        devices: Vec<(Device, mpsc::Receiver<WriteRequest>)>,
    },
    Mqtt {
        device: Device,
        broker: (String, u16),
    },
}

/// Builds one source per TCP device, per serial line and per MQTT device.
/// `uplink_broker` is where `broker = "uplink"` points.
pub fn build(cfg: &Config) -> (Vec<Source>, Writers) {
    let mut out = Vec::new();
    let mut writers = Writers::default();
    let uplink_broker = cfg.uplink.as_ref().map(|u| (u.host.clone(), u.port));
    for d in &cfg.devices {
        match d.protocol {
            Protocol::ModbusTcp => {
                let (tx, rx) = mpsc::channel(16);
                writers.insert(&d.id, tx);
                out.push(Source::ModbusTcp {
                    device: d.clone(),
                    writes: rx,
                });
            }
            Protocol::ModbusRtu => {}
            Protocol::Mqtt => {
                let b = d.broker.as_deref().unwrap_or("uplink");
                let broker = if b == "uplink" {
                    uplink_broker.clone().unwrap_or(("127.0.0.1".into(), 1883))
                } else {
                    let (h, p) = b.rsplit_once(':').unwrap_or((b, "1883"));
                    (h.to_string(), p.parse().unwrap_or(1883))
                };
                out.push(Source::Mqtt {
                    device: d.clone(),
                    broker,
                });
            }
        }
    }
    for line in &cfg.serial_lines {
        let mut devs = Vec::new();
        for d in cfg
            .devices
            .iter()
            .filter(|d| d.protocol == Protocol::ModbusRtu && d.line.as_deref() == Some(&line.id))
        {
            let (tx, rx) = mpsc::channel(16);
            writers.insert(&d.id, tx);
            devs.push((d.clone(), rx));
        }
        if !devs.is_empty() {
            out.push(Source::RtuLine {
                line: line.clone(),
                devices: devs,
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
            Source::Mqtt { device, broker } => mqtt::run(device, broker, tx, shutdown).await,
        }
    }
}
