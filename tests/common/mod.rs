//! Real services for the integration tests: Mosquitto and VictoriaMetrics
//! from Debian's packages, each on a free loopback port with its data in a
//! temporary folder, stopped (by PID) when dropped. Readiness is waited on by
//! polling the service, never by a fixed sleep.
#![allow(dead_code)]

pub mod source;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released; the tiny race is
/// acceptable for a test run on loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what`
/// after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async twin of `wait_for`.
pub async fn wait_for_async<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

pub struct Mosquitto {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra: String,
}

impl Mosquitto {
    /// Starts a broker with persistence on (retained messages and persistent
    /// sessions survive `restart()`).
    pub fn start() -> Mosquitto {
        Self::start_with("")
    }

    /// `extra` is appended to the config file (e.g. a TLS listener).
    pub fn start_with(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mosquitto {
            port: free_port(),
            dir,
            child: None,
            extra: extra.to_string(),
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf).unwrap();
        writeln!(
            f,
            // `user root`: started as root, Mosquitto would drop to the
            // `mosquitto` user, which cannot write its persistence file in
            // a root-only temporary folder (no effect when not root).
            "listener {} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 100000\n{}",
            self.port,
            self.dir.path().display(),
            self.extra
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        let port = self.port;
        wait_for("mosquitto to listen", Duration::from_secs(10), || {
            port_open(port).then_some(())
        });
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM, so it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn mosquitto_bin() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    "mosquitto".into()
}

pub struct Victoria {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Victoria {
    pub fn start() -> Victoria {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Victoria {
            port: free_port(),
            dir,
            child: None,
        };
        v.spawn();
        v
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("vm.log")).unwrap();
        let child = Command::new("victoria-metrics")
            .arg(format!(
                "-storageDataPath={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("victoria-metrics (apt-get install victoria-metrics)");
        self.child = Some(child);
        let url = format!("{}/health", self.url());
        wait_for("victoria-metrics /health", Duration::from_secs(20), || {
            http_get(&url)
                .ok()
                .filter(|(code, _)| *code == 200)
                .map(|_| ())
        });
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every sample of the series matching `selector` (e.g.
    /// `{__name__="reading_value",point="ch4.1301.t1"}`), as (ms, value).
    pub fn export(&self, selector: &str) -> Vec<(i64, f64)> {
        let _ = http_get(&format!("{}/internal/force_flush", self.url()));
        let body = format!("match[]={}", urlencode(selector));
        let (code, text) = http_post(&format!("{}/api/v1/export", self.url()), &body).unwrap();
        assert_eq!(code, 200, "export: {text}");
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ts = v["timestamps"].as_array().unwrap();
            let vals = v["values"].as_array().unwrap();
            for (t, x) in ts.iter().zip(vals) {
                out.push((t.as_i64().unwrap(), x.as_f64().unwrap()));
            }
        }
        out.sort_by_key(|p| p.0);
        out
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal blocking HTTP/1.0 client, so the helpers need no runtime.
pub fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    http("GET", url, None)
}

pub fn http_post(url: &str, form: &str) -> std::io::Result<(u16, String)> {
    http("POST", url, Some(form))
}

fn http(method: &str, url: &str, form: Option<&str>) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let rest = url.strip_prefix("http://").expect("http:// url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = form.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Validates `payload` against one of the contract's JSON schemas, kept in
/// `docs/contract/` as a copy of `shared/contracts/`.
pub fn assert_schema_valid(schema_file: &str, payload: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/contract")
        .join(schema_file);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(payload)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "payload does not match {schema_file}: {errors:?}\n{payload:#}"
    );
}

// ---------------------------------------------------------------------------
// Helpers of the fault tests (tests/fault_*.rs).
// ---------------------------------------------------------------------------

impl Mosquitto {
    /// The broker's log since its last (re)start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// How many lines of the log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Victoria {
    /// Like `start`, on a given port (e.g. one a config already names).
    pub fn start_on(port: u16) -> Victoria {
        let mut v = Victoria {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        v.spawn();
        v
    }

    /// Every series matching `selector` with its labels and its sample
    /// timestamps (ms), as VictoriaMetrics exports them (duplicates kept).
    pub fn export_series(
        &self,
        selector: &str,
    ) -> Vec<(std::collections::BTreeMap<String, String>, Vec<i64>)> {
        let _ = http_get(&format!("{}/internal/force_flush", self.url()));
        let body = format!("match[]={}", urlencode(selector));
        let (code, text) = http_post(&format!("{}/api/v1/export", self.url()), &body).unwrap();
        assert_eq!(code, 200, "export: {text}");
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let labels = v["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let ts = v["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_i64().unwrap())
                .collect();
            out.push((labels, ts));
        }
        out
    }
}

/// One message a `Collector` received.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: serde_json::Value,
    pub retain: bool,
}

/// How a `Collector` connects.
#[derive(Clone, Debug)]
pub struct CollectorOpts {
    pub port: u16,
    pub client_id: String,
    pub topic: String,
    /// false: a persistent session, so that the broker queues QoS 1
    /// messages for the collector while it is away (or the broker restarts).
    pub clean_session: bool,
    pub credentials: Option<(String, String)>,
}

impl CollectorOpts {
    pub fn new(port: u16, client_id: &str, topic: &str) -> CollectorOpts {
        CollectorOpts {
            port,
            client_id: client_id.to_string(),
            topic: topic.to_string(),
            clean_session: true,
            credentials: None,
        }
    }
}

/// An independent MQTT subscriber (QoS 1) that keeps every message it got,
/// reconnecting by itself after the broker went away.
pub struct Collector {
    rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    pub seen: Vec<Msg>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Connects and returns once the subscription is acknowledged.
    pub async fn connect(o: CollectorOpts) -> Collector {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut opts = MqttOptions::new(o.client_id.clone(), "127.0.0.1", o.port);
        opts.set_keep_alive(Duration::from_secs(10));
        opts.set_clean_session(o.clean_session);
        if let Some((u, p)) = &o.credentials {
            opts.set_credentials(u.clone(), p.clone());
        }
        let (client, mut el) = AsyncClient::new(opts, 1000);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let topic = o.topic.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Again after every reconnection: harmless on a
                        // resumed session, needed on a fresh one.
                        let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload =
                            serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                        let _ = tx.send(Msg {
                            topic: p.topic.clone(),
                            payload,
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("collector subscribed within 10 s")
            .unwrap();
        Collector {
            rx,
            seen: Vec::new(),
            task,
        }
    }

    /// Moves what has arrived so far into `seen`.
    pub fn pump(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.seen.push(m);
        }
    }

    /// Receives until `done(self)` holds; panics after `limit`.
    pub async fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&Collector) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        self.pump();
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => self.seen.push(m),
                _ => panic!(
                    "timed out after {limit:?} waiting for {what}; {} messages seen, alarm seqs {:?}",
                    self.seen.len(),
                    self.alarms()
                        .iter()
                        .map(|a| a["seq"].as_u64().unwrap_or(0))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Every alarm event received, duplicates included, in arrival order.
    pub fn alarms(&self) -> Vec<&serde_json::Value> {
        self.seen
            .iter()
            .filter(|m| m.topic.ends_with("/alarm"))
            .map(|m| &m.payload)
            .collect()
    }

    /// The distinct alarm seqs received.
    pub fn alarm_seqs(&self) -> std::collections::BTreeSet<u64> {
        self.alarms()
            .iter()
            .filter_map(|a| a["seq"].as_u64())
            .collect()
    }

    /// True once every seq 1..=n has arrived.
    /// Waits until every seq 1..=`last` has arrived, then returns the alarm
    /// events de-duplicated on `event_id`, asserted gap-free.
    pub async fn every_event(
        &mut self,
        last: u64,
        limit: Duration,
    ) -> std::collections::BTreeMap<u64, serde_json::Value> {
        self.until(&format!("every seq 1..={last}"), limit, |c| c.has_all(last))
            .await;
        let got = dedupe_alarms(&self.alarms());
        assert_gap_free(&got, last);
        got
    }

    pub fn has_all(&self, n: u64) -> bool {
        let s = self.alarm_seqs();
        (1..=n).all(|q| s.contains(&q))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The contract's consumer side: de-duplicates alarm events on `event_id`
/// and checks what at-least-once allows and nothing more: a repeated
/// `event_id` carries the very same payload (no seq reused for another
/// event), `event_id` and `seq` agree, and first arrivals come in seq
/// order. Returns seq → event.
pub fn dedupe_alarms(
    events: &[&serde_json::Value],
) -> std::collections::BTreeMap<u64, serde_json::Value> {
    let mut by_id: std::collections::HashMap<String, serde_json::Value> = Default::default();
    let mut by_seq = std::collections::BTreeMap::new();
    let mut last_first = 0u64;
    for e in events {
        let id = e["event_id"].as_str().expect("event_id").to_string();
        let seq = e["seq"].as_u64().expect("seq");
        assert!(
            id.ends_with(&format!(":{seq:012}")),
            "event_id {id} and seq {seq} disagree"
        );
        match by_id.get(&id) {
            Some(prev) => assert_eq!(
                prev, *e,
                "event_id {id} arrived twice with different payloads"
            ),
            None => {
                assert!(
                    seq > last_first,
                    "first arrivals out of seq order: {seq} after {last_first}"
                );
                last_first = seq;
                by_id.insert(id, (*e).clone());
                by_seq.insert(seq, (*e).clone());
            }
        }
    }
    by_seq
}

/// Asserts that `events` holds exactly seq 1..=n.
pub fn assert_gap_free(events: &std::collections::BTreeMap<u64, serde_json::Value>, n: u64) {
    let seqs: Vec<u64> = events.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "seq must be gap-free 1..={n}"
    );
}

/// The riskgate binary as a child process, killed (SIGKILL) when dropped.
pub struct Riskgate {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Riskgate {
    /// `riskgate run --config FILE`, its stdout and stderr (the logs) appended
    /// to `log`.
    pub fn spawn(config: &Path, log: &Path, envs: &[(&str, &str)]) -> Riskgate {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riskgate"));
        cmd.args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(out)
            .stderr(err);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Riskgate {
            child: Some(cmd.spawn().unwrap()),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no clean stop, no drain, no offline status.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let st = Command::new("kill")
                .args(["-KILL", &c.id().to_string()])
                .status()
                .unwrap();
            assert!(st.success());
            let status = c.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(9),
                "riskgate died of SIGKILL: {status:?}"
            );
        }
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Riskgate {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A site config for the fault tests: `devices` gas detectors on Modbus TCP
/// at these ports (`gd-00`, `gd-01`, …, five points each:
/// `ch4.gdNN` `co.gdNN` `o2.gdNN` `temp.gdNN` `status.gdNN`), the methane
/// preset of a coal face on `ch4.gd00` (alarm ≥ 1.0, cut ≥ 1.5, recovery
/// < 1.0: a step to 1.62 raises two alarms, back to 0.8 clears both).
pub struct SiteCfg {
    pub site: String,
    pub gateway: String,
    pub data_dir: PathBuf,
    pub devices: Vec<u16>,
    pub poll: String,
    /// `[uplink]` body without the host line, e.g. `port = 1883\nplain_tcp = true`.
    pub uplink: Option<String>,
    pub influx_url: Option<String>,
    /// Extra `[store]` lines.
    pub store: String,
}

impl SiteCfg {
    pub fn new(site: &str, data_dir: &Path, devices: Vec<u16>) -> SiteCfg {
        SiteCfg {
            site: site.to_string(),
            gateway: format!("gw-{site}"),
            data_dir: data_dir.to_path_buf(),
            devices,
            poll: "100ms".into(),
            uplink: None,
            influx_url: None,
            store: String::new(),
        }
    }

    /// A plain-TCP uplink to a broker on `port`.
    pub fn plain_uplink(mut self, port: u16) -> SiteCfg {
        self.uplink = Some(format!(
            "port = {port}\nplain_tcp = true\nstatus_interval = \"5s\""
        ));
        self
    }

    pub fn toml(&self) -> String {
        let mut t = format!(
            r#"
[site]
id = "{site}"
kind = "coal_mine"
region_code = "140581"
[gateway]
id = "{gw}"
data_dir = "{data}"
[http]
listen = "127.0.0.1:0"
[store]
commit_interval = "100ms"
{store}
"#,
            site = self.site,
            gw = self.gateway,
            data = self.data_dir.display(),
            store = self.store
        );
        if let Some(u) = &self.uplink {
            t.push_str(&format!("[uplink]\nhost = \"127.0.0.1\"\n{u}\n"));
        }
        if let Some(url) = &self.influx_url {
            t.push_str(&format!(
                "[influxdb]\nurl = \"{url}\"\norg = \"fault\"\nbucket = \"fault\"\nflush_interval = \"200ms\"\ntimeout = \"3s\"\n"
            ));
        }
        for (i, port) in self.devices.iter().enumerate() {
            let d = format!("gd{i:02}");
            t.push_str(&format!(
                r#"
[[devices]]
id = "gd-{i:02}"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {port}
poll_interval = "{poll}"
timeout = "500ms"
retries = 0
offline_after = 5
stale_after = "10s"
  [[devices.points]]
  id = "ch4.{d}"
  name = "{d} 甲烷"
  register = "holding"
  address = 0
  type = "f32"
  unit = "%CH4"
  [[devices.points]]
  id = "co.{d}"
  register = "holding"
  address = 2
  type = "f32"
  [[devices.points]]
  id = "o2.{d}"
  register = "holding"
  address = 4
  type = "f32"
  [[devices.points]]
  id = "temp.{d}"
  register = "holding"
  address = 6
  type = "i16"
  scale = 0.1
  [[devices.points]]
  id = "status.{d}"
  register = "holding"
  address = 7
  type = "u16"
"#,
                poll = self.poll
            ));
        }
        t.push_str(
            r#"
[[presets]]
name = "coal-methane-face"
id_prefix = "gd00-"
bind = { ch4 = "ch4.gd00" }
"#,
        );
        t
    }

    /// Writes the config to `dir/site.toml` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("site.toml");
        std::fs::write(&p, self.toml()).unwrap();
        p
    }

    /// The checked config, for `riskgate::runtime::start`.
    pub fn load(&self, dir: &Path) -> riskgate::config::Config {
        let p = self.write(dir);
        riskgate::config::load(&p).unwrap_or_else(|e| {
            panic!(
                "fault-test config rejected: {}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    }

    /// Every point id of the config.
    pub fn points(&self) -> Vec<String> {
        (0..self.devices.len())
            .flat_map(|i| ["ch4", "co", "o2", "temp", "status"].map(|p| format!("{p}.gd{i:02}")))
            .collect()
    }
}

/// `n` simulated gas detectors on Modbus TCP, steady values.
pub async fn gas_detectors(n: usize) -> Vec<(firmware_sim::TcpSlave, firmware_sim::DeviceHandle)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let sc = firmware_sim::Scenario::from_toml_str(
            "[signals.ch4]\ninitial = 0.30\n[signals.co]\ninitial = 5.0\n[signals.o2]\ninitial = 20.8\n[signals.temp]\ninitial = 21.5\n",
        )
        .unwrap();
        out.push(
            firmware_sim::devices::gas_detector_tcp("127.0.0.1:0".parse().unwrap(), sc)
                .await
                .unwrap(),
        );
    }
    out
}

/// Every raw reading of the local history (all points), per point: the
/// readings the gateway accepted (committed).
pub fn accepted_readings(
    store: &riskgate::store::Store,
    points: &[String],
) -> std::collections::BTreeMap<String, Vec<i64>> {
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    points
        .iter()
        .map(|p| {
            let rows = store.history(p, since, usize::MAX >> 1).unwrap();
            (p.clone(), rows.iter().map(|r| r.at_ms).collect())
        })
        .collect()
}

/// Logs of the in-process gateway into the test's captured output.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------
// An independent MQTT subscriber for the rules tests (tests/rules_*.rs), a
// copy of the one in tests/e2e.rs.
// ---------------------------------------------------------------------------

/// A subscriber that collects every message under `topic` (and retained ones).
pub struct Subscriber {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<(String, serde_json::Value, bool)>,
    _task: tokio::task::JoinHandle<()>,
}

/// Connects to the broker on 127.0.0.1:`port`, subscribes to `topic` (QoS 1)
/// and returns once the subscription is acknowledged.
pub async fn subscribe(port: u16, topic: &str, id: &str) -> Subscriber {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut el) = AsyncClient::new(opts, 100);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let topic = topic.to_string();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(topic.clone(), QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                    let _ = tx.send((p.topic.clone(), v, p.retain));
                }
                Ok(_) => {}
                // Reconnect pacing of the test client, not a synchronisation.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("subscribed")
        .unwrap();
    Subscriber { rx, _task: task }
}

impl Subscriber {
    /// Waits for a message matching `f`, returning it; every message up to
    /// and including it is appended to `seen`.
    pub async fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        seen: &mut Vec<(String, serde_json::Value, bool)>,
        f: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    let hit = f(&m.0, &m.1);
                    seen.push(m.clone());
                    if hit {
                        return m.1;
                    }
                }
                _ => panic!("timed out waiting for {what}; seen: {seen:#?}"),
            }
        }
    }
}

/// Waits until the gateway's alarm log holds an event of `rule` in `state`
/// newer than `after_seq`; returns its seq.
pub async fn committed(
    store: &riskgate::store::Store,
    rule: &str,
    state: &str,
    after_seq: u64,
) -> u64 {
    wait_for_async(
        &format!("{rule} {state} committed"),
        Duration::from_secs(10),
        || async {
            let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
            store
                .alarm_log(since, 100_000)
                .unwrap()
                .into_iter()
                .find(|e| {
                    e["rule_id"] == rule
                        && e["state"] == state
                        && e["seq"].as_u64().unwrap() > after_seq
                })
                .map(|e| e["seq"].as_u64().unwrap())
        },
    )
    .await
}
