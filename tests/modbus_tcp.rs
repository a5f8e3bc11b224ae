//! The Modbus TCP source against firmware-sim's hand-written TCP slave, over
//! real sockets on loopback (port 0). Every wait is on the source's output
//! channel with a time limit; no fixed sleeps.
mod common;

use common::source::{LIMIT, SourceTask};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use firmware_sim::devices::typed_bank;
use firmware_sim::{Fault, FaultSwitch, RegisterBank, TcpSlave};
use riskgate::config::{
    ByteOrder, DataType, Device, ModbusPoint as Point, ModbusTcp, RegisterKind,
};
use riskgate::metrics::metrics;
use riskgate::model::{BadReason, Input, Quality, Reading, Value};
use riskgate::source::modbus::tcp;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

fn point(id: &str, kind: RegisterKind, addr: u16, ty: DataType) -> Point {
    Point::new(id, kind, addr, ty)
}

fn device(id: &str, addr: SocketAddr, points: Vec<Point>) -> Device<ModbusTcp> {
    let mut d = Device::modbus_tcp(id, &addr.ip().to_string(), addr.port(), points);
    d.poll_interval = Duration::from_millis(100);
    d.timeout = Duration::from_millis(300);
    d
}

async fn sim(bank: &RegisterBank, faults: &FaultSwitch) -> TcpSlave {
    TcpSlave::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![],
        bank.clone(),
        faults.clone(),
    )
    .await
    .unwrap()
}

/// A running `tcp::run` task for `device`.
fn start(device: Device<ModbusTcp>) -> SourceTask {
    SourceTask::start(1, |mut writes, tx, stop| {
        tcp::run(Arc::new(device), writes.remove(0), tx, stop)
    })
}

fn good(r: &Reading) -> bool {
    r.quality.is_good()
}

fn num(r: &Reading) -> f64 {
    match r.value {
        Some(Value::Num(v)) => v,
        ref other => panic!("{} holds {other:?}", r.point),
    }
}

/// A TCP forwarder in front of the simulator that counts the connections
/// the source makes, to see whether it reconnected.
struct CountingProxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl CountingProxy {
    async fn start(to: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CountingProxy {
            addr,
            accepted,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn reads_values_of_every_register_kind() {
    let bank = RegisterBank::new();
    bank.set_holding(0, 1234);
    bank.set_holding_words(2, &[0x3FC0, 0x0000]); // 1.5f32
    bank.set_input(7, 0xFFFE); // -2 as i16
    bank.set_coil(3, true);
    bank.set_discrete(4, true);
    let faults = FaultSwitch::new();
    let slave = sim(&bank, &faults).await;
    let mut scaled = point("h0", RegisterKind::Holding, 0, DataType::U16);
    scaled.scale = 0.01;
    let mut src = start(device(
        "tcp-values",
        slave.local_addr(),
        vec![
            scaled,
            point("h2", RegisterKind::Holding, 2, DataType::F32),
            point("i7", RegisterKind::Input, 7, DataType::I16),
            point("c3", RegisterKind::Coil, 3, DataType::Bool),
            point("d4", RegisterKind::Discrete, 4, DataType::Bool),
            point("d5", RegisterKind::Discrete, 5, DataType::Bool),
        ],
    ));
    let r = src.reading("h0", "good", good).await;
    assert!((num(&r) - 12.34).abs() < 1e-9, "{r:?}");
    assert_eq!(&*r.device, "tcp-values");
    assert_eq!(num(&src.reading("h2", "good", good).await), 1.5);
    assert_eq!(num(&src.reading("i7", "good", good).await), -2.0);
    assert_eq!(
        src.reading("c3", "good", good).await.value,
        Some(Value::Bool(true))
    );
    assert_eq!(
        src.reading("d4", "good", good).await.value,
        Some(Value::Bool(true))
    );
    assert_eq!(
        src.reading("d5", "good", good).await.value,
        Some(Value::Bool(false))
    );
    // a change in the device shows in a later poll
    bank.set_holding(0, 4321);
    src.reading("h0", "= 43.21", |r| {
        good(r) && (num(r) - 43.21).abs() < 1e-9
    })
    .await;
    let (ok, _) = src.health("ok", |ok, _| ok).await;
    assert!(ok);
    assert!(metrics().readings.with_label_values(&["tcp-values"]).get() > 0);
    assert!(
        metrics()
            .polls
            .with_label_values(&["tcp-values", "ok"])
            .get()
            > 0
    );
    src.stop().await;
}

#[tokio::test]
async fn exception_marks_only_that_request_and_keeps_the_connection() {
    let bank = RegisterBank::new();
    bank.set_holding(0, 7);
    let faults = FaultSwitch::new();
    let slave = sim(&bank, &faults).await;
    let proxy = CountingProxy::start(slave.local_addr()).await;
    let mut src = start(device(
        "tcp-exception",
        proxy.addr,
        vec![point("p", RegisterKind::Holding, 0, DataType::U16)],
    ));
    src.reading("p", "good", good).await;
    assert_eq!(proxy.connections(), 1);

    faults.set(Fault::Exception(2));
    let r = src
        .reading("p", "bad(exception 2)", |r| {
            r.quality == Quality::Bad(BadReason::Exception(2))
        })
        .await;
    assert_eq!(r.value, None);
    // an exception is an answer: the device is healthy
    let (ok, detail) = src
        .health("after the exception", |_, d| d.contains("exception"))
        .await;
    assert!(ok, "{detail}");
    // several polls under the fault, still one connection
    for _ in 0..3 {
        src.reading("p", "bad(exception 2)", |r| {
            r.quality == Quality::Bad(BadReason::Exception(2))
        })
        .await;
    }

    // Recovery at the very next poll (no reconnect, no backoff after an
    // exception), counted in polls rather than timed: of the polls answered
    // after the clear, only the one already under way may still be bad.
    faults.set(Fault::None);
    let cleared = chrono::Utc::now();
    let mut bad_after = 0;
    let back = loop {
        let r = src.reading("p", "any", |_| true).await;
        if good(&r) {
            break r;
        }
        if r.at > cleared {
            bad_after += 1;
        }
    };
    assert_eq!(num(&back), 7.0);
    assert!(
        bad_after <= 1,
        "{bad_after} bad polls answered after the exception cleared"
    );
    assert_eq!(
        proxy.connections(),
        1,
        "an exception must not cause a reconnect"
    );
    src.stop().await;
}

#[tokio::test]
async fn silent_device_times_out_while_another_keeps_its_rate() {
    let (bank_a, faults_a) = (RegisterBank::new(), FaultSwitch::new());
    let (bank_b, faults_b) = (RegisterBank::new(), FaultSwitch::new());
    bank_a.set_holding(0, 1);
    bank_b.set_holding(0, 2);
    let slave_a = sim(&bank_a, &faults_a).await;
    let slave_b = sim(&bank_b, &faults_b).await;
    let mut a = start(device(
        "tcp-silent-a",
        slave_a.local_addr(),
        vec![point("a", RegisterKind::Holding, 0, DataType::U16)],
    ));
    let mut b = start(device(
        "tcp-silent-b",
        slave_b.local_addr(),
        vec![point("b", RegisterKind::Holding, 0, DataType::U16)],
    ));
    a.reading("a", "good", good).await;
    b.reading("b", "good", good).await;

    faults_a.set(Fault::Silent);
    a.reading("a", "bad(timeout)", |r| {
        r.quality == Quality::Bad(BadReason::Timeout)
    })
    .await;
    let (ok, detail) = a.health("not ok", |ok, _| !ok).await;
    assert!(!ok);
    assert!(detail.contains("no answer"), "{detail}");

    // Meanwhile device b keeps its own rate: counted in b's polls (40 of
    // them, about 4 s) rather than in a time window, so a loaded machine
    // cannot fail it. Each of a's attempts waits its 300 ms timeout; had b
    // to wait behind one, two of b's polls would be at least that far
    // apart (plus b's interval), and b would be polled no more often than a.
    while b.rx.try_recv().is_ok() {}
    let from = chrono::Utc::now();
    let mut b_at = Vec::new();
    let mut a_readings = Vec::new();
    while b_at.len() < 40 {
        tokio::select! {
            input = b.next(LIMIT) => if let Input::Readings(rs) = input {
                assert!(rs.iter().all(good), "{rs:?}");
                if rs[0].at >= from {
                    b_at.push(rs[0].at);
                }
            },
            input = a.next(LIMIT) => if let Input::Readings(rs) = input {
                a_readings.extend(rs);
            },
        }
    }
    let longest = b_at
        .windows(2)
        .map(|w| (w[1] - w[0]).to_std().unwrap())
        .max()
        .unwrap();
    let timeout_a = Duration::from_millis(300);
    assert!(
        longest < timeout_a + Duration::from_millis(100),
        "device b went {longest:?} between two polls: it waited behind a's timeout"
    );
    let a_polls = a_readings
        .iter()
        .filter(|r| r.at >= from && r.at <= *b_at.last().unwrap())
        .count();
    assert!(
        b_at.len() > a_polls,
        "b polled {} times, silent a {a_polls} times in the same span",
        b_at.len()
    );
    // every poll of the silent device is bad, none pretends to be good
    assert!(!a_readings.is_empty());
    assert!(
        a_readings
            .iter()
            .all(|r| !r.quality.is_good() && r.value.is_none()),
        "{a_readings:?}"
    );
    assert!(
        a_readings.iter().all(|r| matches!(
            r.quality,
            Quality::Bad(BadReason::Timeout | BadReason::Transport(_))
        )),
        "{a_readings:?}"
    );

    faults_a.set(Fault::None);
    assert_eq!(num(&a.reading("a", "good again", good).await), 1.0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn device_back_after_reboot_is_polled_again() {
    let bank = RegisterBank::new();
    bank.set_holding(0, 11);
    let faults = FaultSwitch::new();
    let mut slave = sim(&bank, &faults).await;
    let mut src = start(device(
        "tcp-reboot",
        slave.local_addr(),
        vec![point("p", RegisterKind::Holding, 0, DataType::U16)],
    ));
    src.reading("p", "good", good).await;

    slave.stop().await;
    let r = src
        .reading("p", "bad(transport)", |r| {
            matches!(r.quality, Quality::Bad(BadReason::Transport(_)))
        })
        .await;
    assert_eq!(r.value, None);
    // While it is down, bad readings keep coming at the poll interval, not
    // at the reconnect backoff's (200 ms doubling to 30 s: it would pass
    // 1 s by the fourth failure). Gaps by the readings' own stamps, with
    // ten times the 100 ms interval as slack for a loaded machine.
    let mut at = Vec::new();
    for _ in 0..10 {
        at.push(src.reading("p", "still bad", |r| !good(r)).await.at);
    }
    let longest = at
        .windows(2)
        .map(|w| (w[1] - w[0]).to_std().unwrap())
        .max()
        .unwrap();
    assert!(
        longest < Duration::from_secs(1),
        "{longest:?} between two bad polls while the device is down"
    );
    src.health("not ok while down", |ok, _| !ok).await;

    bank.set_holding(0, 12);
    slave.reboot(Duration::from_millis(200)).await.unwrap();
    assert_eq!(
        num(&src.reading("p", "good after reboot", good).await),
        12.0
    );

    // and once more with a fresh server on the same port
    let addr = slave.local_addr();
    drop(slave);
    src.reading("p", "bad after power-off", |r| !good(r)).await;
    let _slave2 = TcpSlave::start(addr, vec![], bank.clone(), faults.clone())
        .await
        .unwrap();
    assert_eq!(
        num(&src.reading("p", "good on the new server", good).await),
        12.0
    );
    src.stop().await;
}

#[tokio::test]
async fn wrong_transaction_id_and_dropped_connection_recover() {
    let bank = RegisterBank::new();
    bank.set_holding(0, 5);
    let faults = FaultSwitch::new();
    let slave = sim(&bank, &faults).await;
    let mut src = start(device(
        "tcp-frames",
        slave.local_addr(),
        vec![point("p", RegisterKind::Holding, 0, DataType::U16)],
    ));
    src.reading("p", "good", good).await;
    let bad_frames = || {
        metrics()
            .bad_frames
            .with_label_values(&["tcp-frames"])
            .get()
    };
    assert_eq!(bad_frames(), 0);

    faults.set(Fault::WrongTransactionId);
    let r = src
        .reading("p", "bad(transport)", |r| {
            matches!(r.quality, Quality::Bad(BadReason::Transport(_)))
        })
        .await;
    assert!(
        format!("{:?}", r.quality).contains("corrupt frame"),
        "{r:?}"
    );
    assert!(bad_frames() > 0);
    faults.set(Fault::None);
    src.reading("p", "good after wrong transaction id", good)
        .await;

    faults.set(Fault::DropConnection);
    src.reading("p", "bad(transport)", |r| {
        matches!(r.quality, Quality::Bad(BadReason::Transport(_)))
    })
    .await;
    faults.set(Fault::None);
    src.reading("p", "good after dropped connection", good)
        .await;

    // a truncated answer (the TCP flavour of a corrupt frame)
    let before = bad_frames();
    faults.set(Fault::CorruptCrc);
    src.reading("p", "bad", |r| !good(r)).await;
    assert!(bad_frames() > before);
    faults.set(Fault::None);
    src.reading("p", "good after corrupt frame", good).await;
    src.stop().await;
}

#[tokio::test]
async fn writes_then_reads_back() {
    let bank = RegisterBank::new();
    let faults = FaultSwitch::new();
    let slave = sim(&bank, &faults).await;
    let writable = |mut p: Point| {
        p.writable = true;
        p
    };
    let mut setpoint = writable(point("setpoint", RegisterKind::Holding, 10, DataType::U16));
    setpoint.scale = 0.1;
    let mut flag = writable(point("flag", RegisterKind::Holding, 30, DataType::Bool));
    flag.bit = Some(4);
    let mut src = start(device(
        "tcp-writes",
        slave.local_addr(),
        vec![
            setpoint,
            writable(point("limit", RegisterKind::Holding, 20, DataType::F32)),
            writable(point("relay", RegisterKind::Coil, 5, DataType::Bool)),
            flag,
            point("readonly", RegisterKind::Holding, 40, DataType::U16),
        ],
    ));
    src.reading("setpoint", "good", good).await;

    // FC6: one register, with scale
    assert_eq!(
        src.write(0, "setpoint", Value::Num(12.5)).await,
        Ok(Value::Num(12.5))
    );
    assert_eq!(bank.holding(10), 125);
    // FC16: two registers
    assert_eq!(
        src.write(0, "limit", Value::Num(-1234.5)).await,
        Ok(Value::Num(-1234.5))
    );
    assert_eq!(bank.holding_words(20, 2), vec![0xC49A, 0x5000]);
    // FC5: a coil
    assert_eq!(
        src.write(0, "relay", Value::Bool(true)).await,
        Ok(Value::Bool(true))
    );
    assert!(bank.coil(5));
    assert_eq!(
        src.write(0, "relay", Value::Num(0.0)).await,
        Ok(Value::Bool(false))
    );
    assert!(!bank.coil(5));
    // one bit of a register: the other bits are kept
    bank.set_holding(30, 0x8001);
    assert_eq!(
        src.write(0, "flag", Value::Bool(true)).await,
        Ok(Value::Bool(true))
    );
    assert_eq!(bank.holding(30), 0x8011);

    // refused writes
    assert!(
        src.write(0, "readonly", Value::Num(1.0))
            .await
            .unwrap_err()
            .contains("not writable")
    );
    assert!(
        src.write(0, "nope", Value::Num(1.0))
            .await
            .unwrap_err()
            .contains("no point")
    );
    assert!(
        src.write(0, "setpoint", Value::Num(1e9))
            .await
            .unwrap_err()
            .contains("outside the range")
    );
    assert_eq!(bank.holding(40), 0);
    // a device answering with an exception refuses the write
    faults.set(Fault::Exception(4));
    assert!(
        src.write(0, "setpoint", Value::Num(1.0))
            .await
            .unwrap_err()
            .contains("exception")
    );
    assert_eq!(bank.holding(10), 125);
    faults.set(Fault::None);

    // polling goes on after the writes and sees the written value
    let r = src
        .reading("setpoint", "= 12.5", |r| good(r) && num(r) == 12.5)
        .await;
    assert_eq!(r.value, Some(Value::Num(12.5)));
    src.stop().await;
}

/// A riskgate point for one entry of firmware-sim's typed bank.
fn typed_point(&(name, kind, addr, ty, order, _): &typed_bank::Expected) -> Point {
    let register = match kind {
        "holding" => RegisterKind::Holding,
        "input" => RegisterKind::Input,
        "coil" => RegisterKind::Coil,
        "discrete" => RegisterKind::Discrete,
        other => panic!("unknown register kind {other}"),
    };
    let mut p = point(name, register, addr, DataType::U16);
    p.byte_order = match order {
        "ABCD" => Some(ByteOrder::ABCD),
        "DCBA" => Some(ByteOrder::DCBA),
        "BADC" => Some(ByteOrder::BADC),
        "CDAB" => Some(ByteOrder::CDAB),
        _ => None,
    };
    let (base, arg) = ty.split_once(':').unwrap_or((ty, ""));
    p.data_type = match base {
        "u16" => DataType::U16,
        "i16" => DataType::I16,
        "u32" => DataType::U32,
        "i32" => DataType::I32,
        "u64" => DataType::U64,
        "i64" => DataType::I64,
        "f32" => DataType::F32,
        "f64" => DataType::F64,
        "bool" => DataType::Bool,
        "bit" => {
            p.bit = Some(arg.parse().unwrap());
            DataType::Bool
        }
        "ascii" => {
            p.length = Some(arg.parse::<u16>().unwrap().div_ceil(2));
            DataType::Ascii
        }
        "fixed_i32" => {
            p.decimals = Some(arg.parse().unwrap());
            DataType::I32
        }
        other => panic!("unknown typed-bank type {other}"),
    };
    p
}

#[tokio::test]
async fn every_type_and_byte_order_of_the_typed_bank() {
    let bank = RegisterBank::new();
    typed_bank::install(&bank);
    let faults = FaultSwitch::new();
    let slave = sim(&bank, &faults).await;
    let points: Vec<Point> = typed_bank::EXPECTED.iter().map(typed_point).collect();
    // A device-wide order that is wrong for most points: the per-point
    // orders must win.
    let mut dev = device("tcp-typed", slave.local_addr(), points);
    dev.byte_order = ByteOrder::DCBA;
    let mut src = start(dev);

    let mut seen = std::collections::HashMap::new();
    let deadline = Instant::now() + LIMIT;
    while seen.len() < typed_bank::EXPECTED.len() && Instant::now() < deadline {
        if let Input::Readings(rs) = src.next(LIMIT).await {
            for r in rs {
                seen.entry(r.point.to_string()).or_insert(r);
            }
        }
    }
    let mut checked = 0;
    for &(name, _, _, ty, order, expected) in typed_bank::EXPECTED {
        let r = seen
            .get(name)
            .unwrap_or_else(|| panic!("no reading of {name}"));
        assert!(r.quality.is_good(), "{name} ({ty} {order}): {r:?}");
        let got = r.value.as_ref().unwrap();
        match expected {
            typed_bank::Value::Num(v) => {
                assert_eq!(got.as_f64(), Some(v), "{name} ({ty} {order}): {got:?}")
            }
            typed_bank::Value::Text(t) => {
                assert_eq!(got, &Value::Text(t.into()), "{name} ({ty} {order})")
            }
        }
        checked += 1;
    }
    assert_eq!(checked, typed_bank::EXPECTED.len());
    src.stop().await;
}

/// A device configured only by `profile = "gas-detector"` reads firmware-sim's
/// gas detector: every profile point decodes to the simulated value, and the
/// profile's lamp coil is written and read back.
#[tokio::test]
async fn a_gas_detector_profile_reads_the_simulated_detector() {
    use firmware_sim::Scenario;
    use firmware_sim::devices;
    use riskgate::config::DeviceKind;

    let (slave, gd) =
        devices::gas_detector_tcp("127.0.0.1:0".parse().unwrap(), Scenario::default())
            .await
            .unwrap();
    gd.set_signal("ch4", 1.25);
    gd.set_signal("co", 12.0);
    gd.set_signal("temp", -5.0);
    gd.set_signal("calibrating", 1.0);
    let addr = slave.local_addr();
    let d = riskgate::config::device_from_toml(&format!(
        r#"
id = "gd-profile"
name = "T1"
protocol = "modbus_tcp"
host = "{}"
port = {}
poll_interval = "100ms"
timeout = "300ms"
profile = "gas-detector"
point_ids = "{{key}}.t1"
"#,
        addr.ip(),
        addr.port()
    ))
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let DeviceKind::ModbusTcp(t) = &d.kind else {
        panic!("modbus tcp")
    };
    let mut src = start(d.with_kind(t.clone()));

    let near = |v: f64| move |r: &Reading| good(r) && (num(r) - v).abs() < 1e-3;
    src.reading("ch4.t1", "= 1.25", near(1.25)).await;
    src.reading("co.t1", "= 12", near(12.0)).await;
    src.reading("temp.t1", "= -5.0", near(-5.0)).await;
    src.reading("ch4_x100.t1", "= 1.25", near(1.25)).await;
    src.reading("calibrating.t1", "on", |r| {
        r.value == Some(Value::Bool(true))
    })
    .await;
    src.reading("fault.t1", "off", |r| r.value == Some(Value::Bool(false)))
        .await;
    assert_eq!(
        src.write(0, "lamp.t1", Value::Bool(true)).await,
        Ok(Value::Bool(true))
    );
    src.stop().await;
    drop(slave);
}
