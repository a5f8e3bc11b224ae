//! Device kinds over Modbus TCP: register maps, scenario runner, pinning, fault timeline.

mod common;

use std::time::Duration;

use common::*;
use firmware_sim::devices::{self, DeviceKind, RunnerOptions, typed_bank};
use firmware_sim::{Fault, FaultSwitch, RegisterBank, Scenario};

fn f32_at(bank: &RegisterBank, addr: u16) -> f32 {
    f32_from_words(&bank.holding_words(addr, 2))
}

#[tokio::test]
async fn gas_detector_map_and_set_signal_writes_through() {
    let sc = Scenario::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/steady.toml"
    ))
    .unwrap();
    let (slave, dev) = devices::gas_detector_tcp(localhost0(), sc).await.unwrap();
    let mut c = RawTcp::connect(slave.local_addr()).await;

    let h = c.read_holding(0, 9).await;
    let i = c.read_input(0, 9).await;
    assert_eq!(h, i, "input registers mirror holding registers");
    assert_eq!(f32_from_words(&h[0..2]), 0.30);
    assert_eq!(f32_from_words(&h[2..4]), 5.0);
    assert_eq!(f32_from_words(&h[4..6]), 20.8);
    assert_eq!(h[6], 220);
    assert_eq!(h[7], 0);
    assert_eq!(h[8], 30);

    // pinning is visible to the very next request, no tick needed
    dev.set_signal("ch4", 1.6);
    dev.set_signal("temp", -5.0);
    dev.set_signal("fault", 1.0);
    dev.set_signal("low_battery", 1.0);
    let h = c.read_holding(0, 9).await;
    assert_eq!(f32_from_words(&h[0..2]), 1.6);
    assert_eq!(h[6] as i16, -50);
    assert_eq!(h[7], 0b101);
    assert_eq!(h[8], 160);
    assert_eq!(c.read_input(8, 1).await, vec![160]);
    assert_eq!(dev.signal("ch4"), Some(1.6));

    // the runner does not override a pinned signal
    let served = dev.bank().requests_served();
    wait_until("a few ticks", Duration::from_secs(3), || {
        dev.elapsed() > Duration::from_millis(500)
    })
    .await;
    assert_eq!(f32_at(dev.bank(), 0), 1.6);

    // release: back to the scenario immediately
    dev.release_signal("ch4");
    dev.release_signal("fault");
    assert_eq!(f32_at(dev.bank(), 0), 0.30);
    assert_eq!(c.read_holding(7, 2).await, vec![0b100, 30]);
    assert_eq!(dev.bank().requests_served(), served + 1);

    // the gateway may drive the alarm lamp
    assert_eq!(
        c.request(1, &[5, 0, 0, 0xFF, 0]).await,
        vec![5, 0, 0, 0xFF, 0]
    );
    assert!(dev.bank().coil(0));

    assert!(dev.try_set_signal("level", 1.0).is_err());
}

#[tokio::test]
async fn runner_follows_scenario_over_time() {
    let sc = Scenario::from_toml_str(
        r#"
        tick = "20ms"
        [signals.ch4]
        initial = 0.3
        steps = [ { at = "300ms", value = 1.25 } ]
        "#,
    )
    .unwrap();
    let (_slave, dev) = devices::gas_detector_tcp(localhost0(), sc).await.unwrap();
    assert_eq!(f32_at(dev.bank(), 0), 0.3);
    // signals not in the scenario keep the kind's defaults
    assert_eq!(f32_at(dev.bank(), 4), 20.8);
    wait_until("ch4 stepped to 1.25", Duration::from_secs(5), || {
        f32_at(dev.bank(), 0) == 1.25
    })
    .await;
    assert_eq!(dev.bank().holding(8), 125);
}

#[tokio::test]
async fn runner_adds_bounded_noise() {
    let sc = Scenario::from_toml_str(
        r#"
        [signals.o2]
        initial = 20.8
        noise = 0.1
        "#,
    )
    .unwrap();
    let bank = RegisterBank::new();
    let dev = devices::spawn_device_with(
        DeviceKind::GasDetector,
        sc,
        bank.clone(),
        FaultSwitch::new(),
        RunnerOptions {
            tick: Some(Duration::from_millis(10)),
        },
    );
    let first = f32_at(&bank, 4);
    let mut seen = vec![first];
    wait_until(
        "o2 value changes with noise",
        Duration::from_secs(5),
        || {
            let v = f32_at(&bank, 4);
            seen.push(v);
            v != first
        },
    )
    .await;
    for v in seen {
        assert!((20.7 - 1e-4..=20.9 + 1e-4).contains(&(v as f64)), "{v}");
    }
    drop(dev);
}

#[tokio::test]
async fn runner_applies_fault_timeline() {
    let sc = Scenario::from_toml_str(
        r#"
        tick = "20ms"
        [[faults]]
        at = "0s"
        kind = "exception"
        code = 4
        for = "1s"
        [[faults]]
        at = "1500ms"
        kind = "reboot"
        for = "400ms"
        "#,
    )
    .unwrap();
    let (slave, dev) = devices::gas_detector_tcp(localhost0(), sc).await.unwrap();
    let addr = slave.local_addr();
    let mut c = RawTcp::connect(addr).await;
    // at t = 0 the exception fault is already active
    assert_eq!(c.request(1, &read_pdu(3, 0, 1)).await, vec![0x83, 4]);
    wait_until("fault cleared", Duration::from_secs(5), || {
        dev.faults().get() == Fault::None
    })
    .await;
    assert_eq!(c.request(1, &read_pdu(3, 8, 1)).await, vec![3, 2, 0, 30]);
    // the reboot closes our connection...
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(
        IO_TIMEOUT,
        tokio::io::AsyncReadExt::read(&mut c.stream, &mut b),
    )
    .await
    .expect("connection closed by reboot");
    assert!(matches!(r, Ok(0) | Err(_)));
    // ...and the device comes back on the same port
    let t0 = std::time::Instant::now();
    let mut c2 = loop {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            break RawTcp::from_stream(s);
        }
        assert!(t0.elapsed() < IO_TIMEOUT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(c2.request(1, &read_pdu(3, 8, 1)).await, vec![3, 2, 0, 30]);
}

#[tokio::test]
async fn kj_monitor_map() {
    let sc = Scenario::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/kj-powercut.toml"
    ))
    .unwrap();
    let (slave, dev) = devices::kj_monitor_tcp(localhost0(), 4, sc).await.unwrap();
    let mut c = RawTcp::connect(slave.local_addr()).await;
    for z in 1..=4u16 {
        // t ~ 0: not cut, feed present, fan running
        assert_eq!(
            c.read_bits(2, 16 * z, 3).await,
            vec![false, true, true],
            "zone {z}"
        );
    }
    assert_eq!(c.read_holding(101, 4).await, vec![30, 30, 30, 30]);
    dev.set_signal("zone1.cut", 1.0);
    dev.set_signal("zone1.feed", 0.0);
    dev.set_signal("zone3.ch4", 1.61);
    dev.set_signal("zone2.fan_running", 0.0);
    assert_eq!(c.read_bits(2, 16, 3).await, vec![true, false, true]);
    assert_eq!(c.read_bits(2, 32, 3).await, vec![false, true, false]);
    assert_eq!(c.read_holding(103, 1).await, vec![161]);
    assert!(dev.try_set_signal("zone5.cut", 1.0).is_err());
}

#[tokio::test]
async fn reservoir_map() {
    let (slave, dev) = devices::reservoir_tcp(localhost0(), Scenario::empty())
        .await
        .unwrap();
    let mut c = RawTcp::connect(slave.local_addr()).await;
    // defaults: 0 mm rain, 152.3 m level, 3.5 m seepage depth, 12.6 V
    assert_eq!(
        c.read_input(0, 7).await,
        vec![0, 0, 2, 0x52EC, 0, 3500, 1260]
    );
    dev.set_signal("rain_total", 6553.7); // 65537 x 0.1 mm
    dev.set_signal("level", 70000.0);
    dev.set_signal("battery", 11.85);
    assert_eq!(
        c.read_holding(0, 7).await,
        vec![1, 1, 1, 4464, 0, 3500, 1185]
    );
}

/// Independent decoder (test side) for the typed bank.
fn decode_test(ty: &str, order: &str, w: &[u16]) -> f64 {
    let mut bytes: Vec<u8> = w.iter().flat_map(|x| x.to_be_bytes()).collect();
    match order {
        "ABCD" => {}
        "DCBA" => bytes.reverse(),
        "BADC" => bytes.chunks_mut(2).for_each(|c| c.swap(0, 1)),
        "CDAB" => {
            let words: Vec<[u8; 2]> = bytes.chunks(2).rev().map(|c| [c[0], c[1]]).collect();
            bytes = words.concat();
        }
        _ => panic!("order {order}"),
    }
    match ty {
        "u16" => u16::from_be_bytes(bytes[..2].try_into().unwrap()) as f64,
        "i16" => i16::from_be_bytes(bytes[..2].try_into().unwrap()) as f64,
        "u32" => u32::from_be_bytes(bytes[..4].try_into().unwrap()) as f64,
        "i32" => i32::from_be_bytes(bytes[..4].try_into().unwrap()) as f64,
        "u64" => u64::from_be_bytes(bytes[..8].try_into().unwrap()) as f64,
        "i64" => i64::from_be_bytes(bytes[..8].try_into().unwrap()) as f64,
        "f32" => f32::from_be_bytes(bytes[..4].try_into().unwrap()) as f64,
        "f64" => f64::from_be_bytes(bytes[..8].try_into().unwrap()),
        _ => panic!("type {ty}"),
    }
}

#[tokio::test]
async fn typed_bank_over_tcp_matches_expected_table() {
    let slave = devices::typed_bank_tcp(localhost0()).await.unwrap();
    let mut c = RawTcp::connect(slave.local_addr()).await;
    for &(name, kind, addr, ty, order, value) in typed_bank::EXPECTED {
        let n = typed_bank::register_count(ty) as u16;
        let words = match kind {
            "holding" => c.read_holding(addr, n.max(1)).await,
            "input" => c.read_input(addr, n.max(1)).await,
            _ => Vec::new(),
        };
        match (kind, ty) {
            ("coil", _) | ("discrete", _) => {
                let f = if kind == "coil" { 1 } else { 2 };
                let b = c.read_bits(f, addr, 1).await[0];
                assert_eq!(b as u8 as f64, value.as_f64().unwrap(), "{name}");
            }
            (_, t) if t.starts_with("bit:") => {
                let bit: u32 = t[4..].parse().unwrap();
                assert_eq!(
                    ((words[0] >> bit) & 1) as f64,
                    value.as_f64().unwrap(),
                    "{name}"
                );
            }
            (_, t) if t.starts_with("ascii:") => {
                let bytes: Vec<u8> = words
                    .iter()
                    .flat_map(|w| {
                        if order == "BADC" {
                            w.to_le_bytes()
                        } else {
                            w.to_be_bytes()
                        }
                    })
                    .collect();
                assert_eq!(
                    String::from_utf8(bytes).unwrap(),
                    value.as_str().unwrap(),
                    "{name}"
                );
            }
            (_, t) if t.starts_with("fixed_i32:") => {
                let d: i32 = t[10..].parse().unwrap();
                let raw = decode_test("i32", order, &words);
                assert_eq!(raw / 10f64.powi(d), value.as_f64().unwrap(), "{name}");
            }
            (_, t) => {
                assert_eq!(
                    decode_test(t, order, &words),
                    value.as_f64().unwrap(),
                    "{name}"
                );
            }
        }
    }
    // a CDAB f32 read as ABCD is garbage, not 1.5
    let w = c.read_holding(86, 2).await;
    assert_ne!(decode_test("f32", "ABCD", &w), 1.5);
}

#[tokio::test]
async fn run_device_join_handle_and_rtu_style_device() {
    let bank = RegisterBank::new();
    let jh = devices::run_device(
        DeviceKind::ReservoirRtu,
        Scenario::constant(&[("battery", 13.0)]),
        bank.clone(),
        FaultSwitch::new(),
    );
    assert_eq!(bank.holding(6), 1300);
    jh.abort();
    let dev = devices::device("kj-monitor/2".parse().unwrap(), Scenario::empty());
    assert_eq!(dev.kind(), DeviceKind::KjMonitor { zones: 2 });
    assert!(dev.bank().discrete(33));
    assert!(!dev.bank().discrete(49));
}
