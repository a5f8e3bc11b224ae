//! `GET /api/events/stream` over real HTTP (issue 11 item 4): a snapshot
//! first, then the changes as they happen (here a device nobody answers
//! for: its failed polls and its points' bad quality), with no polling;
//! and an open stream does not hold up the gateway's stop.
//!
//! Waits are on what the stream says, each with a generous limit.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(dir: &std::path::Path) -> riskgate::config::Config {
    let text = format!(
        r#"
[site]
id = "live"
kind = "coal_mine"
name = "直播测试"
[gateway]
id = "gw-live"
data_dir = "{}"
[http]
listen = "127.0.0.1:0"
[[devices]]
id = "gd1"
name = "甲烷传感器"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = 9
poll_interval = "200ms"
timeout = "100ms"
  [[devices.points]]
  id = "ch4"
  register = "holding"
  address = 0
  type = "f32"
"#,
        dir.join("data").display()
    );
    let path = dir.join("riskgate.toml");
    std::fs::write(&path, text).unwrap();
    riskgate::config::load(&path).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The events of an open stream, parsed as a browser would.
struct Events {
    conn: TcpStream,
    buf: String,
}

impl Events {
    async fn open(addr: std::net::SocketAddr) -> Events {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        // The real address as Host: the API refuses names it does not serve.
        let req = format!(
            "GET /api/events/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        Events {
            conn,
            buf: String::new(),
        }
    }

    /// The next event (name, data); `None` when the server closed.
    async fn next(&mut self) -> Option<(String, serde_json::Value)> {
        loop {
            // Chunked transfer: the event lines are inside the chunks;
            // an event ends with a blank line.
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let name = block.lines().find_map(|l| l.strip_prefix("event: "));
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(n), Some(d)) = (name, data) {
                    return Some((n.to_string(), serde_json::from_str(d).expect("JSON data")));
                }
                continue;
            }
            let mut b = [0u8; 4096];
            match self.conn.read(&mut b).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.push_str(&String::from_utf8_lossy(&b[..n])),
            }
        }
    }

    /// Events until `want` says yes, at most `limit`.
    async fn until(
        &mut self,
        limit: Duration,
        mut want: impl FnMut(&str, &serde_json::Value) -> bool,
    ) -> (String, serde_json::Value) {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(limit, async {
            loop {
                let (n, d) = self.next().await.expect("the stream is open");
                if want(&n, &d) {
                    return (n, d);
                }
                seen.push(format!("{n}: {d}"));
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("the awaited event not within {limit:?}; seen {seen:#?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_a_snapshot_then_changes_and_ends_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let running = riskgate::runtime::start(config(dir.path())).await.unwrap();
    let addr = running.http_addr.expect("API listening");

    let mut ev = Events::open(addr).await;
    let (name, snap) = ev.next().await.expect("a first event");
    assert_eq!(name, "snapshot");
    assert_eq!(snap["site"]["name"], "直播测试");
    assert_eq!(snap["points"][0]["id"], "ch4");
    assert_eq!(snap["devices"][0]["id"], "gd1");
    assert_eq!(snap["devices"][0]["name"], "甲烷传感器");

    // The device's failed polls with why, its point's bad quality and the
    // device's offline alarm (as a transition and in the list), in
    // whatever order they come.
    let limit = Duration::from_secs(20);
    let (mut device, mut point, mut raised, mut listed) = (None, false, false, false);
    ev.until(limit, |n, d| {
        match n {
            "devices" if d[0]["online"] == false => device = Some(d[0].clone()),
            "points" => point |= d[0]["id"] == "ch4" && d[0]["quality"] != "no_data",
            "alarm" => raised |= d["state"] == "raised" && d["kind"] == "offline",
            "alarms" => {
                listed |= d
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["kind"] == "offline" && a["level"] == 2)
            }
            _ => {}
        }
        device.is_some() && point && raised && listed
    })
    .await;
    let device = device.unwrap();
    assert!(
        device["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{device}"
    );
    assert!(device["last_error_at"].is_string(), "{device}");

    // The same views through the REST API, in the same shape.
    let state: serde_json::Value = serde_json::from_str(&get(addr, "/api/points").await).unwrap();
    assert_eq!(state[0]["id"], "ch4");

    // Stopping with the stream open: the stream ends, the stop does not
    // wait out the API's drain time.
    let t = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(12), running.stop())
        .await
        .expect("the gateway stops with a stream open");
    assert!(t.elapsed() < Duration::from_secs(12));
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while ev.next().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "the stream was closed");
}

/// The body of a GET.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&got).into_owned();
    text.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default()
}
