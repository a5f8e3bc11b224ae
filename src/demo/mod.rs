//! `riskgate demo`: a simulated coal-mine site in one process.
//!
//! firmware-sim devices (two gas detectors and the mine's certified
//! monitoring system) speak Modbus TCP on loopback; an embedded MQTT broker
//! (rumqttd) stands in for the county platform unless `--broker` names a
//! real one; the gateway runs with the coal-mine presets. The methane
//! scenario raises and clears alarms within the first minute, then repeats.

use std::net::SocketAddr;
use std::path::PathBuf;

use firmware_sim::devices::{self, DeviceHandle};
use firmware_sim::{FaultSwitch, RegisterBank, Scenario, TcpSlave, VideoBox, VideoBoxConfig};

/// The 1301 face's methane: normal, a rise through the alarm value (1.0 %)
/// to above the power-cut value (1.5 %), and back below the recovery value,
/// every 60 s.
pub const FACE_SCENARIO: &str = r#"
period = "60s"
[signals.ch4]
initial = 0.30
noise = 0.01
steps = [
  { at = "8s", ramp_to = 1.80, over = "8s" },
  { at = "28s", ramp_to = 0.40, over = "4s" },
]
[signals.co]
initial = 6.0
noise = 0.5
[signals.o2]
initial = 20.8
noise = 0.02
[signals.temp]
initial = 22.5
"#;

/// The return airway stays normal.
pub const RETURN_SCENARIO: &str = r#"
[signals.ch4]
initial = 0.42
noise = 0.01
[signals.co]
initial = 4.0
[signals.o2]
initial = 20.7
[signals.temp]
initial = 23.0
"#;

/// The certified system cuts zone 1 when the face passes 1.5 % (about 14 s
/// into the cycle) and restores it after recovery; its feed sensor follows
/// a moment later, as real 馈电 sensors do.
pub const KJ_SCENARIO: &str = r#"
period = "60s"
[signals."zone1.cut"]
initial = 0
steps = [ { at = "14500ms", value = 1 }, { at = "31s", value = 0 } ]
[signals."zone1.feed"]
initial = 1
steps = [ { at = "15s", value = 0 }, { at = "31500ms", value = 1 } ]
[signals."zone1.fan_running"]
initial = 1
"#;

/// The 1301 face's camera: online, then offline from 40 s to 100 s of every
/// 120 s, so that the "无视频监控不作业" interlock (30 s hold) raises at about
/// 70 s and clears at about 100 s.
pub const VIDEO_SCENARIO: &str = r#"
period = "120s"
[signals."cam1.online"]
initial = 1
steps = [ { at = "40s", value = 0 }, { at = "100s", value = 1 } ]
"#;

pub struct DemoOptions {
    pub broker: Option<String>,
    pub mqtt_listen: SocketAddr,
    pub influx_url: Option<String>,
    pub influx_org: String,
    pub influx_bucket: String,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
}

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

/// The demo site's config, as TOML, pointing at the simulated devices.
pub fn config_toml(opts: &DemoOptions, devs: &Devices, broker: &str) -> String {
    let (bh, bp) = broker.rsplit_once(':').unwrap_or((broker, "1883"));
    let influx = match &opts.influx_url {
        Some(url) => format!(
            "[influxdb]\nurl = \"{url}\"\norg = \"{}\"\nbucket = \"{}\"\n{}flush_interval = \"1s\"\n",
            opts.influx_org,
            opts.influx_bucket,
            // A token only when one is given: VictoriaMetrics needs none.
            if std::env::var_os("RISKGATE_INFLUX_TOKEN").is_some() {
                "token_env = \"RISKGATE_INFLUX_TOKEN\"\n"
            } else {
                ""
            }
        ),
        None => String::new(),
    };
    let gas = |id: &str, name: &str, addr: SocketAddr, tag: &str| {
        format!(
            r#"
[[devices]]
id = "{id}"
name = "{name}"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {port}
poll_interval = "1s"
timeout = "500ms"
offline_after = 3
  [[devices.points]]
  id = "ch4.{tag}"
  name = "{name} 甲烷"
  register = "holding"
  address = 0
  type = "f32"
  unit = "%CH4"
  [[devices.points]]
  id = "co.{tag}"
  name = "{name} 一氧化碳"
  register = "holding"
  address = 2
  type = "f32"
  unit = "ppm"
  [[devices.points]]
  id = "o2.{tag}"
  name = "{name} 氧气"
  register = "holding"
  address = 4
  type = "f32"
  unit = "%"
  [[devices.points]]
  id = "temp.{tag}"
  name = "{name} 温度"
  register = "holding"
  address = 6
  type = "i16"
  scale = 0.1
  unit = "°C"
  [[devices.points]]
  id = "fault.{tag}"
  name = "{name} 传感器故障"
  register = "holding"
  address = 7
  type = "bool"
  bit = 0
  [[devices.points]]
  id = "lamp.{tag}"
  name = "{name} 声光报警"
  register = "coil"
  address = 0
  writable = true
"#,
            port = addr.port()
        )
    };
    format!(
        r#"# riskgate demo site: generated by `riskgate demo`, pointing at simulated devices.
[site]
id = "demo-coal-01"
kind = "coal_mine"
name = "演示煤矿"
region_code = "140581"
timezone = "Asia/Shanghai"

[gateway]
id = "gw-demo-01"
data_dir = "{data}"

[http]
listen = "{http}"

[uplink]
host = "{bh}"
port = {bp}
plain_tcp = true   # the demo's broker is on loopback
status_interval = "10s"

{influx}
{face}
{ret}
[[devices]]
id = "kj-1"
name = "安全监控系统 (KJ)"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {kj_port}
poll_interval = "500ms"
timeout = "500ms"
  [[devices.points]]
  id = "kj.zone1.cut"
  name = "1301 区域 断电指令"
  register = "discrete"
  address = 16
  [[devices.points]]
  id = "kj.zone1.feed"
  name = "1301 区域 馈电状态"
  register = "discrete"
  address = 17
  [[devices.points]]
  id = "kj.zone1.fan"
  name = "1301 局部通风机运行"
  register = "discrete"
  address = 18

[[devices]]
id = "plc-1301"
name = "1301工作面 集控"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {plc_port}
poll_interval = "1s"
timeout = "500ms"
  [[devices.points]]
  id = "face_1301.working"
  name = "1301工作面 生产中"
  register = "coil"
  address = 0

[[devices]]
id = "vb-1301"
name = "1301工作面 AI视频盒"
protocol = "mqtt"
broker = "uplink"
topic = "site/video/vb-1301/status"
heartbeat = "15s"
  [[devices.points]]
  id = "video_1301.online"
  name = "1301工作面 摄像头在线"
  path = "cameras[0].online"
  type = "bool"
  [[devices.points]]
  id = "video_1301.blocked"
  name = "1301工作面 摄像头遮挡"
  path = "cameras[0].blocked"
  type = "bool"

# 无视频监控不作业: the face works while its camera is offline for 30 s -> level 2.
[[presets]]
name = "coal-no-video"
id_prefix = "1301-"
bind = {{ working = "face_1301.working", cam_online = "video_1301.online", cam_blocked = "video_1301.blocked" }}

# 1301 coal face, T1: alarm ≥1.0 %, power-cut ≥1.5 %, recovery <1.0 %
# (《煤矿安全规程》/ AQ 1029-2019 §6 methane table; standards-research.md §1.1).
[[presets]]
name = "coal-methane-face"
id_prefix = "1301-t1-"
bind = {{ ch4 = "ch4.1301.t1" }}

[[presets]]
name = "coal-air"
id_prefix = "1301-t1-"
bind = {{ co = "co.1301.t1", o2 = "o2.1301.t1" }}

# 1301 return airway, T2: alarm and cut ≥1.0 %, recovery <1.0 %.
[[presets]]
name = "coal-methane-return"
id_prefix = "1301-t2-"
bind = {{ ch4 = "ch4.1301.t2" }}

# The certified system checked against its own inputs (断电失效, 风电闭锁失效, 断电无超限).
[[presets]]
name = "coal-kj-crosscheck"
id_prefix = "1301-"
bind = {{ ch4 = "ch4.1301.t1", cut = "kj.zone1.cut", feed = "kj.zone1.feed", fan = "kj.zone1.fan", cut_value = 1.5, alarm_value = 1.0 }}

# The face's warning lamp follows riskgate's own cut alarm.
[[rules]]
id = "1301-t1-ch4-cut"
kind = "threshold"
name = "采煤工作面 甲烷达断电值"
point = "ch4.1301.t1"
op = ">="
value = 1.5
recovery = 1.0
level = 1
actions = [ {{ write = "lamp.1301.t1", value = 1, on_clear = 0 }} ]
"#,
        data = opts.data_dir.display(),
        http = opts.http,
        face = gas(
            "gd-1301-t1",
            "1301采煤工作面 T1",
            devs.face.0.local_addr(),
            "1301.t1"
        ),
        ret = gas(
            "gd-1301-t2",
            "1301回风巷 T2",
            devs.ret.0.local_addr(),
            "1301.t2"
        ),
        kj_port = devs.kj.0.local_addr().port(),
        plc_port = devs.plc.local_addr().port(),
    )
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

/// Starts rumqttd on `listen` in its own threads; it runs until the process
/// exits. Returns the address it listens on (port 0 picks a free one).
pub fn start_embedded_broker(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    // Fail early and clearly if the port is taken.
    let listen = std::net::TcpListener::bind(listen)
        .and_then(|l| l.local_addr())
        .map_err(|e| anyhow::anyhow!("cannot listen for the demo's MQTT broker on {listen}: {e} (use --mqtt-listen or --broker)"))?;
    let text = format!(
        r#"
id = 0
[router]
max_connections = 64
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "{listen}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 262144
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let cfg: rumqttd::Config = toml::from_str(&text)?;
    std::thread::Builder::new()
        .name("demo-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(cfg);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "demo MQTT broker stopped");
            }
        })?;
    // The uplink connects with retries, so it needs no readiness wait here.
    Ok(listen)
}
