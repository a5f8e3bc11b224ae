//! What polling one Modbus device means, whatever carries its frames: the
//! schedule of its planned reads, turning an answer (or its absence) into
//! readings, judging each poll cycle as a whole into one health input
//! (`cycle.rs`), the metrics and logs of each poll, and the
//! write-then-read-back of a point.
//!
//! `tcp.rs` and `rtu.rs` only add the session handling of their transport.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::{Modbus, ModbusPoint as Point};
use crate::config::{ByteOrder, DataType, Device, RegisterKind};
use crate::metrics::metrics;
use crate::model::{BadReason, Input, Quality, Reading, Value};
use crate::source::{WriteError, WriteRequest};

use super::cycle::{Cycle, Mode};
use super::decode::{self, data_type, width};
use super::exchange::{Data, Op, RequestError, Transport, with_retries};
use super::plan::{PlannedRead, describe, plan};

/// The rule engine's channel is closed: the source should stop.
#[derive(Debug, thiserror::Error)]
#[error("the input channel is closed")]
pub struct Closed;

/// One device's planned reads and when each is due next.
pub struct DevicePoller {
    pub device: Arc<Device<Modbus>>,
    pub id: Arc<str>,
    pub reads: Vec<PlannedRead>,
    point_ids: Vec<Arc<str>>,
    next_due: Vec<Instant>,
    /// The timestamp of each read's last readings.
    last_at: Vec<Option<chrono::DateTime<Utc>>>,
    /// The cycle under way, if any.
    cycle: Option<Cycle>,
    /// Consecutive finished cycles in which nothing answered.
    silent_cycles: u32,
    /// A silent device is asked only every this many cycles (1: always).
    rest_every: u32,
    /// The label of the last cycle's verdict, to log changes only.
    last_verdict: Option<&'static str>,
}

impl DevicePoller {
    /// Plans the device's reads (logged once, one line per read); every
    /// read is first due at `now`.
    pub fn new(device: Arc<Device<Modbus>>, now: Instant) -> Self {
        let reads = plan(&device);
        tracing::info!(device = %device.id, reads = reads.len(), "modbus poll plan:\n{}", describe(&reads));
        DevicePoller {
            id: Arc::from(device.id.as_str()),
            point_ids: device
                .points
                .iter()
                .map(|p| Arc::from(p.id.as_str()))
                .collect(),
            next_due: vec![now; reads.len()],
            last_at: vec![None; reads.len()],
            reads,
            device,
            cycle: None,
            silent_cycles: 0,
            rest_every: 1,
            last_verdict: None,
        }
    }

    /// After a cycle with no answer, ask the device only every `n`th cycle
    /// (see `cycle.rs`). An RTU line sets it; a TCP device costs no one else.
    pub fn with_rest_every(mut self, n: u32) -> Self {
        self.rest_every = n.max(1);
        self
    }

    /// The read due first, and when. Ties go to the lower index, so reads
    /// keep their config order.
    pub fn next_due(&self) -> Option<(usize, Instant)> {
        self.next_due
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(i, t)| (t, i))
    }

    /// Sets the next due time of read `i` one interval after its previous
    /// one (keeping the cadence), but not in the past: a device that fell
    /// behind is polled as soon as possible, without bursts to catch up.
    pub fn reschedule(&mut self, i: usize, now: Instant) {
        let next = self.next_due[i] + self.reads[i].interval;
        self.next_due[i] = next.max(now);
    }

    /// The cycle under way; opens one over the reads due now (and `i`).
    fn cycle(&mut self, i: usize, now: Instant) -> &mut Cycle {
        let due = (0..self.reads.len()).filter(|&j| j == i || self.next_due[j] <= now);
        self.cycle
            .get_or_insert_with(|| Cycle::open(due, self.silent_cycles, self.rest_every))
    }

    /// Polls read `i` through `transport` (with the device's retries, or
    /// as the cycle's mode says) and reports the outcome. Returns
    /// `Err(Closed)` when the rule engine is gone.
    pub async fn poll<T: Transport>(
        &mut self,
        i: usize,
        transport: &mut T,
        tx: &mpsc::Sender<Input>,
    ) -> Result<(), Closed> {
        let op = Op::read(&self.reads[i]);
        // From the first request to the decoded answer or the last error,
        // retries included: what the read cost the line.
        let timer = metrics()
            .poll_seconds
            .with_label_values(&[&*self.id])
            .start_timer();
        let result = match self.cycle(i, Instant::now()).mode {
            Mode::Normal => with_retries(transport, &op, self.device.retries).await,
            Mode::Probe => transport.exchange(&op, false).await,
            Mode::Rest => Err(RequestError::Resting(self.silent_cycles)),
        };
        match &result {
            // A resting read sent nothing: no latency to record.
            Err(RequestError::Resting(_)) => {
                timer.stop_and_discard();
            }
            _ => timer.observe_duration(),
        }
        self.reschedule(i, Instant::now());
        self.report(i, result, tx).await
    }

    /// Sends the readings of read `i`, and the device's health when its
    /// cycle is complete, and updates the metrics.
    pub async fn report(
        &mut self,
        i: usize,
        result: Result<Data, RequestError>,
        tx: &mpsc::Sender<Input>,
    ) -> Result<(), Closed> {
        let at = self.stamp(i, Utc::now());
        let readings = self.readings(i, &result, at);
        let undecodable = readings
            .iter()
            .filter(|r| matches!(r.quality, Quality::Bad(BadReason::Decode(_))))
            .count();
        let (ok, label, detail) = match &result {
            Ok(_) if undecodable > 0 => (
                true,
                "decode",
                format!("{undecodable} point(s) could not be decoded"),
            ),
            Ok(_) => (true, "ok", String::new()),
            Err(e) => (e.is_answer(), e.metric_label(), e.to_string()),
        };
        let r = &self.reads[i];
        tracing::trace!(device = %self.id, result = label, kind = ?r.kind, start = r.start, count = r.count, ok, "modbus poll: {detail}");
        let m = metrics();
        m.polls.with_label_values(&[&*self.id, label]).inc();
        m.readings
            .with_label_values(&[&*self.id])
            .inc_by(readings.len() as u64);

        let what = format!(
            "{} {}-{}",
            format!("{:?}", r.kind).to_lowercase(),
            r.start,
            r.end() - 1
        );
        let cycle = self.cycle(i, Instant::now());
        cycle.record(i, &what, result.as_ref().map(|_| ()));
        let verdict = cycle.verdict();
        tx.send(Input::Readings(readings))
            .await
            .map_err(|_| Closed)?;
        let Some(verdict) = verdict else {
            return Ok(());
        };
        self.cycle = None;
        self.silent_cycles = if verdict.answered() {
            0
        } else {
            self.silent_cycles.saturating_add(1)
        };
        self.log_cycle(verdict.label(), verdict.detail());
        m.device_up
            .with_label_values(&[&*self.id])
            .set(i64::from(verdict.answered()));
        tx.send(Input::DeviceHealth {
            device: self.id.clone(),
            ok: verdict.answered(),
            detail: verdict.detail().to_string(),
            at,
        })
        .await
        .map_err(|_| Closed)
    }

    /// The timestamp of read `i`'s readings completed at `now`. A poll that
    /// fell behind is repeated at once (`reschedule`), so on a loaded host
    /// two polls of one read can finish within the same millisecond; the
    /// history and InfluxDB key a point's readings by millisecond, where the
    /// second would overwrite the first. Such a reading is stamped 1 ms after
    /// the previous one instead: every reading keeps its own time.
    fn stamp(&mut self, i: usize, now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
        let at = match self.last_at[i] {
            Some(last) if now.timestamp_millis() <= last.timestamp_millis() => {
                last + chrono::Duration::milliseconds(1)
            }
            _ => now,
        };
        self.last_at[i] = Some(at);
        at
    }

    /// Readings for the points of read `i`: decoded values, or every point
    /// bad with the request's reason.
    pub fn readings(
        &self,
        i: usize,
        result: &Result<Data, RequestError>,
        at: chrono::DateTime<Utc>,
    ) -> Vec<Reading> {
        let read = &self.reads[i];
        read.points
            .iter()
            .map(|&(idx, offset)| {
                let outcome = match result {
                    Ok(data) => point_value(
                        &self.device.points[idx],
                        self.device.byte_order,
                        data,
                        offset,
                    )
                    .map_err(|e| BadReason::Decode(e.to_string())),
                    Err(e) => Err(e.bad_reason()),
                };
                let (value, quality) = match outcome {
                    Ok(v) => (Some(v), Quality::Good),
                    Err(reason) => (None, Quality::Bad(reason)),
                };
                Reading {
                    point: self.point_ids[idx].clone(),
                    device: self.id.clone(),
                    value,
                    quality,
                    at,
                }
            })
            .collect()
    }

    /// Logs when a cycle's verdict changes (ok → partial → none …), so a
    /// device down for a day logs two lines, not one per poll.
    fn log_cycle(&mut self, label: &'static str, detail: &str) {
        let changed = self.last_verdict.replace(label) != Some(label);
        match (changed, label) {
            (true, "ok") => tracing::info!(device = %self.id, "modbus device answering"),
            (true, "partial") => {
                tracing::warn!(device = %self.id, "modbus device partly answering: {detail}")
            }
            (true, _) => tracing::warn!(device = %self.id, "modbus device not answering: {detail}"),
            (false, "ok") => tracing::trace!(device = %self.id, "modbus cycle ok"),
            (false, _) => {
                tracing::debug!(device = %self.id, result = label, "modbus cycle failed: {detail}")
            }
        }
    }
}

/// Decodes the point whose first register (or bit) is at `offset` in `data`.
fn point_value(
    point: &Point,
    device_order: ByteOrder,
    data: &Data,
    offset: u16,
) -> Result<Value, decode::DecodeError> {
    let from = usize::from(offset);
    let to = from + usize::from(width(point));
    match data {
        Data::Words(w) => decode::decode(point, device_order, w.get(from..to).unwrap_or(&[])),
        Data::Bits(b) => decode::decode_bit(point, b.get(from..to).unwrap_or(&[])),
        Data::Written => Err(decode::DecodeError::Length {
            expected: to - from,
            got: 0,
        }),
    }
}

/// Serves one write request: writes the point, reads it back and replies
/// with the value read back (or why not). Writes are not retried: the
/// caller (a rule action) decides whether to try again.
pub async fn serve_write<T: Transport>(
    transport: &mut T,
    device: &Device<Modbus>,
    req: WriteRequest,
) {
    let result = write_point(transport, device, &req.point, &req.value).await;
    match &result {
        Ok(v) => {
            tracing::info!(device = %device.id, point = %req.point, value = %req.value, read_back = %v, "modbus write done")
        }
        Err(e) => {
            tracing::warn!(device = %device.id, point = %req.point, value = %req.value, "modbus write failed: {e}")
        }
    }
    let _ = req.reply.send(result);
}

/// Writes `value` to the point `point_id` of `device` and reads it back.
pub async fn write_point<T: Transport>(
    transport: &mut T,
    device: &Device<Modbus>,
    point_id: &str,
    value: &Value,
) -> Result<Value, WriteError> {
    let point = device
        .points
        .iter()
        .find(|p| p.id == point_id)
        .ok_or_else(|| WriteError::NoPoint {
            point: point_id.into(),
            device: device.id.clone(),
        })?;
    if !point.writable {
        return Err(WriteError::NotWritable(point_id.into()));
    }
    let (kind, addr) = (point.register, point.address);
    let order = device.byte_order;
    let op = match (kind, data_type(point)) {
        (RegisterKind::Coil, _) => Op::WriteBits {
            addr,
            bits: vec![decode::encode_bit(value)?],
        },
        (RegisterKind::Holding, DataType::Bool) => {
            // One bit of a register: read-modify-write of the whole register.
            let current = match transport
                .exchange(
                    &Op::Read {
                        kind,
                        start: addr,
                        count: 1,
                    },
                    false,
                )
                .await?
            {
                Data::Words(w) if w.len() == 1 => w[0],
                _ => return Err(WriteError::UnexpectedAnswer),
            };
            Op::WriteWords {
                addr,
                words: vec![decode::set_bit(point, current, value)?],
            }
        }
        (RegisterKind::Holding, _) => Op::WriteWords {
            addr,
            words: decode::encode(point, order, value)?,
        },
        (RegisterKind::Discrete | RegisterKind::Input, _) => {
            return Err(WriteError::ReadOnly {
                point: point_id.into(),
                kind,
            });
        }
    };
    transport.exchange(&op, false).await?;
    let back = transport
        .exchange(
            &Op::Read {
                kind,
                start: addr,
                count: width(point),
            },
            false,
        )
        .await?;
    point_value(point, order, &back, 0).map_err(WriteError::ReadBack)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::source::modbus::plan::tests::{device, pt};

    fn poller(points: Vec<Point>) -> DevicePoller {
        DevicePoller::new(Arc::new(device(points)), Instant::now())
    }

    #[tokio::test]
    async fn schedule_keeps_cadence_and_skips_missed_ticks() {
        let mut fast = pt("fast", RegisterKind::Holding, 50, DataType::U16);
        fast.group = Some("fast".into());
        let mut d = device(vec![
            pt("slow", RegisterKind::Holding, 0, DataType::U16),
            fast,
        ]);
        d.groups = vec![crate::config::PollGroup {
            id: "fast".into(),
            interval: crate::config::Dur(Duration::from_millis(250)),
        }];
        let t0 = Instant::now();
        let mut p = DevicePoller::new(Arc::new(d), t0);
        assert_eq!(p.next_due(), Some((0, t0)), "ties go to the first read");
        p.reschedule(0, t0 + Duration::from_millis(20));
        assert_eq!(p.next_due(), Some((1, t0)));
        p.reschedule(1, t0 + Duration::from_millis(30));
        assert_eq!(p.next_due(), Some((1, t0 + Duration::from_millis(250))));
        // a late poll keeps the cadence: due times stay on the 250 ms grid
        p.reschedule(1, t0 + Duration::from_millis(300));
        assert_eq!(p.next_due(), Some((1, t0 + Duration::from_millis(500))));
        // far behind: due now, not a burst of catch-up polls
        let now = chrono::Utc::now();
        let first = p.stamp(0, now);
        let second = p.stamp(0, now);
        assert_eq!(first, now);
        assert!(
            second.timestamp_millis() > first.timestamp_millis(),
            "two polls in one millisecond get distinct timestamps"
        );
        let late = t0 + Duration::from_secs(10);
        p.reschedule(1, late);
        assert_eq!(p.next_due(), Some((0, t0 + Duration::from_secs(1))));
        p.reschedule(0, late);
        assert_eq!(p.next_due(), Some((0, late)));
    }

    #[tokio::test]
    async fn readings_of_one_read() {
        let mut nan = pt("f", RegisterKind::Holding, 1, DataType::F32);
        nan.scale = 2.0;
        let p = poller(vec![pt("a", RegisterKind::Holding, 0, DataType::U16), nan]);
        let at = Utc::now();

        let ok = p.readings(0, &Ok(Data::Words(vec![7, 0x3FC0, 0])), at);
        assert_eq!(ok.len(), 2);
        assert_eq!((&*ok[0].point, &ok[0].value), ("a", &Some(Value::Num(7.0))));
        assert_eq!(ok[1].value, Some(Value::Num(3.0)));
        assert!(
            ok.iter()
                .all(|r| r.quality.is_good() && r.at == at && &*r.device == "dev")
        );

        // a NaN makes only its own point bad
        let half = p.readings(0, &Ok(Data::Words(vec![7, 0x7FC0, 0])), at);
        assert!(half[0].quality.is_good());
        assert!(matches!(
            half[1].quality,
            Quality::Bad(BadReason::Decode(_))
        ));
        assert_eq!(half[1].value, None);

        // an exception or a timeout makes every point of the read bad
        let exc = p.readings(0, &Err(RequestError::Exception(2)), at);
        assert!(
            exc.iter()
                .all(|r| r.quality == Quality::Bad(BadReason::Exception(2)) && r.value.is_none())
        );
        let down = p.readings(0, &Err(RequestError::NotConnected("refused".into())), at);
        assert!(
            down.iter()
                .all(|r| matches!(r.quality, Quality::Bad(BadReason::Transport(_))))
        );
    }

    #[tokio::test]
    async fn report_sends_readings_then_health() {
        let mut p = poller(vec![pt("a", RegisterKind::Holding, 0, DataType::U16)]);
        let (tx, mut rx) = mpsc::channel(8);
        p.report(0, Err(RequestError::Exception(2)), &tx)
            .await
            .unwrap();
        assert!(matches!(rx.recv().await, Some(Input::Readings(r)) if r.len() == 1));
        let Some(Input::DeviceHealth { ok, detail, .. }) = rx.recv().await else {
            panic!()
        };
        assert!(ok, "an exception is an answer");
        assert!(detail.contains("exception"), "{detail}");
        p.report(0, Err(RequestError::Timeout(Duration::from_millis(5))), &tx)
            .await
            .unwrap();
        let _ = rx.recv().await;
        let Some(Input::DeviceHealth { ok, .. }) = rx.recv().await else {
            panic!()
        };
        assert!(!ok);
        drop(rx);
        assert!(
            p.report(0, Ok(Data::Words(vec![1])), &tx).await.is_err(),
            "closed channel"
        );
    }
}
