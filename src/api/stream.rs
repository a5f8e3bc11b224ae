//! `GET /api/events/stream`: the operator page's live feed, as
//! server-sent events.
//!
//! | event | data |
//! |---|---|
//! | `snapshot` | everything the page shows: site, points, active alarms, devices, health, queue depths (first on every connection, and after a `resync`) |
//! | `points` | the points whose value or quality changed, as in `/api/points` |
//! | `devices` | the devices polled since the last event (online, last error, polls/s, last good poll) |
//! | `alarms` | the whole active list, most severe first, whenever it changed |
//! | `alarm` | one transition as it happens: `state` `raised`, `escalated`, `acknowledged` or `cleared` |
//! | `status` | `{"health", "faults"}` when the gateway's own faults change |
//! | `resync` | this client fell behind and lost events; a fresh `snapshot` follows |
//! | `session_ended` | the session the stream was opened with ended (logout, expiry, user removed, password changed); the stream closes after it |
//!
//! Invariants: the engine task never waits for a stream. It sends each
//! event once into a bounded broadcast channel (`state::StreamHub`); a
//! client that reads too slowly loses the oldest and is sent `resync` and a
//! new snapshot, which makes it whole again. A stream subscribes before it
//! takes its snapshot, so an event is at worst seen twice, never missed.
//! At most `state::MAX_STREAMS` streams are open at once (503 beyond), a
//! comment every [`KEEP_ALIVE`] keeps idle proxies from closing one, and
//! every stream ends when the gateway stops (the API's graceful stop would
//! otherwise wait for pages that never close). A stream opened with a
//! session ends within [`SESSION_CHECK`] of that session's end, unless reads
//! are open to all: a page logged out elsewhere, or left open past the idle
//! limit, must not go on showing the site. Checking does not count as using
//! the session, so an open page alone does not keep it alive.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::Stream;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::auth::LastingReader;
use super::state::{Shared, StreamEvent, alarm_views};
use crate::queue::QueueId;

/// A comment line this often on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How often an open stream asks whether its session still stands.
pub const SESSION_CHECK: Duration = Duration::from_secs(1);

/// How soon a browser reconnects after the stream broke (a gateway
/// restart): told to it in the first event.
const RECONNECT: Duration = Duration::from_secs(2);

/// The route's handler.
pub async fn events_stream(reader: LastingReader, State(sh): State<Arc<Shared>>) -> Response {
    let Ok(permit) = sh.stream.slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "too many event streams open"})),
        )
            .into_response();
    };
    let rx = sh.stream.subscribe();
    let first = Event::default()
        .event("snapshot")
        .retry(RECONNECT)
        .data(snapshot(&sh).to_string());
    let feed = Feed::new(sh, rx, reader, first, permit);
    Sse::new(events(feed))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// Everything the page shows, as one JSON document.
pub fn snapshot(sh: &Shared) -> serde_json::Value {
    let points = sh.points.read().unwrap_or_else(|p| p.into_inner()).clone();
    let devices = sh.devices.read().unwrap_or_else(|p| p.into_inner()).clone();
    let alarms = alarm_views(&sh.id, &sh.alarms.read().unwrap_or_else(|p| p.into_inner()));
    let faults = sh.faults();
    let queues: serde_json::Map<String, serde_json::Value> = QueueId::ALL
        .iter()
        .map(|q| (q.label().to_string(), json!(sh.store.depth(*q))))
        .collect();
    json!({
        "site": {"id": sh.cfg.site.id, "name": sh.cfg.site.name, "kind": sh.cfg.site.kind.as_str()},
        "gateway": sh.cfg.gateway.id,
        "now": sh.id.time(Utc::now()),
        "points": points,
        "alarms": alarms,
        "devices": devices,
        "queues": queues,
        "health": if faults.is_empty() { "ok" } else { "degraded" },
        "faults": faults,
    })
}

/// One open stream's state.
struct Feed {
    sh: Arc<Shared>,
    rx: broadcast::Receiver<StreamEvent>,
    stop: CancellationToken,
    /// Events to send before the next one from the channel.
    queued: VecDeque<Event>,
    /// Who reads, asked every [`SESSION_CHECK`] whether they still may.
    reader: LastingReader,
    check: tokio::time::Interval,
    /// The session ended: close once `queued` is sent.
    ending: bool,
    /// Held while the stream is open: dropped with it when the client goes.
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    fn new(
        sh: Arc<Shared>,
        rx: broadcast::Receiver<StreamEvent>,
        reader: LastingReader,
        first: Event,
        permit: OwnedSemaphorePermit,
    ) -> Feed {
        let mut check = tokio::time::interval(SESSION_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Feed {
            stop: sh.stream.stop.clone(),
            sh,
            rx,
            queued: VecDeque::from([first]),
            reader,
            check,
            ending: false,
            _permit: permit,
        }
    }
}

fn events(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(feed, |mut f| async move {
        if let Some(e) = f.queued.pop_front() {
            return Some((Ok(e), f));
        }
        if f.ending {
            return None;
        }
        let next = loop {
            tokio::select! {
                _ = f.stop.cancelled() => return None,
                _ = f.check.tick() => {
                    if !f.reader.still_allowed() {
                        // Said before closing, so the page shows its login
                        // form instead of reconnecting into a 401.
                        f.ending = true;
                        let e = Event::default().event("session_ended").data("{}");
                        return Some((Ok(e), f));
                    }
                }
                next = f.rx.recv() => break next,
            }
        };
        match next {
            Ok(ev) => {
                let e = Event::default().event(ev.kind).data(&*ev.data);
                Some((Ok(e), f))
            }
            Err(RecvError::Lagged(lost)) => {
                tracing::debug!(lost, "an event stream fell behind: resync");
                let snap = snapshot(&f.sh).to_string();
                f.queued
                    .push_back(Event::default().event("snapshot").data(snap));
                let e = Event::default()
                    .event("resync")
                    .data(json!({"lost": lost}).to_string());
                Some((Ok(e), f))
            }
            Err(RecvError::Closed) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Mutex, RwLock};

    use futures::StreamExt;
    use tokio::sync::mpsc;

    use super::*;
    use crate::api::state::{MAX_STREAMS, STREAM_BUFFER, StreamHub};

    fn shared(dir: &std::path::Path) -> Arc<Shared> {
        let text = format!(
            "[site]\nid = \"s\"\nkind = \"coal_mine\"\n[gateway]\nid = \"g\"\ndata_dir = \"{}\"\n",
            dir.display()
        );
        let cfg = crate::config::load_str(&text, &dir.join("c.toml")).expect("config");
        let store = crate::queue::Store::open(dir, 1 << 20, 1 << 20).expect("store");
        Arc::new(Shared {
            id: crate::sink::uplink::contract::Identity::from_config(&cfg),
            cfg: Arc::new(cfg),
            store: Arc::new(store),
            points: RwLock::new(Vec::new()),
            alarms: RwLock::new(Vec::new()),
            devices_online: RwLock::new(HashMap::new()),
            devices: RwLock::new(Vec::new()),
            online: Mutex::new(Default::default()),
            counts: Default::default(),
            acks: mpsc::channel(1).0,
            calibrate: mpsc::channel(1).0,
            calibrations: RwLock::new(Vec::new()),
            status_wake: Default::default(),
            engine_tick: Mutex::new(None),
            stream: StreamHub::new(CancellationToken::new()),
        })
    }

    /// A reader of a gateway without users on loopback: reads are open.
    fn anyone() -> LastingReader {
        LastingReader::anonymous(&Default::default())
    }

    /// The body a client reads: one chunk per event.
    fn feed(sh: &Arc<Shared>) -> axum::body::BodyDataStream {
        let feed = events(Feed::new(
            sh.clone(),
            sh.stream.subscribe(),
            anyone(),
            Event::default().event("snapshot").data("{}"),
            sh.stream.slots.clone().try_acquire_owned().unwrap(),
        ));
        Sse::new(feed)
            .into_response()
            .into_body()
            .into_data_stream()
    }

    /// What a browser reads of one event: its `event:` name.
    fn name(chunk: Option<Result<axum::body::Bytes, axum::Error>>) -> String {
        let text = String::from_utf8_lossy(&chunk.expect("an event").unwrap()).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap_or("")
            .to_string()
    }

    /// A client that does not read loses the oldest events and is told to
    /// resync, with a fresh snapshot; the sender never waited for it.
    #[tokio::test]
    async fn a_lagging_client_is_resynced_and_never_blocks_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shared(dir.path());
        let mut s = feed(&sh);
        for i in 0..STREAM_BUFFER + 10 {
            sh.stream.send("points", &json!([{"i": i}]));
        }
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(name(s.next().await));
        }
        assert_eq!(names, ["snapshot", "resync", "snapshot", "points"]);
        // Nothing is serialised while nobody listens.
        drop(s);
        assert!(!sh.stream.listening());
    }

    /// The streams end when the gateway stops, and no more than
    /// MAX_STREAMS are open at once.
    #[tokio::test]
    async fn streams_are_bounded_and_end_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shared(dir.path());
        let mut open = Vec::new();
        for _ in 0..MAX_STREAMS {
            let r = events_stream(anyone(), State(sh.clone())).await;
            assert_eq!(r.status(), StatusCode::OK);
            open.push(r);
        }
        let r = events_stream(anyone(), State(sh.clone())).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        // A stream closed gives its slot back.
        open.pop();
        let r = events_stream(anyone(), State(sh.clone())).await;
        assert_eq!(r.status(), StatusCode::OK);
        drop((open, r));

        let mut s = feed(&sh);
        assert_eq!(name(s.next().await), "snapshot");
        sh.stream.stop.cancel();
        let end = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
        assert!(matches!(end, Ok(None)), "the stream ends at stop");
    }
}
