//! The InfluxDB sink: line protocol over the v2 HTTP write API.
//!
//! `reqwest` is used directly rather than an InfluxDB client crate: the
//! whole API riskgate needs is one POST, and owning it lets the sink tell a
//! 4xx (bad data: set the batch aside) from a 5xx or timeout (retry), gzip
//! the body, and delete rows from the queue only after the 2xx.
//!
//! The sink owns its encoding: producers queue readings as [`line`]s.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::time::Duration;

use super::{Outcome, Progress, Sink};
use crate::config::Influx;
use crate::model::{Quality, Reading, Value};
use crate::queue::{QueueId, Row};

/// One reading as line protocol: tags site, device, point; fields `value`
/// (float; bools as 0/1; absent when the quality is bad), `text` for ASCII
/// points, and `quality` (0 good, 1 bad); nanosecond timestamp of the poll.
pub fn line(measurement: &str, site: &str, r: &Reading) -> String {
    let mut s = String::with_capacity(96);
    s.push_str(&escape(measurement, ", "));
    for (k, v) in [("site", site), ("device", &r.device), ("point", &r.point)] {
        s.push(',');
        s.push_str(k);
        s.push('=');
        s.push_str(&escape(v, ",= "));
    }
    s.push(' ');
    let mut fields = Vec::with_capacity(2);
    if r.quality == Quality::Good {
        match &r.value {
            Some(Value::Num(v)) if v.is_finite() => fields.push(format!("value={v:?}")),
            Some(Value::Bool(b)) => {
                fields.push(format!("value={}", if *b { "1.0" } else { "0.0" }))
            }
            Some(Value::Text(t)) => fields.push(format!(
                "text=\"{}\"",
                t.replace('\\', "\\\\").replace('"', "\\\"")
            )),
            _ => {}
        }
    }
    fields.push(format!("quality={}i", r.quality.code()));
    s.push_str(&fields.join(","));
    s.push(' ');
    s.push_str(&r.at.timestamp_nanos_opt().unwrap_or(0).to_string());
    s
}

/// The encoding producers use to queue readings for this sink.
pub fn encoder(measurement: &str, site: &str) -> impl Fn(&Reading) -> String + Send + 'static {
    let (measurement, site) = (measurement.to_string(), site.to_string());
    move |r| line(&measurement, &site, r)
}

fn escape(s: &str, chars: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if chars.contains(c) || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

type Request = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pub struct InfluxSink {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    batch: usize,
    flush: Duration,
    /// The request on the wire, and the queue and ids of its rows.
    in_flight: Option<(QueueId, Vec<i64>, Request)>,
    closing: bool,
}

/// The InfluxDB token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    #[error("InfluxDB token: environment variable {0} is not set")]
    TokenEnv(String),
    #[error("InfluxDB token file {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error("InfluxDB client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The token named by `token_env` or `token_file`, if any.
pub fn token(cfg: &Influx) -> Result<Option<String>, InfluxError> {
    match (&cfg.token_env, &cfg.token_file) {
        (Some(v), _) => std::env::var(v)
            .map(Some)
            .map_err(|_| InfluxError::TokenEnv(v.clone())),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|source| InfluxError::TokenFile {
                path: f.clone(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

impl InfluxSink {
    pub fn new(cfg: &Influx, token: Option<String>) -> Result<InfluxSink, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(cfg.timeout.0).build()?;
        let base = cfg.url.trim_end_matches('/');
        let url = format!(
            "{base}/api/v2/write?org={}&bucket={}&precision=ns",
            urlencode(&cfg.org),
            urlencode(&cfg.bucket)
        );
        Ok(InfluxSink {
            client,
            url,
            token,
            batch: cfg.batch_size,
            flush: cfg.flush_interval.0,
            in_flight: None,
            closing: false,
        })
    }

    /// Writes one batch of queued rows (line protocol) and says how it ended.
    pub async fn write(&self, rows: &[Row]) -> Outcome {
        let body = Self::body(rows);
        Self::post(
            self.client.clone(),
            self.url.clone(),
            self.token.clone(),
            body,
        )
        .await
    }

    fn body(rows: &[Row]) -> Vec<u8> {
        let mut body = Vec::with_capacity(rows.len() * 100);
        for r in rows {
            body.extend_from_slice(r.body.as_bytes());
            body.push(b'\n');
        }
        body
    }

    async fn post(
        client: reqwest::Client,
        url: String,
        token: Option<String>,
        body: Vec<u8>,
    ) -> Outcome {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if let Err(e) = gz.write_all(&body) {
            return Outcome::Retry(format!("gzip: {e}"));
        }
        let body = match gz.finish() {
            Ok(b) => b,
            Err(e) => return Outcome::Retry(format!("gzip: {e}")),
        };
        let mut req = client
            .post(&url)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
        if let Some(t) = &token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    Outcome::Delivered
                } else {
                    let text: String = resp
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect();
                    // 408, 429 and 5xx are the server's trouble: keep and retry.
                    if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408
                    {
                        Outcome::Rejected(format!("{status}: {text}"))
                    } else {
                        Outcome::Retry(format!("{status}: {text}"))
                    }
                }
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

/// One request at a time, `batch_size` rows each: a 2xx settles the batch.
impl Sink for InfluxSink {
    fn room(&self, _queue: QueueId) -> usize {
        if self.in_flight.is_none() && !self.closing {
            self.batch
        } else {
            0
        }
    }

    fn send(&mut self, queue: QueueId, rows: Vec<Row>) {
        let ids = rows.iter().map(|r| r.id).collect();
        let req = Self::post(
            self.client.clone(),
            self.url.clone(),
            self.token.clone(),
            Self::body(&rows),
        );
        self.in_flight = Some((queue, ids, Box::pin(req)));
    }

    async fn progress(&mut self) -> Progress {
        if self.closing {
            return Progress::Closed;
        }
        let Some((_, _, req)) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        // Polled in place: a cancelled `progress` leaves the request running
        // for the next call.
        let outcome = req.await;
        let (queue, ids, _) = self.in_flight.take().expect("request in flight");
        Progress::Settled(queue, ids, outcome)
    }

    fn reset(&mut self) {
        self.in_flight = None;
    }

    fn close(&mut self) {
        self.closing = true;
    }

    async fn finish(self) {}

    fn idle_wait(&self) -> Duration {
        self.flush
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn reading(point: &str, value: Option<Value>, q: Quality) -> Reading {
        Reading {
            point: point.into(),
            device: "gd 1".into(),
            value,
            quality: q,
            at: chrono::Utc.timestamp_nanos(1_764_000_000_123_456_789),
        }
    }

    #[test]
    fn line_protocol_escapes_and_types() {
        let r = reading("ch4.1301,t1", Some(Value::Num(1.5)), Quality::Good);
        assert_eq!(
            line("reading", "s=1", &r),
            r"reading,site=s\=1,device=gd\ 1,point=ch4.1301\,t1 value=1.5,quality=0i 1764000000123456789"
        );
        let b = reading("fan", Some(Value::Bool(true)), Quality::Good);
        assert!(line("reading", "s", &b).contains(" value=1.0,quality=0i "));
        let bad = reading("ch4", None, Quality::Bad(crate::model::BadReason::Timeout));
        assert!(
            line("reading", "s", &bad).contains(" quality=1i "),
            "{}",
            line("reading", "s", &bad)
        );
        let t = reading("tag", Some(Value::Text("A\"B".into())), Quality::Good);
        assert!(line("reading", "s", &t).contains(r#" text="A\"B",quality=0i "#));
        let whole = reading("x", Some(Value::Num(2.0)), Quality::Good);
        assert!(
            line("reading", "s", &whole).contains(" value=2.0,"),
            "floats keep a decimal point"
        );
    }
}
