//! Scenario files: signal values over time (steps, ramps, noise, repeat) and a
//! fault timeline. See the crate README for the file format.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::faults::Fault;

/// Errors from loading or parsing a scenario. Messages name the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, wrong type, unknown or missing field (toml's message
    /// names the key and the line).
    #[error("invalid scenario TOML{}: {message}", file.as_ref().map(|f| format!(" in {f}")).unwrap_or_default())]
    Toml {
        file: Option<String>,
        message: String,
    },
    /// A field has a value that parses as TOML but makes no sense.
    #[error("scenario field `{field}`: {message}")]
    Field { field: String, message: String },
}

impl ScenarioError {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ScenarioError::Field {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field path (e.g. `signals.ch4.steps[0].over`) for field errors.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            ScenarioError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// What one step does at its time `at`.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// Jump to this value.
    Set(f64),
    /// Move linearly from the value at `at` to `to` during `over`.
    Ramp { to: f64, over: Duration },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub kind: StepKind,
}

/// One signal's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalSpec {
    pub initial: f64,
    /// Uniform +/- noise the runner adds at each tick (0 = none).
    pub noise: f64,
    /// Clamp (applied by the runner after noise).
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Sorted by `at`.
    pub steps: Vec<Step>,
}

impl SignalSpec {
    pub fn constant(v: f64) -> Self {
        SignalSpec {
            initial: v,
            noise: 0.0,
            min: None,
            max: None,
            steps: Vec::new(),
        }
    }

    /// Value at time `t` into the (already wrapped) timeline, without noise.
    pub fn value_at(&self, t: Duration) -> f64 {
        // (start time, start value, target, duration) of the ramp in progress.
        let mut ramp: Option<(Duration, f64, f64, Duration)> = None;
        let mut v = self.initial;
        for step in &self.steps {
            if step.at > t {
                break;
            }
            v = eval_ramp(ramp, v, step.at);
            ramp = None;
            match step.kind {
                StepKind::Set(x) => v = x,
                StepKind::Ramp { to, over } => ramp = Some((step.at, v, to, over)),
            }
        }
        eval_ramp(ramp, v, t)
    }

    /// Apply `min` / `max`.
    pub fn clamp(&self, mut v: f64) -> f64 {
        if let Some(min) = self.min {
            v = v.max(min);
        }
        if let Some(max) = self.max {
            v = v.min(max);
        }
        v
    }
}

fn eval_ramp(ramp: Option<(Duration, f64, f64, Duration)>, v: f64, t: Duration) -> f64 {
    match ramp {
        None => v,
        Some((start, from, to, over)) => {
            let dt = t.saturating_sub(start);
            if over.is_zero() || dt >= over {
                to
            } else {
                from + (to - from) * (dt.as_secs_f64() / over.as_secs_f64())
            }
        }
    }
}

/// Kinds of entries in the fault timeline.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    None,
    Silent,
    Delay(Duration),
    CorruptCrc,
    WrongTransactionId,
    Exception(u8),
    DropConnection,
    /// Power-cycle the device; it is down for the event's `for` (default 5 s).
    Reboot(Duration),
    /// MQTT devices: stop publishing.
    Quiet,
    /// MQTT devices: publish malformed payloads.
    Malformed,
}

impl FaultKind {
    /// The Modbus [`Fault`] this timeline entry sets, if it is one.
    /// `Reboot`, `Quiet` and `Malformed` are not switch faults.
    pub fn as_fault(&self) -> Option<Fault> {
        Some(match self {
            FaultKind::None => Fault::None,
            FaultKind::Silent => Fault::Silent,
            FaultKind::Delay(d) => Fault::Delay(*d),
            FaultKind::CorruptCrc => Fault::CorruptCrc,
            FaultKind::WrongTransactionId => Fault::WrongTransactionId,
            FaultKind::Exception(c) => Fault::Exception(*c),
            FaultKind::DropConnection => Fault::DropConnection,
            FaultKind::Reboot(_) | FaultKind::Quiet | FaultKind::Malformed => return None,
        })
    }

    /// Parse the `kind` names used in scenario files and on the command line
    /// (`silent`, `corrupt_crc`, ... ; `-` and `_` are interchangeable).
    /// `delay`, `exception` and `reboot` take their parameter from `param`.
    pub fn parse(
        kind: &str,
        delay: Option<Duration>,
        code: Option<u8>,
        down: Option<Duration>,
    ) -> Result<FaultKind, String> {
        let k = kind.trim().to_ascii_lowercase().replace('-', "_");
        Ok(match k.as_str() {
            "none" => FaultKind::None,
            "silent" => FaultKind::Silent,
            "delay" => FaultKind::Delay(delay.ok_or("kind = \"delay\" needs `delay`")?),
            "corrupt_crc" => FaultKind::CorruptCrc,
            "wrong_transaction_id" => FaultKind::WrongTransactionId,
            "exception" => FaultKind::Exception(code.ok_or("kind = \"exception\" needs `code`")?),
            "drop_connection" => FaultKind::DropConnection,
            "reboot" => FaultKind::Reboot(down.unwrap_or(DEFAULT_REBOOT_DOWN)),
            "quiet" => FaultKind::Quiet,
            "malformed" => FaultKind::Malformed,
            _ => {
                return Err(format!(
                    "unknown fault kind {kind:?} (expected one of none, silent, delay, corrupt_crc, \
                     wrong_transaction_id, exception, drop_connection, reboot, quiet, malformed)"
                ));
            }
        })
    }
}

/// Down time of a `reboot` fault without `for`.
pub const DEFAULT_REBOOT_DOWN: Duration = Duration::from_secs(5);

/// One entry of the fault timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultEvent {
    pub at: Duration,
    /// How long it lasts; `None` = until the next event (or the end of the period).
    pub duration: Option<Duration>,
    pub kind: FaultKind,
}

/// The fault event active at some moment, with its identity (for edge detection).
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveFault<'a> {
    /// Which repetition of the period (0 when there is no period).
    pub cycle: u64,
    /// Index into [`Scenario::faults`].
    pub index: usize,
    pub event: &'a FaultEvent,
}

/// A parsed scenario.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scenario {
    /// Optional human description (`description = "..."`).
    pub description: Option<String>,
    /// When set, the timeline (signals and faults) repeats with this period.
    pub period: Option<Duration>,
    /// Runner tick (`tick = "200ms"`); `None` = the runner's default.
    pub tick: Option<Duration>,
    pub signals: BTreeMap<String, SignalSpec>,
    /// Sorted by `at`.
    pub faults: Vec<FaultEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: Option<String>,
    period: Option<String>,
    tick: Option<String>,
    #[serde(default)]
    signals: BTreeMap<String, RawSignal>,
    #[serde(default)]
    faults: Vec<RawFault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignal {
    initial: f64,
    noise: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: String,
    value: Option<f64>,
    ramp_to: Option<f64>,
    over: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: String,
    kind: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    delay: Option<String>,
    code: Option<i64>,
}

fn parse_duration(field: &str, s: &str) -> Result<Duration, ScenarioError> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        ScenarioError::field(
            field,
            format!("invalid duration {s:?} ({e}); use forms like \"500ms\", \"10s\", \"2m\""),
        )
    })
}

fn check_finite(field: &str, v: f64) -> Result<f64, ScenarioError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ScenarioError::field(field, "must be a finite number"))
    }
}

impl Scenario {
    /// An empty scenario: every signal keeps the device kind's default value.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A scenario with constant signals, handy in tests:
    /// `Scenario::constant(&[("ch4", 0.3), ("o2", 20.8)])`.
    pub fn constant(values: &[(&str, f64)]) -> Self {
        Scenario {
            signals: values
                .iter()
                .map(|(k, v)| (k.to_string(), SignalSpec::constant(*v)))
                .collect(),
            ..Self::default()
        }
    }

    /// Read and parse a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            ScenarioError::Toml { message, .. } => ScenarioError::Toml {
                file: Some(path.display().to_string()),
                message,
            },
            other => other,
        })
    }

    /// Parse a scenario from TOML text.
    pub fn from_toml_str(s: &str) -> Result<Self, ScenarioError> {
        let raw: RawScenario = toml::from_str(s).map_err(|e| ScenarioError::Toml {
            file: None,
            message: e.to_string(),
        })?;

        let period = raw
            .period
            .as_deref()
            .map(|p| parse_duration("period", p))
            .transpose()?;
        if period.is_some_and(|p| p.is_zero()) {
            return Err(ScenarioError::field("period", "must be longer than 0s"));
        }
        let tick = raw
            .tick
            .as_deref()
            .map(|p| parse_duration("tick", p))
            .transpose()?;
        if tick.is_some_and(|t| t.is_zero()) {
            return Err(ScenarioError::field("tick", "must be longer than 0s"));
        }

        let mut signals = BTreeMap::new();
        for (name, rs) in raw.signals {
            let base = format!("signals.{name}");
            let initial = check_finite(&format!("{base}.initial"), rs.initial)?;
            let noise = match rs.noise {
                Some(n) => {
                    let n = check_finite(&format!("{base}.noise"), n)?;
                    if n < 0.0 {
                        return Err(ScenarioError::field(
                            format!("{base}.noise"),
                            "must be >= 0",
                        ));
                    }
                    n
                }
                None => 0.0,
            };
            if let (Some(min), Some(max)) = (rs.min, rs.max)
                && min > max
            {
                return Err(ScenarioError::field(
                    format!("{base}.min"),
                    "is greater than max",
                ));
            }
            let mut steps = Vec::with_capacity(rs.steps.len());
            for (i, st) in rs.steps.into_iter().enumerate() {
                let sbase = format!("{base}.steps[{i}]");
                let at = parse_duration(&format!("{sbase}.at"), &st.at)?;
                if let Some(p) = period
                    && at >= p
                {
                    return Err(ScenarioError::field(
                        format!("{sbase}.at"),
                        format!(
                            "{} is not inside the period ({})",
                            st.at,
                            humantime::format_duration(p)
                        ),
                    ));
                }
                let kind = match (st.value, st.ramp_to, st.over) {
                    (Some(v), None, None) => {
                        StepKind::Set(check_finite(&format!("{sbase}.value"), v)?)
                    }
                    (None, Some(to), Some(over)) => StepKind::Ramp {
                        to: check_finite(&format!("{sbase}.ramp_to"), to)?,
                        over: parse_duration(&format!("{sbase}.over"), &over)?,
                    },
                    (None, Some(_), None) => {
                        return Err(ScenarioError::field(
                            format!("{sbase}.over"),
                            "missing: a step with `ramp_to` needs `over` (e.g. over = \"8s\")",
                        ));
                    }
                    (Some(_), None, Some(_)) => {
                        return Err(ScenarioError::field(
                            format!("{sbase}.over"),
                            "only allowed with `ramp_to` (a `value` step is a jump)",
                        ));
                    }
                    (Some(_), Some(_), _) => {
                        return Err(ScenarioError::field(
                            format!("{sbase}.value"),
                            "a step has either `value` or `ramp_to`, not both",
                        ));
                    }
                    (None, None, _) => {
                        return Err(ScenarioError::field(
                            format!("{sbase}.value"),
                            "missing: a step needs `value` (jump) or `ramp_to` + `over` (ramp)",
                        ));
                    }
                };
                steps.push(Step { at, kind });
            }
            steps.sort_by_key(|s| s.at);
            signals.insert(
                name,
                SignalSpec {
                    initial,
                    noise,
                    min: rs.min,
                    max: rs.max,
                    steps,
                },
            );
        }

        let mut faults = Vec::with_capacity(raw.faults.len());
        for (i, rf) in raw.faults.into_iter().enumerate() {
            let fbase = format!("faults[{i}]");
            let at = parse_duration(&format!("{fbase}.at"), &rf.at)?;
            if let Some(p) = period
                && at >= p
            {
                return Err(ScenarioError::field(
                    format!("{fbase}.at"),
                    format!(
                        "{} is not inside the period ({})",
                        rf.at,
                        humantime::format_duration(p)
                    ),
                ));
            }
            let duration = rf
                .for_
                .as_deref()
                .map(|d| parse_duration(&format!("{fbase}.for"), d))
                .transpose()?;
            let delay = rf
                .delay
                .as_deref()
                .map(|d| parse_duration(&format!("{fbase}.delay"), d))
                .transpose()?;
            let code = match rf.code {
                Some(c) if (1..=255).contains(&c) => Some(c as u8),
                Some(c) => {
                    return Err(ScenarioError::field(
                        format!("{fbase}.code"),
                        format!("exception code {c} is not in 1..=255"),
                    ));
                }
                None => None,
            };
            let kind = FaultKind::parse(&rf.kind, delay, code, duration).map_err(|m| {
                let field = if m.contains("`delay`") {
                    "delay"
                } else if m.contains("`code`") {
                    "code"
                } else {
                    "kind"
                };
                ScenarioError::field(format!("{fbase}.{field}"), m)
            })?;
            faults.push(FaultEvent { at, duration, kind });
        }
        faults.sort_by_key(|f| f.at);

        Ok(Scenario {
            description: raw.description,
            period,
            tick,
            signals,
            faults,
        })
    }

    /// Position inside the timeline: `elapsed` modulo the period, and the cycle number.
    pub fn timeline_pos(&self, elapsed: Duration) -> (u64, Duration) {
        match self.period {
            Some(p) if !p.is_zero() => {
                let p_ns = p.as_nanos();
                let e_ns = elapsed.as_nanos();
                let cycle = (e_ns / p_ns) as u64;
                let rem = e_ns % p_ns;
                (cycle, Duration::from_nanos(rem as u64))
            }
            _ => (0, elapsed),
        }
    }

    /// The value of `signal` at `elapsed` since the scenario started, without
    /// noise (pure and deterministic). `None` if the scenario does not define it.
    pub fn value_at(&self, signal: &str, elapsed: Duration) -> Option<f64> {
        let spec = self.signals.get(signal)?;
        let (_, t) = self.timeline_pos(elapsed);
        Some(spec.value_at(t))
    }

    /// The fault timeline's fault at `elapsed` (`FaultKind::None` when none is active).
    pub fn fault_at(&self, elapsed: Duration) -> FaultKind {
        self.active_fault(elapsed)
            .map(|a| a.event.kind.clone())
            .unwrap_or(FaultKind::None)
    }

    /// The fault event active at `elapsed`, if any: the latest event that has
    /// started and not yet ended (an event without `for` lasts until the next one).
    pub fn active_fault(&self, elapsed: Duration) -> Option<ActiveFault<'_>> {
        let (cycle, t) = self.timeline_pos(elapsed);
        let (index, event) = self
            .faults
            .iter()
            .enumerate()
            .rev()
            .find(|(_, f)| f.at <= t)?;
        if let Some(d) = event.duration
            && t >= event.at + d
        {
            return None;
        }
        Some(ActiveFault {
            cycle,
            index,
            event,
        })
    }

    /// Names of the signals this scenario defines.
    pub fn signal_names(&self) -> impl Iterator<Item = &str> {
        self.signals.keys().map(|s| s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn ramp_interrupted_by_step() {
        let sc = Scenario::from_toml_str(
            r#"
            [signals.x]
            initial = 0
            steps = [ { at = "10s", ramp_to = 10, over = "10s" }, { at = "15s", value = 100 } ]
            "#,
        )
        .unwrap();
        assert_eq!(sc.value_at("x", s(0.0)), Some(0.0));
        assert_eq!(sc.value_at("x", s(12.5)), Some(2.5));
        assert_eq!(sc.value_at("x", s(15.0)), Some(100.0));
        assert_eq!(sc.value_at("x", s(30.0)), Some(100.0));
    }

    #[test]
    fn ramp_starting_from_ramp_midway() {
        let sc = Scenario::from_toml_str(
            r#"
            [signals.x]
            initial = 0
            steps = [ { at = "0s", ramp_to = 10, over = "10s" }, { at = "5s", ramp_to = 0, over = "5s" } ]
            "#,
        )
        .unwrap();
        assert_eq!(sc.value_at("x", s(5.0)), Some(5.0));
        assert_eq!(sc.value_at("x", s(7.5)), Some(2.5));
        assert_eq!(sc.value_at("x", s(11.0)), Some(0.0));
    }
}
