//! A stand-in for InfluxDB 2.x's write endpoint, for the faults
//! VictoriaMetrics cannot play (it answers 204 to everything, skipping what
//! it cannot parse).
//!
//! It answers as InfluxDB 2.x does: 401 without the right
//! `Authorization: Token …` header (or while told to refuse), 404 for
//! another org or bucket, 413 for a body over its line limit, 400 when a
//! line does not parse (nothing of that body is written), 204 otherwise.
//! Tests can script the next answers (any status, or no answer at all).
//! Every line it accepted is kept, in arrival order.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A scripted answer for the next request.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Status(u16),
    /// Read the request and never answer (a hung server).
    Hang,
}

#[derive(Default)]
pub struct State {
    pub token: String,
    pub org: String,
    pub bucket: String,
    /// Refuse every request with 401 for this long after the first one.
    pub refuse_for: Option<Duration>,
    first_request: Option<Instant>,
    /// Bodies of more lines than this get 413.
    pub max_lines: Option<usize>,
    pub script: VecDeque<Answer>,
    /// Lines written, in order.
    pub accepted: Vec<String>,
    /// The status of every answer, in order (0 for no answer).
    pub answers: Vec<u16>,
    /// When the last 401 was answered.
    pub last_refusal: Option<Instant>,
}

pub struct InfluxStandIn {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

impl InfluxStandIn {
    pub async fn start(token: &str, org: &str, bucket: &str) -> InfluxStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            token: token.into(),
            org: org.into(),
            bucket: bucket.into(),
            ..Default::default()
        }));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(s, st.clone()));
            }
        });
        InfluxStandIn { url, state }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn accepted(&self) -> Vec<String> {
        self.with(|s| s.accepted.clone())
    }

    pub fn answers(&self) -> Vec<u16> {
        self.with(|s| s.answers.clone())
    }
}

async fn serve(mut s: tokio::net::TcpStream, st: Arc<Mutex<State>>) {
    loop {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let mut lines = head.lines();
        let target = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("")
            .to_string();
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut text = String::new();
        if header("content-encoding").as_deref() == Some("gzip") {
            flate2::read::GzDecoder::new(&body[..])
                .read_to_string(&mut text)
                .unwrap();
        } else {
            text = String::from_utf8_lossy(&body).to_string();
        }
        let (status, msg) = {
            let mut g = st.lock().unwrap();
            let now = Instant::now();
            let first = *g.first_request.get_or_insert(now);
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
            let param = |k: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .unwrap_or("")
                    .to_string()
            };
            let answer = if let Some(a) = g.script.pop_front() {
                Some(a)
            } else if header("authorization") != Some(format!("Token {}", g.token))
                || g.refuse_for.is_some_and(|d| now < first + d)
            {
                g.last_refusal = Some(now);
                Some(Answer::Status(401))
            } else {
                None
            };
            match answer {
                Some(Answer::Hang) => {
                    g.answers.push(0);
                    (0, String::new())
                }
                Some(Answer::Status(n)) => (n, format!("scripted {n}")),
                None if !target.starts_with("/api/v2/write")
                    || param("org") != g.org
                    || param("bucket") != g.bucket =>
                {
                    (404, format!("bucket \"{}\" not found", param("bucket")))
                }
                None if g.max_lines.is_some_and(|m| text.lines().count() > m) => {
                    (413, "request too large".to_string())
                }
                None => match text.lines().find(|l| !parses(l)) {
                    Some(bad) => (400, format!("unable to parse '{bad}'")),
                    None => {
                        g.accepted.extend(text.lines().map(str::to_string));
                        (204, String::new())
                    }
                },
            }
        };
        if status == 0 {
            // Keep the connection open, never answer.
            let _ = s.read(&mut [0u8; 1]).await;
            return;
        }
        st.lock().unwrap().answers.push(status);
        let reply = if status == 204 {
            "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n".to_string()
        } else {
            let msg = serde_json::json!({"code": "error", "message": msg}).to_string();
            format!(
                "HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{msg}",
                msg.len()
            )
        };
        if s.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Whether `line` is one line of line protocol: measurement and tags, a
/// space, fields (`k=v`, strings quoted with `\"` and `\\` escapes), a
/// space, an integer timestamp. An independent reading of the format, not
/// the gateway's code.
pub fn parses(line: &str) -> bool {
    parse(line).is_some()
}

/// (series key, timestamp) of one line, if it parses. Fields are checked
/// for shape (`k=v` pairs, string values closed), not decoded.
pub fn parse(line: &str) -> Option<(String, i64)> {
    if line.is_empty() || line.contains('\n') || line.contains('\r') {
        return None;
    }
    // Sections split at unescaped spaces outside strings; fields split at
    // unescaped commas outside strings.
    let mut sections: Vec<Vec<String>> = vec![vec![String::new()]];
    let mut chars = line.chars();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        let n = sections.len();
        let sec = sections.last_mut().unwrap();
        let cur = sec.last_mut().unwrap();
        match c {
            '\\' => {
                cur.push('\\');
                cur.push(chars.next()?);
            }
            '"' if n == 2 => {
                in_str = !in_str;
                cur.push('"');
            }
            ' ' if !in_str => sections.push(vec![String::new()]),
            ',' if !in_str && n == 2 => sec.push(String::new()),
            c => cur.push(c),
        }
    }
    if in_str || sections.len() != 3 {
        return None;
    }
    let key = sections[0].join("");
    let fields_ok = sections[1].iter().all(|f| {
        f.split_once('=')
            .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
    });
    let ts: i64 = sections[2][0].parse().ok()?;
    (fields_ok && !key.is_empty()).then_some((key, ts))
}
