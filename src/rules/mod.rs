//! The rule engine: pure, clock passed in, no I/O and no metrics.
//!
//! - `engine`: the facade the runtime drives (`Engine`).
//! - `compile`: config → point table, device counters, live rules.
//! - `points`: the point table (last good value, quality, rate histories).
//! - `state`: the rules' memories as the store keeps them across restarts.
//! - `health`: every built-in alarm (offline, stale, fault, action failed,
//!   readings queue overflow).
//! - `kind/`: one file per rule kind: typed settings, check, judgement.
//! - `lifecycle`: delays, latching, acknowledgement, escalation of the one
//!   instance per key.
//! - `quality`: over-range and device-fault readings (`[[quality]]`).
//! - `calibration`: operators' calibration windows (标校) and cut tests.
//! - `text`: every message text (Chinese first).
//! - `expr`: the condition language of interlock and consistency rules.

pub mod alarms;
pub mod calibration;
pub mod compile;
pub mod engine;
pub mod expr;
pub mod health;
pub mod kind;
pub mod lifecycle;
pub mod points;
pub mod quality;
pub mod state;
pub mod text;

pub use crate::time::{Mono, Now};
pub use calibration::{CalibrateError, CalibrationView};
pub use engine::{AckError, ActionRequest, Engine, Instance, Output};
pub use kind::{KindSpec, RuleSpec};
pub use points::PointState;
