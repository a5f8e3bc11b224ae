//! The API drops a client that never finishes its request headers
//! (slowloris; issue 10 item 11, `api::HEADER_TIMEOUT`), still serves
//! everyone else, and still stops cleanly with such a client connected.
//!
//! The assertions are on the connection closing, with generous limits on
//! how long the test waits; not on how fast.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway with one Modbus TCP device nobody answers for and the API on
/// a free port.
fn config(dir: &std::path::Path) -> riskgate::config::Config {
    let text = format!(
        r#"
[site]
id = "slow"
kind = "coal_mine"
[gateway]
id = "gw-slow"
data_dir = "{}"
[http]
listen = "127.0.0.1:0"
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = 9
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

/// Reads until the server closes the connection (EOF or reset), at most
/// `limit`; returns what it sent, `None` if still open after `limit`.
async fn until_closed(conn: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.ok()?;
    Some(got)
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let got = until_closed(&mut c, Duration::from_secs(30))
        .await
        .expect("an answer");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let running = riskgate::runtime::start(config(dir.path())).await.unwrap();
    let addr = running.http_addr.expect("API listening");

    // Half a request line, then nothing.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /api/sta").await.unwrap();
    // A connection that sends nothing at all, kept open through the stop.
    let mut silent = TcpStream::connect(addr).await.unwrap();

    // Everyone else is served meanwhile.
    let answer = get(addr, "/api/points").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Closed by the server: a bounded wait, three times the timeout.
    let limit = riskgate::api::HEADER_TIMEOUT * 3;
    let said = until_closed(&mut slow, limit)
        .await
        .unwrap_or_else(|| panic!("the half-sent request is still open after {limit:?}"));
    // Whatever it said before closing is not an answer to the request.
    assert!(
        !String::from_utf8_lossy(&said).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&said)
    );

    // Still serving after dropping it.
    let answer = get(addr, "/health").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A clean stop with a silent client connected: it completes, and the
    // silent connection is closed.
    tokio::time::timeout(Duration::from_secs(60), running.stop())
        .await
        .expect("the gateway stops with an idle client connected");
    assert!(
        until_closed(&mut silent, Duration::from_secs(30))
            .await
            .is_some(),
        "the silent connection was closed"
    );
}
