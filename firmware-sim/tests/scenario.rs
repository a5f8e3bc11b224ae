//! Scenario parsing, value_at, fault_at and the shipped scenario files.

use std::path::PathBuf;
use std::time::Duration;

use firmware_sim::scenario::{FaultKind, Scenario, ScenarioError};

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

const EXAMPLE: &str = r#"
period = "60s"
[signals.ch4]
initial = 0.30
noise = 0.02
steps = [
  { at = "10s", ramp_to = 1.80, over = "8s" },   # ramp
  { at = "30s", value = 0.40 },                    # step
]
[[faults]]
at = "45s"
kind = "silent"
for = "5s"
"#;

#[test]
fn ramps_steps_and_repeat() {
    let sc = Scenario::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(sc.period, Some(s(60.0)));
    let v = |t: f64| sc.value_at("ch4", s(t)).unwrap();
    assert!(close(v(0.0), 0.30));
    assert!(close(v(9.999), 0.30));
    assert!(close(v(10.0), 0.30));
    assert!(close(v(14.0), 0.30 + 1.5 * 0.5));
    assert!(close(v(18.0), 1.80));
    assert!(close(v(29.0), 1.80));
    assert!(close(v(30.0), 0.40));
    assert!(close(v(59.0), 0.40));
    // repeats with the period
    assert!(close(v(60.0), 0.30));
    assert!(close(v(74.0), v(14.0)));
    assert!(close(v(3600.0 + 29.0), 1.80));
    // deterministic: value_at carries no noise
    assert_eq!(v(12.345), v(12.345));
    assert_eq!(sc.signals["ch4"].noise, 0.02);
    // unknown signal
    assert_eq!(sc.value_at("co", s(1.0)), None);
}

#[test]
fn no_period_holds_last_value() {
    let sc = Scenario::from_toml_str(
        r#"
        [signals.level]
        initial = 100
        steps = [ { at = "1m", ramp_to = 200, over = "1m" } ]
        "#,
    )
    .unwrap();
    assert_eq!(sc.period, None);
    assert!(close(sc.value_at("level", s(90.0)).unwrap(), 150.0));
    assert!(close(sc.value_at("level", s(100_000.0)).unwrap(), 200.0));
}

#[test]
fn fault_timeline() {
    let sc = Scenario::from_toml_str(
        r#"
        period = "60s"
        [[faults]]
        at = "45s"
        kind = "silent"
        for = "5s"
        [[faults]]
        at = "10s"
        kind = "delay"
        delay = "3s"
        for = "2s"
        [[faults]]
        at = "20s"
        kind = "exception"
        code = 2
        [[faults]]
        at = "30s"
        kind = "none"
        [[faults]]
        at = "52s"
        kind = "reboot"
        for = "4s"
        [[faults]]
        at = "57s"
        kind = "corrupt-crc"
        for = "1s"
        "#,
    )
    .unwrap();
    assert_eq!(sc.fault_at(s(0.0)), FaultKind::None);
    assert_eq!(sc.fault_at(s(10.5)), FaultKind::Delay(s(3.0)));
    assert_eq!(sc.fault_at(s(12.0)), FaultKind::None);
    // without `for`: lasts until the next event
    assert_eq!(sc.fault_at(s(25.0)), FaultKind::Exception(2));
    assert_eq!(sc.fault_at(s(35.0)), FaultKind::None);
    assert_eq!(sc.fault_at(s(45.0)), FaultKind::Silent);
    assert_eq!(sc.fault_at(s(49.9)), FaultKind::Silent);
    assert_eq!(sc.fault_at(s(50.0)), FaultKind::None);
    assert_eq!(sc.fault_at(s(53.0)), FaultKind::Reboot(s(4.0)));
    assert_eq!(sc.fault_at(s(57.5)), FaultKind::CorruptCrc);
    // repeats
    assert_eq!(sc.fault_at(s(60.0 + 46.0)), FaultKind::Silent);
    let a = sc.active_fault(s(120.0 + 46.0)).unwrap();
    assert_eq!(a.cycle, 2);
    assert_eq!(
        sc.fault_at(s(46.0)).as_fault(),
        Some(firmware_sim::Fault::Silent)
    );
}

fn field_err(toml: &str) -> String {
    match Scenario::from_toml_str(toml) {
        Ok(_) => panic!("expected an error for:\n{toml}"),
        Err(e @ ScenarioError::Field { .. }) => {
            let f = e.field_name().unwrap().to_string();
            assert!(e.to_string().contains(&f));
            f
        }
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_field() {
    assert_eq!(field_err(r#"period = "sixty""#), "period");
    assert_eq!(
        field_err(
            r#"[signals.ch4]
            initial = 0.3
            steps = [ { at = "10s", ramp_to = 1.8, over = "8 parsecs" } ]"#
        ),
        "signals.ch4.steps[0].over"
    );
    assert_eq!(
        field_err(
            r#"[signals.ch4]
            initial = 0.3
            steps = [ { at = "1s", value = 1 }, { at = "10s", ramp_to = 1.8 } ]"#
        ),
        "signals.ch4.steps[1].over"
    );
    assert_eq!(
        field_err(
            r#"[signals.co]
            initial = 5
            steps = [ { at = "1s" } ]"#
        ),
        "signals.co.steps[0].value"
    );
    assert_eq!(
        field_err(
            r#"[signals.co]
            initial = 5
            steps = [ { at = "soon", value = 1 } ]"#
        ),
        "signals.co.steps[0].at"
    );
    assert_eq!(
        field_err(
            r#"period = "10s"
            [signals.co]
            initial = 5
            steps = [ { at = "11s", value = 1 } ]"#
        ),
        "signals.co.steps[0].at"
    );
    assert_eq!(
        field_err("[signals.co]\ninitial = 5\nnoise = -1"),
        "signals.co.noise"
    );
    assert_eq!(
        field_err("[[faults]]\nat = \"1s\"\nkind = \"melt\""),
        "faults[0].kind"
    );
    assert_eq!(
        field_err("[[faults]]\nat = \"1s\"\nkind = \"delay\""),
        "faults[0].delay"
    );
    assert_eq!(
        field_err("[[faults]]\nat = \"1s\"\nkind = \"exception\"\ncode = 300"),
        "faults[0].code"
    );
    assert_eq!(
        field_err("[[faults]]\nat = \"1s\"\nkind = \"silent\"\nfor = \"a while\""),
        "faults[0].for"
    );
    // TOML-level errors (unknown / missing keys) name the key too
    let e = field_err("[signals.ch4]\ninitial = 0.3\nramp_too = 3");
    assert!(e.contains("ramp_too"), "{e}");
    let e = field_err("[signals.ch4]\nnoise = 0.1");
    assert!(e.contains("initial"), "{e}");
    let e = field_err("perod = \"60s\"");
    assert!(e.contains("perod"), "{e}");
}

#[test]
fn load_reports_missing_file() {
    let e = Scenario::load("/nonexistent/x.toml").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.toml"));
}

#[test]
fn all_shipped_scenarios_parse() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            Scenario::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 4);
}

#[test]
fn coal_face_methane_demo_shape() {
    let sc = Scenario::load(file("coal-face-methane.toml")).unwrap();
    assert_eq!(sc.period, Some(s(60.0)));
    let ch4 = |t: f64| sc.value_at("ch4", s(t)).unwrap();
    assert!(close(ch4(0.0), 0.30));
    // first time above 1.5 %: within the first 25 s
    let samples: Vec<(f64, f64)> = (0..600)
        .map(|i| (i as f64 * 0.1, ch4(i as f64 * 0.1)))
        .collect();
    let above: Vec<f64> = samples
        .iter()
        .filter(|(_, v)| *v > 1.5)
        .map(|(t, _)| *t)
        .collect();
    let first = above.first().copied().unwrap();
    let last = above.last().copied().unwrap();
    assert!(first < 25.0, "first above 1.5 at {first}");
    let dur = last - first;
    assert!((8.0..=13.0).contains(&dur), "above 1.5 for {dur} s");
    // contiguous
    assert_eq!(above.len() as f64, ((dur / 0.1).round() + 1.0));
    // below 1.0 before 45 s, and stays below until the period ends
    let below_from = samples
        .iter()
        .rev()
        .take_while(|(_, v)| *v < 1.0)
        .last()
        .unwrap()
        .0;
    assert!(below_from < 45.0, "below 1.0 from {below_from}");
    assert!(close(sc.value_at("co", s(30.0)).unwrap(), 5.0));
    assert!(close(sc.value_at("o2", s(30.0)).unwrap(), 20.8));
    assert!(close(sc.value_at("temp", s(30.0)).unwrap(), 22.0));
    // the noise is small compared with the thresholds
    assert!(sc.signals["ch4"].noise <= 0.05);
}

#[test]
fn kj_powercut_order() {
    let sc = Scenario::load(file("kj-powercut.toml")).unwrap();
    let v = |n: &str, t: f64| sc.value_at(n, s(t)).unwrap();
    assert_eq!(v("zone1.cut", 9.9), 0.0);
    assert_eq!(v("zone1.cut", 10.0), 1.0);
    assert_eq!(v("zone1.feed", 10.5), 1.0);
    assert_eq!(v("zone1.feed", 11.0), 0.0);
    assert!(v("zone1.ch4", 9.0) > 1.5);
    let stuck = Scenario::load(file("kj-powercut-feed-stuck.toml")).unwrap();
    assert_eq!(stuck.value_at("zone1.cut", s(12.0)), Some(1.0));
    assert_eq!(stuck.value_at("zone1.feed", s(12.0)), Some(1.0));
}

#[test]
fn reservoir_storm_rises() {
    let sc = Scenario::load(file("reservoir-storm.toml")).unwrap();
    let mut prev_rain = -1.0;
    let mut prev_level = 0.0;
    for t in (0..=170).step_by(10) {
        let rain = sc.value_at("rain_total", s(t as f64)).unwrap();
        let level = sc.value_at("level", s(t as f64)).unwrap();
        assert!(rain >= prev_rain && level >= prev_level, "at {t}s");
        prev_rain = rain;
        prev_level = level;
    }
    assert!(sc.value_at("rain_total", s(120.0)).unwrap() >= 50.0);
    assert!(
        sc.value_at("level", s(170.0)).unwrap() > sc.value_at("level", s(0.0)).unwrap() + 1000.0
    );
}
