//! The active alarm instances: what the rule kinds may read (is a rule's
//! alarm active, which alarms count towards an escalation) without seeing
//! the machine that changes them (`lifecycle.rs`). Kept apart so that the
//! kinds and the lifecycle do not import each other.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::AlarmKind;

/// One alarm instance: raised once, cleared once, with one `alarm_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub alarm_id: String,
    pub rule_id: String,
    pub kind: AlarmKind,
    pub level: u8,
    pub name: String,
    pub point_id: Option<String>,
    pub value: Option<serde_json::Value>,
    pub threshold: Option<serde_json::Value>,
    pub raised_at: DateTime<Utc>,
    pub acked_by: Option<String>,
    pub acked_at: Option<DateTime<Utc>>,
    pub latching: bool,
    /// Whether the condition still holds; a latching alarm whose condition
    /// is gone waits for its acknowledgement.
    pub condition: bool,
    pub message: String,
    /// Kind-specific facts of the last judgement (contract 1.1 `detail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<crate::model::Detail>,
    /// How often it was escalated because nobody acknowledged it, and
    /// when last (a restart continues from there, not from zero).
    #[serde(default)]
    pub escalations: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
}

/// The active alarm instances.
pub struct Alarms {
    /// Alarm ids carry the site's local time, as the county reads them.
    pub(super) tz: chrono_tz::Tz,
    pub(super) active: BTreeMap<String, Instance>,
    /// Per key, the time written into its last `alarm_id`. A new instance
    /// of the key gets a later one (at least 1 ms), so ids stay unique when
    /// a key is raised, cleared and raised in one millisecond, or after the
    /// wall clock stepped back.
    pub(super) last_id_at: std::collections::HashMap<String, DateTime<Utc>>,
}

impl Alarms {
    pub fn new(tz: chrono_tz::Tz) -> Self {
        Alarms {
            tz,
            active: BTreeMap::new(),
            last_id_at: std::collections::HashMap::new(),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.active.contains_key(key)
    }

    pub fn get(&self, key: &str) -> Option<&Instance> {
        self.active.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Instance> {
        self.active.values()
    }

    pub fn keyed(&self) -> Vec<(String, Instance)> {
        self.active
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Puts back instances that were active when the gateway stopped: they
    /// continue with their old `alarm_id`, no new event.
    pub fn restore(&mut self, instances: Vec<Instance>) {
        for mut i in instances {
            // The stored `condition` may be older than the last judgement
            // (no event, no commit): assume it still holds until the rule
            // judges again, so an acknowledgement cannot clear a latching
            // alarm whose input went bad meanwhile (fail safe).
            i.condition = true;
            // The restored id's time is at least its raise time.
            self.last_id_at.insert(i.rule_id.clone(), i.raised_at);
            self.active.insert(i.rule_id.clone(), i);
        }
    }
}
