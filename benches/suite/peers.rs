//! The suite's loads against two peer gateways (issue 15, item 2): Node-RED
//! with node-red-contrib-modbus, and the ThingsBoard IoT Gateway, both
//! installed by `scripts/bench-peers.sh` under a prefix of their own
//! (`target/bench/peers` unless `SUITE_PEERS_PREFIX` says otherwise) and run
//! only as external programs, so that riskgate's figures and theirs come from
//! one run on one machine with the same simulated devices and broker.
//!
//! Each peer polls the same firmware-sim Modbus TCP devices (same registers,
//! same period) and publishes every reading over MQTT to the suite's
//! Mosquitto; it has no rules and no database. Per load, as for riskgate:
//! - delivered points/s: register values received by a subscriber of the
//!   suite whose reading falls in the window: the ThingsBoard gateway stamps
//!   each reading with its poll time (`ts`), Node-RED's reading carries no
//!   time, so there the receipt time stands for it;
//! - RSS (maximum of 1 s samples, summed over the peer's process tree) and
//!   CPU % (utime + stime of the tree over the window), from /proc;
//! - latency: the methane register (device 0, register 0) is stepped between
//!   two values, each step timed from the simulator's change to the
//!   subscriber holding a reading with the new value. This is
//!   reading-to-subscriber; riskgate's alarm latency also holds a rule
//!   evaluation and a durable commit before its event is published.
//!
//! Two things the ThingsBoard gateway needs to run without ThingsBoard: it
//! sends no telemetry until its `getSessionLimits` RPC is answered on the
//! broker (the subscriber here answers it: no limits), and it asks its update
//! server at start and hourly: the update URL is fixed in its code, not its
//! configuration, so its HTTP(S) proxy is set to a closed loopback port.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{CH4_HIGH, CH4_LOW, Env, Fleet, Load, cpu_seconds, jitter, rss_mb, summary};

/// The topic prefix of Node-RED's readings (one topic per device).
const NR_TOPIC: &str = "bench/nodered";
/// The ThingsBoard gateway API's telemetry topic and device RPC topics.
const TB_TELEMETRY: &str = "v1/gateway/telemetry";
const TB_RPC_REQUEST: &str = "v1/devices/me/rpc/request/";
const TB_RPC_RESPONSE: &str = "v1/devices/me/rpc/response/";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Peer {
    NodeRed,
    ThingsBoard,
}

impl Peer {
    pub const ALL: [Peer; 2] = [Peer::NodeRed, Peer::ThingsBoard];

    pub fn key(self) -> &'static str {
        match self {
            Peer::NodeRed => "node_red",
            Peer::ThingsBoard => "thingsboard",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Peer::NodeRed => "Node-RED",
            Peer::ThingsBoard => "ThingsBoard IoT Gateway",
        }
    }
}

/// What the install script left: per peer, its version line or why not.
pub struct Installed {
    pub prefix: PathBuf,
    pub versions: HashMap<&'static str, Result<String, String>>,
}

impl Installed {
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "prefix": self.prefix.display().to_string() });
        for p in Peer::ALL {
            v[p.key()] = match &self.versions[p.key()] {
                Ok(ver) => json!({ "version": ver }),
                Err(e) => json!({ "not_installed": e }),
            };
        }
        v
    }
}

/// Runs `scripts/bench-peers.sh` (which reuses what is already installed)
/// and reads the versions it recorded. Never fails: a peer that could not be
/// installed is recorded with the reason.
pub fn install() -> Installed {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let prefix = std::env::var_os("SUITE_PEERS_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench/peers"));
    println!("peers: installing under {}", prefix.display());
    let out = Command::new("bash")
        .arg(root.join("scripts/bench-peers.sh"))
        .arg(&prefix)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let recorded = match &out {
        Ok(o) if o.status.success() => std::fs::read_to_string(prefix.join("versions.json"))
            .map_err(|e| format!("no versions.json: {e}"))
            .and_then(|s| serde_json::from_str::<Value>(&s).map_err(|e| e.to_string())),
        Ok(o) => Err(format!("install script exited with {}", o.status)),
        Err(e) => Err(format!("install script did not run: {e}")),
    };
    let versions = Peer::ALL
        .into_iter()
        .map(|p| {
            let r = match &recorded {
                Ok(v) => match (v[p.key()]["version"].as_str(), v[p.key()]["error"].as_str()) {
                    (Some(ver), _) => Ok(ver.to_string()),
                    (None, Some(e)) => Err(e.to_string()),
                    (None, None) => Err("not in versions.json".to_string()),
                },
                Err(e) => Err(e.clone()),
            };
            (p.key(), r)
        })
        .collect();
    Installed { prefix, versions }
}

fn device(d: usize) -> String {
    format!("d{d:04}")
}

/// The Node-RED flow: per device one `modbus-client` (its own TCP
/// connection), one `Modbus-Read` of all its holding registers every period,
/// wired to one `mqtt out` on the device's topic; one broker config.
pub fn node_red_flow(l: &Load, ports: &[u16], broker: u16) -> Value {
    let mut nodes = vec![
        json!({ "id": "bench-tab", "type": "tab", "label": "bench" }),
        json!({
            "id": "bench-broker", "type": "mqtt-broker", "name": "suite",
            "broker": "127.0.0.1", "port": broker.to_string(), "clientid": "bench-nodered",
            "autoConnect": true, "usetls": false, "protocolVersion": "4",
            "keepalive": "60", "cleansession": true,
        }),
    ];
    let rate_ms = l.period.as_millis().max(1).to_string();
    for (d, port) in ports.iter().take(l.devices).enumerate() {
        let name = device(d);
        nodes.push(json!({
            "id": format!("client-{name}"), "type": "modbus-client", "name": name,
            "clienttype": "tcp", "bufferCommands": true, "stateLogEnabled": false,
            "queueLogEnabled": false, "failureLogEnabled": false,
            "tcpHost": "127.0.0.1", "tcpPort": port.to_string(), "tcpType": "DEFAULT",
            "unit_id": "1", "commandDelay": "1", "clientTimeout": "1000",
            "reconnectOnTimeout": true, "reconnectTimeout": "2000",
            "parallelUnitIdsAllowed": true,
        }));
        nodes.push(json!({
            "id": format!("read-{name}"), "type": "modbus-read", "z": "bench-tab", "name": name,
            "topic": format!("{NR_TOPIC}/{name}"), "showStatusActivities": false,
            "logIOActivities": false, "showErrors": false, "unitid": "",
            "dataType": "HoldingRegister", "adr": "0", "quantity": l.registers.to_string(),
            "rate": rate_ms, "rateUnit": "ms", "delayOnStart": false, "startDelayTime": "",
            "server": format!("client-{name}"), "useIOFile": false, "ioFile": "",
            "useIOForPayload": false, "emptyMsgOnFail": false,
            "wires": [[format!("mqtt-{name}")], []],
        }));
        nodes.push(json!({
            "id": format!("mqtt-{name}"), "type": "mqtt out", "z": "bench-tab", "name": "",
            "topic": format!("{NR_TOPIC}/{name}"), "qos": "1", "retain": "false",
            "broker": "bench-broker", "wires": [],
        }));
    }
    Value::Array(nodes)
}

/// Node-RED's settings: no editor, no admin API, no update check, warnings
/// only.
const NODE_RED_SETTINGS: &str = r#"module.exports = {
  uiPort: 0, uiHost: "127.0.0.1", httpAdminRoot: false, httpNodeRoot: false,
  flowFile: "flows.json", credentialSecret: false,
  logging: { console: { level: "warn", metrics: false, audit: false } },
  diagnostics: { enabled: false }, runtimeState: { enabled: false },
  telemetry: { enabled: false },
  externalModules: { autoInstall: false, palette: { allowInstall: false } },
};
"#;

/// The ThingsBoard gateway's configuration files (name → content): the
/// gateway on the suite's broker without statistics, remote configuration or
/// rate limits, every reading reported as received (not only changes), and a
/// Modbus connector with one slave per device, one time series per register.
pub fn thingsboard_config(l: &Load, ports: &[u16], broker: u16) -> Vec<(&'static str, Value)> {
    let unlimited = "0:0,";
    let gateway = json!({
        "thingsboard": {
            "host": "127.0.0.1", "port": broker, "remoteShell": false,
            "remoteConfiguration": false, "latencyDebugMode": false,
            "statistics": { "enable": false, "statsSendPeriodInSeconds": 3600 },
            "deviceFiltering": { "enable": false },
            "maxPayloadSizeBytes": 65536, "minPackSendDelayMS": 50, "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 3600, "handleDeviceRenaming": false,
            "security": { "type": "accessToken", "accessToken": "bench" },
            "qos": 1,
            "reportStrategy": { "type": "ON_RECEIVED" },
            "checkingDeviceActivity": { "checkDeviceInactivity": false },
            "rateLimits": unlimited, "dpRateLimits": unlimited, "messagesRateLimits": unlimited,
            "deviceMessagesRateLimits": unlimited, "deviceRateLimits": unlimited,
            "deviceDpRateLimits": unlimited,
        },
        "storage": { "type": "memory", "read_records_count": 100, "max_records_count": 100000 },
        "grpc": { "enabled": false },
        "connectors": [{ "type": "modbus", "name": "bench", "configuration": "modbus.json" }],
    });
    let slaves: Vec<Value> = ports
        .iter()
        .take(l.devices)
        .enumerate()
        .map(|(d, port)| {
            json!({
                "host": "127.0.0.1", "port": port, "type": "tcp", "method": "socket",
                "unitId": 1, "deviceName": device(d), "deviceType": "bench", "timeout": 1,
                "byteOrder": "BIG", "wordOrder": "BIG", "retries": 0,
                "pollPeriod": l.period.as_millis().max(1),
                "reportStrategy": { "type": "ON_RECEIVED" },
                "timeseries": (0..l.registers).map(|r| json!({
                    "tag": format!("r{r:02}"), "type": "16uint", "functionCode": 3,
                    "objectsCount": 1, "address": r,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    // Errors only: pymodbus warns on every decode in this version, which
    // would cost the gateway CPU and fill the log.
    let logs = json!({
        "version": 1, "disable_existing_loggers": false,
        "formatters": { "plain": { "format": "%(asctime)s %(levelname)s %(name)s %(message)s" } },
        "handlers": { "console": {
            "class": "logging.StreamHandler", "formatter": "plain", "level": "ERROR",
            "stream": "ext://sys.stderr",
        } },
        "loggers": { "pymodbus": { "level": "ERROR" } },
        "root": { "level": "ERROR", "handlers": ["console"] },
    });
    vec![
        ("tb_gateway.json", gateway),
        ("modbus.json", json!({ "master": { "slaves": slaves } })),
        ("logs.json", logs),
    ]
}

/// The readings of one MQTT message: how many register values, each group
/// with its reading time (ms, or None where the payload has none), and the
/// methane register's value where the message holds device 0.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub groups: Vec<(Option<i64>, u32)>,
    pub ch4: Option<f64>,
}

pub fn parse(peer: Peer, topic: &str, payload: &[u8]) -> Option<Parsed> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let mut p = Parsed::default();
    match peer {
        // `bench/nodered/d0000` → [30, 31, ...]
        Peer::NodeRed => {
            let dev = topic.strip_prefix(NR_TOPIC)?.strip_prefix('/')?;
            let values = v.as_array()?;
            p.groups.push((None, values.len() as u32));
            if dev == device(0) {
                p.ch4 = values.first().and_then(Value::as_f64);
            }
        }
        // {"d0000": [{"ts": ..., "values": {"r00": 30, ...}}, ...], ...}
        Peer::ThingsBoard => {
            if topic != TB_TELEMETRY {
                return None;
            }
            for (dev, entries) in v.as_object()? {
                for e in entries.as_array().into_iter().flatten() {
                    let Some(values) = e["values"].as_object() else {
                        continue;
                    };
                    p.groups.push((e["ts"].as_i64(), values.len() as u32));
                    if dev == &device(0)
                        && let Some(x) = values.get("r00").and_then(Value::as_f64)
                    {
                        p.ch4 = Some(x);
                    }
                }
            }
        }
    }
    Some(p)
}

/// The answer to the gateway's `getSessionLimits`: no rate limits.
pub fn session_limits() -> Value {
    json!({ "rateLimits": {}, "gatewayRateLimits": {}, "maxInflightMessages": 10000, "maxPayloadSize": 65536 })
}

/// Register values received, as (reading time ms, count) per group.
type Counts = Arc<Mutex<Vec<(i64, u32)>>>;

/// The suite's subscriber to a peer's readings (and, for ThingsBoard, the
/// responder to its session-limits RPC).
async fn subscribe(
    port: u16,
    peer: Peer,
    k: usize,
) -> (Counts, mpsc::UnboundedReceiver<(DateTime<Utc>, f64)>) {
    let mut opts = MqttOptions::new(format!("peer-sub-{}-{k}", peer.key()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    // The gateway batches readings up to its payload limit.
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 1000);
    let topics: &[&str] = match peer {
        Peer::NodeRed => &["bench/nodered/#"],
        Peer::ThingsBoard => &[TB_TELEMETRY, "v1/devices/me/rpc/request/+"],
    };
    for t in topics {
        client.subscribe(*t, QoS::AtMostOnce).await.unwrap();
    }
    let mut acks = 0;
    while acks < topics.len() {
        match el.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => acks += 1,
            Ok(_) => {}
            Err(e) => panic!("peer subscriber: {e}"),
        }
    }
    let counts: Counts = Arc::default();
    let (tx, rx) = mpsc::unbounded_channel();
    let c = counts.clone();
    tokio::spawn(async move {
        // Until the load's run drops the receiver: a subscriber left connected
        // under the same client id would take the next load's session over.
        while !tx.is_closed() {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(m))) => {
                    let at = Utc::now();
                    if let Some(id) = m.topic.strip_prefix(TB_RPC_REQUEST) {
                        let _ = client
                            .publish(
                                format!("{TB_RPC_RESPONSE}{id}"),
                                QoS::AtLeastOnce,
                                false,
                                session_limits().to_string(),
                            )
                            .await;
                        continue;
                    }
                    let Some(p) = parse(peer, &m.topic, &m.payload) else {
                        continue;
                    };
                    {
                        let mut c = c.lock().unwrap();
                        for (ts, n) in p.groups {
                            c.push((ts.unwrap_or(at.timestamp_millis()), n));
                        }
                    }
                    if let Some(x) = p.ch4
                        && tx.send((at, x)).is_err()
                    {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (counts, rx)
}

/// The pids of `root` and all its descendants, from /proc.
fn tree(root: u32) -> Vec<String> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.into_iter().map(|p| p.to_string()).collect()
}

fn tree_cpu(root: u32, tick: f64) -> f64 {
    tree(root).iter().map(|p| cpu_seconds(p, tick)).sum()
}

fn tree_rss(root: u32) -> f64 {
    tree(root).iter().map(|p| rss_mb(p)).sum()
}

struct Process {
    child: Child,
}

impl Process {
    fn stop(mut self) {
        let pids = tree(self.child.id());
        let _ = Command::new("kill").arg("-TERM").args(&pids).status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the tree (the gateway's threads end with it).
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9)
}

fn start(peer: Peer, prefix: &Path, dir: &Path, l: &Load, ports: &[u16], broker: u16) -> Process {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(dir.join("peer.log")).unwrap();
    let mut cmd = match peer {
        Peer::NodeRed => {
            let modules = prefix.join("node-red/node_modules");
            let flow = node_red_flow(l, ports, broker);
            std::fs::write(dir.join("flows.json"), flow.to_string()).unwrap();
            std::fs::write(dir.join("settings.js"), NODE_RED_SETTINGS).unwrap();
            // Node-RED finds node-red-contrib-modbus in its user folder.
            #[cfg(unix)]
            let _ = std::os::unix::fs::symlink(&modules, dir.join("node_modules"));
            let mut c = Command::new("node");
            c.arg(modules.join("node-red/red.js"))
                .arg("--userDir")
                .arg(dir)
                .arg("--settings")
                .arg(dir.join("settings.js"))
                .arg("flows.json");
            c
        }
        Peer::ThingsBoard => {
            let config = dir.join("config");
            std::fs::create_dir_all(&config).unwrap();
            for (name, v) in thingsboard_config(l, ports, broker) {
                std::fs::write(config.join(name), serde_json::to_string_pretty(&v).unwrap())
                    .unwrap();
            }
            let proxy = format!("http://127.0.0.1:{}", closed_port());
            let mut c = Command::new(prefix.join("tb-venv/bin/thingsboard-gateway"));
            c.env("TB_GW_CONFIG_DIR", format!("{}/", config.display()))
                .env("HTTPS_PROXY", &proxy)
                .env("HTTP_PROXY", &proxy)
                .env("https_proxy", &proxy)
                .env("http_proxy", &proxy)
                .env_remove("NO_PROXY")
                .env_remove("no_proxy");
            c
        }
    };
    let child = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", peer.label()));
    Process { child }
}

fn counted(counts: &Counts, from: i64, to: i64) -> (u64, u64) {
    let c = counts.lock().unwrap();
    let total = c.iter().map(|(_, n)| *n as u64).sum();
    let inside = c
        .iter()
        .filter(|(t, _)| (from..=to).contains(t))
        .map(|(_, n)| *n as u64)
        .sum();
    (inside, total)
}

fn log_tail(dir: &Path) -> String {
    let s = std::fs::read_to_string(dir.join("peer.log")).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// One peer on one load: the same window, steps and /proc figures as
/// riskgate's `run_load`. Returns the figures, or `{"error": ...}` when the
/// peer delivered nothing.
pub async fn run_peer(
    env: &mut Env,
    fleet: &Fleet,
    l: &Load,
    k: usize,
    peer: Peer,
    prefix: &Path,
) -> Value {
    let dir = env.dir.path().join(format!("peer{k}-{}", peer.key()));
    let ports: Vec<u16> = fleet.slaves.iter().map(|s| s.local_addr().port()).collect();
    let ch4 = &fleet.banks[0];
    ch4.set_holding(0, CH4_LOW);
    let (counts, mut values) = subscribe(env.mosquitto.port, peer, k).await;
    let proc = start(peer, prefix, &dir, l, &ports, env.mosquitto.port);
    let pid = proc.child.id();
    println!("{}: {}", l.name, peer.label());

    // Running: the first readings arrived (a thousand connections take a
    // while to open); then the same warm-up as riskgate's.
    let started = Instant::now();
    while counted(&counts, 0, i64::MAX).1 == 0 {
        if started.elapsed() > Duration::from_secs(120) {
            let tail = log_tail(&dir);
            proc.stop();
            return json!({ "error": format!("nothing received in 120 s; log: {tail}") });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let startup_s = started.elapsed().as_secs_f64();
    tokio::time::sleep((l.period * 2).max(Duration::from_secs(2))).await;

    let t0 = Utc::now().timestamp_millis();
    let w0 = Instant::now();
    let (cpu0, own0) = (tree_cpu(pid, env.tick), cpu_seconds("self", env.tick));
    let mut rss_max = tree_rss(pid);
    let mut last_rss = Instant::now();
    let mut latency = Vec::new();
    let (mut missed, mut run_of_misses) = (0usize, 0usize);
    let step_limit = l.period * 3 + Duration::from_secs(10);
    let mut high = false;
    for _ in 0..l.steps {
        // A peer that cannot keep up misses every step; three in a row end
        // the steps (the window still runs its minimum).
        if run_of_misses >= 3 {
            missed += 1;
            continue;
        }
        let wait = l
            .period
            .min(Duration::from_secs(1))
            .mul_f64(jitter(&mut env.seed));
        tokio::time::sleep(wait).await;
        high = !high;
        let raw = if high { CH4_HIGH } else { CH4_LOW };
        while values.try_recv().is_ok() {}
        let stepped = Utc::now();
        ch4.set_holding(0, raw);
        let got = tokio::time::timeout(step_limit, async {
            while let Some((at, x)) = values.recv().await {
                if x == raw as f64 {
                    return Some(at);
                }
            }
            None
        })
        .await;
        match got {
            Ok(Some(at)) => {
                run_of_misses = 0;
                latency.push((at - stepped).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
            _ => {
                missed += 1;
                run_of_misses += 1;
            }
        }
        if last_rss.elapsed() >= Duration::from_secs(1) {
            rss_max = rss_max.max(tree_rss(pid));
            last_rss = Instant::now();
        }
    }
    while w0.elapsed() < l.min_window {
        tokio::time::sleep(Duration::from_secs(1).min(l.min_window - w0.elapsed())).await;
        rss_max = rss_max.max(tree_rss(pid));
    }
    let window = w0.elapsed().as_secs_f64();
    let t1 = Utc::now().timestamp_millis();
    let rss_end = tree_rss(pid);
    rss_max = rss_max.max(rss_end);
    let cpu = (tree_cpu(pid, env.tick) - cpu0) / window * 100.0;
    let own = (cpu_seconds("self", env.tick) - own0) / window * 100.0;
    let processes = tree(pid).len();
    ch4.set_holding(0, CH4_LOW);

    // Readings of the window still in flight (the gateway batches): counted
    // once the total stops growing, at most 30 s.
    let settle = Instant::now();
    let mut last = counted(&counts, t0, t1).1;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = counted(&counts, t0, t1).1;
        if now == last || settle.elapsed() > Duration::from_secs(30) {
            break;
        }
        last = now;
    }
    let (n, _) = counted(&counts, t0, t1);
    proc.stop();

    let span = (t1 - t0) as f64 / 1000.0;
    let rate = n as f64 / span;
    let ratio = rate / l.offered();
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    let v = json!({
        "startup_s": round(startup_s, 1),
        "window_s": round(span, 2),
        "delivered_points": n,
        "delivered_points_per_s": round(rate, 1),
        "delivered_ratio": round(ratio, 4),
        "sustained": ratio >= 0.95,
        "rss_mb_max": round(rss_max, 1),
        "rss_mb_end": round(rss_end, 1),
        "cpu_percent": round(cpu, 1),
        "processes": processes,
        "harness_cpu_percent": round(own, 1),
        "steps": l.steps,
        "steps_missed": missed,
        "latency": summary(latency),
    });
    println!("{}", serde_json::to_string(&v).unwrap());
    v
}

/// Both peers on one load, keyed by peer; `not_installed` where the script
/// could not install one.
pub async fn run(env: &mut Env, fleet: &Fleet, l: &Load, k: usize, inst: &Installed) -> Value {
    let mut out = json!({});
    for p in Peer::ALL {
        out[p.key()] = match &inst.versions[p.key()] {
            Ok(_) => run_peer(env, fleet, l, k, p, &inst.prefix).await,
            Err(e) => json!({ "not_installed": e }),
        };
    }
    out
}

fn ratio(a: &Value, b: &Value) -> String {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn lat(v: &Value) -> String {
    if v["n"].as_u64().unwrap_or(0) == 0 {
        return "–".into();
    }
    format!(
        "{} / {} / {} (n={})",
        v["p50_ms"], v["p99_ms"], v["max_ms"], v["n"]
    )
}

/// Per load a table: riskgate and each peer side by side, and riskgate's
/// figures divided by the peer's (CPU and RSS: below 1 is riskgate using
/// less; throughput: 1 is the same points/s).
pub fn markdown(result: &Value) -> String {
    let Some(peers) = result.get("peers").filter(|p| !p.is_null()) else {
        return String::new();
    };
    let mut t = String::from("\n## Peers\n\n");
    for p in Peer::ALL {
        let v = &peers[p.key()];
        let what = v["version"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "not installed: {}",
                    v["not_installed"].as_str().unwrap_or("?")
                )
            });
        t.push_str(&format!("- {}: {what}\n", p.label()));
    }
    t.push_str(&format!(
        "- installed under `{}` by `scripts/bench-peers.sh`\n\n\
         Latency: riskgate's is the alarm path (value change → rule → durable commit → event at \
         a subscriber); the peers have no rules, theirs is value change → reading at a \
         subscriber. Ratios are riskgate ÷ peer.\n",
        peers["prefix"].as_str().unwrap_or("")
    ));
    for r in result["loads"].as_array().into_iter().flatten() {
        let Some(pr) = r.get("peers") else { continue };
        t.push_str(&format!(
            "\n### {} ({} × {} @ {} ms, {} pts/s offered)\n\n\
             | gateway | delivered pts/s | RSS MB (max) | CPU % | latency p50 / p99 / max ms | CPU ratio | RSS ratio | throughput ratio |\n\
             |---|---|---|---|---|---|---|---|\n",
            r["name"].as_str().unwrap_or(""),
            r["devices"],
            r["registers"],
            r["period_ms"],
            r["offered_points_per_s"],
        ));
        t.push_str(&format!(
            "| riskgate | {} ({:.1} %) | {} | {} | {} | | | |\n",
            r["delivered_points_per_s"],
            r["delivered_ratio"].as_f64().unwrap_or(0.0) * 100.0,
            r["rss_mb_max"],
            r["cpu_percent"],
            lat(&r["alarm_latency"]),
        ));
        for p in Peer::ALL {
            let v = &pr[p.key()];
            if let Some(e) = v["not_installed"].as_str() {
                t.push_str(&format!(
                    "| {} | not installed: {e} | | | | | | |\n",
                    p.label()
                ));
                continue;
            }
            if let Some(e) = v["error"].as_str() {
                t.push_str(&format!("| {} | failed: {e} | | | | | | |\n", p.label()));
                continue;
            }
            t.push_str(&format!(
                "| {} | {} ({:.1} %) | {} | {} | {}{} | {} | {} | {} |\n",
                p.label(),
                v["delivered_points_per_s"],
                v["delivered_ratio"].as_f64().unwrap_or(0.0) * 100.0,
                v["rss_mb_max"],
                v["cpu_percent"],
                lat(&v["latency"]),
                match v["steps_missed"].as_u64() {
                    Some(m) if m > 0 => format!(", {m} steps missed"),
                    _ => String::new(),
                },
                ratio(&r["cpu_percent"], &v["cpu_percent"]),
                ratio(&r["rss_mb_max"], &v["rss_mb_max"]),
                ratio(&r["delivered_points_per_s"], &v["delivered_points_per_s"]),
            ));
        }
    }
    t
}

/// The smoke mode's offline check (no peer is installed there): the
/// generated Node-RED flow and ThingsBoard configuration parse back and name
/// every device with its port, register count and period; the payload
/// parsers count what each peer sends.
pub fn self_check(l: &Load, fleet: &Fleet, broker: u16) {
    let ports: Vec<u16> = fleet.slaves.iter().map(|s| s.local_addr().port()).collect();
    let ports = &ports[..l.devices];
    let period_ms = l.period.as_millis().to_string();

    let flow: Value = serde_json::from_str(&node_red_flow(l, ports, broker).to_string()).unwrap();
    let nodes = flow.as_array().unwrap();
    let by_id = |id: &str| nodes.iter().find(|n| n["id"] == id);
    let broker_node = nodes.iter().find(|n| n["type"] == "mqtt-broker").unwrap();
    assert_eq!(broker_node["port"], broker.to_string());
    for (d, port) in ports.iter().enumerate() {
        let name = device(d);
        let read = nodes
            .iter()
            .find(|n| n["type"] == "modbus-read" && n["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no modbus-read for {name}"));
        assert_eq!(read["quantity"], l.registers.to_string());
        assert_eq!(read["rate"], period_ms);
        assert_eq!(read["rateUnit"], "ms");
        let client = by_id(read["server"].as_str().unwrap()).unwrap();
        assert_eq!(client["type"], "modbus-client");
        assert_eq!(client["tcpPort"], port.to_string());
        let out = by_id(read["wires"][0][0].as_str().unwrap()).unwrap();
        assert_eq!(out["type"], "mqtt out");
        assert_eq!(out["broker"], broker_node["id"]);
        assert_eq!(out["topic"], format!("{NR_TOPIC}/{name}"));
    }
    assert_eq!(
        nodes.iter().filter(|n| n["type"] == "modbus-read").count(),
        l.devices
    );

    let files: HashMap<&str, Value> = thingsboard_config(l, ports, broker)
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                serde_json::from_str(&serde_json::to_string_pretty(&v).unwrap()).unwrap(),
            )
        })
        .collect();
    let gw = &files["tb_gateway.json"];
    assert_eq!(gw["thingsboard"]["port"], broker);
    let conn = &gw["connectors"][0];
    assert_eq!(conn["type"], "modbus");
    let modbus = &files[conn["configuration"].as_str().unwrap()];
    let slaves = modbus["master"]["slaves"].as_array().unwrap();
    assert_eq!(slaves.len(), l.devices);
    for (d, port) in ports.iter().enumerate() {
        let s = slaves
            .iter()
            .find(|s| s["deviceName"] == device(d).as_str())
            .unwrap_or_else(|| panic!("no slave {}", device(d)));
        assert_eq!(s["port"], *port);
        assert_eq!(s["pollPeriod"].to_string(), period_ms);
        let ts = s["timeseries"].as_array().unwrap();
        assert_eq!(ts.len(), l.registers);
        assert!(ts.iter().enumerate().all(|(r, t)| t["address"] == r));
    }
    assert!(files.contains_key("logs.json"));
    assert!(session_limits()["rateLimits"].is_object());

    // What each peer publishes, as its subscriber counts it.
    let nr = parse(Peer::NodeRed, &format!("{NR_TOPIC}/d0000"), b"[162,31,32]").unwrap();
    assert_eq!(
        nr,
        Parsed {
            groups: vec![(None, 3)],
            ch4: Some(162.0)
        }
    );
    let nr1 = parse(Peer::NodeRed, &format!("{NR_TOPIC}/d0001"), b"[30,31]").unwrap();
    assert_eq!(
        nr1,
        Parsed {
            groups: vec![(None, 2)],
            ch4: None
        }
    );
    let tb = br#"{"d0000":[{"ts":1000,"values":{"r00":30,"r01":31}},{"ts":1100,"values":{"r00":162,"r01":31}}],"d0001":[{"ts":1000,"values":{"r00":30}}]}"#;
    let tb = parse(Peer::ThingsBoard, TB_TELEMETRY, tb).unwrap();
    assert_eq!(
        tb,
        Parsed {
            groups: vec![(Some(1000), 2), (Some(1100), 2), (Some(1000), 1)],
            ch4: Some(162.0)
        }
    );
    assert!(parse(Peer::ThingsBoard, "v1/gateway/attributes", b"{}").is_none());
    println!(
        "peers: generated configurations checked for {} devices",
        l.devices
    );
}
