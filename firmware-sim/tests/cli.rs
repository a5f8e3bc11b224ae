//! The `firmware-sim` binary: readiness line, serving, SIGTERM, errors.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use firmware_sim::PtyPair;

const BIN: &str = env!("CARGO_BIN_EXE_firmware-sim");

fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A running firmware-sim process; killed on drop.
struct Sim {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sim {
    fn spawn(args: &[&str]) -> Sim {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn firmware-sim");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sim { child, lines: rx }
    }

    /// Wait for the `listening on X` line and return X.
    fn listening_on(&self) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("no 'listening on' line");
            if let Some(rest) = line.strip_prefix("listening on ") {
                return rest.trim().to_string();
            }
        }
    }

    /// SIGTERM, then wait for a clean exit.
    fn terminate(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let t0 = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn gas_detector_tcp_binary() {
    let sim = Sim::spawn(&[
        "gas-detector",
        "--listen",
        "127.0.0.1:0",
        "--scenario",
        &scenario("coal-face-methane.toml"),
        "--unit",
        "1",
    ]);
    let addr: SocketAddr = sim.listening_on().parse().unwrap();
    let mut c = RawTcp::connect(addr).await;
    let w = c.read_holding(0, 9).await;
    let ch4 = f32_from_words(&w[0..2]);
    assert!((0.25..=0.35).contains(&ch4), "ch4 {ch4}");
    let o2 = f32_from_words(&w[4..6]);
    assert!((20.6..=21.0).contains(&o2), "o2 {o2}");
    // unit filter from --unit
    assert_eq!(c.request(2, &read_pdu(3, 0, 1)).await, vec![0x83, 0x0B]);
    drop(c);
    sim.terminate();
}

#[tokio::test]
async fn typed_bank_and_kj_monitor_binaries() {
    let sim = Sim::spawn(&["typed-bank", "--listen", "127.0.0.1:0"]);
    let addr: SocketAddr = sim.listening_on().parse().unwrap();
    let mut c = RawTcp::connect(addr).await;
    assert_eq!(c.read_holding(80, 2).await, vec![0x3FC0, 0]);
    sim.terminate();

    let sim = Sim::spawn(&[
        "kj-monitor",
        "--listen",
        "127.0.0.1:0",
        "--zones",
        "6",
        "--scenario",
        &scenario("steady.toml"),
    ]);
    let addr: SocketAddr = sim.listening_on().parse().unwrap();
    let mut c = RawTcp::connect(addr).await;
    assert_eq!(c.read_bits(2, 16 * 6, 3).await, vec![false, true, true]);
    assert_eq!(c.read_holding(101, 4).await, vec![30, 25, 20, 35]);
    sim.terminate();
}

#[tokio::test]
async fn plant_binaries_follow_a_written_command() {
    // The gas cabinet: FC 5 closes the valve; its switch (discrete 0) follows
    // after the 0.5 s stroke.
    let sim = Sim::spawn(&["gas-cabinet", "--listen", "127.0.0.1:0"]);
    let addr: SocketAddr = sim.listening_on().parse().unwrap();
    let mut c = RawTcp::connect(addr).await;
    assert_eq!(c.read_bits(2, 0, 1).await, vec![false]);
    assert_eq!(
        c.request(1, &[5, 0, 0, 0xFF, 0x00]).await,
        vec![5, 0, 0, 0xFF, 0x00]
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while c.read_bits(2, 0, 1).await != vec![true] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the valve never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.terminate();

    // The furnace skid computes the flow difference and reports power on.
    let sim = Sim::spawn(&[
        "furnace-skid",
        "--listen",
        "127.0.0.1:0",
        "--scenario",
        &scenario("furnace-cooling-leak.toml"),
    ]);
    let addr: SocketAddr = sim.listening_on().parse().unwrap();
    let mut c = RawTcp::connect(addr).await;
    let diff = f32_from_words(&c.read_holding(4, 2).await);
    assert!((diff - 0.1).abs() < 1e-3, "{diff}");
    assert_eq!(c.read_bits(2, 0, 1).await, vec![true]);
    sim.terminate();

    let sim = Sim::spawn(&["casting-pit", "--listen", "127.0.0.1:0"]);
    let addr: SocketAddr = sim.listening_on().parse().unwrap();
    let mut c = RawTcp::connect(addr).await;
    assert!((f32_from_words(&c.read_holding(0, 2).await) - 0.30).abs() < 1e-6);
    assert_eq!(c.read_bits(2, 0, 4).await, vec![false, false, false, true]);
    sim.terminate();
}

#[tokio::test]
async fn initial_fault_flag() {
    let sim = Sim::spawn(&[
        "reservoir",
        "--listen",
        "127.0.0.1:0",
        "--fault",
        "exception=4",
    ]);
    let addr: SocketAddr = sim.listening_on().parse().unwrap();
    let mut c = RawTcp::connect(addr).await;
    assert_eq!(c.request(1, &read_pdu(4, 0, 2)).await, vec![0x84, 4]);
    sim.terminate();
}

#[tokio::test]
async fn rtu_line_binary_over_pty() {
    use tokio_serial::SerialPortBuilderExt;
    let pty = PtyPair::spawn();
    let steady = scenario("steady.toml");
    let sim = Sim::spawn(&[
        "rtu-line",
        "--serial",
        &pty.a,
        "--baud",
        "9600",
        "--slave",
        &format!("1:gas-detector:{steady}"),
        "--slave",
        &format!("2:reservoir-rtu:{steady}"),
        "--slave",
        &format!("3:gas-detector:{steady}:silent"),
    ]);
    assert_eq!(sim.listening_on(), pty.a);
    let mut port = tokio_serial::new(&pty.b, 9600).open_native_async().unwrap();
    let wait = Duration::from_secs(3);
    let ans = rtu_exchange(&mut port, &rtu_frame(1, &read_pdu(3, 8, 1)), 7, wait)
        .await
        .unwrap();
    assert_eq!(ans, rtu_frame(1, &[3, 2, 0, 30]));
    let ans = rtu_exchange(&mut port, &rtu_frame(2, &read_pdu(4, 6, 1)), 7, wait)
        .await
        .unwrap();
    assert_eq!(ans, rtu_frame(2, &[4, 2, 0x04, 0xEC])); // 12.60 V
    assert!(
        rtu_exchange(
            &mut port,
            &rtu_frame(3, &read_pdu(3, 8, 1)),
            7,
            QUIET_WINDOW
        )
        .await
        .is_none()
    );
    sim.terminate();
}

#[test]
fn bad_scenario_fails_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[signals.ch4]\ninitial = 0.3\nsteps = [ { at = \"10s\", ramp_to = 1.8 } ]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "gas-detector",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            p.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signals.ch4.steps[0].over"), "{err}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn video_box_binary() {
    let mut broker = FakeBroker::start().await;
    let sim = Sim::spawn(&[
        "video-box",
        "--broker",
        &broker.addr.to_string(),
        "--box-id",
        "vb-1301",
        "--cameras",
        "2",
        "--heartbeat",
        "200ms",
        "--scenario",
        &scenario("video-intrusion.toml"),
    ]);
    let line = sim.lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(line.starts_with("publishing to"), "{line}");
    let (topic, p) = broker.next(Duration::from_secs(10)).await;
    assert_eq!(topic, "site/video/vb-1301/status");
    let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
    assert_eq!(v["cameras"].as_array().unwrap().len(), 2);
    assert_eq!(v["cameras"][1]["id"], "cam-1301-2");
    sim.terminate();
}
