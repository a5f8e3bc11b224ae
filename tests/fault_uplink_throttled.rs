//! Fault: a slow, choppy link to the county broker (a throttling TCP proxy
//! in front of real Mosquitto: a few bytes at a time, a pause between
//! each) while the uplink's driver is woken very often (queue wakes every
//! millisecond, the status every 100 ms), so every wait of the sink is cut
//! short again and again. rumqttc's `EventLoop::poll()` is not
//! cancel-safe; the uplink must never drop it half-way. If it did, a
//! publish or a PUBACK read half-way would be lost and the link would fail
//! and reconnect. Required: all 200 events arrive exactly once, in order,
//! with no gap, over the one connection the proxy saw.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Mosquitto, SiteCfg, Subscriber, SubscriberOpts};
use riskgate::queue::{QueueId, Store};
use riskgate::sink::uplink::UplinkSink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SITE: &str = "fault-throttled";
const EVENTS: u64 = 200;
/// Bytes per write and the pause after each, both ways.
const CHUNK: usize = 24;
const PAUSE: Duration = Duration::from_millis(1);

/// Copies `from` to `to` in small chunks with a pause after each.
async fn trickle(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buf = [0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
}

/// A throttling proxy to `127.0.0.1:upstream`; returns its port and the
/// number of connections it accepted.
async fn throttling_proxy(upstream: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(trickle(cr, sw));
            tokio::spawn(trickle(sr, cw));
        }
    });
    (port, conns)
}

/// An alarm event body as the queue holds it: what the consumer checks
/// (event_id ending in the seq, seq).
fn event(seq: u64) -> String {
    serde_json::json!({
        "event_id": format!("{SITE}:gw:{seq:012}"),
        "seq": seq,
        "padding": "x".repeat(120),
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_choppy_link_and_constant_wakes_lose_no_publish_and_cause_no_reconnect() {
    common::init_tracing();
    let t0 = Instant::now();
    let broker = Mosquitto::start();
    let (proxy, conns) = throttling_proxy(broker.port).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut site = SiteCfg::new(SITE, &data, vec![1]);
    site.uplink = Some(format!(
        "port = {proxy}\nplain_tcp = true\nstatus_interval = \"100ms\""
    ));
    let cfg = site.load(dir.path());
    let alarm_topic = format!("riskgate/v1/{SITE}/alarm");
    let mut county = Subscriber::connect(SubscriberOpts::new(
        broker.port,
        "county-throttled",
        &alarm_topic,
    ))
    .await;

    std::fs::create_dir_all(&data).unwrap();
    let store = Arc::new(Store::open(&data, 1 << 30, 1 << 30).unwrap());
    let (remote_tx, _remote_rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = UplinkSink::new(
        &cfg,
        store.clone(),
        Arc::new(Mutex::new(Default::default())),
        remote_tx,
    )
    .unwrap()
    .expect("an uplink");
    let stop = tokio_util::sync::CancellationToken::new();
    let drive = tokio::spawn(riskgate::sink::drive(
        store.clone(),
        QueueId::Alarms,
        sink,
        stop.clone(),
        Duration::from_secs(2),
    ));

    // Wakes every millisecond, cutting short every wait of the driver.
    let waker = store.waker(QueueId::Alarms);
    let hammer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut wakes = 0u64;
            while !stop.is_cancelled() {
                waker.notify_waiters();
                waker.notify_one();
                wakes += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            wakes
        })
    };
    // The events, queued in bursts while earlier ones are on the wire.
    for burst in 0..20u64 {
        let bodies: Vec<String> = (1..=10).map(|i| event(burst * 10 + i)).collect();
        store.push(QueueId::Alarms, &bodies, 0).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let got = county.every_event(EVENTS, Duration::from_secs(120)).await;
    let s = store.clone();
    common::wait_for_async("every PUBACK settled", Duration::from_secs(30), || {
        let s = s.clone();
        async move { (s.depth(QueueId::Alarms) == 0).then_some(()) }
    })
    .await;
    stop.cancel();
    let wakes = hammer.await.unwrap();
    drive.await.unwrap();

    let arrivals: Vec<u64> = county
        .alarms()
        .iter()
        .map(|a| a["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        arrivals,
        (1..=EVENTS).collect::<Vec<_>>(),
        "each event once, in order"
    );
    assert_eq!(got.len() as u64, EVENTS);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one connection: the uplink never lost its link (no reconnect)"
    );
    eprintln!(
        "fault_uplink_throttled: {EVENTS} events over a {CHUNK}-byte/{PAUSE:?} link, {wakes} wakes, 1 connection; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
