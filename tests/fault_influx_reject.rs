//! A batch the database refuses as bad data (4xx) is set aside in the
//! `rejected` table and counted, instead of blocking the queue for ever; the
//! readings queued after it are still delivered.
//!
//! InfluxDB 2.x answers `400 Bad Request` ("unable to parse") to a body with
//! an unparsable line. VictoriaMetrics 1.79, the real server the other tests
//! use, accepts such a body with 204 and skips the line, so it cannot play
//! this part: a small HTTP server in this test answers as InfluxDB does
//! (400 for a body with an unparsable line, 204 otherwise) and records what
//! it accepted.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use riskgate::queue::{QueueId, Store};
use riskgate::sink::Outcome;
use riskgate::sink::influx::InfluxSink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves InfluxDB's write endpoint behaviour for parse errors; returns its
/// address and the accepted bodies.
async fn influx_like() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let acc = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let acc = acc.clone();
            tokio::spawn(async move {
                loop {
                    // Headers, then Content-Length bytes of gzip.
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read(&mut b).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    s.read_exact(&mut body).await.unwrap();
                    let mut text = String::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_string(&mut text)
                        .unwrap();
                    let parsable = text.lines().all(|l| {
                        l.rsplit(' ')
                            .next()
                            .is_some_and(|ts| ts.parse::<i64>().is_ok())
                    });
                    let reply = if parsable {
                        acc.lock().unwrap().push(text);
                        "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n".to_string()
                    } else {
                        let msg =
                            r#"{"code":"invalid","message":"unable to parse line: bad timestamp"}"#;
                        format!(
                            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{msg}",
                            msg.len()
                        )
                    };
                    s.write_all(reply.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_set_aside_and_the_queue_moves_on() {
    let (url, accepted) = influx_like().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), 1 << 30, 1 << 30).unwrap());
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    // A line that is not line protocol (as a damaged disk block or a bug might
    // leave it), then a good one in a later batch.
    store
        .push(
            QueueId::Readings,
            &["reading,site=s,point=p value=1.0 notatime".to_string()],
            0,
        )
        .unwrap();
    let good = format!("reading,site=s,device=d,point=good value=7.25,quality=0i {now_ns}");
    store
        .push(QueueId::Readings, std::slice::from_ref(&good), 0)
        .unwrap();

    let cfg: riskgate::config::Influx = toml::from_str(&format!(
        "url = \"{url}\"\norg = \"o\"\nbucket = \"b\"\nbatch_size = 1\nflush_interval = \"50ms\""
    ))
    .unwrap();
    let sink = InfluxSink::new(&cfg, Some("secret-token".into())).unwrap();
    let first = store.peek(QueueId::Readings, 0, 1).unwrap();
    let verdict = sink.write(&first).await;
    assert!(
        matches!(verdict, Outcome::Rejected(ref why) if why.starts_with("400")),
        "{verdict:?}"
    );

    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(riskgate::sink::drive(
        store.clone(),
        QueueId::Readings,
        sink,
        stop.clone(),
        Duration::from_secs(1),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.stats(QueueId::Readings).unwrap().depth > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue did not move past the refused batch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        store.rejected_count().unwrap(),
        1,
        "the refused batch is kept for inspection"
    );
    assert_eq!(
        *accepted.lock().unwrap(),
        vec![format!("{good}\n")],
        "the good reading was delivered after it"
    );
}
