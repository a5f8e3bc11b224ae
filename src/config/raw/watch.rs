//! The shapes of what watches the sensors themselves: tamper checks,
//! the escalation of unacknowledged alarms and point quality
//! (`[[quality]]`). Nothing checked yet, as in the rest of `raw`.

use serde::Deserialize;

use super::Dur;

/// What a tamper rule looks for (`rules::kind::tamper`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TamperCheck {
    /// The value changes less than `floor` over `window`.
    Frozen,
    /// The value sits near its clean-air value while a neighbour is high.
    Covered,
    /// The device is offline while the area works.
    Removed,
    /// A cabinet door or enclosure bit is set.
    Opened,
    /// A camera reports its lens blocked.
    Blocked,
    /// A step to the test-gas value and back outside a calibration window.
    TestGas,
}

/// Where an unacknowledged alarm escalates to: `"up"` (one level more
/// severe each time) or a level.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum EscalateTo {
    Level(u8),
    Word(String),
}

/// `escalate = { after = "10m", to = "up", again_after = "10m" }`: an
/// alarm not acknowledged within `after` is escalated (值班值守).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct EscalateCfg {
    pub after: Option<Dur>,
    #[serde(default)]
    pub to: Option<EscalateTo>,
    #[serde(default)]
    pub again_after: Option<Dur>,
}

/// `[[quality]]`: what makes one point's reading `over_range` or
/// `device_fault` (bad, so every rule reading it is on its alarm side).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct QualityCfg {
    pub point: String,
    /// The sensor's measuring range `[low, high]`; a reading outside it
    /// is `over_range`.
    #[serde(default)]
    pub range: Option<Vec<f64>>,
    /// A point holding the device's fault or status bits for this point:
    /// a bit point (true = fault), or a status register with `fault_mask`.
    #[serde(default)]
    pub fault: Option<String>,
    /// With a numeric `fault` point: the bits that mean a fault (e.g. a
    /// KJ status word's 16 outstation fault + 128 sensor fault = 144).
    #[serde(default)]
    pub fault_mask: Option<u64>,
}
