//! A bad `protocol = "sl651"` device is refused with every error at once,
//! each `FILE: field.path: what is wrong` (issue 12 item 2).

use std::process::Command;

#[test]
fn every_sl651_error_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
[site]
id = "s"
kind = "reservoir"
[gateway]
id = "g"
data_dir = "/tmp/unused"
[[devices]]
id = "st"
protocol = "sl651"
listen = "http://0.0.0.0:80"
station = "12345"
password = "xyz"
host = "10.0.0.1"
points = [
  { id = "a", element = "QQ" },
  { id = "b", element = "ZT" },
  { id = "c", element = "39", decimals = 2 },
  { id = "d", element = "ZT", status = "lid_open" },
  { id = "e", element = "Z", status = "door_open" },
]
[[devices]]
id = "ok"
protocol = "sl651"
listen = "udp://127.0.0.1:5002"
station = "0000001001"
password = "1234"
report_interval = "1h"
points = [ { id = "door", element = "45", status = "door_open" }, { id = "lvl", element = "ZU" } ]
[[rules]]
id = "r"
kind = "threshold"
point = "lvl"
op = ">"
value = 153.0
level = 2
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args(["validate", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let f = file.display().to_string();
    for (path, words) in [
        ("devices[0].listen", "scheme `http`"),
        ("devices[0].station", "not 10 hex digits"),
        ("devices[0].password", "not 4 hex digits"),
        ("devices[0].report_interval", "required for protocol sl651"),
        ("devices[0].host", "not a field of protocol sl651"),
        ("devices[0].points[0].element", "`QQ` is not an element"),
        ("devices[0].points[1].status", "names a status"),
        ("devices[0].points[2].decimals", "definition byte"),
        (
            "devices[0].points[3].status",
            "`lid_open` is not a ZT status",
        ),
        ("devices[0].points[4].status", "only for element ZT"),
    ] {
        let line = format!("{f}: {path}: ");
        assert!(
            err.lines().any(|l| l.contains(&line) && l.contains(words)),
            "missing `{line}… {words}` in:\n{err}"
        );
    }
    assert!(
        !err.contains("devices[1]"),
        "the good station has no error:\n{err}"
    );
}
