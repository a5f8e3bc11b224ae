//! `riskgate validate`: every shipped example is accepted; a bad config is
//! refused with every error, each naming the file, the field and the problem.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_riskgate")
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_config_is_valid() {
    let files = examples();
    assert!(
        files.iter().any(|f| f.ends_with("coal-mine.example.toml")),
        "{files:?}"
    );
    for f in files {
        let out = Command::new(bin())
            .args(["validate", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} should be valid:\n{}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
}

const BASE: &str = r#"
[site]
id = "s1"
kind = "coal_mine"
[gateway]
id = "gw1"
data_dir = "/tmp/x"
"#;

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("site.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

fn errors_of(text: &str) -> Vec<String> {
    let (_d, p) = write(text);
    match riskgate::config::load(&p) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn has(errors: &[String], path: &str, words: &str) -> bool {
    errors
        .iter()
        .any(|e| e.contains(&format!(": {path}: ")) && e.contains(words))
}

#[test]
fn unknown_field_and_missing_point_are_both_reported_with_exit_2() {
    let text = format!(
        r#"{BASE}
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
pol_interval = "1s"
  [[devices.points]]
  id = "ch4"
  register = "holding"
  address = 0
  type = "f32"

[[rules]]
id = "r1"
kind = "threshold"
point = "ch4.missing"
op = ">="
value = 1.5
level = 1
"#
    );
    let (_d, p) = write(&text);
    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    assert!(
        err.contains(&format!("{file}: devices[0].pol_interval: unknown field")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}: rules[0].point: no point `ch4.missing`")),
        "{err}"
    );
}

#[test]
fn impossible_values_and_references_are_all_listed() {
    let text = format!(
        r#"{BASE}
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
poll_interval = "-1s"
  [[devices.points]]
  id = "ch4"
  register = "holding"
  address = 0
  type = "f32"
  [[devices.points]]
  id = "inside"
  register = "holding"
  address = 1
  type = "u16"
  [[devices.points]]
  id = "ch4"
  register = "holding"
  address = 10
  type = "u16"
  byte_order = "CDAB"
  [[devices.points]]
  id = "edge"
  register = "input"
  address = 65535
  type = "u32"
  [[devices.points]]
  id = "weird"
  register = "holding"
  address = 20
  type = "float128"

[[devices]]
id = "gd1"
protocol = "modbus_rtu"
  [[devices.points]]
  id = "x"
  register = "coil"
  address = 0
  type = "f32"

[[rules]]
id = "r1"
kind = "threshold"
point = "ch4"
op = ">="
value = 1.5
recovery = 2.0
level = 5

[[rules]]
id = "r1"
kind = "interlock"
when = "ch4 && !nothing"
level = 2
"#
    );
    let e = errors_of(&text);
    assert!(
        has(&e, "devices[0].poll_interval", "not a duration"),
        "{e:#?}"
    );
    assert!(has(&e, "devices[0].points[1].address", "overlap"), "{e:#?}");
    assert!(
        has(&e, "devices[0].points[2].id", "duplicate point id"),
        "{e:#?}"
    );
    assert!(
        has(&e, "devices[0].points[2].byte_order", "does not fit"),
        "{e:#?}"
    );
    assert!(
        has(&e, "devices[0].points[3].address", "runs past 65535"),
        "{e:#?}"
    );
    assert!(
        has(
            &e,
            "devices[0].points[4].type",
            "unknown variant `float128`, expected one of"
        ),
        "{e:#?}"
    );
    assert!(has(&e, "devices[1].id", "duplicate device id"), "{e:#?}");
    assert!(
        has(&e, "devices[1].line", "required for protocol modbus_rtu"),
        "{e:#?}"
    );
    assert!(
        has(&e, "devices[1].points[0].type", "must be bool"),
        "{e:#?}"
    );
    assert!(has(&e, "rules[0].level", "5 is not a level"), "{e:#?}");
    assert!(has(&e, "rules[0].recovery", "could never clear"), "{e:#?}");
    assert!(has(&e, "rules[1].id", "duplicate rule id"), "{e:#?}");
    assert!(
        has(&e, "rules[1].when", "`&&` needs a bool but got a number"),
        "{e:#?}"
    );
    assert!(has(&e, "rules[1].when", "no point `nothing`"), "{e:#?}");
}

#[test]
fn uplink_without_tls_needs_explicit_plain_tcp() {
    let e = errors_of(&format!("{BASE}\n[uplink]\nhost = \"broker\"\n"));
    assert!(has(&e, "uplink.tls", "plain_tcp = true"), "{e:#?}");
    let ok = errors_of(&format!(
        "{BASE}\n[uplink]\nhost = \"broker\"\nplain_tcp = true\n"
    ));
    assert!(ok.is_empty(), "{ok:#?}");
}

#[test]
fn presets_expand_and_a_looser_override_is_warned() {
    let text = format!(
        r#"{BASE}
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
  [[devices.points]]
  id = "ch4.face"
  register = "holding"
  address = 0
  type = "f32"

[[presets]]
name = "coal-methane-face"
id_prefix = "f-"
bind = {{ ch4 = "ch4.face" }}

[[rules]]
id = "f-ch4-cut"
kind = "threshold"
point = "ch4.face"
op = ">="
value = 2.0
recovery = 1.0
level = 1
"#
    );
    let (_d, p) = write(&text);
    let cfg = riskgate::config::load(&p).expect("valid");
    let ids: Vec<&str> = cfg.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["f-ch4-alarm", "f-ch4-cut"],
        "the site rule replaces the preset rule of the same id"
    );
    assert_eq!(cfg.rules[1].value, Some(2.0));
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(
        cfg.warnings[0].contains("looser") && cfg.warnings[0].contains("coal-methane-face"),
        "{:?}",
        cfg.warnings
    );

    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning:"));
}

#[test]
fn a_longer_hold_on_a_preset_interlock_is_warned() {
    let text = format!(
        r#"{BASE}
[[devices]]
id = "d"
protocol = "modbus_tcp"
host = "h"
  [[devices.points]]
  id = "working"
  register = "coil"
  address = 0
  [[devices.points]]
  id = "cam"
  register = "coil"
  address = 1
  [[devices.points]]
  id = "blocked"
  register = "coil"
  address = 2
[[presets]]
name = "coal-no-video"
id_prefix = "f-"
bind = {{ working = "working", cam_online = "cam", cam_blocked = "blocked" }}
[[rules]]
id = "f-no-video"
kind = "interlock"
when = "working && !(cam && !blocked)"
hold = "5m"
level = 2
"#
    );
    let (_d, p) = write(&text);
    let cfg = riskgate::config::load(&p).expect("valid");
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(
        cfg.warnings[0].contains("hold 300s where the preset has 30s"),
        "{:?}",
        cfg.warnings
    );
    assert!(
        !cfg.warnings[0].contains("condition"),
        "same condition, other spacing: {:?}",
        cfg.warnings
    );
}

#[test]
fn a_preset_needs_its_bindings() {
    let e = errors_of(&format!(
        "{BASE}\n[[presets]]\nname = \"coal-methane-face\"\n[[presets]]\nname = \"no-such\"\n"
    ));
    assert!(
        has(&e, "presets[0].bind.ch4", "needs `ch4` bound"),
        "{e:#?}"
    );
    assert!(has(&e, "presets[1].name", "no preset `no-such`"), "{e:#?}");
}

#[test]
fn every_shipped_preset_is_valid_when_bound() {
    // Bind every placeholder to a point of the right type and check that
    // the expanded rules validate: a broken preset fails here, not on site.
    for (name, text) in riskgate::config::presets::PRESETS {
        let params: Vec<String> = text
            .lines()
            .find(|l| l.starts_with("params"))
            .map(|l| {
                toml::from_str::<toml::Table>(l).unwrap()["params"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap();
        let mut points = String::new();
        let mut binds = Vec::new();
        let mut members_rules = String::new();
        for (i, p) in params.iter().enumerate() {
            let value = match p.as_str() {
                "op" => "\">=\"".to_string(),
                "members" => {
                    members_rules = (0..4)
                        .map(|k| format!("[[rules]]\nid = \"m{k}\"\nkind = \"threshold\"\npoint = \"n0\"\nop = \">=\"\nvalue = {k}\nlevel = {}\n", 4 - k))
                        .collect();
                    "[\"m0\", \"m1\", \"m2\", \"m3\"]".to_string()
                }
                "blue" | "yellow" | "orange" | "red" | "cut_value" | "alarm_value"
                | "flood_limit" | "design_flood" | "rain_1h" | "rise_1h" | "deadband"
                | "main_limit" | "post_limit" | "normal_level" | "dead_level" | "prepare_1h"
                | "evacuate_1h" | "prepare_3h" | "evacuate_3h" | "prepare_6h" | "evacuate_6h"
                | "temp_high" | "diff_high" | "pressure_low" | "flow_low" | "dp_high"
                | "dp_low" | "airflow_low" => {
                    format!("{}", i + 1)
                }
                // A calendar's days: two periods that do not overlap.
                "main_from" => "\"06-01\"".to_string(),
                "main_to" => "\"08-15\"".to_string(),
                "post_from" => "\"08-16\"".to_string(),
                "post_to" => "\"09-30\"".to_string(),
                "input" => "\"cumulative\"".to_string(),
                // Outputs a preset's actions write: writable coils.
                "cut_cmd" | "shutoff_cmd" | "fan_cmd" | "valve_cmd" => {
                    points.push_str(&format!("  [[devices.points]]\n  id = \"b{i}\"\n  register = \"coil\"\n  address = {i}\n  writable = true\n"));
                    format!("\"b{i}\"")
                }
                "working" | "cam_online" | "cam_blocked" | "cut" | "feed" | "fan" | "power_on"
                | "shutoff_closed" | "drain_open" | "launder_cut" | "entry" | "fan_running"
                | "spark" | "extinguish" | "valve_closed" | "main_fan" | "casting" => {
                    points.push_str(&format!("  [[devices.points]]\n  id = \"b{i}\"\n  register = \"coil\"\n  address = {i}\n"));
                    format!("\"b{i}\"")
                }
                _ => {
                    points.push_str(&format!(
                        "  [[devices.points]]\n  id = \"n{i}\"\n  register = \"holding\"\n  address = {}\n  type = \"f32\"\n",
                        100 + 2 * i
                    ));
                    format!("\"n{i}\"")
                }
            };
            binds.push(format!("{p} = {value}"));
        }
        if !points.contains("\"n0\"") {
            points.push_str("  [[devices.points]]\n  id = \"n0\"\n  register = \"holding\"\n  address = 500\n  type = \"f32\"\n");
        }
        let text = format!(
            "{BASE}\n[[devices]]\nid = \"d\"\nprotocol = \"modbus_tcp\"\nhost = \"h\"\n{points}\n[[presets]]\nname = \"{name}\"\nbind = {{ {} }}\n{members_rules}",
            binds.join(", ")
        );
        let e = errors_of(&text);
        assert!(e.is_empty(), "preset {name}: {e:#?}\n{text}");
    }
}

#[test]
fn environment_overrides_scalar_fields() {
    let (_d, p) = write(&format!(
        "{BASE}\n[uplink]\nhost = \"broker\"\nplain_tcp = true\n"
    ));
    let run = |val: &str| {
        Command::new(bin())
            .args(["validate", "--config"])
            .arg(&p)
            .env("RISKGATE__UPLINK__PORT", val)
            .output()
            .unwrap()
    };
    let ok = run("8884");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = run("eighty");
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("uplink.port"), "{err}");
}

#[test]
fn a_profile_expands_its_register_map_and_explicit_points_replace_by_id() {
    let text = format!(
        r#"{BASE}
[[devices]]
id = "gd-1"
name = "T1"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "gas-detector"
point_ids = "{{key}}.t1"
  [[devices.points]]
  id = "ch4.t1"
  name = "own name"
  register = "input"
  address = 0
  type = "f32"
  [[devices.points]]
  id = "extra.t1"
  register = "holding"
  address = 40

[[devices]]
id = "gd-2"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "gas-detector"
point_ids = {{ co = "co.t2" }}

[[devices]]
id = "gd-3"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "gas-detector"

[[presets]]
name = "coal-methane-face"
id_prefix = "f-"
bind = {{ ch4 = "ch4.t1" }}
"#
    );
    let (_d, p) = write(&text);
    let cfg = riskgate::config::load(&p).unwrap_or_else(|e| panic!("{e:#?}"));
    let ids = |i: usize| -> Vec<String> {
        cfg.devices[i]
            .points()
            .iter()
            .map(|p| p.id.to_string())
            .collect()
    };
    assert_eq!(
        ids(0),
        [
            "co.t1",
            "o2.t1",
            "temp.t1",
            "fault.t1",
            "calibrating.t1",
            "low_battery.t1",
            "ch4_x100.t1",
            "lamp.t1",
            "ch4.t1",
            "extra.t1"
        ]
    );
    let (_, ch4) = cfg.point("ch4.t1").unwrap();
    assert_eq!(ch4.name, Some("own name"), "the explicit point replaced it");
    let (_, co) = cfg.point("co.t1").unwrap();
    assert_eq!(co.name, Some("T1 一氧化碳"), "device name + profile name");
    assert_eq!(co.unit, Some("ppm"));
    assert!(cfg.point("lamp.t1").unwrap().1.writable);
    assert_eq!(ids(1), ["co.t2"], "a key -> id map takes only its keys");
    assert!(
        ids(2).contains(&"gd-3.ch4".to_string()),
        "default {{device}}.{{key}}"
    );
    let riskgate::config::DeviceKind::ModbusTcp(t) = &cfg.devices[0].kind else {
        panic!("modbus tcp")
    };
    let fault = t.points.iter().find(|p| p.id == "fault.t1").unwrap();
    assert_eq!(
        (fault.register, fault.address, fault.bit),
        (riskgate::config::RegisterKind::Holding, 7, Some(0))
    );
}

#[test]
fn profile_errors_name_the_device_field() {
    let text = format!(
        r#"{BASE}
[[devices]]
id = "gd-1"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "gas-detektor"

[[devices]]
id = "gd-2"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "gas-detector"
point_ids = "{{key}}.t"

[[devices]]
id = "gd-3"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "gas-detector"
point_ids = {{ ch4 = "ch4.t", nox = "nox.t" }}

[[devices]]
id = "gd-4"
protocol = "mqtt"
broker = "127.0.0.1:1883"
topic = "t"
heartbeat = "5s"
profile = "gas-detector"

[[devices]]
id = "gd-5"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "kj-monitor"
point_ids = "kj"
"#
    );
    let e = errors_of(&text);
    assert!(
        has(
            &e,
            "devices[0].profile",
            "no profile `gas-detektor`; shipped: gas-detector"
        ),
        "{e:#?}"
    );
    assert!(
        has(
            &e,
            "devices[2].profile[ch4].id",
            "duplicate point id `ch4.t`"
        ),
        "{e:#?}"
    );
    assert!(
        has(&e, "devices[2].point_ids.nox", "has no point `nox`"),
        "{e:#?}"
    );
    assert!(
        has(
            &e,
            "devices[3].profile",
            "is for modbus_tcp or modbus_rtu, not mqtt"
        ),
        "{e:#?}"
    );
    assert!(
        has(&e, "devices[4].point_ids", "must contain {key}"),
        "{e:#?}"
    );
}

#[test]
fn every_shipped_profile_is_valid_on_its_protocols() {
    for (name, text) in riskgate::config::profiles::PROFILES {
        let mqtt = text.contains("protocols = [\"mqtt\"]");
        let device = if mqtt {
            "protocol = \"mqtt\"\nbroker = \"127.0.0.1:1883\"\ntopic = \"t\"\nheartbeat = \"5s\""
        } else {
            "protocol = \"modbus_tcp\"\nhost = \"127.0.0.1\""
        };
        let e = errors_of(&format!(
            "{BASE}\n[[devices]]\nid = \"d\"\n{device}\nprofile = \"{name}\"\n"
        ));
        assert!(e.is_empty(), "profile {name}: {e:#?}");
    }
}

/// Issue 10 items 7 and 11: unit 0 is the RTU broadcast (a write there hits
/// every slave and is never answered), and `silent_probe_every` is bounded.
#[test]
fn rtu_broadcast_unit_with_writable_points_and_probe_bounds_are_refused() {
    let site = |unit: u8, writable: bool, every: u32| {
        format!(
            "{BASE}\n[[serial_lines]]\nid = \"l1\"\npath = \"/dev/ttyS1\"\nsilent_probe_every = {every}\n\
             [[devices]]\nid = \"r1\"\nprotocol = \"modbus_rtu\"\nline = \"l1\"\nunit_id = {unit}\n\
             [[devices.points]]\nid = \"r1.valve\"\nregister = \"coil\"\naddress = 0\nwritable = {writable}\n"
        )
    };
    let e = errors_of(&site(0, true, 0));
    assert!(has(&e, "devices[0].unit_id", "broadcast"), "{e:#?}");
    assert!(
        has(&e, "serial_lines[0].silent_probe_every", "1-100"),
        "{e:#?}"
    );
    let ok = errors_of(&site(3, true, 5));
    assert!(ok.is_empty(), "{ok:#?}");
    let read_only = errors_of(&site(0, false, 1));
    assert!(
        !read_only.iter().any(|x| x.contains("unit_id")),
        "{read_only:#?}"
    );
}

const RAIN_DEVICE: &str = r#"
[[devices]]
id = "st1"
protocol = "modbus_tcp"
host = "127.0.0.1"
  [[devices.points]]
  id = "level"
  register = "holding"
  address = 0
  type = "f32"
  [[devices.points]]
  id = "rain"
  register = "holding"
  address = 2
  type = "f32"
  [[devices.points]]
  id = "door"
  register = "coil"
  address = 0
"#;

/// Issue 12 item 5: a schedule with bad days and overlapping periods is
/// refused with every problem at once, each `file: field.path: what`
/// (a period with a bad day is not compared for overlaps).
#[test]
fn a_schedule_with_bad_days_and_overlaps_is_refused_all_at_once() {
    let text = format!(
        r#"{BASE}{RAIN_DEVICE}
[[rules]]
id = "flood-limit"
kind = "threshold"
point = "level"
op = ">="
schedule = [
  {{ name = "主汛期", from = "06-01", to = "08-15", value = 104.5 }},
  {{ name = "后汛期", from = "08-10", to = "09-30", value = 105.5 }},
  {{ from = "6-1", to = "02-30", value = 1.0 }},
  {{ from = "12-01", to = "06-01", value = 2.0 }},
]
otherwise = 106.0
recovery = 104.0
level = 2
[[rules]]
id = "no-otherwise"
kind = "threshold"
point = "level"
op = ">="
schedule = [{{ from = "06-01", to = "08-15", value = 104.5 }}]
level = 2
[[rules]]
id = "both"
kind = "threshold"
point = "level"
op = ">="
value = 1.0
schedule = [{{ from = "06-01", to = "08-15", value = 104.5 }}]
otherwise = 2.0
level = 2
[[rules]]
id = "on-a-rate"
kind = "rate"
point = "level"
op = ">="
value = 1.0
window = "1h"
schedule = [{{ from = "06-01", to = "08-15", value = 104.5 }}]
level = 2
"#
    );
    let e = errors_of(&text);
    for (path, words) in [
        (
            "rules[0].schedule[2].from",
            "`6-1` is not a day written MM-DD",
        ),
        (
            "rules[0].schedule[2].to",
            "`02-30` is not a day of the year",
        ),
        (
            "rules[0].schedule[1]",
            "08-10..09-30 overlaps schedule[0] (主汛期)",
        ),
        (
            "rules[0].schedule[3]",
            "12-01..06-01 overlaps schedule[0] (主汛期)",
        ),
        ("rules[0].recovery", "a schedule takes `deadband`"),
        ("rules[1].otherwise", "required with a schedule"),
        ("rules[2].value", "give value or schedule, not both"),
        (
            "rules[3].schedule",
            "only a threshold rule takes a schedule",
        ),
    ] {
        assert!(has(&e, path, words), "{path}: {words}\n{e:#?}");
    }
    // each line names the file
    assert!(e.iter().all(|l| l.contains("site.toml: rules[")), "{e:#?}");
}

/// The overlap check is by day, so it holds for periods over the new year.
#[test]
fn schedules_that_meet_but_do_not_overlap_are_valid() {
    let text = format!(
        r#"{BASE}{RAIN_DEVICE}
[[rules]]
id = "flood-limit"
kind = "threshold"
point = "level"
op = ">="
schedule = [
  {{ from = "06-01", to = "08-15", value = 104.5 }},
  {{ from = "08-16", to = "09-30", value = 105.5 }},
  {{ from = "12-01", to = "02-29", value = 103.0 }},
]
otherwise = 106.0
deadband = 0.05
level = 2
"#
    );
    assert_eq!(errors_of(&text), Vec::<String>::new());
}

#[test]
fn accumulation_rules_are_checked() {
    let text = format!(
        r#"{BASE}{RAIN_DEVICE}
[[rules]]
id = "no-input"
kind = "accumulation"
point = "rain"
window = "1h"
op = ">="
value = 30
level = 3
[[rules]]
id = "odd-window"
kind = "accumulation"
point = "rain"
input = "increment"
window = "7m"
op = ">="
value = 30
level = 3
[[rules]]
id = "both-spans"
kind = "accumulation"
point = "rain"
input = "cumulative"
window = "1h"
day_start = "08:00"
op = ">="
value = 30
level = 3
[[rules]]
id = "bad-day"
kind = "accumulation"
point = "rain"
input = "cumulative"
day_start = "8 o'clock"
op = ">="
value = 30
level = 3
[[rules]]
id = "bool-point"
kind = "accumulation"
point = "door"
input = "increment"
window = "2d"
op = ">="
value = 30
level = 3
[[rules]]
id = "rate-of-amounts"
kind = "rate"
point = "rain"
input = "increment"
window = "1h"
op = ">="
value = 30
level = 3
"#
    );
    let e = errors_of(&text);
    for (path, words) in [
        ("rules[0].input", "required for an accumulation rule"),
        ("rules[1].window", "a whole number of 5 minutes"),
        ("rules[2].day_start", "not both"),
        ("rules[3].day_start", "not a time of day HH:MM"),
        ("rules[4].point", "not numeric"),
        ("rules[4].window", "from 5m to 24h"),
        (
            "rules[5].input",
            "a total of amounts is an accumulation rule",
        ),
    ] {
        assert!(has(&e, path, words), "{path}: {words}\n{e:#?}");
    }
}
