//! Four scenarios of the suite beside its Modbus TCP loads (issue 15), each
//! figure written with the target and whether it was met:
//!
//! - **RTU wire time**: riskgate polls one firmware-sim RTU slave through a
//!   pseudo-terminal pair (socat) at 9,600 and 115,200 baud as fast as it
//!   can (poll interval 1 ms, inter-frame gap 3.5 characters). The slave is
//!   paced (`firmware_sim::Pace::Wire`): a byte takes 11/baud s, a request
//!   occupies the wire from its first byte, and frames are 3.5 characters
//!   apart, so a pseudo-terminal carries no more than a real line would.
//!   Polls/s are counted at the slave over a window and compared with the
//!   wire-time limit baud / (11 × (request + answer + 2 × 3.5)) polls/s.
//! - **Modbus TCP request-rate limit**: tokio-modbus clients against a
//!   tokio-modbus server in this process, with the max search's shape (10
//!   connections, 10 holding registers a request), each client asking again
//!   as soon as it has its answer; requests/s over a window. riskgate's
//!   maximum sustained points/s (from the same run) is compared with the
//!   limit in registers/s.
//! - **MQTT-sourced point latency**: riskgate with one MQTT device on the
//!   suite's broker and a threshold rule on its point; the value is
//!   published stepped over the threshold and back, and each raise is timed
//!   from the publish to the independent subscriber holding the county
//!   alarm event.
//! - **Replay** (`replay.rs`): readings/s from a backlog into
//!   VictoriaMetrics after an outage.
//!
//! Smoke mode runs each one tiny; it checks that every figure was produced.

#[path = "replay.rs"]
mod replay;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use firmware_sim::{FaultSwitch, Pace, PtyPair, RegisterBank, RtuLine};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

use super::{Env, Gateway, jitter, subscribe, summary};

/// Registers a poll reads, as in the suite's max search.
const REGISTERS: u16 = 10;
/// Bits of an RTU character and the silence between frames, in characters.
const CHAR_BITS: f64 = 11.0;
const GAP_CHARS: f64 = 3.5;

const RTU_TARGET_PERCENT: f64 = 90.0;
const TCP_TARGET_PERCENT: f64 = 50.0;
const MQTT_TARGET_P99_MS: f64 = 2.0;

/// Runs every scenario; `max_sustained` is the max search's result (full
/// mode) and `best_delivered` the highest delivered rate of this run's
/// loads, which stands in for it in smoke mode.
pub(super) async fn run(
    env: &mut Env,
    smoke: bool,
    max_sustained: Option<f64>,
    best_delivered: f64,
) -> Value {
    let mut rtu = Vec::new();
    for baud in [9_600, 115_200] {
        rtu.push(rtu_wire_time(env, baud, smoke).await);
    }
    let tcp = tcp_limit(smoke, max_sustained, best_delivered).await;
    let mqtt = mqtt_latency(env, smoke).await;
    let replay = replay::run(env, smoke).await;
    json!({ "rtu": rtu, "modbus_tcp_limit": tcp, "mqtt_point": mqtt, "replay": replay })
}

/// The configuration's head: site, gateway, uplink to the suite's broker;
/// the operator API on `http` when given.
fn head_toml(site: &str, data: &Path, broker: u16, http: Option<u16>) -> String {
    let http = match http {
        Some(port) => format!("listen = \"127.0.0.1:{port}\"\npublic_read = true"),
        None => "enabled = false".into(),
    };
    format!(
        "[site]\nid = \"{site}\"\nkind = \"coal_mine\"\n\n[gateway]\nid = \"gw-{site}\"\ndata_dir = \"{}\"\n\n\
         [http]\n{http}\n\n\
         [uplink]\nhost = \"127.0.0.1\"\nport = {broker}\nplain_tcp = true\n",
        data.display()
    )
}

/// A fresh data directory and the paths of the config and log of `site`.
fn site_paths(
    env: &Env,
    site: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let data = env.dir.path().join(site);
    std::fs::create_dir_all(&data).unwrap();
    (
        data,
        env.dir.path().join(format!("{site}.toml")),
        env.dir.path().join(format!("{site}.log")),
    )
}

fn round(x: f64, d: i32) -> f64 {
    (x * 10f64.powi(d)).round() / 10f64.powi(d)
}

/// Waits until `f` holds, at most `limit`; false if it never did.
async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// One RTU slave, paced at `baud`, polled by riskgate without pause.
async fn rtu_wire_time(env: &mut Env, baud: u32, smoke: bool) -> Value {
    let pty = PtyPair::start().expect("socat makes the pseudo-terminals");
    let bank = RegisterBank::new();
    for r in 0..REGISTERS {
        bank.set_holding(r, 30 + r);
    }
    let mut line = RtuLine::start_paced(
        &pty.a,
        baud,
        Pace::Wire,
        vec![(1, bank.clone(), FaultSwitch::default())],
    )
    .await
    .expect("the simulated RTU line opens its end");
    let char_s = CHAR_BITS / f64::from(baud);
    // The gap riskgate keeps: 3.5 characters, rounded up to a microsecond.
    let gap_us = (char_s * GAP_CHARS * 1e6).ceil() as u64;
    let site = format!("rtu{baud}");
    let (data, config, log) = site_paths(env, &site);
    let mut t = head_toml(&site, &data, env.mosquitto.port, None);
    let _ = write!(
        t,
        "\n[[serial_lines]]\nid = \"rtu\"\npath = \"{}\"\nbaud = {baud}\ninter_frame_gap = \"{gap_us}us\"\nresponse_timeout = \"300ms\"\n\n\
         [[devices]]\nid = \"rtu1\"\nprotocol = \"modbus_rtu\"\nline = \"rtu\"\nunit_id = 1\npoll_interval = \"1ms\"\nretries = 0\n",
        pty.b
    );
    for r in 0..REGISTERS {
        let _ = write!(
            t,
            "  [[devices.points]]\n  id = \"rtu1.r{r:02}\"\n  register = \"holding\"\n  address = {r}\n  type = \"u16\"\n"
        );
    }
    std::fs::write(&config, t).unwrap();
    let gw = Gateway::start(&config, &log);
    let polling = wait_until(Duration::from_secs(30), || bank.requests_served() > 0).await;
    if !polling {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        gw.stop();
        panic!("RTU at {baud} baud: no poll in 30 s; gateway log:\n{tail}");
    }
    // Warm-up, then the window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = if smoke {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(20)
    };
    let (n0, early0, bad0) = (
        bank.requests_served(),
        line.early_requests(),
        line.frames_bad(),
    );
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let (n1, early1, bad1) = (
        bank.requests_served(),
        line.early_requests(),
        line.frames_bad(),
    );
    let span = t0.elapsed().as_secs_f64();
    gw.stop();
    line.stop().await;
    drop(pty);

    // FC 3 request: unit, function, address, count, CRC; answer: unit,
    // function, byte count, the registers, CRC.
    let request = 8.0;
    let answer = 5.0 + 2.0 * f64::from(REGISTERS);
    let limit = f64::from(baud) / (CHAR_BITS * (request + answer + 2.0 * GAP_CHARS));
    let polls = (n1 - n0) as f64 / span;
    let percent = polls / limit * 100.0;
    let v = json!({
        "baud": baud,
        "registers": REGISTERS,
        "request_bytes": request,
        "answer_bytes": answer,
        "inter_frame_gap_us": gap_us,
        "window_s": round(span, 2),
        "limit_polls_per_s": round(limit, 1),
        "polls_per_s": round(polls, 1),
        "percent_of_limit": round(percent, 1),
        "early_requests": early1 - early0,
        "bad_frames": bad1 - bad0,
        "target_percent": RTU_TARGET_PERCENT,
        "met": percent >= RTU_TARGET_PERCENT,
    });
    println!("rtu: {}", serde_json::to_string(&v).unwrap());
    v
}

/// The tokio-modbus server side: every holding register reads as its address.
struct Registers;

impl tokio_modbus::server::Service for Registers {
    type Request = tokio_modbus::Request<'static>;
    type Response = tokio_modbus::Response;
    type Exception = tokio_modbus::ExceptionCode;
    type Future = std::future::Ready<Result<Self::Response, Self::Exception>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        std::future::ready(match req {
            tokio_modbus::Request::ReadHoldingRegisters(addr, n) => Ok(
                tokio_modbus::Response::ReadHoldingRegisters((addr..addr + n).collect()),
            ),
            _ => Err(tokio_modbus::ExceptionCode::IllegalFunction),
        })
    }
}

/// Requests/s that tokio-modbus clients get from a tokio-modbus server over
/// loopback, 10 connections asking back to back.
async fn tcp_limit(smoke: bool, max_sustained: Option<f64>, best_delivered: f64) -> Value {
    use tokio_modbus::client::Reader as _;
    use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
    const CONNECTIONS: usize = 10;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let on_connected = |stream, peer| async move {
            accept_tcp_connection(stream, peer, |_| Ok(Some(Registers)))
        };
        let _ = Server::new(listener).serve(&on_connected, |_| {}).await;
    });
    let window = if smoke {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(10)
    };
    let warm_up = Duration::from_millis(if smoke { 100 } else { 1000 });
    let start = Instant::now();
    let (from, to) = (start + warm_up, start + warm_up + window);
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(tokio::spawn(async move {
            let mut ctx = tokio_modbus::client::tcp::connect(addr)
                .await
                .expect("the tokio-modbus server accepts");
            let mut counted = 0u64;
            loop {
                let words = ctx
                    .read_holding_registers(0, REGISTERS)
                    .await
                    .expect("transport")
                    .expect("no exception");
                assert_eq!(words.len(), usize::from(REGISTERS));
                let now = Instant::now();
                if now >= to {
                    return counted;
                }
                if now >= from {
                    counted += 1;
                }
            }
        }));
    }
    let mut requests = 0;
    for c in clients {
        requests += c.await.unwrap();
    }
    server.abort();
    let rate = requests as f64 / window.as_secs_f64();
    let registers_per_s = rate * f64::from(REGISTERS);
    let (gateway, source) = match max_sustained {
        Some(m) => (m, "maximum sustained points/s of the max search"),
        None => (
            best_delivered,
            "smoke: best delivered points/s of the loads",
        ),
    };
    let percent = gateway / registers_per_s * 100.0;
    let v = json!({
        "connections": CONNECTIONS,
        "registers": REGISTERS,
        "window_s": window.as_secs_f64(),
        "requests_per_s": round(rate, 1),
        "registers_per_s": round(registers_per_s, 1),
        "riskgate_points_per_s": round(gateway, 1),
        "riskgate_figure": source,
        "percent_of_limit": round(percent, 1),
        "target_percent": TCP_TARGET_PERCENT,
        "met": percent >= TCP_TARGET_PERCENT,
    });
    println!("modbus tcp limit: {}", serde_json::to_string(&v).unwrap());
    v
}

/// The MQTT device's point, published as `{"ch4": value}`.
const MQTT_LOW: f64 = 0.30;
const MQTT_HIGH: f64 = 1.62;

async fn mqtt_latency(env: &mut Env, smoke: bool) -> Value {
    let site = "mqttpoint";
    let (data, config, log) = site_paths(env, site);
    let topic = format!("bench/{site}/gas");
    let mut t = head_toml(site, &data, env.mosquitto.port, None);
    let _ = write!(
        t,
        "\n[influxdb]\nurl = \"{}\"\norg = \"bench\"\nbucket = \"bench\"\nflush_interval = \"200ms\"\n\n\
         [[rules]]\nid = \"cut\"\nkind = \"threshold\"\npoint = \"mq.ch4\"\nop = \">=\"\nvalue = 1.5\nrecovery = 1.0\nlevel = 1\n\n\
         [[devices]]\nid = \"mq\"\nprotocol = \"mqtt\"\nbroker = \"127.0.0.1:{}\"\ntopic = \"{topic}\"\nheartbeat = \"30s\"\n\
         [[devices.points]]\nid = \"mq.ch4\"\npath = \"ch4\"\n",
        env.vm.url(),
        env.mosquitto.port
    );
    std::fs::write(&config, t).unwrap();
    let mut events = subscribe(env.mosquitto.port, site).await;
    let mut opts = MqttOptions::new(format!("pub-{site}"), "127.0.0.1", env.mosquitto.port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 100);
    let pump = tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let publish = |v: f64| {
        let client = client.clone();
        let topic = topic.clone();
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, format!("{{\"ch4\":{v}}}"))
                .await
                .expect("publish queued");
        }
    };
    let gw = Gateway::start(&config, &log);

    // Running: the low value reached the database (the source subscribed).
    let started = Instant::now();
    let t_start = Utc::now().timestamp_millis();
    loop {
        publish(MQTT_LOW).await;
        let now = Utc::now().timestamp_millis();
        if super::delivered(env.vm.url(), site.into(), t_start - 60_000, now).await > 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            gw.stop();
            panic!("MQTT point: nothing delivered in 60 s; gateway log:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    while events.try_recv().is_ok() {}

    let steps = if smoke { 4 } else { 100 };
    let (mut raise_ms, mut clear_ms) = (Vec::new(), Vec::new());
    let mut missed = 0;
    let mut high = false;
    for _ in 0..steps {
        // A random pause so that steps do not lock onto any period of the
        // gateway (engine tick, commit interval).
        let wait = Duration::from_millis(50).mul_f64(1.0 + 2.0 * jitter(&mut env.seed));
        tokio::time::sleep(wait).await;
        high = !high;
        let want = if high { "raised" } else { "cleared" };
        let stepped = Utc::now();
        publish(if high { MQTT_HIGH } else { MQTT_LOW }).await;
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(g) = events.recv().await {
                if g.state == want {
                    return Some(g);
                }
            }
            None
        })
        .await;
        match got {
            Ok(Some(g)) => {
                let ms = (g.at - stepped).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                if high {
                    raise_ms.push(ms);
                } else {
                    clear_ms.push(ms);
                }
            }
            _ => missed += 1,
        }
    }
    gw.stop();
    pump.abort();
    let latency = summary(raise_ms);
    let p99 = latency["p99_ms"].as_f64();
    let v = json!({
        "steps": steps,
        "steps_missed": missed,
        "alarm_latency": latency,
        "clear_latency": summary(clear_ms),
        "target_p99_ms": MQTT_TARGET_P99_MS,
        "met": p99.is_some_and(|p| p <= MQTT_TARGET_P99_MS),
    });
    println!("mqtt point: {}", serde_json::to_string(&v).unwrap());
    v
}

fn verdict(v: &Value) -> &'static str {
    if v["met"] == true { "met" } else { "missed" }
}

/// The scenarios' table for suite.md.
pub(super) fn markdown(s: &Value) -> String {
    let mut t = String::from("\n| scenario | figure | target | |\n|---|---|---|---|\n");
    for r in s["rtu"].as_array().into_iter().flatten() {
        let _ = writeln!(
            t,
            "| RTU wire time @ {} baud ({} registers a poll) | {} polls/s of {} (limit), {:.1} % | ≥ {} % | {} |",
            r["baud"],
            r["registers"],
            r["polls_per_s"],
            r["limit_polls_per_s"],
            r["percent_of_limit"].as_f64().unwrap_or(0.0),
            r["target_percent"],
            verdict(r),
        );
    }
    let m = &s["modbus_tcp_limit"];
    let _ = writeln!(
        t,
        "| Modbus TCP request-rate limit (tokio-modbus both ends, {} connections × {} registers) | {} requests/s = {} registers/s; riskgate {} points/s = {:.1} % | ≥ {} % | {} |",
        m["connections"],
        m["registers"],
        m["requests_per_s"],
        m["registers_per_s"],
        m["riskgate_points_per_s"],
        m["percent_of_limit"].as_f64().unwrap_or(0.0),
        m["target_percent"],
        verdict(m),
    );
    let q = &s["mqtt_point"];
    let _ = writeln!(
        t,
        "| MQTT-sourced point, publish to county event, p50 / p99 / max ms | {} (missed {}) | p99 ≤ {} ms | {} |",
        super::ms3(&q["alarm_latency"]),
        q["steps_missed"],
        q["target_p99_ms"],
        verdict(q),
    );
    let r = &s["replay"];
    let _ = writeln!(
        t,
        "| Replay of a {}-reading backlog into VictoriaMetrics | {} readings/s ({} in the database, drained in {} s, first write after {} s) | ≥ {} readings/s | {} |",
        r["backlog_readings"],
        r["readings_per_s"],
        r["in_database"],
        r["drain_s"],
        r["first_write_s"],
        r["target_readings_per_s"],
        verdict(r),
    );
    t
}

/// Smoke mode: every figure is there (a number), whatever its value.
pub(super) fn assert_produced(s: &Value) {
    let number = |v: &Value, f: &str| {
        assert!(v[f].as_f64().is_some_and(f64::is_finite), "{f}: {v}");
        assert!(v["met"].is_boolean(), "met: {v}");
    };
    let rtu = s["rtu"].as_array().expect("rtu figures");
    assert_eq!(rtu.len(), 2, "{s}");
    for r in rtu {
        number(r, "polls_per_s");
        number(r, "percent_of_limit");
        assert!(r["polls_per_s"].as_f64().unwrap() > 0.0, "no RTU poll: {r}");
    }
    number(&s["modbus_tcp_limit"], "requests_per_s");
    number(&s["modbus_tcp_limit"], "percent_of_limit");
    let q = &s["mqtt_point"];
    assert!(q["alarm_latency"]["n"].as_u64().unwrap_or(0) > 0, "{q}");
    assert!(q["alarm_latency"]["p99_ms"].as_f64().is_some(), "{q}");
    assert!(q["met"].is_boolean(), "{q}");
    let r = &s["replay"];
    number(r, "readings_per_s");
    assert!(r["in_database"].as_u64().unwrap_or(0) > 0, "{r}");
}
