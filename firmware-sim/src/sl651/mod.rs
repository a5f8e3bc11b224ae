//! `sl651-station`: a simulated SL 651-2014 telemetry station (遥测站)
//! reporting to a centre (riskgate) over TCP, UDP or a serial device.
//!
//! - `codec`: its own encoder (frames, bodies, CRC), independent of
//!   riskgate's decoder; `ascii`: the same in ASCII frames (SOH);
//! - `station`: the link, answers, and faults (bad CRC, wrong password,
//!   truncated frame, packets out of order, retransmission);
//! - `plan`: reports over hours of scenario time (rain starting and
//!   stopping, level rising, door, counter reset), computed at once.
//!   Silence is simply not sending.

pub mod ascii;
pub mod cli;
pub mod codec;
pub mod plan;
pub mod station;

pub use codec::{Answer, Elem, Identity, Report};
pub use plan::{Plan, reports};
pub use station::{Sl651Fault, Station};
