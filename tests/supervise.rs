//! Supervision and the systemd watchdog (issue 10 item 8), on the real
//! binary:
//! - a panic in a source task ends the process with a non-zero status
//!   (instead of a gateway that polls nothing and says it is fine);
//! - the engine's tick feeds the watchdog (`WATCHDOG=1` on `NOTIFY_SOCKET`,
//!   a unix datagram socket the test binds itself), and a stalled engine
//!   stops feeding it, so systemd's `WatchdogSec` would restart it.
//!
//! The faults are injected with `RISKGATE_TEST_PANIC_SOURCE` and
//! `RISKGATE_TEST_STALL_ENGINE`, which only debug builds (as `cargo test`
//! builds the binary) honour; see `src/runtime/supervise.rs`.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A gateway with one Modbus TCP device nobody answers for, no HTTP and no
/// uplink: its tasks are a source, the engine and housekeeping.
fn config(dir: &Path) -> std::path::PathBuf {
    let port = common::free_port();
    let text = format!(
        r#"
[site]
id = "case"
kind = "coal_mine"
[gateway]
id = "gw-case"
data_dir = "{}"
[http]
enabled = false
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {port}
  [[devices.points]]
  id = "ch4"
  register = "holding"
  address = 0
  type = "f32"
"#,
        dir.join("data").display()
    );
    let path = dir.join("riskgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(config: &Path, log: &Path, envs: &[(&str, &str)]) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riskgate"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Kills the child when the test ends, however it ends.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_panicking_source_ends_the_process_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("riskgate.log");
    let mut child = Kill(spawn(
        &config(dir.path()),
        &log,
        &[("RISKGATE_TEST_PANIC_SOURCE", "modbus-tcp:gd1")],
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "still running 60 s after the injected panic:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "exit status {status:?}:\n{logs}");
    assert!(
        logs.contains("modbus-tcp:gd1") && logs.contains("panicked"),
        "the log names the task that died:\n{logs}"
    );
}

/// Receives datagrams until one equals `want`, returning the others.
fn until(sock: &UnixDatagram, want: &str, log: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no `{want}` on the notify socket ({e}); got {seen:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
        let msg = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        if msg == want {
            return seen;
        }
        seen.push(msg);
    }
}

#[test]
fn the_engine_tick_feeds_the_watchdog_and_a_stalled_engine_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("riskgate.log");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let _child = Kill(spawn(
        &config(dir.path()),
        &log,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("RISKGATE_TEST_STALL_ENGINE", "3s"),
        ],
    ));
    until(&sock, "READY=1", &log);
    // Fed while the engine ticks (about once a second) ...
    let before = until(&sock, "STATUS=engine stalled (test)", &log);
    let pings = before.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 1, "no watchdog ping before the stall: {before:?}");
    // ... and never again once it is stuck: systemd's WatchdogSec (30 s in
    // deploy/riskgate.service) would kill and restart it. Three seconds
    // without a ping is three missed pings.
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 4096];
    let mut after = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        after.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    assert!(
        !after.iter().any(|m| m == "WATCHDOG=1"),
        "watchdog still fed by a stalled engine: {after:?}"
    );
}

/// A client that sends headers promising a body and then nothing gets
/// an error (the JSON extractor answers `400`: the body could not be
/// read) after the body timeout instead of holding a connection and a
/// handler for ever (issue 10 item 11; `api::BODY_TIMEOUT`).
#[test]
fn a_request_body_that_never_arrives_times_out() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("riskgate.log");
    let port = common::free_port();
    let cfg = config(dir.path());
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[http]\nenabled = false",
        &format!("[http]\nlisten = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&cfg, text).unwrap();
    let _child = Kill(spawn(&cfg, &log, &[]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "API never listened: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The login reads its body before any session exists (the ack now
    // refuses a caller without one before reading its body).
    conn.write_all(
        format!("POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let n = conn.read(&mut buf).expect("an answer before 30 s");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(
        head.starts_with("HTTP/1.1 400") || head.starts_with("HTTP/1.1 408"),
        "{head}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
