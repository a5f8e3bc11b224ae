//! A device's poll cycle judged as a whole, and the rest a silent slave is
//! given.
//!
//! A cycle is the set of planned reads that were due when it began; it ends
//! when each of them has been polled. Its verdict is the device's health,
//! reported once per cycle: every read answered (online), some answered
//! (online, partly failing: the unanswered reads' points are bad with their
//! own reason and go stale in the engine), none answered (one failed poll
//! towards `offline_after`). Judging per read instead made a device whose
//! second block always times out alternate ok/failed, so it never went
//! offline, and let one TCP timeout count once per read of the device.
//!
//! Invariants: one verdict per cycle; a cycle only holds reads of this
//! device; a read polled twice in one cycle (possible when the line fell
//! behind) keeps its latest outcome.
//!
//! Rest (RTU only, `rest_every = N > 1`): after a cycle in which nothing
//! answered, the slave is only asked again every Nth cycle, and then with
//! one attempt of one read (a probe); the reads of the cycles in between
//! get bad readings (`timeout`) without touching the line. So a dead slave
//! costs at most one timeout per N cycles and cannot starve its neighbours.

use super::exchange::RequestError;

/// How the reads of one cycle are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every read with the device's retries.
    Normal,
    /// One attempt of the next read, no retries; an answer turns the rest
    /// of the cycle `Normal`, silence turns it `Rest`.
    Probe,
    /// The line is not used; every read is bad.
    Rest,
}

/// The verdict of a finished cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every read answered (an exception is an answer); `detail` names
    /// the exceptions, if any.
    All { detail: String },
    /// Some reads answered; `detail` names the others.
    Some { detail: String },
    /// Nothing answered; `detail` is the first failure.
    None { detail: String },
}

impl Verdict {
    /// The device answered in this cycle: not a failed poll.
    pub fn answered(&self) -> bool {
        !matches!(self, Verdict::None { .. })
    }

    pub fn detail(&self) -> &str {
        match self {
            Verdict::All { detail } | Verdict::Some { detail } | Verdict::None { detail } => detail,
        }
    }

    /// For logs and the log-on-change habit.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::All { .. } => "ok",
            Verdict::Some { .. } => "partial",
            Verdict::None { .. } => "none",
        }
    }
}

/// The cycle under way.
#[derive(Debug)]
pub struct Cycle {
    /// (read index, outcome once polled: `Ok(())` answered, `Err(why)` not).
    members: Vec<(usize, Option<Result<(), String>>)>,
    /// Exceptions: answers, but worth naming in the verdict.
    exceptions: Vec<String>,
    pub mode: Mode,
}

impl Cycle {
    /// Opens a cycle over `due` (the reads due now, including the one about
    /// to be polled). `silent_cycles` consecutive cycles had no answer.
    pub fn open(due: impl IntoIterator<Item = usize>, silent_cycles: u32, rest_every: u32) -> Self {
        let mode = if silent_cycles == 0 || rest_every <= 1 {
            Mode::Normal
        } else if silent_cycles.is_multiple_of(rest_every) {
            Mode::Probe
        } else {
            Mode::Rest
        };
        Cycle {
            members: due.into_iter().map(|i| (i, None)).collect(),
            exceptions: Vec::new(),
            mode,
        }
    }

    /// Records the outcome of read `i` (described as `what` for the
    /// verdict). A read not in the cycle joins it.
    pub fn record(&mut self, i: usize, what: &str, result: Result<(), &RequestError>) {
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_answer() => {
                self.exceptions.push(format!("{what}: {e}"));
                Ok(())
            }
            Err(e) => Err(format!("{what}: {e}")),
        };
        if self.mode == Mode::Probe {
            self.mode = if outcome.is_ok() {
                Mode::Normal
            } else {
                Mode::Rest
            };
        }
        match self.members.iter_mut().find(|(j, _)| *j == i) {
            Some(m) => m.1 = Some(outcome),
            None => self.members.push((i, Some(outcome))),
        }
    }

    /// The verdict once every member was polled; `None` before.
    pub fn verdict(&self) -> Option<Verdict> {
        let mut failed = Vec::new();
        for (_, o) in &self.members {
            match o {
                None => return None,
                Some(Ok(())) => {}
                Some(Err(why)) => failed.push(why.as_str()),
            }
        }
        Some(match failed.len() {
            0 => Verdict::All {
                detail: self.exceptions.join("; "),
            },
            n if n == self.members.len() => Verdict::None {
                detail: failed[0].to_string(),
            },
            n => Verdict::Some {
                detail: format!(
                    "{n} of {} reads unanswered: {}",
                    self.members.len(),
                    failed.join("; ")
                ),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timeout() -> RequestError {
        RequestError::Timeout(Duration::from_millis(100))
    }

    #[test]
    fn verdict_waits_for_every_member() {
        let mut c = Cycle::open([0, 1], 0, 5);
        assert_eq!(c.mode, Mode::Normal);
        c.record(0, "a", Ok(()));
        assert_eq!(c.verdict(), None);
        c.record(1, "b", Err(&timeout()));
        let v = c.verdict().unwrap();
        assert!(v.answered(), "one block answered: online");
        assert_eq!(v.label(), "partial");
        assert!(v.detail().contains("1 of 2") && v.detail().contains("b: no answer"));
    }

    #[test]
    fn none_answered_is_a_failed_poll_and_an_exception_is_an_answer() {
        let mut c = Cycle::open([0, 1], 0, 5);
        c.record(0, "a", Err(&timeout()));
        c.record(1, "b", Err(&RequestError::NotConnected("x".into())));
        let v = c.verdict().unwrap();
        assert!(!v.answered());
        assert!(v.detail().starts_with("a: no answer"), "{v:?}");

        let mut c = Cycle::open([0], 0, 5);
        c.record(0, "a", Err(&RequestError::Exception(2)));
        let v = c.verdict().unwrap();
        assert!(v.answered() && v.label() == "ok");
        assert!(v.detail().contains("exception"), "{v:?}");
    }

    #[test]
    fn a_read_polled_twice_keeps_its_latest_outcome() {
        let mut c = Cycle::open([0, 1], 0, 1);
        c.record(0, "a", Err(&timeout()));
        c.record(0, "a", Ok(()));
        c.record(1, "b", Ok(()));
        assert_eq!(c.verdict().map(|v| v.label()), Some("ok"));
    }

    #[test]
    fn a_silent_slave_rests_and_is_probed_every_nth_cycle() {
        let modes: Vec<Mode> = (0..7).map(|s| Cycle::open([0], s, 3).mode).collect();
        use Mode::*;
        assert_eq!(modes, [Normal, Rest, Rest, Probe, Rest, Rest, Probe]);
        // rest_every = 1: never rests
        assert!((0..5).all(|s| Cycle::open([0], s, 1).mode == Normal));

        let mut probe = Cycle::open([0, 1], 3, 3);
        probe.record(0, "a", Err(&timeout()));
        assert_eq!(
            probe.mode, Rest,
            "silence on the probe: rest of the cycle skipped"
        );
        let mut probe = Cycle::open([0, 1], 3, 3);
        probe.record(0, "a", Ok(()));
        assert_eq!(probe.mode, Normal, "an answer: the slave is back");
    }
}
