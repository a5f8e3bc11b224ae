//! Modbus sources: request planning, decoding, TCP devices and RTU lines.
//!
//! `config` checks a device's part of the config file into the typed
//! `ModbusTcp`/`ModbusRtu`, `plan` decides which reads cover a device's points, `decode` turns
//! registers into values (and values into registers for writes),
//! `exchange` runs one request and classifies its failure, `poller` holds
//! what is common to polling a device over any transport, and `tcp`/`rtu`
//! add their session handling.

pub mod config;
pub mod cycle;
pub mod decode;
pub mod exchange;
pub mod plan;
pub mod poller;
pub mod rtu;
pub mod tcp;
