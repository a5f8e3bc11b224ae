//! The demo's simulated devices: firmware-sim slaves on loopback.

use std::net::SocketAddr;

use firmware_sim::devices::{self, DeviceHandle};
use firmware_sim::{FaultSwitch, RegisterBank, Scenario, TcpSlave, VideoBox, VideoBoxConfig};

use super::scenarios::{FACE_SCENARIO, KJ_SCENARIO, RETURN_SCENARIO, VIDEO_SCENARIO};

/// The simulated devices, kept alive while the demo runs.
pub struct Devices {
    pub face: (TcpSlave, DeviceHandle),
    pub ret: (TcpSlave, DeviceHandle),
    pub kj: (TcpSlave, DeviceHandle),
    /// The face's control box: coil 0 "working", always on in the demo.
    pub plc: TcpSlave,
    /// Started once the broker is known (`start_video`).
    pub video: Option<VideoBox>,
}

pub async fn start_devices() -> anyhow::Result<Devices> {
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let face = devices::gas_detector_tcp(any, Scenario::from_toml_str(FACE_SCENARIO)?).await?;
    let ret = devices::gas_detector_tcp(any, Scenario::from_toml_str(RETURN_SCENARIO)?).await?;
    let kj = devices::kj_monitor_tcp(any, 4, Scenario::from_toml_str(KJ_SCENARIO)?).await?;
    let bank = RegisterBank::new();
    bank.set_coil(0, true);
    let plc = TcpSlave::start(any, vec![], bank, FaultSwitch::new()).await?;
    Ok(Devices {
        face,
        ret,
        kj,
        plc,
        video: None,
    })
}

/// Starts the face's AI video box, publishing to `broker` (`host:port`).
pub fn start_video(devs: &mut Devices, broker: &str) -> anyhow::Result<()> {
    let (host, port) = broker.rsplit_once(':').unwrap_or((broker, "1883"));
    let mut cfg = VideoBoxConfig::new(host, port.parse()?, "vb-1301", 1);
    cfg.heartbeat = std::time::Duration::from_secs(5);
    cfg.scenario = Scenario::from_toml_str(VIDEO_SCENARIO)?;
    devs.video = Some(VideoBox::start(cfg));
    Ok(())
}
