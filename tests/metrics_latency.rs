//! The latency histograms of `/metrics` (issue 11, observability): a poll per
//! Modbus device, the alarm commit, and the publish to each sink up to its
//! acknowledgement, recorded by a gateway running against a firmware-sim gas
//! detector, a real Mosquitto and a real VictoriaMetrics.
//!
//! The figures themselves are not judged here (timings belong to the
//! benchmarks); what is checked is that each histogram is fed by the event it
//! names and is well formed: cumulative buckets, `+Inf` equal to the count,
//! and a sum no larger than the count times the largest finite bucket that
//! holds them all.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Mosquitto, STEADY, Victoria, assert_schema_valid, subscribe, wait_for_async};
use firmware_sim::{Scenario, devices};
use riskgate::demo::site::{GasChannel, GasDetector, GasPoint, Site};

const LIMIT: Duration = Duration::from_secs(20);

/// One histogram series: bucket bound → cumulative count, plus sum and count.
#[derive(Debug, Default)]
struct Histogram {
    buckets: BTreeMap<String, u64>,
    sum: f64,
    count: u64,
}

/// The series of histogram `name` whose labels are exactly `labels`
/// (as written in the exposition, e.g. `device="gd-1"`; empty for none).
fn histogram(text: &str, name: &str, labels: &str) -> Option<Histogram> {
    let mut h = Histogram::default();
    let mut found = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, lbls) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric == format!("{name}_bucket") {
            let (le, rest): (Vec<&str>, Vec<&str>) =
                lbls.split(',').partition(|l| l.starts_with("le="));
            if rest.join(",") != labels {
                continue;
            }
            let bound = le[0].trim_start_matches("le=").trim_matches('"');
            h.buckets
                .insert(bound.to_string(), value.parse().expect("bucket count"));
            found = true;
        } else if lbls == labels && metric == format!("{name}_sum") {
            h.sum = value.parse().expect("sum");
        } else if lbls == labels && metric == format!("{name}_count") {
            h.count = value.parse().expect("count");
        }
    }
    found.then_some(h)
}

/// Checks the shape of a histogram series and returns its count.
fn well_formed(name: &str, h: &Histogram) -> u64 {
    let mut finite: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .filter(|(b, _)| b.as_str() != "+Inf")
        .map(|(b, n)| (b.parse::<f64>().expect("bucket bound"), *n))
        .collect();
    finite.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        finite.windows(2).all(|w| w[0].1 <= w[1].1),
        "{name}: buckets are cumulative: {h:?}"
    );
    assert_eq!(
        h.buckets.get("+Inf"),
        Some(&h.count),
        "{name}: +Inf is the count"
    );
    if let Some((bound, _)) = finite.iter().find(|(_, n)| *n == h.count) {
        assert!(
            h.sum <= bound * h.count as f64 + 1e-9,
            "{name}: the sum fits under its buckets: {h:?}"
        );
    }
    h.count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_commit_and_publish_latencies_are_recorded() {
    let broker = Mosquitto::start();
    let vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let (slave, dev) = devices::gas_detector_tcp(
        "127.0.0.1:0".parse().unwrap(),
        Scenario::from_toml_str(STEADY).unwrap(),
    )
    .await
    .unwrap();
    let text = Site::new("lat-01", "coal_mine", "gw-lat-01", &dir.path().join("data"))
        .site_field("region_code", "140581")
        .raw("[http]\nlisten = \"127.0.0.1:0\"\n[store]\ncommit_interval = \"100ms\"")
        .plain_uplink("127.0.0.1", broker.port, "status_interval = \"2s\"")
        .raw(&format!(
            "[influxdb]\nurl = \"{}\"\norg = \"lat\"\nbucket = \"lat\"\nflush_interval = \"200ms\"",
            vm.url()
        ))
        .device(
            &GasDetector::new("gd-lat", slave.local_addr().port())
                .poll_interval("100ms")
                .timeout("300ms")
                .point(GasPoint::new(GasChannel::Ch4, "ch4.lat").unit("%CH4")),
        )
        .raw("[[presets]]\nname = \"coal-methane-face\"\nid_prefix = \"lat-\"\nbind = { ch4 = \"ch4.lat\" }")
        .toml();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = riskgate::config::load_str(&text, &path).expect("config");
    let mut sub = subscribe(broker.port, "riskgate/v1/lat-01/alarm", "lat-sub").await;
    let running = riskgate::runtime::start(cfg).await.expect("gateway starts");
    let api = format!("http://{}", running.http_addr.expect("http enabled"));

    // An alarm so the commit and the uplink publish have something to time.
    dev.set_signal("ch4", 1.62);
    let mut seen = Vec::new();
    let raised = sub
        .wait("the cut raised", LIMIT, &mut seen, |_, v| {
            v["rule_id"] == "lat-ch4-cut" && v["state"] == "raised"
        })
        .await;
    assert_schema_valid("alarm-event.schema.json", &raised);

    let wanted = [
        ("riskgate_poll_seconds", r#"device="gd-lat""#),
        ("riskgate_alarm_commit_seconds", ""),
        ("riskgate_publish_seconds", r#"sink="uplink""#),
        ("riskgate_publish_seconds", r#"sink="influxdb""#),
    ];
    let text = wait_for_async("every latency histogram fed", LIMIT, || {
        let url = format!("{api}/metrics");
        async move {
            let text = reqwest::get(url).await.ok()?.text().await.ok()?;
            wanted
                .iter()
                .all(|(n, l)| histogram(&text, n, l).is_some_and(|h| h.count > 0))
                .then_some(text)
        }
    })
    .await;
    for (name, labels) in wanted {
        let h = histogram(&text, name, labels).unwrap();
        let n = well_formed(&format!("{name}{{{labels}}}"), &h);
        assert!(n > 0, "{name}{{{labels}}}: {h:?}");
    }
    // Polls are timed per device and per read: at 100 ms for a few seconds
    // there are several, and no more than the polls counted (plus the one
    // timed but not yet counted when the page was read).
    let polls = histogram(&text, "riskgate_poll_seconds", r#"device="gd-lat""#)
        .unwrap()
        .count;
    let counted: u64 = text
        .lines()
        .filter(|l| l.starts_with(r#"riskgate_polls_total{device="gd-lat""#))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert!(
        polls >= 2 && polls <= counted + 1,
        "timed {polls} polls, counted {counted}"
    );
    running.stop().await;
    drop(slave);
}
