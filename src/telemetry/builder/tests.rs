//! The builder on a scripted clock: deadbands (absolute and %), the
//! minimum interval of change reports, snapshots split into parts, and
//! statistics with bad readings.

use std::sync::Arc;

use super::*;
use crate::model::{BadReason, Quality};
use crate::telemetry::encode;

fn id() -> Identity {
    Identity {
        gateway_id: "gw-t".into(),
        site_id: "site-t".into(),
        site_kind: "coal_mine",
        region_code: Some("140581".into()),
        prefix: "riskgate/v1".into(),
        tz: chrono_tz::Asia::Shanghai,
        epoch: None,
    }
}

fn t0() -> DateTime<Utc> {
    // On a 5-minute boundary.
    DateTime::from_timestamp(1_800_000_000 / 300 * 300, 0).unwrap()
}

fn at(ms: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::milliseconds(ms)
}

fn reading(p: &str, v: f64, ms: i64) -> Reading {
    Reading {
        point: Arc::from(p),
        device: Arc::from("d"),
        value: Some(Value::Num(v)),
        quality: Quality::Good,
        at: at(ms),
    }
}

fn builder(cfg: Telemetry, points: &[&str]) -> Builder {
    let pts = points
        .iter()
        .map(|p| (p.to_string(), Duration::from_secs(10)))
        .collect();
    Builder::new(cfg, id(), pts, t0())
}

fn ids(m: &Message) -> Vec<&str> {
    m.items.iter().map(|e| e["id"].as_str().unwrap()).collect()
}

fn cfg() -> Telemetry {
    Telemetry {
        interval: Duration::from_secs(30),
        min_interval: Duration::from_secs(5),
        stats: None,
        ..Telemetry::default()
    }
}

#[test]
fn deadband_absolute_and_percent() {
    let c = Telemetry {
        deadband: Deadband::Pct(10.0),
        deadbands: vec![("ch4.*".into(), Deadband::Abs(0.1))],
        ..cfg()
    };
    let mut b = builder(c, &["ch4.a", "co.a"]);
    b.on_readings(&[reading("ch4.a", 0.50, 0), reading("co.a", 20.0, 0)]);
    // First sight of a point is a change.
    let m = b.tick(at(100));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, Kind::Change);
    assert_eq!(ids(&m[0]), ["ch4.a", "co.a"]);

    // ch4 +0.08 (inside 0.1), co +1.9 (inside 10 % of 20): nothing.
    b.on_readings(&[reading("ch4.a", 0.58, 5000), reading("co.a", 21.9, 5000)]);
    assert!(b.tick(at(5100)).is_empty());
    // ch4 +0.11 from the last sent 0.50 (not from 0.58), co +2.1: both.
    b.on_readings(&[reading("ch4.a", 0.61, 6000), reading("co.a", 22.1, 6000)]);
    let m = b.tick(at(6100));
    assert_eq!(ids(&m[0]), ["ch4.a", "co.a"]);
    assert_eq!(m[0].items[0]["v"], 0.61);
    assert_eq!(m[0].items[0]["q"], "good");
    assert_eq!(m[0].items[0]["t"], "2027-01-15T16:00:06.000+08:00");
}

#[test]
fn changes_at_most_every_min_interval_and_quality_always_counts() {
    let mut b = builder(cfg(), &["ch4.a"]);
    b.on_readings(&[reading("ch4.a", 0.5, 0)]);
    assert_eq!(b.tick(at(0)).len(), 1);
    b.on_readings(&[reading("ch4.a", 0.9, 1000)]);
    // 1 s, 4.9 s after the last report: too soon.
    assert!(b.tick(at(1000)).is_empty());
    assert!(b.tick(at(4900)).is_empty());
    let m = b.tick(at(5000));
    assert_eq!(m[0].items[0]["v"], 0.9);
    // A bad reading is a change whatever the deadband, with no value.
    b.on_readings(&[Reading {
        quality: Quality::Bad(BadReason::Timeout),
        value: None,
        ..reading("ch4.a", 0.0, 10_000)
    }]);
    let m = b.tick(at(10_000));
    assert_eq!(m[0].items[0]["q"], "timeout");
    assert_eq!(m[0].items[0]["v"], J::Null);
    // An alarm level is a change too.
    b.set_alarms([("ch4.a", 2), ("ch4.a", 1), ("other", 1)]);
    let m = b.tick(at(15_000));
    assert_eq!(m[0].items[0]["alarm"], 1);
    // No reading for longer than stale_after (10 s) after a good one: stale.
    b.on_readings(&[reading("ch4.a", 0.9, 16_000)]);
    b.tick(at(21_000));
    let m = b.tick(at(26_001));
    assert_eq!(m[0].items[0]["q"], "stale");
}

#[test]
fn snapshots_every_interval_with_every_point_split_into_parts() {
    let points: Vec<String> = (0..300).map(|i| format!("p.{i:04}")).collect();
    let refs: Vec<&str> = points.iter().map(String::as_str).collect();
    // Fresh for an hour: no point turns stale in this test.
    let pts = refs
        .iter()
        .map(|p| (p.to_string(), Duration::from_secs(3600)))
        .collect();
    let mut b = Builder::new(cfg(), id(), pts, t0()).with_max_bytes(8 * 1024);
    b.on_readings(&refs.iter().map(|p| reading(p, 1.5, 0)).collect::<Vec<_>>());
    // The first-sight change report, then nothing until the interval.
    assert_eq!(b.tick(at(0))[0].kind, Kind::Change);
    assert!(b.tick(at(29_999)).is_empty());
    let m = b.tick(at(30_000));
    assert!(m.len() > 1, "300 points do not fit in 8 KiB");
    let n = m.len();
    let mut all = Vec::new();
    for (i, part) in m.iter().enumerate() {
        assert_eq!(part.kind, Kind::Snapshot);
        assert_eq!(part.ts, at(30_000));
        assert_eq!(part.part, Some((i + 1, n)));
        let body = encode(&id(), 7, part);
        assert!(body.len() <= 8 * 1024, "part {i}: {} bytes", body.len());
        all.extend(ids(part).into_iter().map(str::to_string));
    }
    assert_eq!(all, points, "every point once, in order");
    // The next one interval on, on the cadence even if the tick is late.
    assert!(b.tick(at(59_000)).is_empty());
    assert_eq!(b.tick(at(60_150))[0].ts, at(60_150));
    assert!(b.tick(at(89_999)).is_empty());
    assert_eq!(b.tick(at(90_000))[0].kind, Kind::Snapshot);
}

#[test]
fn statistics_per_period_with_bad_counts() {
    let c = Telemetry {
        stats: Some(Duration::from_secs(300)),
        min_interval: Duration::from_secs(30),
        ..cfg()
    };
    let mut b = builder(c, &["ch4.a", "co.a"]);
    b.on_readings(&[reading("ch4.a", 0.5, 0), reading("ch4.a", 1.5, 1000)]);
    b.on_readings(&[Reading {
        quality: Quality::Bad(BadReason::Transport("reset".into())),
        value: None,
        ..reading("ch4.a", 0.0, 2000)
    }]);
    b.on_readings(&[Reading {
        quality: Quality::Bad(BadReason::Timeout),
        value: None,
        ..reading("co.a", 0.0, 2000)
    }]);
    // A reading of the next period closes this one.
    b.on_readings(&[reading("ch4.a", 9.0, 300_000)]);
    let m = b.tick(at(300_001));
    let stats: Vec<&Message> = m.iter().filter(|m| m.kind == Kind::Stats5m).collect();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].ts, at(300_000));
    let s = &stats[0].items;
    assert_eq!(s[0]["id"], "ch4.a");
    assert_eq!(s[0]["start"], "2027-01-15T16:00:00.000+08:00");
    assert_eq!(
        (&s[0]["min"], &s[0]["max"], &s[0]["mean"]),
        (&J::from(0.5), &J::from(1.5), &J::from(1.0))
    );
    assert_eq!((&s[0]["count"], &s[0]["bad"]), (&J::from(3), &J::from(1)));
    // Only bad readings: no min, max or mean.
    assert_eq!(s[1]["min"], J::Null);
    assert_eq!((&s[1]["count"], &s[1]["bad"]), (&J::from(1), &J::from(1)));
    // The 9.0 counts in the new period; a tick past it closes it.
    let m = b.tick(at(600_000));
    let s = &m.iter().find(|m| m.kind == Kind::Stats5m).unwrap().items;
    assert_eq!((&s[0]["max"], &s[0]["count"]), (&J::from(9.0), &J::from(1)));
}

#[test]
fn include_and_exclude_choose_the_points() {
    let c = Telemetry {
        include: vec!["ch4.*".into()],
        exclude: vec!["*.b".into()],
        ..cfg()
    };
    let b = builder(c, &["ch4.a", "ch4.b", "co.a"]);
    assert_eq!(b.len(), 1);
}

#[test]
fn float_register_values_are_written_short() {
    assert_eq!(number(0.3f32 as f64).to_string(), "0.3");
    assert_eq!(number(0.1).to_string(), "0.1");
    assert_eq!(number(21.5).to_string(), "21.5");
}

/// A point inside a calibration window is sent as `calibrating` with its
/// value while its reading is good and fresh; a bad or stale one keeps its
/// own quality; over range and device faults come as the readings carry
/// them; every message is valid against the contract's schema.
#[test]
fn calibrating_and_the_other_quality_states_are_sent_and_valid() {
    let schema: J = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs/contract/telemetry.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let mut tseq = 0;
    let mut sent = |msgs: Vec<Message>| -> Vec<J> {
        msgs.iter()
            .flat_map(|m| {
                tseq += 1;
                let body: J = serde_json::from_str(&encode(&id(), tseq, m)).unwrap();
                let errors: Vec<String> = validator
                    .iter_errors(&body)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{errors:?}\n{body:#}");
                m.items.clone()
            })
            .collect()
    };
    let q = |items: &[J], p: &str| items.iter().find(|e| e["id"] == p).map(|e| e["q"].clone());
    let mut b = builder(cfg(), &["ch4.a", "co.a", "o2.a"]);
    b.on_readings(&[
        reading("ch4.a", 0.3, 0),
        reading("co.a", 5.0, 0),
        reading("o2.a", 20.8, 0),
    ]);
    sent(b.tick(at(0)));

    b.set_calibrating(["ch4.a", "not.a.point"]);
    b.on_readings(&[
        reading("ch4.a", 2.0, 5000),
        Reading {
            quality: Quality::Bad(BadReason::OverRange),
            value: None,
            ..reading("co.a", 0.0, 5000)
        },
        Reading {
            quality: Quality::Bad(BadReason::DeviceFault),
            value: None,
            ..reading("o2.a", 0.0, 5000)
        },
    ]);
    let items = sent(b.tick(at(5000)));
    assert_eq!(q(&items, "ch4.a").unwrap(), "calibrating");
    assert_eq!(items.iter().find(|e| e["id"] == "ch4.a").unwrap()["v"], 2.0);
    assert_eq!(q(&items, "co.a").unwrap(), "over_range");
    assert_eq!(q(&items, "o2.a").unwrap(), "device_fault");

    // Stale inside the window: stale (a window excuses no dead sensor).
    let items = sent(b.tick(at(15_001)));
    assert_eq!(q(&items, "ch4.a").unwrap(), "stale");
    // Fresh again, still inside: calibrating; the window closed: good.
    b.on_readings(&[reading("ch4.a", 0.3, 16_000)]);
    let items = sent(b.tick(at(21_000)));
    assert_eq!(q(&items, "ch4.a").unwrap(), "calibrating");
    b.set_calibrating([]);
    b.on_readings(&[reading("ch4.a", 0.3, 22_000)]);
    let items = sent(b.tick(at(26_000)));
    assert_eq!(q(&items, "ch4.a").unwrap(), "good");
}
