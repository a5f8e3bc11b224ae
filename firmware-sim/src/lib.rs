//! Simulated field devices for riskgate: Modbus TCP / RTU slaves (gas
//! detector, reservoir telemetry terminal, KJ monitoring system, typed test
//! bank) and an MQTT AI video box, driven by scenario files and with fault
//! injection. See README.md for register maps and file formats.

pub mod bank;
pub mod codec;
pub mod devices;
pub mod faults;
pub mod modbus;
pub mod pty;
pub mod scenario;
pub mod sl651;
pub mod video;

pub use bank::RegisterBank;
pub use devices::{DeviceHandle, DeviceKind};
pub use faults::{Fault, FaultSwitch};
pub use modbus::{Pace, RtuLine, TcpSlave, crc16_modbus};
pub use pty::PtyPair;
pub use scenario::{Scenario, ScenarioError};
pub use video::{VideoBox, VideoBoxConfig};
