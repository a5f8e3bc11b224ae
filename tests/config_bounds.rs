//! Input that cannot hurt (issue 10 items 11 and 12): validation bounds the
//! settings that cost memory, time or stack at run time, refuses preset
//! bindings that could rewrite the preset's text, and the loader answers
//! any TOML at all with a config or a list of errors, never a panic.

use std::path::Path;

use proptest::prelude::*;

const BASE: &str = r#"
[site]
id = "s1"
kind = "coal_mine"
[gateway]
id = "gw1"
data_dir = "/tmp/x"
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
  [[devices.points]]
  id = "ch4"
  register = "holding"
  address = 0
  type = "f32"
  [[devices.points]]
  id = "lamp"
  register = "coil"
  address = 0
  writable = true
  [[devices.points]]
  id = "face_1301.working"
  register = "coil"
  address = 1
  [[devices.points]]
  id = "video_1301.online"
  register = "coil"
  address = 2
  [[devices.points]]
  id = "video_1301.blocked"
  register = "coil"
  address = 3
"#;

fn errors_of(text: &str) -> Vec<String> {
    match riskgate::config::load_str(text, Path::new("site.toml")) {
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
fn run_time_costs_are_bounded_and_all_reported_at_once() {
    let deep = format!("{}ch4 > 1{}", "(".repeat(40), ")".repeat(40));
    let long = vec!["ch4 > 1"; 600].join(" && ");
    let text = format!(
        r#"{BASE}
[[rules]]
id = "rise"
kind = "rate"
point = "ch4"
op = ">="
value = 0.5
window = "30d"
level = 3
[[rules]]
id = "cut"
kind = "threshold"
point = "ch4"
op = ">="
value = 1.5
level = 1
actions = [{{ write = "lamp", value = 1, confirm_within = "10m" }}]
[[rules]]
id = "deep"
kind = "interlock"
when = "{deep}"
level = 2
[[rules]]
id = "long"
kind = "interlock"
when = "{long}"
level = 2
[[presets]]
name = "coal-no-video"
id_prefix = "1301-"
bind = {{ working = "face_1301.working\"\nlevel = 4\nx = \"", cam_online = "video_1301.online", cam_blocked = "video_1301.blocked" }}
"#
    );
    let e = errors_of(&text);
    assert!(has(&e, "rules[0].window", "at most 1day"), "{e:#?}");
    assert!(
        has(&e, "rules[1].actions[0].confirm_within", "at most 1m"),
        "{e:#?}"
    );
    assert!(has(&e, "rules[2].when", "nested deeper than 32"), "{e:#?}");
    assert!(has(&e, "rules[3].when", "longer than 1024"), "{e:#?}");
    assert!(has(&e, "presets[0].bind.working", "a binding is"), "{e:#?}");
}

#[test]
fn the_bounds_leave_ordinary_settings_alone() {
    let text = format!(
        r#"{BASE}
[[rules]]
id = "rise"
kind = "rate"
point = "ch4"
op = ">="
value = 0.5
window = "1day"
level = 3
[[rules]]
id = "cut"
kind = "threshold"
point = "ch4"
op = ">="
value = 1.5
level = 1
actions = [{{ write = "lamp", value = 1, confirm_within = "60s" }}]
[[rules]]
id = "nested"
kind = "interlock"
when = "{}ch4 > 1{}"
level = 2
[[presets]]
name = "coal-no-video"
id_prefix = "1301-"
bind = {{ working = "face_1301.working", cam_online = "video_1301.online", cam_blocked = "video_1301.blocked" }}
"#,
        "(".repeat(30),
        ")".repeat(30)
    );
    assert_eq!(errors_of(&text), Vec::<String>::new());
}

/// TOML-ish text: fragments of real config keys and values, stitched at
/// random, so the loader sees both valid structure and nonsense.
fn toml_ish() -> impl Strategy<Value = String> {
    let frag = prop_oneof![
        Just("[site]\n".to_string()),
        Just("[gateway]\n".to_string()),
        Just("[[devices]]\n".to_string()),
        Just("[[devices.points]]\n".to_string()),
        Just("[[rules]]\n".to_string()),
        Just("[[presets]]\n".to_string()),
        Just("[influxdb]\n".to_string()),
        Just("[uplink]\n".to_string()),
        Just("[store]\n".to_string()),
        "(id|kind|protocol|host|port|register|address|type|op|value|when|window|level|\
          on_delay|stale_after|unit_id|scale|order|path|topic|name|bind|members|stages|\
          confirm_within|actions|decimals|recovery|deadband|hold|latching) = "
            .prop_map(|s| s),
        "\"[a-z0-9_.()!&|<>= -]{0,12}\"\n",
        "-?[0-9]{1,20}(\\.[0-9]{0,4})?\n",
        Just("true\n".to_string()),
        Just("\"1000000y\"\n".to_string()),
        Just("[{ write = \"x\", value = 1 }]\n".to_string()),
        Just("{ ch4 = \"ch4\" }\n".to_string()),
        any::<String>(),
    ];
    proptest::collection::vec(frag, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the file says, loading it returns (no panic, no abort).
    #[test]
    fn the_loader_never_panics(text in toml_ish()) {
        let _ = riskgate::config::load_str(&text, Path::new("fuzz.toml"));
    }

    /// Any text after a valid head, too: the checks of every section run.
    #[test]
    fn the_loader_never_panics_after_a_valid_head(tail in toml_ish()) {
        let _ = riskgate::config::load_str(&format!("{BASE}\n{tail}"), Path::new("fuzz.toml"));
    }
}
