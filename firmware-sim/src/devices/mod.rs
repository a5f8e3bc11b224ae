//! Device kinds, their register maps, and the scenario runner that drives them.

pub mod gas_detector;
pub mod kj_monitor;
pub mod plant;
pub mod reservoir;
pub mod typed_bank;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bank::RegisterBank;
use crate::faults::{Fault, FaultSwitch};
use crate::modbus::TcpSlave;
use crate::scenario::{FaultKind, Scenario};

/// Default runner tick.
pub const DEFAULT_TICK: Duration = Duration::from_millis(200);

/// The Modbus device kinds (the MQTT video box lives in [`crate::video`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// `gas-detector`
    GasDetector,
    /// `reservoir-rtu`
    ReservoirRtu,
    /// `kj-monitor` with this many zones (numbered 1..=zones)
    KjMonitor { zones: u8 },
    /// `typed-bank` (fixed values, no signals)
    TypedBank,
    /// `furnace-skid`, `casting-pit`, `gas-cabinet`: devices with their own logic
    /// (outputs that follow commands), see [`plant`]
    Plant(plant::Plant),
}

impl DeviceKind {
    pub fn name(&self) -> &'static str {
        match self {
            DeviceKind::GasDetector => "gas-detector",
            DeviceKind::ReservoirRtu => "reservoir-rtu",
            DeviceKind::KjMonitor { .. } => "kj-monitor",
            DeviceKind::TypedBank => "typed-bank",
            DeviceKind::Plant(plant::Plant::FurnaceSkid) => "furnace-skid",
            DeviceKind::Plant(plant::Plant::CastingPit) => "casting-pit",
            DeviceKind::Plant(plant::Plant::GasCabinet) => "gas-cabinet",
        }
    }

    /// Every signal this kind knows, with its default value.
    pub fn signals(&self) -> Vec<(String, f64)> {
        match self {
            DeviceKind::GasDetector => gas_detector::SIGNALS
                .iter()
                .map(|(s, v)| (s.to_string(), *v))
                .collect(),
            DeviceKind::ReservoirRtu => reservoir::SIGNALS
                .iter()
                .map(|(s, v)| (s.to_string(), *v))
                .collect(),
            DeviceKind::KjMonitor { zones } => kj_monitor::signals(*zones),
            DeviceKind::TypedBank => Vec::new(),
            DeviceKind::Plant(p) => p
                .signals()
                .iter()
                .map(|(s, v)| (s.to_string(), *v))
                .collect(),
        }
    }

    /// True if `signal` is one of this kind's signals.
    pub fn knows_signal(&self, signal: &str) -> bool {
        self.signals().iter().any(|(s, _)| s == signal)
    }

    /// Default value of `signal` for this kind.
    pub fn default_value(&self, signal: &str) -> Option<f64> {
        self.signals()
            .into_iter()
            .find(|(s, _)| s == signal)
            .map(|(_, v)| v)
    }

    /// Write `signal` = `value` into `bank` through this kind's register map.
    /// Returns false (and writes nothing) for unknown signals.
    pub fn write_signal(&self, bank: &RegisterBank, signal: &str, value: f64) -> bool {
        match self {
            DeviceKind::GasDetector => gas_detector::write_signal(bank, signal, value),
            DeviceKind::ReservoirRtu => reservoir::write_signal(bank, signal, value),
            DeviceKind::KjMonitor { zones } => {
                kj_monitor::write_signal(bank, *zones, signal, value)
            }
            DeviceKind::TypedBank => false,
            DeviceKind::Plant(p) => p.write_signal(bank, signal, value),
        }
    }

    /// Put the kind's fixed content and every signal's default into `bank`.
    pub fn init_bank(&self, bank: &RegisterBank) {
        if let DeviceKind::TypedBank = self {
            typed_bank::install(bank);
        }
        for (s, v) in self.signals() {
            self.write_signal(bank, &s, v);
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceKind {
    type Err = String;
    /// `gas-detector`, `reservoir-rtu` (or `reservoir`), `kj-monitor` (4 zones;
    /// `kj-monitor/8` for 8 zones), `typed-bank`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        if let Some(z) = s.strip_prefix("kj-monitor/") {
            let zones: u8 = z.parse().map_err(|_| format!("bad zone count in {s:?}"))?;
            return Ok(DeviceKind::KjMonitor { zones });
        }
        match s.as_str() {
            "gas-detector" => Ok(DeviceKind::GasDetector),
            "reservoir-rtu" | "reservoir" => Ok(DeviceKind::ReservoirRtu),
            "kj-monitor" => Ok(DeviceKind::KjMonitor {
                zones: kj_monitor::DEFAULT_ZONES,
            }),
            "typed-bank" => Ok(DeviceKind::TypedBank),
            "furnace-skid" => Ok(DeviceKind::Plant(plant::Plant::FurnaceSkid)),
            "casting-pit" => Ok(DeviceKind::Plant(plant::Plant::CastingPit)),
            "gas-cabinet" => Ok(DeviceKind::Plant(plant::Plant::GasCabinet)),
            _ => Err(format!(
                "unknown device kind {s:?} (gas-detector, reservoir-rtu, kj-monitor, typed-bank, \
                 furnace-skid, casting-pit, gas-cabinet)"
            )),
        }
    }
}

/// Runner settings.
#[derive(Clone, Debug, Default)]
pub struct RunnerOptions {
    /// Tick period; `None` = the scenario's `tick`, else [`DEFAULT_TICK`].
    pub tick: Option<Duration>,
}

/// Error from [`DeviceHandle::try_set_signal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device kind {kind} has no signal {signal:?} (known: {known})")]
pub struct UnknownSignal {
    pub kind: String,
    pub signal: String,
    pub known: String,
}

struct RunnerState {
    start: Instant,
    pins: HashMap<String, f64>,
    last: HashMap<String, f64>,
    /// (cycle, index) of the fault event applied last, if any.
    fault_key: Option<(u64, usize)>,
    /// Whether the runner set the fault switch (so it may reset it).
    fault_set_by_runner: bool,
    /// A plant device's own logic state (stroke timers).
    plant: plant::State,
}

struct Shared {
    kind: DeviceKind,
    scenario: Scenario,
    bank: RegisterBank,
    faults: FaultSwitch,
    state: Mutex<RunnerState>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, RunnerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One runner tick: write every scenario signal that is not pinned, and
    /// apply the fault timeline.
    fn tick(&self) {
        let mut st = self.lock();
        let elapsed = st.start.elapsed();
        for (name, spec) in &self.scenario.signals {
            if st.pins.contains_key(name) {
                continue;
            }
            let (_, t) = self.scenario.timeline_pos(elapsed);
            let mut v = spec.value_at(t);
            if spec.noise > 0.0 {
                v += rand::rng().random_range(-spec.noise..=spec.noise);
            }
            let v = spec.clamp(v);
            if self.kind.write_signal(&self.bank, name, v) {
                st.last.insert(name.clone(), v);
            }
        }
        if let DeviceKind::Plant(p) = self.kind {
            // After the signals, so the logic sees this tick's values and pins.
            let st = &mut *st;
            let last = &st.last;
            let sig = |s: &str| {
                last.get(s)
                    .copied()
                    .or_else(|| self.kind.default_value(s))
                    .unwrap_or(0.0)
            };
            plant::step(p, &self.bank, &sig, &mut st.plant, elapsed);
        }

        let active = self.scenario.active_fault(elapsed);
        let key = active.as_ref().map(|a| (a.cycle, a.index));
        if key != st.fault_key {
            st.fault_key = key;
            let kind = active
                .map(|a| a.event.kind.clone())
                .unwrap_or(FaultKind::None);
            match kind {
                FaultKind::Reboot(down) => {
                    tracing::info!(kind = %self.kind, ?down, "scenario: reboot");
                    if st.fault_set_by_runner {
                        self.faults.set(Fault::None);
                        st.fault_set_by_runner = false;
                    }
                    self.faults.reboot(down);
                }
                FaultKind::Quiet | FaultKind::Malformed => {
                    tracing::debug!(kind = %self.kind, ?kind, "scenario fault not applicable to a modbus device");
                }
                FaultKind::None => {
                    if st.fault_set_by_runner {
                        tracing::info!(kind = %self.kind, "scenario: fault cleared");
                        self.faults.set(Fault::None);
                        st.fault_set_by_runner = false;
                    }
                }
                other => {
                    if let Some(f) = other.as_fault() {
                        tracing::info!(kind = %self.kind, fault = ?f, "scenario: fault");
                        self.faults.set(f);
                        st.fault_set_by_runner = true;
                    }
                }
            }
        }
    }

    fn scenario_or_default(&self, name: &str, elapsed: Duration) -> Option<f64> {
        self.scenario
            .signals
            .get(name)
            .map(|spec| {
                spec.clamp(
                    self.scenario
                        .value_at(name, elapsed)
                        .unwrap_or(spec.initial),
                )
            })
            .or_else(|| self.kind.default_value(name))
    }
}

/// Control of a running device: pin / release signals, stop the runner.
///
/// Dropping the handle stops the runner (the bank keeps its last values);
/// use [`detach`](Self::detach) to let it run on.
pub struct DeviceHandle {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("kind", &self.shared.kind)
            .finish()
    }
}

impl DeviceHandle {
    pub fn kind(&self) -> DeviceKind {
        self.shared.kind
    }
    pub fn bank(&self) -> &RegisterBank {
        &self.shared.bank
    }
    pub fn faults(&self) -> &FaultSwitch {
        &self.shared.faults
    }
    pub fn scenario(&self) -> &Scenario {
        &self.shared.scenario
    }

    /// Time since the scenario (re)started.
    pub fn elapsed(&self) -> Duration {
        self.shared.lock().start.elapsed()
    }

    /// Restart the scenario timeline from 0 now (pins stay).
    pub fn restart_scenario(&self) {
        {
            let mut st = self.shared.lock();
            st.start = Instant::now();
            st.fault_key = None;
        }
        self.shared.tick();
    }

    /// Pin `signal` to `value`: written into the bank before this returns,
    /// and the scenario no longer drives it until [`release_signal`](Self::release_signal).
    ///
    /// Panics if the device kind has no such signal (see [`try_set_signal`](Self::try_set_signal)).
    pub fn set_signal(&self, signal: &str, value: f64) {
        if let Err(e) = self.try_set_signal(signal, value) {
            panic!("{e}");
        }
    }

    /// Like [`set_signal`](Self::set_signal) but returns an error for unknown signals.
    pub fn try_set_signal(&self, signal: &str, value: f64) -> Result<(), UnknownSignal> {
        let kind = self.shared.kind;
        if !kind.knows_signal(signal) {
            return Err(UnknownSignal {
                kind: kind.name().to_string(),
                signal: signal.to_string(),
                known: kind
                    .signals()
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut st = self.shared.lock();
        st.pins.insert(signal.to_string(), value);
        kind.write_signal(&self.shared.bank, signal, value);
        st.last.insert(signal.to_string(), value);
        Ok(())
    }

    /// Return `signal` to the scenario (or to the kind's default if the
    /// scenario does not define it); the bank is updated before this returns.
    pub fn release_signal(&self, signal: &str) {
        let mut st = self.shared.lock();
        if st.pins.remove(signal).is_some() {
            let elapsed = st.start.elapsed();
            if let Some(v) = self.shared.scenario_or_default(signal, elapsed) {
                self.shared.kind.write_signal(&self.shared.bank, signal, v);
                st.last.insert(signal.to_string(), v);
            }
        }
    }

    /// Release every pinned signal.
    pub fn release_all(&self) {
        let pinned: Vec<String> = self.shared.lock().pins.keys().cloned().collect();
        for s in pinned {
            self.release_signal(&s);
        }
    }

    /// The last value written for `signal` (by the runner or a pin).
    pub fn signal(&self, signal: &str) -> Option<f64> {
        self.shared.lock().last.get(signal).copied()
    }

    /// Stop the runner (the bank keeps its current values). Idempotent.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Let the runner run on without this handle; abort the returned
    /// `JoinHandle` to stop it.
    pub fn detach(mut self) -> JoinHandle<()> {
        self.task.take().expect("runner task")
    }
}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.cancel.cancel();
        }
    }
}

/// Start the ticking runner for `kind` on `bank` and return its control handle.
/// The bank is initialised (defaults, then the scenario's values at t = 0)
/// before this returns. Must be called inside a tokio runtime.
pub fn spawn_device(
    kind: DeviceKind,
    scenario: Scenario,
    bank: RegisterBank,
    faults: FaultSwitch,
) -> DeviceHandle {
    spawn_device_with(kind, scenario, bank, faults, RunnerOptions::default())
}

/// [`spawn_device`] with options.
pub fn spawn_device_with(
    kind: DeviceKind,
    scenario: Scenario,
    bank: RegisterBank,
    faults: FaultSwitch,
    opts: RunnerOptions,
) -> DeviceHandle {
    let unknown: HashSet<&str> = scenario
        .signal_names()
        .filter(|s| !kind.knows_signal(s))
        .collect();
    if !unknown.is_empty() {
        tracing::debug!(%kind, ?unknown, "scenario signals ignored by this device kind");
    }
    let tick = opts.tick.or(scenario.tick).unwrap_or(DEFAULT_TICK);
    kind.init_bank(&bank);
    let shared = Arc::new(Shared {
        kind,
        scenario,
        bank,
        faults,
        state: Mutex::new(RunnerState {
            start: Instant::now(),
            pins: HashMap::new(),
            last: HashMap::new(),
            fault_key: None,
            fault_set_by_runner: false,
            plant: plant::State::default(),
        }),
    });
    shared.tick();
    let cancel = CancellationToken::new();
    let task = {
        let shared = shared.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            interval.tick().await; // the immediate first tick: already done above
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = interval.tick() => shared.tick(),
                }
            }
        })
    };
    DeviceHandle {
        shared,
        cancel,
        task: Some(task),
    }
}

/// The ticking runner as a bare task: writes the scenario's values into `bank`
/// through `kind`'s register map every tick and applies the fault timeline.
/// Abort the `JoinHandle` to stop it. Prefer [`spawn_device`] when you need
/// to pin signals.
pub fn run_device(
    kind: DeviceKind,
    scenario: Scenario,
    bank: RegisterBank,
    faults: FaultSwitch,
) -> JoinHandle<()> {
    spawn_device(kind, scenario, bank, faults).detach()
}

/// A device with a fresh bank and fault switch, not attached to any transport
/// yet (e.g. to put it on an [`RtuLine`](crate::RtuLine):
/// `(unit, h.bank().clone(), h.faults().clone())`).
pub fn device(kind: DeviceKind, scenario: Scenario) -> DeviceHandle {
    spawn_device(kind, scenario, RegisterBank::new(), FaultSwitch::new())
}

/// Start `kind` as a Modbus TCP server on `addr` (port 0 allowed), answering
/// for `units` (empty = any unit id).
pub async fn device_tcp(
    addr: SocketAddr,
    kind: DeviceKind,
    scenario: Scenario,
    units: Vec<u8>,
) -> io::Result<(TcpSlave, DeviceHandle)> {
    let handle = device(kind, scenario);
    let slave =
        TcpSlave::start(addr, units, handle.bank().clone(), handle.faults().clone()).await?;
    Ok((slave, handle))
}

/// A `gas-detector` on Modbus TCP (any unit id).
pub async fn gas_detector_tcp(
    addr: SocketAddr,
    scenario: Scenario,
) -> io::Result<(TcpSlave, DeviceHandle)> {
    device_tcp(addr, DeviceKind::GasDetector, scenario, vec![]).await
}

/// A `reservoir-rtu` on Modbus TCP (any unit id).
pub async fn reservoir_tcp(
    addr: SocketAddr,
    scenario: Scenario,
) -> io::Result<(TcpSlave, DeviceHandle)> {
    device_tcp(addr, DeviceKind::ReservoirRtu, scenario, vec![]).await
}

/// A `kj-monitor` with `zones` zones on Modbus TCP (any unit id).
pub async fn kj_monitor_tcp(
    addr: SocketAddr,
    zones: u8,
    scenario: Scenario,
) -> io::Result<(TcpSlave, DeviceHandle)> {
    device_tcp(addr, DeviceKind::KjMonitor { zones }, scenario, vec![]).await
}

/// The `typed-bank` on Modbus TCP (any unit id). Its bank is `slave.bank()`.
pub async fn typed_bank_tcp(addr: SocketAddr) -> io::Result<TcpSlave> {
    let bank = RegisterBank::new();
    DeviceKind::TypedBank.init_bank(&bank);
    TcpSlave::start(addr, vec![], bank, FaultSwitch::new()).await
}

/// A plant device (`furnace-skid`, `casting-pit`, `gas-cabinet`) on Modbus TCP (any unit id).
pub async fn plant_tcp(
    addr: SocketAddr,
    plant: plant::Plant,
    scenario: Scenario,
) -> io::Result<(TcpSlave, DeviceHandle)> {
    device_tcp(addr, DeviceKind::Plant(plant), scenario, vec![]).await
}
