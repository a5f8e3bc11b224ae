//! `riskgate demo`: a simulated coal-mine site in one process.
//!
//! firmware-sim devices (two gas detectors and the mine's certified
//! monitoring system) speak Modbus TCP on loopback; an embedded MQTT broker
//! (rumqttd) stands in for the county platform unless `--broker` names a
//! real one; the gateway runs with the coal-mine presets. The methane
//! scenario raises and clears alarms within the first minute, then repeats.

use std::net::SocketAddr;
use std::path::PathBuf;

mod broker;
mod config;
mod devices;
pub mod scenarios;
pub mod site;
mod users;

pub use broker::start_embedded_broker;
pub use config::config_toml;
pub use devices::{Devices, start_devices, start_video};
pub use scenarios::{FACE_SCENARIO, KJ_SCENARIO, RETURN_SCENARIO, VIDEO_SCENARIO};
pub use users::{DemoLogins, write_demo_users};

pub struct DemoOptions {
    pub broker: Option<String>,
    pub mqtt_listen: SocketAddr,
    pub influx_url: Option<String>,
    pub influx_org: String,
    pub influx_bucket: String,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
}

/// `default` when it is free, else a free port on the same address (a
/// Debian machine often runs its own Mosquitto on 1883). An address given
/// on the command line is used as it is.
pub fn default_or_free(default: &str) -> SocketAddr {
    let addr: SocketAddr = default.parse().expect("a valid default address");
    if std::net::TcpListener::bind(addr).is_ok() {
        return addr;
    }
    std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0))
        .and_then(|l| l.local_addr())
        .unwrap_or(addr)
}
