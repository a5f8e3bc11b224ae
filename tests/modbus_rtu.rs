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

/// Every reading from now until `device` has given `cycles` more, grouped
/// by device: a span counted in the device's own polls, not a time window,
/// so a slow test thread on a loaded machine neither loses nor adds any.
async fn collect_cycles(
    src: &mut SourceTask,
    device: &str,
    cycles: usize,
) -> HashMap<String, Vec<Reading>> {
    while src.rx.try_recv().is_ok() {}
    let mut out: HashMap<String, Vec<Reading>> = HashMap::new();
    while out.get(device).map_or(0, Vec::len) < cycles {
        if let Input::Readings(rs) = src.next(Duration::from_secs(10)).await {
            for r in rs {
                out.entry(r.device.to_string()).or_default().push(r);
            }
        }
    }
    out
}

/// Polls per second of `device` by its readings' own stamps (the source's
/// clock, not the test's).
fn rate(readings: &HashMap<String, Vec<Reading>>, device: &str) -> f64 {
    let rs = &readings[device];
    let span = (rs[rs.len() - 1].at - rs[0].at).to_std().unwrap();
    (rs.len() - 1) as f64 / span.as_secs_f64()
}

/// The longest time between two readings of `device`.
fn longest_gap(readings: &HashMap<String, Vec<Reading>>, device: &str) -> Duration {
    readings[device]
        .windows(2)
        .map(|w| (w[1].at - w[0].at).to_std().unwrap())
        .max()
        .unwrap()
}

fn count(readings: &HashMap<String, Vec<Reading>>, device: &str) -> usize {
    readings.get(device).map_or(0, Vec::len)
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

    // Phase 1: all three healthy, counted over 15 of rtu-1's cycles: each
    // slave polled as often as the others (one a cycle, ±1 at the span's
    // edges), at the configured interval by the readings' own stamps (a
    // loaded machine delays a poll, but the deadlines do not drift).
    let healthy = collect_cycles(&mut src, "rtu-1", 15).await;
    let healthy_rate = [rate(&healthy, "rtu-1"), rate(&healthy, "rtu-2")];
    for dev in ["rtu-1", "rtu-2", "rtu-3"] {
        let r = rate(&healthy, dev);
        assert!(
            within(r, 1.0 / POLL.as_secs_f64(), 0.10),
            "{dev}: {r:.2}/s with every slave healthy"
        );
        assert!(
            count(&healthy, dev).abs_diff(15) <= 1,
            "{dev}: {} polls in 15 of rtu-1's",
            count(&healthy, dev)
        );
        assert!(healthy[dev].iter().all(good), "{dev}");
    }
    let healthy_jitter = ["rtu-1", "rtu-2"].map(|d| longest_gap(&healthy, d).saturating_sub(POLL));

    // Phase 2: slave 3 silent. It costs its 100 ms timeout per attempt; the
    // line still has time for 1 and 2 at their full rate. Counted over 25
    // of rtu-1's cycles.
    faults[2].set(Fault::Silent);
    src.reading("rtu-3.ch4", "bad(timeout)", |r| {
        r.quality == Quality::Bad(BadReason::Timeout)
    })
    .await;
    let silent = collect_cycles(&mut src, "rtu-1", 25).await;
    let expected = expected_rate_with_silent_slave();
    eprintln!(
        "healthy: rtu-1 {:.2}/s, rtu-2 {:.2}/s; slave 3 silent: rtu-1 {:.2}/s, rtu-2 {:.2}/s, rtu-3 {} bad; expected {expected:.2}/s",
        healthy_rate[0],
        healthy_rate[1],
        rate(&silent, "rtu-1"),
        rate(&silent, "rtu-2"),
        silent["rtu-3"].len()
    );
    for (k, dev) in ["rtu-1", "rtu-2"].iter().enumerate() {
        let r = rate(&silent, dev);
        assert!(
            within(r, expected, 0.10),
            "{dev}: {r:.2}/s, the scheduler can give {expected:.2}/s"
        );
        assert!(
            within(r, healthy_rate[k], 0.10),
            "{dev}: {r:.2}/s vs {:.2}/s with slave 3 healthy",
            healthy_rate[k]
        );
        assert!(
            count(&silent, dev) + 1 >= count(&silent, "rtu-3"),
            "{dev} polled less often than the silent slave"
        );
        assert!(silent[*dev].iter().all(good), "{dev} readings stay good");
        // never stalled by more than one timeout of the silent slave (beyond
        // the jitter the same slave showed with every slave healthy)
        let longest = longest_gap(&silent, dev);
        assert!(
            longest <= POLL + RESPONSE_TIMEOUT + healthy_jitter[k],
            "{dev}: {longest:?} between two readings (jitter {:?} when healthy)",
            healthy_jitter[k]
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
    let corrupt = collect_cycles(&mut src, "rtu-1", 10).await;
    assert!(
        bad_frames() > before,
        "bad_frames{{device=rtu-2}} did not grow"
    );
    assert_eq!(metrics().bad_frames.with_label_values(&["rtu-1"]).get(), 0);
    let r1 = rate(&corrupt, "rtu-1");
    assert!(
        within(r1, healthy_rate[0], 0.15),
        "rtu-1: {r1:.2}/s while slave 2 is corrupt"
    );
    assert!(
        count(&corrupt, "rtu-1") + 1 >= count(&corrupt, "rtu-2"),
        "rtu-1 polled less often than the corrupt slave"
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
    // and it keeps reporting at the poll interval, not at the re-open
    // backoff's (200 ms doubling to 30 s: past 1 s by the fourth failure);
    // gaps by the readings' own stamps, five intervals of slack
    let mut at = Vec::new();
    for _ in 0..6 {
        at.push(src.reading("rtu-missing.ch4", "bad", |r| !good(r)).await.at);
    }
    let longest = at
        .windows(2)
        .map(|w| (w[1] - w[0]).to_std().unwrap())
        .max()
        .unwrap();
    assert!(
        longest < POLL * 5,
        "{longest:?} between two bad readings of a missing port"
    );
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
    // Counted, not timed: until A was read good in 12 cycles and B timed
    // out in 12.
    let mut cycles = 0;
    let mut a_good: u32 = 0;
    let mut b_bad = 0;
    while a_good < 12 || b_bad < 12 {
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
            Input::Flood { device, .. } => panic!("a polled device cannot flood: {device}"),
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
    // 10 cycles, counted by half.a's bad readings (one a cycle): they keep
    // coming at the poll interval while the slave rests.
    let rest = collect_cycles(&mut src, "half", 20).await;
    let asked = bank.requests_served_fc(3) - before;
    let bad = rest["half"].iter().filter(|r| !good(r)).count();
    assert_eq!(bad, 20, "every reading of the resting slave is bad");
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

/// Item 7 of issue 10: two dead slaves on one line do not make a healthy
/// neighbour stale. Slaves 2 and 3 are silent from the start; slave 1
/// answers. Counted in the healthy slave's own cycles (not in a time
/// window, so a loaded machine cannot fail it): each dead slave is asked at
/// most once per `silent_probe_every` cycles after its first silent one,
/// their bad readings keep coming at their interval, and every reading of
/// the healthy slave is good, with no gap between two of them as long as
/// its default `stale_after` (3 intervals + the line's timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dead_slaves_do_not_make_a_healthy_neighbour_stale() {
    let socat = PtyPair::spawn();
    let banks: Vec<RegisterBank> = (0..3).map(|_| RegisterBank::new()).collect();
    let faults: Vec<FaultSwitch> = (0..3).map(|_| FaultSwitch::new()).collect();
    banks[0].set_holding_words(0, &[0x3FC0, 0x0000]); // 1.5
    faults[1].set(Fault::Silent);
    faults[2].set(Fault::Silent);
    let slaves = (0..3)
        .map(|i| (i as u8 + 1, banks[i].clone(), faults[i].clone()))
        .collect();
    let mut sim = RtuLine::start(&socat.a, BAUD, slaves).await.unwrap();
    let mut src = start_line(
        line(&socat.b),
        vec![
            device("rtu-live", 1),
            device("rtu-dead-2", 2),
            device("rtu-dead-3", 3),
        ],
    );
    src.reading("rtu-live.ch4", "good", good).await;
    for dev in ["rtu-dead-2", "rtu-dead-3"] {
        src.reading(&format!("{dev}.ch4"), "bad(timeout)", |r| !good(r))
            .await;
    }

    // Both dead slaves resting; from here, count in the live slave's cycles.
    const CYCLES: u32 = 40;
    let asked_before: Vec<u64> = banks.iter().map(|b| b.requests_served_fc(3)).collect();
    let (mut live, mut dead) = (Vec::new(), [0u32; 2]);
    let mut offline = [false; 2];
    while live.len() < CYCLES as usize {
        match src.next(Duration::from_secs(10)).await {
            Input::Readings(rs) => {
                for r in rs {
                    match &*r.point {
                        "rtu-live.ch4" => {
                            assert!(good(&r), "the live slave stays good: {r:?}");
                            assert_eq!(r.value, Some(Value::Num(1.5)));
                            live.push(r.at);
                        }
                        p => {
                            assert!(!good(&r) && r.value.is_none(), "{r:?}");
                            dead[usize::from(p == "rtu-dead-3.ch4")] += 1;
                        }
                    }
                }
            }
            Input::DeviceHealth { device, ok, .. } => match &*device {
                "rtu-live" => assert!(ok, "the live slave stays online"),
                d => offline[usize::from(d == "rtu-dead-3")] |= !ok,
            },
            Input::Flood { device, .. } => panic!("a polled device cannot flood: {device}"),
        }
    }
    let asked: Vec<u64> = banks
        .iter()
        .zip(&asked_before)
        .map(|(b, before)| b.requests_served_fc(3) - before)
        .collect();
    eprintln!(
        "{CYCLES} live cycles: live slave asked {}, dead slaves asked {} and {}, dead readings {dead:?}",
        asked[0], asked[1], asked[2]
    );
    // One probe per 5 cycles, plus one for each window edge.
    for (i, a) in asked[1..].iter().enumerate() {
        assert!(
            *a <= u64::from(CYCLES / 5 + 2),
            "dead slave {} asked {a} times in {CYCLES} cycles",
            i + 2
        );
    }
    assert!(
        asked[0] >= u64::from(CYCLES),
        "the live slave asked every cycle"
    );
    // The dead slaves' bad readings keep coming at their own interval (the
    // same as the live one's: one a cycle, with slack for the edges).
    for (i, n) in dead.iter().enumerate() {
        assert!(
            *n + 2 >= CYCLES,
            "dead slave {}: {n} bad readings in {CYCLES} cycles",
            i + 2
        );
    }
    assert_eq!(offline, [true, true], "both dead slaves reported offline");
    let stale_after = POLL * 3 + RESPONSE_TIMEOUT;
    let longest = live
        .windows(2)
        .map(|w| (w[1] - w[0]).to_std().unwrap())
        .max()
        .unwrap();
    assert!(
        longest < stale_after,
        "the live slave went {longest:?} without a reading (stale after {stale_after:?})"
    );

    src.stop().await;
    sim.stop().await;
    drop(socat);
}
