//! Shared fixtures of the integration tests, one job a file:
//! - `wait`: free ports, polling with a limit (no sleeps as synchronisation);
//! - `certs`: test CAs and certificates made with the openssl CLI;
//! - `services`: real Mosquitto and VictoriaMetrics on free loopback ports;
//! - `http`: a minimal blocking HTTP client;
//! - `session`: the async API client and a login that returns the token;
//! - `influx`: a stand-in for InfluxDB 2.x's write endpoint (auth, org,
//!   bucket, parse errors, scripted answers);
//! - `schema`: the contract's JSON schemas as an oracle;
//! - `subscriber`: the one MQTT subscriber (the county's side), with the
//!   consumer checks (de-duplication, gap-free seq);
//! - `gateway`: the riskgate binary as a child process, in-process logs;
//! - `site`: the fault tests' site on simulated gas detectors (built with
//!   `riskgate::demo::site`);
//! - `history`: what the gateway committed, read back from its store;
//! - `source`: a source task under test and the ends of its channels.
//!
//! The names are re-exported here, so a test says `common::Mosquitto`.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod gateway;
pub mod history;
pub mod http;
pub mod influx;
pub mod schema;
pub mod services;
pub mod session;
// The site builder is the library's, behind its `demo` feature.
#[cfg(feature = "demo")]
pub mod site;
pub mod source;
pub mod subscriber;
pub mod wait;

pub use gateway::{Riskgate, init_tracing};
pub use history::{accepted_readings, committed, committed_within};
pub use http::{http_get, http_post};
pub use influx::{Answer, InfluxStandIn};
pub use schema::assert_schema_valid;
pub use services::{Mosquitto, Victoria};
pub use session::{api_client, login_token};
#[cfg(feature = "demo")]
pub use site::{STEADY, SiteCfg, gas_detectors};
pub use subscriber::{Msg, Subscriber, SubscriberOpts, assert_gap_free, dedupe_alarms, subscribe};
pub use wait::{free_port, wait_for, wait_for_async};
