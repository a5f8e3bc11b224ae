//! End to end for the 工贸 and gas-user interlocks with real parts:
//! firmware-sim's `furnace-skid`, `casting-pit` and `gas-cabinet` over Modbus
//! TCP sockets, the `riskgate` binary with the `furnace-cooling`, `al-casting`
//! and `gas-user` presets, a real
//! Mosquitto and a county subscriber that checks every event against the
//! contract's schemas.
//!
//! - Furnace: the outlet temperature rises past the set point; riskgate raises
//!   the alarm and writes the cut request, the write is read back (`confirmed`
//!   in the alarm log), the furnace's power goes off and the consistency check
//!   stays quiet. With the furnace's breaker welded, the same alarm leaves the
//!   power on: 冷却水报警未联锁断电 (level 1).
//! - Casting pit: the cooling-water pressure falls while casting; riskgate
//!   writes the quick shut-off valve closed (confirmed) and the pit's valves
//!   report in place: no consistency alarm. With the shut-off valve stuck open,
//!   快速切断阀未关闭 (level 1) is raised and clears when the valve frees.
//! - Gas user (`gas-cabinet`): a leak writes the shut-off valve closed
//!   (confirmed, the valve's switch shows closed); with the valve stuck open,
//!   紧急切断阀未关闭 (level 1).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Mosquitto, Riskgate, Subscriber, assert_schema_valid, subscribe, wait_for_async};
use firmware_sim::devices::DeviceHandle;
use firmware_sim::devices::plant::{Plant, casting, furnace, gas};
use firmware_sim::{Scenario, devices};
use riskgate::queue::Store;
use serde_json::Value as J;

const SITE: &str = "e2e-works-01";

fn config(dir: &Path, skid: u16, pit: u16, cab: u16, mqtt: u16) -> PathBuf {
    let data = dir.join("data");
    let text = format!(
        r#"
[site]
id = "{SITE}"
kind = "industrial"
region_code = "410381"
[gateway]
id = "gw-e2e-works"
data_dir = "{data}"
[http]
listen = "127.0.0.1:0"
[store]
commit_interval = "100ms"
[uplink]
host = "127.0.0.1"
port = {mqtt}
plain_tcp = true
status_interval = "2s"

[[devices]]
id = "skid-f1"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {skid}
poll_interval = "200ms"
timeout = "300ms"
retries = 0
offline_after = 3
  [[devices.points]]
  id = "f1.flow_diff"
  register = "holding"
  address = {diff}
  type = "f32"
  [[devices.points]]
  id = "f1.outlet_temp"
  register = "holding"
  address = {temp}
  type = "f32"
  [[devices.points]]
  id = "f1.power_on"
  register = "discrete"
  address = {power}
  [[devices.points]]
  id = "f1.cut_cmd"
  register = "coil"
  address = {cut}
  writable = true

[[devices]]
id = "pit-c1"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {pit}
poll_interval = "200ms"
timeout = "300ms"
retries = 0
offline_after = 3
  [[devices.points]]
  id = "c1.pressure"
  register = "holding"
  address = {pressure}
  type = "f32"
  [[devices.points]]
  id = "c1.flow"
  register = "holding"
  address = {flow}
  type = "f32"
  [[devices.points]]
  id = "c1.shutoff_closed"
  register = "discrete"
  address = {closed}
  [[devices.points]]
  id = "c1.drain_open"
  register = "discrete"
  address = {drain}
  [[devices.points]]
  id = "c1.launder_cut"
  register = "discrete"
  address = {launder}
  [[devices.points]]
  id = "c1.casting"
  register = "discrete"
  address = {casting}
  [[devices.points]]
  id = "c1.shutoff_cmd"
  register = "coil"
  address = {shutoff}
  writable = true

[[devices]]
id = "cab-k1"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {cab}
poll_interval = "200ms"
timeout = "300ms"
retries = 0
offline_after = 3
  [[devices.points]]
  id = "k1.lel"
  register = "holding"
  address = {lel}
  type = "f32"
  [[devices.points]]
  id = "k1.valve_closed"
  register = "discrete"
  address = {valve_closed}
  [[devices.points]]
  id = "k1.valve_cmd"
  register = "coil"
  address = {valve}
  writable = true

[[presets]]
name = "gas-user"
id_prefix = "k1-"
bind = {{ lel = "k1.lel", valve_cmd = "k1.valve_cmd", valve_closed = "k1.valve_closed" }}

[[presets]]
name = "furnace-cooling"
id_prefix = "f1-"
bind = {{ outlet_temp = "f1.outlet_temp", flow_diff = "f1.flow_diff", power_on = "f1.power_on", cut_cmd = "f1.cut_cmd", temp_high = 55.0, diff_high = 0.5 }}

[[presets]]
name = "al-casting"
id_prefix = "c1-"
bind = {{ casting = "c1.casting", pressure = "c1.pressure", flow = "c1.flow", pressure_low = 0.15, flow_low = 40.0, shutoff_cmd = "c1.shutoff_cmd", shutoff_closed = "c1.shutoff_closed", drain_open = "c1.drain_open", launder_cut = "c1.launder_cut" }}
"#,
        data = data.display(),
        diff = furnace::REG_FLOW_DIFF,
        temp = furnace::REG_OUTLET_TEMP,
        power = furnace::DI_POWER_ON,
        cut = furnace::COIL_CUT,
        pressure = casting::REG_PRESSURE,
        flow = casting::REG_FLOW,
        closed = casting::DI_SHUTOFF_CLOSED,
        drain = casting::DI_DRAIN_OPEN,
        launder = casting::DI_LAUNDER_CUT,
        casting = casting::DI_CASTING,
        shutoff = casting::COIL_SHUTOFF,
        lel = gas::REG_LEL,
        valve_closed = gas::DI_VALVE_CLOSED,
        valve = gas::COIL_VALVE,
    );
    let p = dir.join("riskgate.toml");
    std::fs::write(&p, text).unwrap();
    p
}

type Seen = Vec<(String, J, bool)>;

/// Waits for the event of `rule` in `state`, checks it against the schema.
async fn event(sub: &mut Subscriber, seen: &mut Seen, rule: &str, state: &str) -> J {
    let e = sub
        .wait(
            &format!("{rule} {state}"),
            Duration::from_secs(20),
            seen,
            |t, v| t.ends_with("/alarm") && v["rule_id"] == rule && v["state"] == state,
        )
        .await;
    assert_schema_valid("alarm-event.schema.json", &e);
    e
}

/// The alarm log's copy of the event `alarm_id`/`state` once its first action
/// has an outcome other than `pending`; returns that outcome.
async fn action_result(data: &Path, alarm_id: &str) -> String {
    wait_for_async(
        &format!("the action outcome of {alarm_id}"),
        Duration::from_secs(15),
        || async {
            let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
            let log = Store::open(data, u64::MAX, u64::MAX)
                .unwrap()
                .alarm_log(since, 10_000)
                .unwrap();
            log.iter()
                .find(|e| e["alarm_id"] == alarm_id && e["state"] == "raised")
                .and_then(|e| e["actions"][0]["result"].as_str().map(String::from))
                .filter(|r| r != "pending")
        },
    )
    .await
}

fn quiet(seen: &Seen, rule: &str) -> bool {
    !seen
        .iter()
        .any(|(t, v, _)| t.ends_with("/alarm") && v["rule_id"] == rule)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn furnace_casting_and_gas_interlocks_reach_the_county() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (skid_slave, skid): (_, DeviceHandle) = devices::plant_tcp(
        "127.0.0.1:0".parse().unwrap(),
        Plant::FurnaceSkid,
        Scenario::default(),
    )
    .await
    .unwrap();
    let (pit_slave, pit): (_, DeviceHandle) = devices::plant_tcp(
        "127.0.0.1:0".parse().unwrap(),
        Plant::CastingPit,
        Scenario::default(),
    )
    .await
    .unwrap();
    let (cab_slave, cab): (_, DeviceHandle) = devices::plant_tcp(
        "127.0.0.1:0".parse().unwrap(),
        Plant::GasCabinet,
        Scenario::default(),
    )
    .await
    .unwrap();
    // The plant's own interlocks are bypassed here so that riskgate's written
    // request is what acts: its read-back is then the whole story.
    skid.set_signal("interlock", 0.0);
    pit.set_signal("interlock", 0.0);
    let cfg = config(
        dir.path(),
        skid_slave.local_addr().port(),
        pit_slave.local_addr().port(),
        cab_slave.local_addr().port(),
        broker.port,
    );
    let mut sub = subscribe(broker.port, &format!("riskgate/v1/{SITE}/#"), "county").await;
    let mut daemon = Riskgate::spawn(&cfg, &dir.path().join("riskgate.log"), &[]);
    let mut seen: Seen = Vec::new();
    let online = sub
        .wait(
            "status online",
            Duration::from_secs(30),
            &mut seen,
            |t, v| t.ends_with("/status") && v["state"] == "online",
        )
        .await;
    assert_schema_valid("status.schema.json", &online);
    // Normal readings first: every point known, so the actions will run.
    wait_for_async("the first readings", Duration::from_secs(15), || async {
        let s = Store::open(&data, u64::MAX, u64::MAX).unwrap();
        let since = chrono::Utc::now() - chrono::Duration::minutes(5);
        ["f1.outlet_temp", "f1.power_on", "c1.pressure", "c1.casting"]
            .iter()
            .all(|p| !s.history(p, since, 10).unwrap().is_empty())
            .then_some(())
    })
    .await;

    // ---- Furnace: alarm, cut request written and read back, power off --------------
    skid.set_signal("outlet_temp", 60.0);
    let raised = event(&mut sub, &mut seen, "f1-outlet-temp-high", "raised").await;
    assert_eq!(raised["kind"], "threshold");
    assert_eq!(raised["level"], 2);
    assert_eq!(raised["site_kind"], "industrial");
    assert_eq!(raised["point_id"], "f1.outlet_temp");
    assert_eq!(raised["threshold"], 55.0);
    assert_eq!(raised["actions"][0]["target"], "f1.cut_cmd");
    let alarm_id = raised["alarm_id"].as_str().unwrap().to_string();
    assert_eq!(action_result(&data, &alarm_id).await, "confirmed");
    assert!(
        skid.bank().coil(furnace::COIL_CUT),
        "the cut request reached the skid"
    );
    wait_for_async("the furnace off", Duration::from_secs(5), || async {
        (!skid.bank().discrete(furnace::DI_POWER_ON)).then_some(())
    })
    .await;
    // The 5 s consistency hold passes with the power off: nothing raised.
    skid.set_signal("outlet_temp", 35.0);
    event(&mut sub, &mut seen, "f1-outlet-temp-high", "cleared").await;
    assert!(quiet(&seen, "f1-power-not-cut"), "the cut was in time");

    // Welded breaker: power back on by hand, the next alarm cannot cut it.
    skid.set_signal("breaker_stuck", 0.0);
    skid.bank().set_coil(furnace::COIL_CUT, false);
    wait_for_async("power back on", Duration::from_secs(5), || async {
        skid.bank().discrete(furnace::DI_POWER_ON).then_some(())
    })
    .await;
    skid.set_signal("breaker_stuck", 1.0);
    skid.set_signal("outlet_temp", 61.0);
    let raised2 = event(&mut sub, &mut seen, "f1-outlet-temp-high", "raised").await;
    let id2 = raised2["alarm_id"].as_str().unwrap().to_string();
    assert_ne!(id2, alarm_id, "a new instance");
    assert_eq!(
        action_result(&data, &id2).await,
        "confirmed",
        "the request itself was accepted and read back"
    );
    let not_cut = event(&mut sub, &mut seen, "f1-power-not-cut", "raised").await;
    assert_eq!(not_cut["kind"], "consistency");
    assert_eq!(not_cut["level"], 1);
    assert_eq!(not_cut["level_color"], "red");
    assert!(
        not_cut["message"]
            .as_str()
            .unwrap()
            .contains("冷却水报警未联锁断电"),
        "{not_cut}"
    );
    // The breaker is freed: the standing cut request takes effect.
    skid.set_signal("breaker_stuck", 0.0);
    event(&mut sub, &mut seen, "f1-power-not-cut", "cleared").await;
    skid.set_signal("outlet_temp", 35.0);
    event(&mut sub, &mut seen, "f1-outlet-temp-high", "cleared").await;

    // ---- Casting pit: valve written closed, read back, in place -----------------------
    // The machine's own interlock acts on drain and launder; riskgate asks the
    // shut-off valve.
    pit.set_signal("interlock", 1.0);
    pit.set_signal("pressure", 0.08);
    let low = event(&mut sub, &mut seen, "c1-pressure-low", "raised").await;
    assert_eq!(low["kind"], "interlock");
    assert_eq!(low["level"], 2);
    assert_eq!(low["actions"][0]["target"], "c1.shutoff_cmd");
    let low_id = low["alarm_id"].as_str().unwrap().to_string();
    assert_eq!(action_result(&data, &low_id).await, "confirmed");
    wait_for_async("the valve closed", Duration::from_secs(5), || async {
        pit.bank()
            .discrete(casting::DI_SHUTOFF_CLOSED)
            .then_some(())
    })
    .await;
    pit.set_signal("pressure", 0.30);
    event(&mut sub, &mut seen, "c1-pressure-low", "cleared").await;
    for r in ["c1-shutoff-failed", "c1-drain-failed", "c1-launder-failed"] {
        assert!(quiet(&seen, r), "{r}: every device acted within 3 s");
    }

    // Stuck valve: reset by hand, then it sticks open.
    pit.set_signal("interlock", 0.0);
    for c in [
        casting::COIL_SHUTOFF,
        casting::COIL_DRAIN,
        casting::COIL_LAUNDER,
    ] {
        pit.bank().set_coil(c, false);
    }
    wait_for_async("the pit reset", Duration::from_secs(5), || async {
        (!pit.bank().discrete(casting::DI_SHUTOFF_CLOSED)
            && !pit.bank().discrete(casting::DI_DRAIN_OPEN))
        .then_some(())
    })
    .await;
    pit.set_signal("interlock", 1.0);
    pit.set_signal("shutoff_stuck", 1.0);
    pit.set_signal("flow", 25.0);
    let flow_low = event(&mut sub, &mut seen, "c1-flow-low", "raised").await;
    let failed = event(&mut sub, &mut seen, "c1-shutoff-failed", "raised").await;
    assert_eq!(failed["kind"], "consistency");
    assert_eq!(failed["level"], 1);
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("快速切断阀未关闭"),
        "{failed}"
    );
    // The write itself was accepted (the coil reads back 1); the valve did not move.
    let flow_id = flow_low["alarm_id"].as_str().unwrap().to_string();
    assert_eq!(action_result(&data, &flow_id).await, "confirmed");
    assert!(!pit.bank().discrete(casting::DI_SHUTOFF_CLOSED));
    pit.set_signal("shutoff_stuck", 0.0);
    event(&mut sub, &mut seen, "c1-shutoff-failed", "cleared").await;
    pit.set_signal("flow", 60.0);
    event(&mut sub, &mut seen, "c1-flow-low", "cleared").await;
    assert!(quiet(&seen, "c1-drain-failed") && quiet(&seen, "c1-launder-failed"));

    // ---- Gas user: the shut-off valve written closed and read back; then stuck --------
    cab.set_signal("lel", 30.0);
    let leak = event(&mut sub, &mut seen, "k1-lel-1", "raised").await;
    assert_eq!(leak["site_kind"], "industrial");
    assert_eq!(leak["actions"][0]["target"], "k1.valve_cmd");
    let leak_id = leak["alarm_id"].as_str().unwrap().to_string();
    assert_eq!(action_result(&data, &leak_id).await, "confirmed");
    wait_for_async("the gas valve closed", Duration::from_secs(5), || async {
        cab.bank().discrete(gas::DI_VALVE_CLOSED).then_some(())
    })
    .await;
    cab.set_signal("lel", 0.0);
    event(&mut sub, &mut seen, "k1-lel-1", "cleared").await;
    assert!(
        quiet(&seen, "k1-valve-not-closed"),
        "the valve closed in time"
    );
    // Reopened by hand; the next leak finds the valve stuck open.
    cab.bank().set_coil(gas::COIL_VALVE, false);
    wait_for_async("the gas valve open", Duration::from_secs(5), || async {
        (!cab.bank().discrete(gas::DI_VALVE_CLOSED)).then_some(())
    })
    .await;
    cab.set_signal("valve_stuck", 1.0);
    cab.set_signal("lel", 28.0);
    event(&mut sub, &mut seen, "k1-lel-1", "raised").await;
    let open = event(&mut sub, &mut seen, "k1-valve-not-closed", "raised").await;
    assert_eq!(open["kind"], "consistency");
    assert_eq!(open["level"], 1);
    cab.set_signal("lel", 0.0);
    event(&mut sub, &mut seen, "k1-valve-not-closed", "cleared").await;

    // A clean stop; then every alarm event the county got is schema-valid and
    // its seq gap-free from 1.
    let status = tokio::task::spawn_blocking(move || daemon.terminate())
        .await
        .unwrap();
    assert!(status.success(), "riskgate exit status {status:?}");
    sub.wait(
        "status offline",
        Duration::from_secs(10),
        &mut seen,
        |t, v| t.ends_with("/status") && v["state"] == "offline",
    )
    .await;
    let events: Vec<&J> = seen
        .iter()
        .filter(|m| m.0.ends_with("/alarm"))
        .map(|m| &m.1)
        .collect();
    for e in &events {
        assert_schema_valid("alarm-event.schema.json", e);
    }
    let mut seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free seq"
    );
    // No built-in fault on the written points: every write was read back.
    for p in ["f1.cut_cmd", "c1.shutoff_cmd", "k1.valve_cmd"] {
        assert!(
            quiet(&seen, &format!("{p}.action")),
            "{p}: every write read back"
        );
    }
}
