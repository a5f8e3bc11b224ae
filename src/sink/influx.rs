//! The InfluxDB sink: line protocol over the v2 HTTP write API.
//!
//! `reqwest` is used directly rather than an InfluxDB client crate: the
//! whole API riskgate needs is one POST, and owning it lets the sink read
//! each status for what it means, gzip the body, and delete rows from the
//! queue only after the 2xx.
//!
//! What each answer means (InfluxDB 2.x):
//! - 2xx: written; the rows leave the queue.
//! - 5xx, 408, 429, a timeout or no connection: the server's trouble; the
//!   batch stays and is sent again after a backoff.
//! - 401, 403 (token refused) and 404 (no such org or bucket): the
//!   configuration's trouble, not the data's. The batch stays and is retried
//!   with backoff, and a gateway fault alarm (`influx.auth`,
//!   `influx.bucket`) tells the operator, cleared by the next 2xx. Setting
//!   the batch aside would drain the whole queue into `rejected`.
//! - 413 (body too large): the batch is split in halves and each sent; a
//!   single line too large for the server is bad data.
//! - 400 and any other 4xx (unparsable or refused lines): the batch is
//!   bisected until only the refused lines are left; each is set aside in
//!   `rejected` alone and the rest is delivered, in order. InfluxDB may have
//!   written the good lines of a refused body already (a partial write);
//!   sending them again overwrites the same points with the same values.
//!
//! The sink owns its encoding: producers queue readings as [`line`]s. Device
//! text (an ASCII register, an MQTT string) is escaped so no byte of it can
//! end the line, and cut at [`TEXT_MAX_CHARS`].

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Outcome, Progress, Sink};
use crate::config::Influx;
use crate::model::{Quality, Reading, Value};
use crate::queue::{QueueId, Row};
use crate::rules::health::GatewayFault;

/// Device text longer than this (in characters) is cut: one line stays
/// small whatever a device sends, far below InfluxDB's 64 KiB per string.
pub const TEXT_MAX_CHARS: usize = 1024;

/// One reading as line protocol: tags site, device, point; fields `value`
/// (float; bools as 0/1; absent when the quality is bad), `text` for ASCII
/// points, and `quality` (0 good, 1 bad); nanosecond timestamp of the poll.
/// The result never contains `\n` or `\r`.
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
            Some(Value::Text(t)) => fields.push(format!("text=\"{}\"", escape_text(t))),
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

/// A measurement name or tag: `chars`, `\` and control characters
/// escaped. A line feed cannot be escaped in a tag, so control characters
/// are replaced (ids come from the validated config; this is a last guard).
fn escape(s: &str, chars: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push('\u{FFFD}');
            continue;
        }
        if chars.contains(c) || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A string field from a device: `"` and `\` escaped as line protocol
/// asks; control characters written as visible escapes (`\n`, `\r`, `\t`,
/// `\x07`), since a raw line feed would end the line and let the rest of
/// the text be read as a line of its own; cut at [`TEXT_MAX_CHARS`].
fn escape_text(t: &str) -> String {
    let mut out = String::with_capacity(t.len().min(TEXT_MAX_CHARS) + 8);
    for c in t.chars().take(TEXT_MAX_CHARS) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\\\n"),
            '\r' => out.push_str("\\\\r"),
            '\t' => out.push_str("\\\\t"),
            c if c.is_control() => out.push_str(&format!("\\\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// What one answer of the write endpoint means for its batch.
#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    Written,
    /// The server's trouble (5xx, 408, 429, timeout, connection).
    Retry(String),
    /// The configuration's trouble (401/403/404): retried, and reported.
    Fault(GatewayFault, String),
    /// 413: split the batch.
    TooLarge(String),
    /// 400 and other 4xx: some line is refused.
    BadData(String),
}

impl Verdict {
    fn outcome(self) -> Outcome {
        match self {
            Verdict::Written => Outcome::Delivered,
            Verdict::Retry(why) | Verdict::Fault(_, why) => Outcome::Retry(why),
            Verdict::TooLarge(why) | Verdict::BadData(why) => Outcome::Rejected(why),
        }
    }
}

type Request = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// Rows of a batch sent together (a whole batch, or a piece of one being
/// split or bisected).
struct Part {
    queue: QueueId,
    ids: Vec<i64>,
    lines: Vec<String>,
}

/// Where the sink reports a [`GatewayFault`] raised (`Some(why)`) or gone
/// (`None`); the runtime hands it to the engine.
pub type FaultTx = mpsc::UnboundedSender<(GatewayFault, Option<String>)>;

pub struct InfluxSink {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    batch: usize,
    flush: Duration,
    /// What is left of the batch handed over, oldest first; the head is on
    /// the wire as `request`.
    parts: VecDeque<Part>,
    request: Option<Request>,
    faults: Option<FaultTx>,
    /// The fault reported last, until a 2xx clears it.
    fault: Option<GatewayFault>,
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
            parts: VecDeque::new(),
            request: None,
            faults: None,
            fault: None,
            closing: false,
        })
    }

    /// Reports token and bucket faults to `tx` (raised and cleared).
    pub fn with_faults(mut self, tx: FaultTx) -> InfluxSink {
        self.faults = Some(tx);
        self
    }

    /// Writes one batch of queued rows (line protocol) as one request and
    /// says how it ended (no splitting: that is the driven sink's job).
    pub async fn write(&self, rows: &[Row]) -> Outcome {
        let lines: Vec<String> = rows.iter().map(|r| r.body.clone()).collect();
        self.post(&lines).await.outcome()
    }

    fn post(&self, lines: &[String]) -> impl Future<Output = Verdict> + Send + 'static {
        let mut body = Vec::with_capacity(lines.len() * 100);
        for l in lines {
            body.extend_from_slice(l.as_bytes());
            body.push(b'\n');
        }
        let (client, url, token) = (self.client.clone(), self.url.clone(), self.token.clone());
        async move { Self::send_body(client, url, token, body).await }
    }

    async fn send_body(
        client: reqwest::Client,
        url: String,
        token: Option<String>,
        body: Vec<u8>,
    ) -> Verdict {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if let Err(e) = gz.write_all(&body) {
            return Verdict::Retry(format!("gzip: {e}"));
        }
        let body = match gz.finish() {
            Ok(b) => b,
            Err(e) => return Verdict::Retry(format!("gzip: {e}")),
        };
        let mut req = client
            .post(&url)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
        if let Some(t) = &token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        let started = std::time::Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            // Neither the URL (no secrets in it) nor the token is in
            // reqwest's error text.
            Err(e) => return Verdict::Retry(e.to_string()),
        };
        let status = resp.status();
        if status.is_success() {
            // Only acknowledged writes count: a refusal's latency says
            // nothing about delivery.
            crate::metrics::metrics()
                .publish_seconds
                .with_label_values(&["influxdb"])
                .observe(started.elapsed().as_secs_f64());
            return Verdict::Written;
        }
        let text: String = match resp.text().await {
            Ok(t) => t.chars().take(300).collect(),
            // The answer's body did not arrive: the verdict still stands.
            Err(_) => String::new(),
        };
        let why = format!("{status}: {text}");
        match status.as_u16() {
            401 | 403 => Verdict::Fault(GatewayFault::InfluxAuth, why),
            404 => Verdict::Fault(GatewayFault::InfluxBucket, why),
            413 => Verdict::TooLarge(why),
            408 | 429 => Verdict::Retry(why),
            400..=499 => Verdict::BadData(why),
            _ => Verdict::Retry(why),
        }
    }

    /// Puts the head part on the wire, if there is one.
    fn start_next(&mut self) {
        self.request = self
            .parts
            .front()
            .map(|p| Box::pin(self.post(&p.lines)) as Request);
    }

    /// Tells the runtime when the fault changes (raised, another, gone).
    fn report(&mut self, now: Option<(GatewayFault, &str)>) {
        let new = now.map(|(f, _)| f);
        if new == self.fault {
            return;
        }
        if let Some(tx) = &self.faults {
            if let Some(old) = self.fault {
                let _ = tx.send((old, None));
            }
            if let Some((f, why)) = now {
                let _ = tx.send((f, Some(why.to_string())));
            }
        }
        self.fault = new;
    }
}

/// One batch of `batch_size` rows at a time, sent as one request, or as
/// pieces of it while splitting (413) or bisecting (400); each delivered or
/// refused piece is settled on its own, oldest first.
impl Sink for InfluxSink {
    fn room(&self, _queue: QueueId) -> usize {
        if self.parts.is_empty() && !self.closing {
            self.batch
        } else {
            0
        }
    }

    fn send(&mut self, queue: QueueId, rows: Vec<Row>) {
        let (ids, lines) = rows.into_iter().map(|r| (r.id, r.body)).unzip();
        self.parts.push_back(Part { queue, ids, lines });
        self.start_next();
    }

    async fn progress(&mut self) -> Progress {
        loop {
            if self.closing {
                return Progress::Closed;
            }
            let Some(req) = self.request.as_mut() else {
                return std::future::pending().await;
            };
            // Polled in place: a cancelled `progress` leaves the request
            // running for the next call. Everything after the await is
            // synchronous, so no verdict is lost to cancellation.
            let verdict = req.await;
            self.request = None;
            let part = self.parts.pop_front().expect("a part for each request");
            match verdict {
                Verdict::Written => {
                    self.report(None);
                    self.start_next();
                    return Progress::Settled(part.queue, part.ids, Outcome::Delivered);
                }
                Verdict::Retry(why) => {
                    self.parts.clear();
                    return Progress::Settled(part.queue, part.ids, Outcome::Retry(why));
                }
                Verdict::Fault(f, why) => {
                    self.report(Some((f, &why)));
                    self.parts.clear();
                    return Progress::Settled(part.queue, part.ids, Outcome::Retry(why));
                }
                v @ (Verdict::TooLarge(_) | Verdict::BadData(_)) if part.ids.len() > 1 => {
                    // Halves, the older first; each is sent on its own.
                    let mid = part.ids.len() / 2;
                    let (mut ids, mut lines) = (part.ids, part.lines);
                    let (ids2, lines2) = (ids.split_off(mid), lines.split_off(mid));
                    tracing::debug!(rows = ids.len() + ids2.len(), verdict = ?v, "InfluxDB refused a batch: sending it in halves");
                    let queue = part.queue;
                    self.parts.push_front(Part {
                        queue,
                        ids: ids2,
                        lines: lines2,
                    });
                    self.parts.push_front(Part { queue, ids, lines });
                    self.start_next();
                }
                v => {
                    // One line the server refuses on its own: bad data.
                    self.start_next();
                    return Progress::Settled(part.queue, part.ids, v.outcome());
                }
            }
        }
    }

    fn reset(&mut self) {
        self.parts.clear();
        self.request = None;
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

    #[test]
    fn device_text_cannot_start_a_new_line_and_is_capped() {
        let evil = "A\nreading,site=s,device=d,point=p value=666.0 1\r\"\\\t\u{7}Z";
        let t = reading("tag", Some(Value::Text(evil.into())), Quality::Good);
        let l = line("reading", "s", &t);
        assert!(!l.contains('\n') && !l.contains('\r'), "{l}");
        assert!(
            l.contains(r#" text="A\\nreading,site=s,device=d,point=p value=666.0 1\\r\"\\\\t\\x07Z",quality=0i "#),
            "{l}"
        );
        let long = reading("tag", Some(Value::Text("é".repeat(5000))), Quality::Good);
        let l = line("reading", "s", &long);
        assert_eq!(l.matches('é').count(), TEXT_MAX_CHARS);
        let mut tagged = reading("p\nq", Some(Value::Num(1.0)), Quality::Good);
        tagged.device = "d\r".into();
        let l = line("reading", "s", &tagged);
        assert!(!l.contains('\n') && !l.contains('\r'), "{l}");
    }
}
