//! A source task under test (a Modbus TCP device or an RTU line) and the
//! ends of its channels: what the Modbus integration tests drive.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use riskgate::model::{Input, Reading, Value};
use riskgate::source::WriteRequest;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long any single wait of these helpers may take.
pub const LIMIT: Duration = Duration::from_secs(10);

pub struct SourceTask {
    pub rx: mpsc::Receiver<Input>,
    /// One write queue per device, in the order the devices were given.
    pub writes: Vec<mpsc::Sender<WriteRequest>>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl SourceTask {
    /// Spawns `run(write receivers, input sender, shutdown)` for `devices`
    /// write queues.
    pub fn start<F, Fut>(devices: usize, run: F) -> SourceTask
    where
        F: FnOnce(Vec<mpsc::Receiver<WriteRequest>>, mpsc::Sender<Input>, CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(4096);
        let (writes, receivers): (Vec<_>, Vec<_>) = (0..devices).map(|_| mpsc::channel(8)).unzip();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(receivers, tx, shutdown.clone()));
        SourceTask {
            rx,
            writes,
            shutdown,
            task: Some(task),
        }
    }

    /// The next input, whatever it is.
    pub async fn next(&mut self, limit: Duration) -> Input {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .expect("no input from the source in time")
            .expect("source channel closed")
    }

    /// Waits for a reading of `point` for which `pred` holds.
    pub async fn reading(
        &mut self,
        point: &str,
        what: &str,
        pred: impl Fn(&Reading) -> bool,
    ) -> Reading {
        let deadline = Instant::now() + LIMIT;
        let mut last = None;
        while let Ok(Some(input)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            if let Input::Readings(rs) = input {
                for r in rs.into_iter().filter(|r| &*r.point == point) {
                    if pred(&r) {
                        return r;
                    }
                    last = Some(r);
                }
            }
        }
        panic!("no reading of {point} {what} within {LIMIT:?}; last: {last:?}");
    }

    /// Waits for a health input for which `pred(ok, detail)` holds.
    pub async fn health(
        &mut self,
        what: &str,
        pred: impl Fn(bool, &str) -> bool,
    ) -> (bool, String) {
        let deadline = Instant::now() + LIMIT;
        while let Ok(Some(input)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            if let Input::DeviceHealth { ok, detail, .. } = input
                && pred(ok, &detail)
            {
                return (ok, detail);
            }
        }
        panic!("no health input {what} within {LIMIT:?}");
    }

    /// Collects every reading completed within the next `window` (by the
    /// readings' timestamps), grouped by device.
    pub async fn collect(&mut self, window: Duration) -> HashMap<String, Vec<Reading>> {
        while self.rx.try_recv().is_ok() {}
        let from = chrono::Utc::now();
        let to = from + window;
        let end = Instant::now() + window + Duration::from_millis(300);
        let mut out: HashMap<String, Vec<Reading>> = HashMap::new();
        while let Ok(Some(input)) = tokio::time::timeout_at(end, self.rx.recv()).await {
            if let Input::Readings(rs) = input {
                for r in rs.into_iter().filter(|r| r.at >= from && r.at < to) {
                    out.entry(r.device.to_string()).or_default().push(r);
                }
            }
        }
        out
    }

    /// Asks device `device` to write `value` to `point`; its answer.
    pub async fn write(&self, device: usize, point: &str, value: Value) -> Result<Value, String> {
        let (reply, answer) = oneshot::channel();
        self.writes[device]
            .send(WriteRequest {
                point: point.into(),
                value,
                reply,
            })
            .await
            .unwrap();
        tokio::time::timeout(LIMIT, answer)
            .await
            .expect("write answered in time")
            .expect("reply sent")
            .map_err(|e| e.to_string())
    }

    /// Cancels the task and checks that it ends promptly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("source stops promptly")
            .unwrap();
    }
}

impl Drop for SourceTask {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
