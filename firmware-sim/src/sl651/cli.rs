//! `firmware-sim sl651-station`: one station replaying a scenario's
//! reports to a centre, at a chosen pace, with an optional fault.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::NaiveDateTime;

use super::codec::Identity;
use super::plan::{Plan, reports};
use super::station::{Sl651Fault, Station};
use crate::Scenario;

/// What the command line gives.
#[derive(Clone, Debug)]
pub struct Options {
    /// `tcp://host:port`, `udp://host:port` or `serial:/dev/pts/N`.
    pub connect: String,
    pub identity: Identity,
    pub scenario: Scenario,
    /// Observation time of scenario time 0; `None`: `duration` ago, so the
    /// replay ends now.
    pub start: Option<NaiveDateTime>,
    pub duration: Duration,
    /// Real time between two reports (compressed scenario time).
    pub pace: Duration,
    pub level_element: u8,
    pub counter_reset_at: Option<Duration>,
    /// Applied to every `fault_every`-th report (0: never).
    pub fault: Sl651Fault,
    pub fault_every: usize,
    /// Stop sending after this many reports (silence).
    pub silent_after: Option<usize>,
    /// ASCII frames (SOH) instead of HEX/BCD.
    pub ascii: bool,
}

pub async fn run(o: Options) -> Result<()> {
    let mut st = match o.connect.split_once("://") {
        Some(("tcp", a)) => Station::tcp(a.parse().context("tcp address")?, o.identity).await?,
        Some(("udp", a)) => Station::udp(a.parse().context("udp address")?, o.identity).await?,
        _ => match o.connect.strip_prefix("serial:") {
            Some(path) => Station::serial(path, o.identity).await?,
            None => bail!("--connect: tcp://host:port, udp://host:port or serial:PATH"),
        },
    };
    st.ascii = o.ascii;
    let start = o.start.unwrap_or_else(|| {
        chrono::Local::now().naive_local()
            - chrono::Duration::from_std(o.duration).unwrap_or_default()
    });
    let plan = Plan {
        start,
        duration: o.duration,
        timed_every: Duration::from_secs(3600),
        level_element: o.level_element,
        counter_reset_at: o.counter_reset_at,
    };
    for (i, mut r) in reports(&o.scenario, &plan).into_iter().enumerate() {
        if o.silent_after.is_some_and(|n| i >= n) {
            tracing::info!("silent from report {i} on");
            break;
        }
        r.serial = st.next_serial();
        let fault = if o.fault_every > 0 && (i + 1) % o.fault_every == 0 {
            o.fault
        } else {
            Sl651Fault::None
        };
        let answers = st.send(&r, fault).await?;
        tracing::info!(function = format!("{:02X}", r.function), serial = r.serial, observed = %r.observed, ?fault, ?answers, "report sent");
        tokio::time::sleep(o.pace).await;
    }
    Ok(())
}
