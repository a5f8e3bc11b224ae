//! The InfluxDB sink: line protocol over the v2 HTTP write API.
//!
//! `reqwest` is used directly rather than an InfluxDB client crate: the
//! whole API riskgate needs is one POST, and owning it lets the sink tell a
//! 4xx (bad data: set the batch aside) from a 5xx or timeout (retry), gzip
//! the body, and delete rows from the queue only after the 2xx.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Influx;
use crate::model::{Quality, Reading, Value};
use crate::store::{InfluxRow, Store};

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

/// Result of one write attempt.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    Delivered,
    Retry(String),
    Rejected(String),
}

pub struct InfluxSink {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    batch: usize,
    flush: Duration,
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
        })
    }

    pub async fn write(&self, rows: &[InfluxRow]) -> Delivery {
        let mut body = Vec::with_capacity(rows.len() * 100);
        for r in rows {
            body.extend_from_slice(r.line.as_bytes());
            body.push(b'\n');
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if let Err(e) = gz.write_all(&body) {
            return Delivery::Retry(format!("gzip: {e}"));
        }
        let body = match gz.finish() {
            Ok(b) => b,
            Err(e) => return Delivery::Retry(format!("gzip: {e}")),
        };
        let mut req = self
            .client
            .post(&self.url)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    Delivery::Delivered
                } else {
                    let text: String = resp
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect();
                    // 429 and 5xx are the server's trouble: keep and retry.
                    if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408
                    {
                        Delivery::Rejected(format!("{status}: {text}"))
                    } else {
                        Delivery::Retry(format!("{status}: {text}"))
                    }
                }
            }
            Err(e) => Delivery::Retry(e.to_string()),
        }
    }

    /// Delivers the queue until `shutdown`; then one last attempt to flush
    /// what is queued, bounded by `drain`.
    pub async fn run(
        self,
        store: Arc<Store>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
        drain: Duration,
    ) {
        let mut backoff = Backoff::default();
        loop {
            if shutdown.is_cancelled() {
                let _ = tokio::time::timeout(drain, self.drain(&store)).await;
                return;
            }
            let rows = match store.peek_influx(self.batch) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "influx queue read failed");
                    Vec::new()
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(self.flush) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            match self.write(&rows).await {
                Delivery::Delivered => {
                    backoff.reset();
                    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                    if let Err(e) = store.ack_influx(&ids) {
                        tracing::error!(error = %e, "influx queue ack failed");
                    }
                    tracing::debug!(rows = rows.len(), "readings delivered to InfluxDB");
                }
                Delivery::Rejected(why) => {
                    tracing::error!(rows = rows.len(), reason = %why, "InfluxDB rejected a batch: set aside in the `rejected` table");
                    if let Err(e) =
                        store.reject_influx(&rows, &why, chrono::Utc::now().timestamp_millis())
                    {
                        tracing::error!(error = %e, "moving a rejected batch aside failed");
                    }
                }
                Delivery::Retry(why) => {
                    let wait = backoff.fail();
                    tracing::warn!(rows = rows.len(), reason = %why, retry_in = ?wait, "InfluxDB write failed; kept in the queue");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    async fn drain(&self, store: &Store) {
        loop {
            let Ok(rows) = store.peek_influx(self.batch) else {
                return;
            };
            if rows.is_empty() || self.write(&rows).await != Delivery::Delivered {
                return;
            }
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let _ = store.ack_influx(&ids);
        }
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
