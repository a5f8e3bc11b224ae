//! `GET /api/events/stream` over real HTTP (issue 11 item 4): a snapshot
//! first, then the changes as they happen (here a device nobody answers
//! for: its failed polls and its points' bad quality), with no polling;
//! and an open stream does not hold up the gateway's stop; a stream opened
//! with a session ends when the session does (logout, removed user).
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
        Events::open_as(addr, None).await
    }

    /// A stream opened with `token` as its bearer token.
    async fn open_as(addr: std::net::SocketAddr, token: Option<&str>) -> Events {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        // The real address as Host: the API refuses names it does not serve.
        // `Connection: close`: the end of the stream's body is the end of
        // the connection, which `next` sees.
        let req = format!(
            "GET /api/events/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nConnection: close\r\n{auth}\r\n"
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

/// The status line and body of a request with `token` as bearer.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    c.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_string());
    (status, body.unwrap_or_default())
}

async fn login(addr: std::net::SocketAddr, name: &str) -> String {
    let (status, body) = request(
        addr,
        "POST",
        "/api/login",
        None,
        &format!(r#"{{"name":"{name}","password":"{PW}"}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["token"].as_str().unwrap().to_string()
}

const PW: &str = "stream-pass-4711";

/// The stream's end after its session's, within the check interval.
async fn ends_with_its_session(ev: &mut Events) {
    let limit = riskgate::api::stream::SESSION_CHECK * 5 + Duration::from_secs(5);
    ev.until(limit, |n, _| n == "session_ended").await;
    let closed = tokio::time::timeout(limit, async { while ev.next().await.is_some() {} }).await;
    assert!(closed.is_ok(), "the stream closed after session_ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_session_does() {
    use riskgate::auth::{Role, cli};
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    cli::add(&users, "viewer", Role::Viewer, None, PW).unwrap();
    cli::add(&users, "gone", Role::Viewer, None, PW).unwrap();
    let mut cfg = config(dir.path());
    cfg.http.as_mut().expect("[http]").users_file = users.clone();
    let running = riskgate::runtime::start(cfg).await.unwrap();
    let addr = running.http_addr.expect("API listening");

    // Without a session there is no stream.
    let (status, _) = request(addr, "GET", "/api/events/stream", None, "").await;
    assert_eq!(status, 401);

    // Logged out: the open stream says so and closes; a second session of
    // the same user goes on.
    let a = login(addr, "viewer").await;
    let b = login(addr, "viewer").await;
    let mut ev_a = Events::open_as(addr, Some(&a)).await;
    let mut ev_b = Events::open_as(addr, Some(&b)).await;
    assert_eq!(ev_a.next().await.expect("a snapshot").0, "snapshot");
    assert_eq!(ev_b.next().await.expect("a snapshot").0, "snapshot");
    let (status, _) = request(addr, "POST", "/api/logout", Some(&a), "").await;
    assert_eq!(status, 204);
    ends_with_its_session(&mut ev_a).await;
    let (status, _) = request(addr, "GET", "/api/events/stream", Some(&a), "").await;
    assert_eq!(status, 401, "the ended session opens no new stream");

    // A user removed from the users file: their stream ends too.
    let c = login(addr, "gone").await;
    let mut ev_c = Events::open_as(addr, Some(&c)).await;
    assert_eq!(ev_c.next().await.expect("a snapshot").0, "snapshot");
    cli::remove(&users, "gone").unwrap();
    ends_with_its_session(&mut ev_c).await;

    // The other session's stream was not touched: it still carries events.
    ev_b.until(Duration::from_secs(20), |n, _| {
        n == "devices" || n == "points"
    })
    .await;
    running.stop().await;
}
