//! The rules' memories (`rule_state`): one row per key (a rule id) with the
//! JSON the rule engine handed out and when it was stored. The store knows
//! nothing of what the JSON means; the engine task writes it with the
//! readings that changed it (`append_readings_and_state`) and `runtime`
//! reads it back at start-up.

use rusqlite::{Transaction, params};

use super::{Prio, Store, StoreError};

impl Store {
    /// Every stored state as (key, JSON), by key.
    pub fn load_rule_state(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare("SELECT key, json FROM rule_state ORDER BY key")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Stores states on their own (one transaction), replacing older ones.
    pub fn save_rule_state(
        &self,
        states: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        self.write(Prio::Bulk, |tx, _| {
            put_in(tx, states, now_ms).map_err(|e| self.err(e))
        })?;
        Ok(())
    }

    /// Forgets states no rule takes any more (a rule removed or changed).
    pub fn delete_rule_state(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.write(Prio::Bulk, |tx, _| {
            let run = || -> rusqlite::Result<()> {
                let mut st = tx.prepare_cached("DELETE FROM rule_state WHERE key = ?1")?;
                for k in keys {
                    st.execute([k])?;
                }
                Ok(())
            };
            run().map_err(|e| self.err(e))
        })?;
        Ok(())
    }
}

/// Writes states inside a write transaction the caller holds.
pub(super) fn put_in(
    tx: &Transaction<'_>,
    states: &[(String, String)],
    now_ms: i64,
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO rule_state (key, json, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(key) DO UPDATE SET json = excluded.json, updated_ms = excluded.updated_ms",
    )?;
    for (k, j) in states {
        st.execute(params![k, j, now_ms])?;
    }
    Ok(())
}
