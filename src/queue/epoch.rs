//! The store epoch and the `seq` floor: what keeps `event_id` unique and
//! `seq` honest when the store is lost or restored from an older copy.
//!
//! - The epoch is a random 32-bit number made with the store (kept in
//!   `meta`); `event_id` carries it (`{gateway}:{epoch:08x}:{seq:012}`). A
//!   store made afresh after a disk loss starts `seq` at 1 again under a new
//!   epoch, so no `event_id` repeats.
//! - Beside the database, `riskgate.seq` notes the epoch and the last `seq`
//!   given (overwritten in place after each alarm commit; not synced, it
//!   is a hint). At
//!   open, a database whose `seq` is behind that note was restored from an
//!   older copy: it gets a new epoch (its own events would otherwise repeat
//!   `event_id`s the county already has, with other contents) and its `seq`
//!   continues after the noted one, so the county sees the lost events as a
//!   gap instead of numbers used twice. A note that is missing or unreadable
//!   changes nothing.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

fn note_path(db: &Path) -> PathBuf {
    db.with_file_name("riskgate.seq")
}

fn meta(c: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

fn set_meta(c: &Connection, key: &str, v: i64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
        rusqlite::params![key, v],
    )?;
    Ok(())
}

fn fresh() -> u32 {
    // Zero is kept out so that an epoch always shows as one.
    rand::random_range(1..=u32::MAX)
}

/// Reads the noted `(epoch, seq)`, if any.
fn read_note(db: &Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(note_path(db)).ok()?;
    let mut it = text.split_whitespace();
    let epoch = u32::from_str_radix(it.next()?, 16).ok()?;
    let seq = it.next()?.parse().ok()?;
    Some((epoch, seq))
}

/// Notes the last `seq` given under `epoch`. A failure is logged only: the
/// note is a hint for restore detection, never needed to run.
///
/// Written in place at offset 0 with a fixed width, never truncated: on
/// ext4 a file truncated and rewritten is flushed at close (the
/// `auto_da_alloc` heuristic) and its new block joins the next journal
/// commit, so a rewrite after every alarm commit made the next alarm's
/// fsync wait for it. An overwrite of the same bytes is one dirty page.
/// The width (30 bytes) is at least that of any note written before, so
/// no older tail can remain.
pub(super) fn note(db: &Path, epoch: u32, seq: u64) {
    use std::os::unix::fs::FileExt;
    let line = format!("{epoch:08x} {seq:020}\n");
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(note_path(db))
        .and_then(|f| f.write_all_at(line.as_bytes(), 0));
    if let Err(e) = res {
        tracing::warn!(error = %e, "cannot note the last seq beside the store");
    }
}

/// The store's epoch, made (or renewed after a restore) at open.
pub(super) fn settle(c: &Connection, db: &Path) -> rusqlite::Result<u32> {
    let seq = meta(c, "seq")?.unwrap_or(0) as u64;
    let mut epoch = match meta(c, "epoch")? {
        Some(e) => e as u32,
        None => {
            let e = fresh();
            set_meta(c, "epoch", e as i64)?;
            tracing::info!(epoch = format!("{e:08x}"), "new store epoch");
            e
        }
    };
    if let Some((noted_epoch, noted_seq)) = read_note(db)
        && noted_seq > seq
    {
        if noted_epoch == epoch {
            epoch = fresh();
            set_meta(c, "epoch", epoch as i64)?;
        }
        set_meta(c, "seq", noted_seq as i64)?;
        tracing::warn!(
            store_seq = seq,
            noted_seq,
            epoch = format!("{epoch:08x}"),
            "the store is behind the last seq given (restored from an older copy?): \
             seq continues after the last one given, under a new epoch; the events in \
             between are lost and show as a gap"
        );
        note(db, epoch, noted_seq);
        return Ok(epoch);
    }
    note(db, epoch, seq);
    Ok(epoch)
}

#[cfg(test)]
mod tests {
    use super::super::{LoggedEvent, QueueId, Store};

    fn append(s: &Store, n: usize) -> Vec<u64> {
        let enc = |seq: u64, _: &()| LoggedEvent {
            event_id: seq.to_string(),
            alarm_id: "a".into(),
            at_ms: 0,
            body: String::new(),
        };
        let none: &[(String, ())] = &[];
        s.append_events(QueueId::Alarms, &vec![(); n], enc, none)
            .unwrap()
    }

    /// The note is overwritten in place: a shorter number after a longer
    /// one, or a note in the older variable-width form, leaves no tail.
    #[test]
    fn the_note_is_overwritten_in_place_without_a_stale_tail() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("riskgate.db");
        std::fs::write(super::note_path(&db), "deadbeef 12345678901234567890\n").unwrap();
        super::note(&db, 0xabc, 7);
        assert_eq!(super::read_note(&db), Some((0xabc, 7)));
        super::note(&db, 0xabc, 123_456);
        super::note(&db, 0xabc, 8);
        assert_eq!(super::read_note(&db), Some((0xabc, 8)));
        let len = std::fs::metadata(super::note_path(&db)).unwrap().len();
        assert_eq!(len, 30, "one fixed-width line");
    }

    #[test]
    fn a_lost_store_gets_a_new_epoch_and_a_restored_one_keeps_seq_moving() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("riskgate.db");
        let s = Store::open(dir.path(), u64::MAX, u64::MAX).unwrap();
        let e1 = s.epoch();
        assert_eq!(append(&s, 2), vec![1, 2]);
        drop(s);
        // An older copy: taken now, restored after more events.
        let backup = dir.path().join("backup.db");
        std::fs::copy(&db, &backup).unwrap();
        let s = Store::open(dir.path(), u64::MAX, u64::MAX).unwrap();
        assert_eq!(s.epoch(), e1, "a plain restart keeps the epoch");
        assert_eq!(append(&s, 3), vec![3, 4, 5]);
        drop(s);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
        }
        std::fs::copy(&backup, &db).unwrap();
        let s = Store::open(dir.path(), u64::MAX, u64::MAX).unwrap();
        assert_ne!(s.epoch(), e1, "restored: a new epoch");
        assert_eq!(append(&s, 1), vec![6], "seq continues after the last given");
        let e2 = s.epoch();
        drop(s);
        // Everything lost, the note too: seq starts again, epoch differs.
        std::fs::remove_dir_all(dir.path()).unwrap();
        let s = Store::open(dir.path(), u64::MAX, u64::MAX).unwrap();
        assert!(s.epoch() != e1 && s.epoch() != e2);
        assert_eq!(append(&s, 1), vec![1]);
    }
}
