//! The demo's scenarios: what the simulated devices do over time.

/// The 1301 face's methane: normal, a rise through the alarm value (1.0 %)
/// to above the power-cut value (1.5 %), and back below the recovery value,
/// every 60 s.
pub const FACE_SCENARIO: &str = r#"
period = "60s"
[signals.ch4]
initial = 0.30
noise = 0.01
steps = [
  { at = "8s", ramp_to = 1.80, over = "8s" },
  { at = "28s", ramp_to = 0.40, over = "4s" },
]
[signals.co]
initial = 6.0
noise = 0.5
[signals.o2]
initial = 20.8
noise = 0.02
[signals.temp]
initial = 22.5
"#;

/// The return airway stays normal.
pub const RETURN_SCENARIO: &str = r#"
[signals.ch4]
initial = 0.42
noise = 0.01
[signals.co]
initial = 4.0
[signals.o2]
initial = 20.7
[signals.temp]
initial = 23.0
"#;

/// The certified system cuts zone 1 when the face passes 1.5 % (about 14 s
/// into the cycle) and restores it after recovery; its feed sensor follows
/// a moment later, as real 馈电 sensors do.
pub const KJ_SCENARIO: &str = r#"
period = "60s"
[signals."zone1.cut"]
initial = 0
steps = [ { at = "14500ms", value = 1 }, { at = "31s", value = 0 } ]
[signals."zone1.feed"]
initial = 1
steps = [ { at = "15s", value = 0 }, { at = "31500ms", value = 1 } ]
[signals."zone1.fan_running"]
initial = 1
"#;

/// The 1301 face's camera: online, then offline from 40 s to 100 s of every
/// 120 s, so that the "无视频监控不作业" interlock (30 s hold) raises at about
/// 70 s and clears at about 100 s.
pub const VIDEO_SCENARIO: &str = r#"
period = "120s"
[signals."cam1.online"]
initial = 1
steps = [ { at = "40s", value = 0 }, { at = "100s", value = 1 } ]
"#;
