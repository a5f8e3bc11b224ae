//! riskgate: an edge gateway for industrial-safety sites.
//!
//! The data path, one module a step:
//! `source` (poll devices) → `rules` (judge, pure, clock passed in) →
//! `queue` (the durable store and its queues) → `sink` (InfluxDB, county
//! MQTT uplink).
//! `runtime` wires them; `api` serves the operator page; `config` checks
//! everything before any of it starts.

pub mod api;
pub mod auth;
pub mod backoff;
pub mod client;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod metrics;
pub mod model;
pub mod queue;
pub mod rules;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod time;
