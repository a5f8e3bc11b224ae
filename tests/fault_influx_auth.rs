//! Faults of the InfluxDB sink that VictoriaMetrics cannot play, against a
//! stand-in answering as InfluxDB 2.x does (`common::influx`): it checks
//! the token header, the org and the bucket.
//!
//! - A token refused (401) for 10 s, then accepted: nothing is set aside,
//!   every reading arrives, the `influx.auth` fault alarm is raised and
//!   cleared, and the token never appears in the logs (the real binary).
//! - A batch with one bad line: only that line is set aside.
//! - 413: the batch is split, everything arrives.
//! - 5xx, 429 and a server that never answers: retried, everything arrives.
//! - A missing bucket (404): retried, `influx.bucket` reported, then cleared.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Answer, InfluxStandIn, Riskgate, SiteCfg, wait_for_async};
use riskgate::queue::{QueueId, Store};
use riskgate::rules::health::GatewayFault;
use riskgate::sink::influx::InfluxSink;

const TOKEN: &str = "tok-5f1e9c-never-in-a-log";

/// Waits (without blocking a runtime thread) until `f` gives a value.
async fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    wait_for_async(what, limit, || std::future::ready(f())).await
}

/// (point tag, timestamp in ms) of accepted lines.
fn points_and_ms(lines: &[String]) -> BTreeSet<(String, i64)> {
    lines
        .iter()
        .map(|l| {
            let (key, ts) = common::influx::parse(l).expect("accepted lines parse");
            let point = key
                .split(',')
                .find_map(|t| t.strip_prefix("point="))
                .unwrap()
                .to_string();
            (point, ts / 1_000_000)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refused_for_10s_then_accepted_every_reading_arrives_and_the_alarm_clears() {
    let t0 = Instant::now();
    let standin = InfluxStandIn::start(TOKEN, "fault", "fault").await;
    standin.with(|s| s.refuse_for = Some(Duration::from_secs(10)));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let devs = common::gas_detectors(2).await;
    let mut site = SiteCfg::new(
        "fault-influx-auth",
        &data,
        devs.iter().map(|d| d.0.local_addr().port()).collect(),
    );
    site.influx_url = Some(standin.url.clone());
    site.influx = "token_env = \"RG_TEST_INFLUX_TOKEN\"".into();
    let points = site.points();
    let cfg = site.write(dir.path());
    let log = dir.path().join("riskgate.log");
    // Debug logs: the token must not be in them either.
    let mut gw = Riskgate::spawn(
        &cfg,
        &log,
        &[("RG_TEST_INFLUX_TOKEN", TOKEN), ("RUST_LOG", "debug")],
    );

    until(
        "the stand-in refuses the token",
        Duration::from_secs(20),
        || standin.answers().contains(&401).then_some(()),
    )
    .await;
    // Accepted again: wait for readings stamped well after the refusals.
    let back = until("writes accepted again", Duration::from_secs(60), || {
        let refused_until = standin.with(|s| s.last_refusal)?;
        let ok = standin.answers().iter().rev().take(3).all(|a| *a == 204)
            && standin.answers().last() == Some(&204);
        ok.then_some(refused_until)
    })
    .await;
    let cut = chrono::Utc::now().timestamp_millis() + 1000;
    until(
        "readings after the refusals",
        Duration::from_secs(20),
        || {
            points_and_ms(&standin.accepted())
                .iter()
                .any(|(_, ms)| *ms > cut)
                .then_some(())
        },
    )
    .await;
    assert!(gw.terminate().success());

    let store = Store::open(&data, 1 << 30, 1 << 30).unwrap();
    assert_eq!(store.rejected_count().unwrap(), 0, "nothing set aside");
    assert_eq!(
        store.depth(QueueId::Readings),
        0,
        "a clean stop flushes the rest"
    );
    let accepted = common::accepted_readings(&store, &points);
    let want: BTreeSet<(String, i64)> = accepted
        .iter()
        .flat_map(|(p, ts)| ts.iter().map(move |t| (p.clone(), *t)))
        .collect();
    let got = points_and_ms(&standin.accepted());
    let missing: Vec<_> = want.difference(&got).take(10).collect();
    assert!(
        missing.is_empty(),
        "every reading arrives: missing {missing:?}"
    );
    assert!(want.len() > 100, "readings during and after the refusals");

    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    let auth: Vec<serde_json::Value> = store
        .alarm_log(since, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e["rule_id"] == "influx.auth")
        .collect();
    let states: Vec<&str> = auth.iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["raised", "cleared"], "{auth:#?}");
    assert_eq!(auth[0]["kind"], "fault");
    assert_eq!(auth[0]["level"], 2);

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.is_empty());
    assert!(!logs.contains(TOKEN), "the token is in the log");
    let refusals = standin.answers().iter().filter(|a| **a == 401).count();
    eprintln!(
        "token refused {refusals} times over 10 s (last {:.1} s in); {} readings, all delivered; test took {:.1} s",
        back.duration_since(t0).as_secs_f64(),
        want.len(),
        t0.elapsed().as_secs_f64()
    );
    drop(devs);
}

/// A store with `lines` queued as readings, and an InfluxDB sink on
/// `standin` with this batch size and timeout.
fn setup(
    dir: &Path,
    standin: &InfluxStandIn,
    lines: &[String],
    batch: usize,
    bucket: &str,
) -> (Arc<Store>, InfluxSink) {
    let store = Arc::new(Store::open(dir, 1 << 30, 1 << 30).unwrap());
    store.push(QueueId::Readings, lines, 0).unwrap();
    let cfg: riskgate::config::Influx = toml::from_str(&format!(
        "url = \"{}\"\norg = \"o\"\nbucket = \"{bucket}\"\nbatch_size = {batch}\nflush_interval = \"50ms\"\ntimeout = \"1s\"",
        standin.url
    ))
    .unwrap();
    (store, InfluxSink::new(&cfg, Some(TOKEN.into())).unwrap())
}

fn good_lines(n: usize) -> Vec<String> {
    let t = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    (0..n)
        .map(|i| format!("reading,site=s,device=d,point=p{i} value={i}.5,quality=0i {t}"))
        .collect()
}

/// Drives the sink until the readings queue is empty (or panics after 30 s).
async fn deliver_all(store: &Arc<Store>, sink: InfluxSink) {
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(riskgate::sink::drive(
        store.clone(),
        QueueId::Readings,
        sink,
        stop.clone(),
        Duration::from_secs(1),
    ));
    let s = store.clone();
    wait_for_async(
        "the readings queue to empty",
        Duration::from_secs(30),
        || {
            let s = s.clone();
            async move { (s.depth(QueueId::Readings) == 0).then_some(()) }
        },
    )
    .await;
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_line_in_a_batch_only_that_line_is_set_aside() {
    let standin = InfluxStandIn::start(TOKEN, "o", "b").await;
    let dir = tempfile::tempdir().unwrap();
    let mut lines = good_lines(20);
    lines[13] = "reading,site=s,point=bad value=1.0 notatime".into();
    let (store, sink) = setup(dir.path(), &standin, &lines, 20, "b");
    deliver_all(&store, sink).await;
    assert_eq!(store.rejected_count().unwrap(), 1, "only the bad line");
    let mut want = lines.clone();
    want.remove(13);
    assert_eq!(standin.accepted(), want, "the rest, in order");
    let n400 = standin.answers().iter().filter(|a| **a == 400).count();
    assert!(n400 <= 12, "bisected: {n400} refusals for 20 lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_large_is_split_and_all_arrives() {
    let standin = InfluxStandIn::start(TOKEN, "o", "b").await;
    standin.with(|s| s.max_lines = Some(3));
    let dir = tempfile::tempdir().unwrap();
    let lines = good_lines(25);
    let (store, sink) = setup(dir.path(), &standin, &lines, 25, "b");
    deliver_all(&store, sink).await;
    assert_eq!(store.rejected_count().unwrap(), 0);
    assert_eq!(standin.accepted(), lines, "all, in order");
    assert!(standin.answers().contains(&413));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_throttling_and_a_hung_server_are_retried() {
    let standin = InfluxStandIn::start(TOKEN, "o", "b").await;
    standin.with(|s| {
        s.script.extend([
            Answer::Status(503),
            Answer::Status(429),
            Answer::Status(500),
            Answer::Hang,
            Answer::Status(408),
        ])
    });
    let dir = tempfile::tempdir().unwrap();
    let lines = good_lines(10);
    let (store, sink) = setup(dir.path(), &standin, &lines, 4, "b");
    deliver_all(&store, sink).await;
    assert_eq!(store.rejected_count().unwrap(), 0, "nothing set aside");
    assert_eq!(standin.accepted(), lines, "all, in order");
    assert_eq!(&standin.answers()[..5], &[503, 429, 500, 0, 408]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_retried_and_reported_until_it_exists() {
    let standin = InfluxStandIn::start(TOKEN, "o", "other").await;
    let dir = tempfile::tempdir().unwrap();
    let lines = good_lines(5);
    let (store, sink) = setup(dir.path(), &standin, &lines, 5, "b");
    let (tx, mut faults) = tokio::sync::mpsc::unbounded_channel();
    let sink = sink.with_faults(tx);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(riskgate::sink::drive(
        store.clone(),
        QueueId::Readings,
        sink,
        stop.clone(),
        Duration::from_secs(1),
    ));
    let (f, why) = faults.recv().await.unwrap();
    assert_eq!(f, GatewayFault::InfluxBucket);
    assert!(why.unwrap().starts_with("404"));
    // Two more refusals, then the bucket is created.
    until("two more 404s", Duration::from_secs(10), || {
        (standin.answers().len() >= 3).then_some(())
    })
    .await;
    assert_eq!(store.rejected_count().unwrap(), 0, "nothing set aside");
    assert_eq!(store.depth(QueueId::Readings), 5, "kept in the queue");
    standin.with(|s| s.bucket = "b".into());
    assert_eq!(
        faults.recv().await.unwrap(),
        (GatewayFault::InfluxBucket, None),
        "cleared by the first write"
    );
    until("delivered", Duration::from_secs(10), || {
        (standin.accepted() == lines).then_some(())
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    assert!(faults.try_recv().is_err(), "raised once, cleared once");
}
