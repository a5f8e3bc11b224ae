//! Real services for the integration tests: Mosquitto and VictoriaMetrics
//! from Debian's packages, each on a free loopback port with its data in a
//! temporary folder, stopped (by PID) when dropped. Readiness is waited on by
//! polling the service, never by a fixed sleep.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::http::{http_get, http_post, urlencode};
use super::wait::{free_port, port_open, wait_for};

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
