//! The MQTT source: one subscription per device (an AI video box, a gas
//! monitor with an MQTT uplink …), each JSON message mapped to the device's
//! points by their `path`.
//!
//! `config` checks the device's part of the config file into an
//! [`MqttDevice`](config::MqttDevice), `connection` is how it reaches its
//! broker (TLS, login; `broker = "uplink"` as the uplink does), `jsonpath`
//! is the small path syntax of its points, `client` runs the subscription
//! (fail safe: silence, garbage and a broker it cannot reach or trust turn
//! the points bad, see its module doc).

pub mod client;
pub mod config;
pub mod connection;
pub mod jsonpath;

pub use client::{JsonValueError, MAX_PAYLOAD, json_to_value, run};
