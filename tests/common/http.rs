//! A minimal blocking HTTP/1.0 client, so the helpers need no runtime.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    http("GET", url, None)
}

pub fn http_post(url: &str, form: &str) -> std::io::Result<(u16, String)> {
    http("POST", url, Some(form))
}

fn http(method: &str, url: &str, form: Option<&str>) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let rest = url.strip_prefix("http://").expect("http:// url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = form.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
