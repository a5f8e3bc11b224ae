//! Real-time data for the county (`docs/contract/county-mqtt.md`,
//! "Real-time data"; `docs/telemetry.md`): snapshots, change reports and
//! 5-minute statistics, and the per-device on-line rate.
//!
//! The [`Builder`] is pure like the rule engine: the engine task feeds it
//! every reading and the active alarm levels and calls [`Builder::tick`]
//! with the time; it returns whole messages without a `tseq`. The store
//! numbers them (`Store::append_telemetry`, one transaction with the
//! queue row), and [`encode`] writes the contract's JSON for that number.
//! So `tseq` is gap-free whatever the builder does, and the builder is
//! tested without a clock, a store or a broker.

mod builder;
pub mod online;
mod stats;

use chrono::{DateTime, Utc};
use serde_json::{Value as J, json};

pub use builder::{Builder, MAX_MESSAGE_BYTES};
pub use online::{DeviceRate, OnlineRate};

use crate::sink::uplink::contract::Identity;

pub const TELEMETRY_SCHEMA: &str = "riskgate.telemetry.v1";

/// The three kinds of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Snapshot,
    Change,
    Stats5m,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Change => "change",
            Kind::Stats5m => "stats_5m",
        }
    }
}

/// One telemetry message before it has its `tseq`. `items` are the
/// `points` (snapshot, change) or `stats` (stats_5m) entries, already in
/// their JSON form so that splitting knows their size.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub kind: Kind,
    pub ts: DateTime<Utc>,
    /// (part, parts) of a message split to stay under the size limit.
    pub part: Option<(usize, usize)>,
    pub items: Vec<J>,
}

/// The message as the contract's JSON, for its `tseq`.
pub fn encode(id: &Identity, tseq: u64, m: &Message) -> String {
    let mut v = json!({
        "schema": TELEMETRY_SCHEMA,
        "gateway_id": id.gateway_id,
        "site_id": id.site_id,
        "site_kind": id.site_kind,
        "tseq": tseq,
        "kind": m.kind.as_str(),
        "ts": id.time(m.ts),
    });
    let o = v.as_object_mut().expect("object");
    if let Some(rc) = &id.region_code {
        o.insert("region_code".into(), json!(rc));
    }
    if let Some((part, parts)) = m.part {
        o.insert("part".into(), json!(part));
        o.insert("parts".into(), json!(parts));
    }
    let key = if m.kind == Kind::Stats5m {
        "stats"
    } else {
        "points"
    };
    o.insert(key.into(), J::Array(m.items.clone()));
    v.to_string()
}
