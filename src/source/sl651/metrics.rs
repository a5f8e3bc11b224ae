//! What the SL 651 receiver counts: every frame by station and outcome,
//! in `riskgate_sl651_frames_total`, registered in the gateway's registry
//! (`/metrics`). Each count is logged in the same call, so logs and
//! metrics agree.
//!
//! Stations riskgate does not know are counted under `unknown` (their
//! address goes to the log): a stranger cannot grow the label set.

use std::fmt::Display;
use std::sync::OnceLock;

use prometheus::{IntCounterVec, Opts};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Duplicate,
    KeepAlive,
    Picture,
    BadCrc,
    WrongPassword,
    WrongCentre,
    UnknownStation,
    Truncated,
    Oversized,
    Malformed,
    Garbage,
    Incomplete,
    NotSupported,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Duplicate => "duplicate",
            Outcome::KeepAlive => "keepalive",
            Outcome::Picture => "picture",
            Outcome::BadCrc => "bad_crc",
            Outcome::WrongPassword => "wrong_password",
            Outcome::WrongCentre => "wrong_centre",
            Outcome::UnknownStation => "unknown_station",
            Outcome::Truncated => "truncated",
            Outcome::Oversized => "oversized",
            Outcome::Malformed => "malformed",
            Outcome::Garbage => "garbage",
            Outcome::Incomplete => "incomplete",
            Outcome::NotSupported => "not_supported",
        }
    }

    fn is_failure(self) -> bool {
        !matches!(
            self,
            Outcome::Ok | Outcome::Duplicate | Outcome::KeepAlive | Outcome::Picture
        )
    }
}

fn frames() -> &'static IntCounterVec {
    static C: OnceLock<IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        let c = IntCounterVec::new(
            Opts::new(
                "riskgate_sl651_frames_total",
                "SL 651 frames by station (device id, or unknown) and outcome",
            ),
            &["station", "result"],
        )
        .expect("metric definition");
        // Registered once; a second registry entry would be a bug here.
        let _ = crate::metrics::metrics()
            .registry
            .register(Box::new(c.clone()));
        c
    })
}

/// Counts one frame and logs it with `detail`.
pub fn count(station: &str, outcome: Outcome, detail: &dyn Display) {
    frames()
        .with_label_values(&[station, outcome.as_str()])
        .inc();
    if outcome.is_failure() {
        tracing::warn!(
            station,
            result = outcome.as_str(),
            "sl651 frame refused: {detail}"
        );
    } else {
        tracing::debug!(station, result = outcome.as_str(), "sl651 frame: {detail}");
    }
}

/// The count so far (tests).
pub fn get(station: &str, outcome: Outcome) -> u64 {
    frames()
        .with_label_values(&[station, outcome.as_str()])
        .get()
}
