//! The Modbus RTU line source against firmware-sim's RTU line, over a pair
//! of pseudo-terminals made by socat. Every wait is on the source's output
//! channel with a time limit; no fixed sleeps.
mod common;

use common::source::SourceTask;
use std::collections::HashMap;
use std::time::Duration;

use firmware_sim::{Fault, FaultSwitch, PtyPair, RegisterBank, RtuLine};
use riskgate::config::{
    DataType, Device, Dur, ModbusPoint, ModbusRtu, Parity, RegisterKind, SerialLine,
};
use riskgate::metrics::metrics;
use riskgate::model::{BadReason, Input, Quality, Reading, Value};
use riskgate::source::modbus::rtu;
use tokio::time::Instant;

const POLL: Duration = Duration::from_millis(200);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(100);
const GAP: Duration = Duration::from_millis(5);
const BAUD: u32 = 9600;
/// Registers read from each slave per poll (one f32).
const REGISTERS: u16 = 2;

fn line(path: &str) -> SerialLine {
    SerialLine {
        id: "line1".into(),
        path: path.into(),
        baud: BAUD,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
        inter_frame_gap: Dur(GAP),
        response_timeout: Dur(RESPONSE_TIMEOUT),
        silent_probe_every: 5,
    }
}

fn device(id: &str, unit: u8) -> Device<ModbusRtu> {
    let p = ModbusPoint {
        writable: true,
        ..ModbusPoint::new(
            &format!("{id}.ch4"),
            RegisterKind::Holding,
            0,
            DataType::F32,
        )
    };
    let mut d = Device::modbus_rtu(id, "line1", unit, vec![p]);
    d.poll_interval = POLL;
    d.timeout = Duration::from_secs(1);
    d.retries = 0;
    d
}

/// The time one exchange takes on a real line at `BAUD` (8N1, 10 bits per
/// byte): request (8 bytes) + answer (5 + 2n bytes) + the inter-frame gap.
fn exchange_time(registers: u16) -> Duration {
    let bytes = 8 + 5 + 2 * u32::from(registers);
    Duration::from_secs_f64(f64::from(bytes * 10) / f64::from(BAUD)) + GAP
}

/// What the earliest-deadline scheduler can give slaves 1 and 2 (polls per
/// second) while slave 3 costs its whole response timeout every cycle.
fn expected_rate_with_silent_slave() -> f64 {
    let cycle = exchange_time(REGISTERS) * 2 + RESPONSE_TIMEOUT + GAP;
    1.0 / cycle.max(POLL).as_secs_f64()
}

/// A running `rtu::run` task for `line` and its `devices`.
fn start_line(line: SerialLine, devices: Vec<Device<ModbusRtu>>) -> SourceTask {
    SourceTask::start(devices.len(), |writes, tx, stop| {
        rtu::run(line, devices.into_iter().zip(writes).collect(), tx, stop)
    })
}

fn good(r: &Reading) -> bool {
    r.quality.is_good()
}

fn rate(readings: &HashMap<String, Vec<Reading>>, device: &str, window: Duration) -> f64 {
    readings.get(device).map_or(0, Vec::len) as f64 / window.as_secs_f64()
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slave_costs_only_its_timeout_and_corrupt_frames_are_counted() {
    let socat = PtyPair::spawn();
    let banks: Vec<RegisterBank> = (0..3).map(|_| RegisterBank::new()).collect();
    let faults: Vec<FaultSwitch> = (0..3).map(|_| FaultSwitch::new()).collect();
    for (i, bank) in banks.iter().enumerate() {
        // 1.5, 2.5, 3.5 as big-endian f32
        bank.set_holding_words(0, &[[0x3FC0, 0x4020, 0x4060][i], 0x0000]);
    }
    let slaves = (0..3)
        .map(|i| (i as u8 + 1, banks[i].clone(), faults[i].clone()))
        .collect();
    let mut sim = RtuLine::start(&socat.a, BAUD, slaves).await.unwrap();
    let mut src = start_line(
        line(&socat.b),
        vec![device("rtu-1", 1), device("rtu-2", 2), device("rtu-3", 3)],
    );

    for (dev, v) in [("rtu-1", 1.5), ("rtu-2", 2.5), ("rtu-3", 3.5)] {
        let r = src.reading(&format!("{dev}.ch4"), "good", good).await;
        assert_eq!(r.value, Some(Value::Num(v)));
    }

    // Phase 1: all three healthy.
    let window = Duration::from_secs(3);
    let healthy = src.collect(window).await;
    let healthy_rate = [
        rate(&healthy, "rtu-1", window),
        rate(&healthy, "rtu-2", window),
    ];
    for (dev, r) in ["rtu-1", "rtu-2", "rtu-3"].iter().zip(
        healthy_rate
            .iter()
            .chain([&rate(&healthy, "rtu-3", window)]),
    ) {
        assert!(
            within(*r, 1.0 / POLL.as_secs_f64(), 0.10),
            "{dev}: {r:.2}/s with every slave healthy"
        );
    }

    // Phase 2: slave 3 silent. It costs its 100 ms timeout per poll; the
    // line still has time for 1 and 2 at their full rate.
    faults[2].set(Fault::Silent);
    src.reading("rtu-3.ch4", "bad(timeout)", |r| {
        r.quality == Quality::Bad(BadReason::Timeout)
    })
    .await;
    let window = Duration::from_secs(5);
    let silent = src.collect(window).await;
    let expected = expected_rate_with_silent_slave();
    eprintln!(
        "healthy: rtu-1 {:.2}/s, rtu-2 {:.2}/s; slave 3 silent: rtu-1 {:.2}/s, rtu-2 {:.2}/s, rtu-3 {} bad; expected {expected:.2}/s",
        healthy_rate[0],
        healthy_rate[1],
        rate(&silent, "rtu-1", window),
        rate(&silent, "rtu-2", window),
        silent["rtu-3"].len()
    );
    for (k, dev) in ["rtu-1", "rtu-2"].iter().enumerate() {
        let r = rate(&silent, dev, window);
        assert!(
            within(r, expected, 0.10),
            "{dev}: {r:.2}/s, the scheduler can give {expected:.2}/s"
        );
        assert!(
            within(r, healthy_rate[k], 0.10),
            "{dev}: {r:.2}/s vs {:.2}/s with slave 3 healthy",
            healthy_rate[k]
        );
        assert!(silent[*dev].iter().all(good), "{dev} readings stay good");
        // never stalled by more than one timeout of the silent slave
        let longest = silent[*dev]
            .windows(2)
            .map(|w| (w[1].at - w[0].at).to_std().unwrap())
            .max()
            .unwrap();
        assert!(
            longest <= POLL + RESPONSE_TIMEOUT,
            "{dev}: {longest:?} between two readings"
        );
    }
    let third = &silent["rtu-3"];
    assert!(!third.is_empty());
    assert!(
        third
            .iter()
            .all(|r| r.quality == Quality::Bad(BadReason::Timeout) && r.value.is_none()),
        "{third:?}"
    );
    faults[2].set(Fault::None);
    src.reading("rtu-3.ch4", "good again", good).await;

    // Phase 3: slave 2 answers with a broken CRC. Counted as a bad frame;
    // slave 1 keeps being polled.
    let bad_frames = || metrics().bad_frames.with_label_values(&["rtu-2"]).get();
    let before = bad_frames();
    faults[1].set(Fault::CorruptCrc);
    let r = src.reading("rtu-2.ch4", "bad", |r| !good(r)).await;
    assert!(
        format!("{:?}", r.quality).contains("corrupt frame"),
        "{r:?}"
    );
    let window = Duration::from_secs(2);
    let corrupt = src.collect(window).await;
    assert!(
        bad_frames() > before,
        "bad_frames{{device=rtu-2}} did not grow"
    );
    assert_eq!(metrics().bad_frames.with_label_values(&["rtu-1"]).get(), 0);
    let r1 = rate(&corrupt, "rtu-1", window);
    assert!(
        within(r1, healthy_rate[0], 0.15),
        "rtu-1: {r1:.2}/s while slave 2 is corrupt"
    );
    assert!(corrupt["rtu-1"].iter().all(good));
    assert!(corrupt["rtu-2"].iter().all(|r| !good(r)));
    faults[1].set(Fault::None);
    src.reading("rtu-2.ch4", "good again", good).await;

    // A write on the shared line, to slave 2, read back.
    assert_eq!(
        src.write(1, "rtu-2.ch4", Value::Num(-1234.5)).await,
        Ok(Value::Num(-1234.5))
    );
    assert_eq!(banks[1].holding_words(0, 2), vec![0xC49A, 0x5000]);
    assert_eq!(
        banks[0].holding_words(0, 2),
        vec![0x3FC0, 0x0000],
        "other slaves untouched"
    );
    src.reading("rtu-2.ch4", "= -1234.5", |r| {
        r.value == Some(Value::Num(-1234.5))
    })
    .await;

    src.stop().await;
    sim.stop().await;
    drop(socat);
}

#[tokio::test]
async fn missing_serial_port_gives_bad_readings_not_a_crash() {
    let mut src = start_line(
        line("/dev/riskgate-no-such-port"),
        vec![device("rtu-missing", 1)],
    );
    let r = src
        .reading("rtu-missing.ch4", "bad(transport)", |r| {
            matches!(r.quality, Quality::Bad(BadReason::Transport(_)))
        })
        .await;
    assert!(format!("{:?}", r.quality).contains("serial port"), "{r:?}");
    // and it keeps reporting at the poll interval
    let t = Instant::now();
    for _ in 0..3 {
        src.reading("rtu-missing.ch4", "bad", |r| !good(r)).await;
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    src.stop().await;
}

/// Item 5 and 7 of issue 10: a half-dead slave. Block B (holding 0-1,
/// polled first) is answered 10 ms after the line's timeout, then not at
/// all; block A (holding 10-11, same size, asked right after B) at once. B's late answer must never be
/// taken for A's (no value crosses over), the device is judged once per
/// cycle (online, partly failing: never offline while A answers), and B's
/// point is bad with `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_block_never_crosses_over_and_a_half_dead_slave_stays_online() {
    let socat = PtyPair::spawn();
    let bank = RegisterBank::new();
    bank.set_holding_words(10, &[0x0001, 0x1111]);
    bank.set_holding_words(0, &[0x0002, 0x2222]);
    let fault = FaultSwitch::new();
    fault.set(Fault::At {
        addresses: 0..2,
        fault: Box::new(Fault::Delay(RESPONSE_TIMEOUT + Duration::from_millis(10))),
    });
    let mut sim = RtuLine::start(&socat.a, BAUD, vec![(1, bank.clone(), fault.clone())])
        .await
        .unwrap();
    let a = ModbusPoint::new("half.a", RegisterKind::Holding, 10, DataType::U32);
    let b = ModbusPoint::new("half.b", RegisterKind::Holding, 0, DataType::U32);
    let mut d = Device::modbus_rtu("half", "line1", 1, vec![a, b]);
    d.poll_interval = POLL;
    d.retries = 0;
    d.max_gap = 0;
    let mut src = start_line(line(&socat.b), vec![d]);

    let (a_value, b_value) = (
        Value::Num(f64::from(0x0001_1111u32)),
        Value::Num(f64::from(0x0002_2222u32)),
    );
    let mut cycles = 0;
    let mut a_good: u32 = 0;
    let mut b_bad = 0;
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        match src.next(Duration::from_secs(2)).await {
            Input::Readings(rs) => {
                for r in rs {
                    match &*r.point {
                        "half.a" if good(&r) => {
                            assert_eq!(r.value, Some(a_value.clone()), "A took B's late answer");
                            a_good += 1;
                        }
                        "half.b" if good(&r) => {
                            assert_eq!(r.value, Some(b_value.clone()), "B took another answer");
                        }
                        "half.b" => {
                            assert_eq!(r.quality, Quality::Bad(BadReason::Timeout), "{r:?}");
                            b_bad += 1;
                        }
                        _ => {}
                    }
                }
            }
            Input::DeviceHealth { ok, detail, .. } => {
                cycles += 1;
                assert!(ok, "A answers: the device is online, not offline: {detail}");
            }
        }
    }
    assert!(a_good >= 3 && b_bad >= 3, "a good {a_good}, b bad {b_bad}");
    // one health input per cycle (two reads), not one per read
    assert!(
        cycles <= a_good + 1,
        "{cycles} health inputs for {a_good} cycles"
    );
    assert!(
        cycles >= a_good.saturating_sub(1),
        "{cycles} health inputs for {a_good} cycles"
    );
    let (ok, detail) = src.health("partly failing", |_, d| !d.is_empty()).await;
    assert!(
        ok && detail.contains("1 of 2") && detail.contains("holding 0-1"),
        "{detail}"
    );

    // B silent for good: still online, B bad; then the whole slave silent:
    // offline (a failed cycle), and it rests between probes.
    fault.set(Fault::At {
        addresses: 0..2,
        fault: Box::new(Fault::Silent),
    });
    src.health("partly failing (silent block)", |ok, d| {
        ok && d.contains("1 of 2")
    })
    .await;
    fault.set(Fault::Silent);
    src.health("no answer", |ok, _| !ok).await;
    let r = src
        .reading("half.a", "resting", |r| {
            format!("{:?}", r.quality).contains("Timeout")
        })
        .await;
    assert!(r.value.is_none());
    let before = bank.requests_served_fc(3);
    let window = Duration::from_millis(POLL.as_millis() as u64 * 10);
    let rest = src.collect(window).await;
    let asked = bank.requests_served_fc(3) - before;
    let bad = rest.get("half").map_or(0, Vec::len);
    assert!(
        bad >= 8,
        "bad readings keep coming at the poll interval: {bad}"
    );
    // 10 cycles of 2 reads each; a resting slave is asked at most once per
    // 5 cycles (one probe), with slack for a window edge.
    assert!(
        asked <= 4,
        "{asked} requests to a silent slave in 10 cycles"
    );
    fault.set(Fault::None);
    src.reading("half.b", "good again", good).await;
    src.health("all answered", |ok, d| ok && d.is_empty()).await;

    src.stop().await;
    sim.stop().await;
    drop(socat);
}
