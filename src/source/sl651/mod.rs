//! SL 651-2014 (水文监测数据通信规约): riskgate as the centre (中心站)
//! that telemetry stations (遥测站) report to over TCP, UDP or a radio
//! modem's serial line, in HEX/BCD frames (7E7E) or ASCII frames (SOH;
//! their layout is riskgate's reading, docs/sl651.md).
//!
//! Every figure comes from standards-research.md §4, itself from a
//! pre-publication draft of the standard **[C, draft]**; where the draft
//! is silent, the choice made is marked **[U]** next to the code.
//!
//! - `frame`: split a byte stream into frames of either encoding, over
//!   `link` (shared fields, CRC high byte first), `hex` (7E7E) and
//!   `ascii` (SOH frames and their bodies);
//! - `body`: serial number, times, elements of an up report;
//! - `element`: the element table (identifiers, symbols, ZT bits);
//! - `receiver`: stations, passwords, retransmissions, multi-packet
//!   reassembly, readings at observation time, report deadlines (pure);
//! - `listen`: TCP, UDP and serial transports;
//! - `config`: the device's checks; `metrics`: frames counted per station.

pub mod ascii;
pub mod body;
pub mod config;
pub mod element;
pub mod frame;
pub mod hex;
pub mod link;
pub mod listen;
pub mod metrics;
pub mod receiver;

pub use listen::run;
