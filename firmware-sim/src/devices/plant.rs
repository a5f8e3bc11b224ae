//! Plant devices with their own logic: a medium-frequency furnace's cooling skid
//! (`furnace-skid`), an aluminium DC-casting pit (`casting-pit`) and a gas user's
//! alarm cabinet with its shut-off valve (`gas-cabinet`).
//!
//! Unlike the pure sensor kinds, these have outputs that follow commands: a coil
//! written by the gateway (or set by the device's own interlock) moves a valve or
//! cuts a breaker, and a discrete input reports the position after a stroke time.
//! Scenario faults are signals: a valve that sticks, a welded breaker, an interlock
//! left bypassed. The logic runs once per runner tick ([`step`]), after the
//! scenario's signals are written, so a read-back lags its command by at most one
//! tick plus the stroke.
//!
//! Invariant: a position changes only towards its command and only after the
//! command has stood for the stroke time; a stuck device never moves.
//!
//! Register maps (0-based; registers are mirrored holding/input, f32 ABCD):
//!
//! `furnace-skid`
//! | table | addr | what |
//! |---|---|---|
//! | holding | 0-1 / 2-3 | `inlet_flow` / `outlet_flow`, m³/h |
//! | holding | 4-5 | flow difference inlet − outlet, m³/h (computed by the skid) |
//! | holding | 6-7 / 8-9 | `inlet_temp` / `outlet_temp`, °C |
//! | holding | 10-11 | furnace power, kW (0 while cut) |
//! | discrete | 0 | furnace power on (main breaker closed) |
//! | discrete | 1 | the skid's interlock has tripped |
//! | coil | 0 | cut command: 1 = cut (set by the interlock or written), 0 = reset |
//! | coil | 1 | alarm horn (written by the gateway) |
//!
//! `casting-pit`
//! | table | addr | what |
//! |---|---|---|
//! | holding | 0-1 | crystalliser cooling-water inlet `pressure`, MPa |
//! | holding | 2-3 | inlet `flow`, m³/h |
//! | holding | 4-5 | `launder_level`, mm |
//! | discrete | 0 / 1 / 2 | quick shut-off valve closed / emergency drain open / launder broken |
//! | discrete | 3 | `casting` in progress |
//! | coil | 0 / 1 / 2 | commands: close shut-off / open drain / break launder (1 = act, 0 = reset) |
//! | coil | 3 | alarm horn |
//!
//! `gas-cabinet`
//! | table | addr | what |
//! |---|---|---|
//! | holding | 0-1 | `lel`, % LEL |
//! | holding | 2 | status bits: bit 0 sensor `fault` |
//! | discrete | 0 | shut-off valve closed |
//! | coil | 0 | valve command: 1 = close, 0 = open (reset) |
//! | coil | 1 | alarm horn |

use std::collections::HashMap;
use std::time::Duration;

use crate::bank::RegisterBank;
use crate::codec::f32_abcd;

/// Which plant device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Plant {
    FurnaceSkid,
    CastingPit,
    GasCabinet,
}

pub mod furnace {
    pub const REG_INLET_FLOW: u16 = 0;
    pub const REG_OUTLET_FLOW: u16 = 2;
    pub const REG_FLOW_DIFF: u16 = 4;
    pub const REG_INLET_TEMP: u16 = 6;
    pub const REG_OUTLET_TEMP: u16 = 8;
    pub const REG_POWER_KW: u16 = 10;
    pub const DI_POWER_ON: u16 = 0;
    pub const DI_TRIPPED: u16 = 1;
    pub const COIL_CUT: u16 = 0;
    pub const COIL_HORN: u16 = 1;
    /// (signal, default). Measurements go to registers; the rest steer the logic:
    /// `run` the furnace is switched on; `interlock` 0 = the skid's own interlock is
    /// bypassed; `trip_temp`, `trip_diff` its set points; `breaker_stuck` 1 = the
    /// breaker does not open on a cut (welded contacts).
    pub const SIGNALS: &[(&str, f64)] = &[
        ("inlet_flow", 12.0),
        ("outlet_flow", 11.9),
        ("inlet_temp", 25.0),
        ("outlet_temp", 35.0),
        ("power_kw", 500.0),
        ("run", 1.0),
        ("interlock", 1.0),
        ("trip_temp", 55.0),
        ("trip_diff", 0.5),
        ("breaker_stuck", 0.0),
    ];
}

pub mod casting {
    pub const REG_PRESSURE: u16 = 0;
    pub const REG_FLOW: u16 = 2;
    pub const REG_LAUNDER_LEVEL: u16 = 4;
    pub const DI_SHUTOFF_CLOSED: u16 = 0;
    pub const DI_DRAIN_OPEN: u16 = 1;
    pub const DI_LAUNDER_CUT: u16 = 2;
    pub const DI_CASTING: u16 = 3;
    pub const COIL_SHUTOFF: u16 = 0;
    pub const COIL_DRAIN: u16 = 1;
    pub const COIL_LAUNDER: u16 = 2;
    pub const COIL_HORN: u16 = 3;
    /// (signal, default). `interlock` 0 = the casting machine's own interlock is
    /// bypassed; `trip_pressure`, `trip_flow` its set points; `stroke` seconds a
    /// device takes to move; `*_stuck` 1 = that device does not move.
    pub const SIGNALS: &[(&str, f64)] = &[
        ("pressure", 0.30),
        ("flow", 60.0),
        ("launder_level", 120.0),
        ("casting", 1.0),
        ("interlock", 1.0),
        ("trip_pressure", 0.15),
        ("trip_flow", 40.0),
        ("stroke", 1.0),
        ("shutoff_stuck", 0.0),
        ("drain_stuck", 0.0),
        ("launder_stuck", 0.0),
    ];
}

pub mod gas {
    pub const REG_LEL: u16 = 0;
    pub const REG_STATUS: u16 = 2;
    pub const DI_VALVE_CLOSED: u16 = 0;
    pub const COIL_VALVE: u16 = 0;
    pub const COIL_HORN: u16 = 1;
    /// (signal, default). `interlock` 1 = the cabinet closes its valve itself at
    /// `trip_lel` (off by default: the gateway writes the valve); `stroke` seconds;
    /// `valve_stuck` 1 = the valve does not move.
    pub const SIGNALS: &[(&str, f64)] = &[
        ("lel", 0.0),
        ("fault", 0.0),
        ("interlock", 0.0),
        ("trip_lel", 25.0),
        ("stroke", 0.5),
        ("valve_stuck", 0.0),
    ];
}

impl Plant {
    pub fn signals(&self) -> &'static [(&'static str, f64)] {
        match self {
            Plant::FurnaceSkid => furnace::SIGNALS,
            Plant::CastingPit => casting::SIGNALS,
            Plant::GasCabinet => gas::SIGNALS,
        }
    }

    /// Writes a measurement into its register; logic signals are known but only
    /// read by [`step`]. False for an unknown signal.
    pub fn write_signal(&self, bank: &RegisterBank, signal: &str, v: f64) -> bool {
        if !self.signals().iter().any(|(s, _)| *s == signal) {
            return false;
        }
        let reg = match (self, signal) {
            (Plant::FurnaceSkid, "inlet_flow") => Some(furnace::REG_INLET_FLOW),
            (Plant::FurnaceSkid, "outlet_flow") => Some(furnace::REG_OUTLET_FLOW),
            (Plant::FurnaceSkid, "inlet_temp") => Some(furnace::REG_INLET_TEMP),
            (Plant::FurnaceSkid, "outlet_temp") => Some(furnace::REG_OUTLET_TEMP),
            (Plant::CastingPit, "pressure") => Some(casting::REG_PRESSURE),
            (Plant::CastingPit, "flow") => Some(casting::REG_FLOW),
            (Plant::CastingPit, "launder_level") => Some(casting::REG_LAUNDER_LEVEL),
            (Plant::GasCabinet, "lel") => Some(gas::REG_LEL),
            _ => None,
        };
        if let Some(r) = reg {
            bank.set_mirrored_words(r, &f32_abcd(v));
        }
        match (self, signal) {
            (Plant::CastingPit, "casting") => bank.set_discrete(casting::DI_CASTING, v >= 0.5),
            (Plant::GasCabinet, "fault") => {
                bank.update_mirrored(gas::REG_STATUS, |s| if v >= 0.5 { s | 1 } else { s & !1 })
            }
            _ => {}
        }
        true
    }
}

/// What a plant device remembers between ticks: since when each moving part's
/// command has differed from its position.
#[derive(Debug, Default)]
pub struct State {
    pending: HashMap<u16, Duration>,
}

impl State {
    /// Moves the part at discrete input `di` to `cmd` once the command has stood for
    /// `stroke`; a stuck part stays where it is.
    fn follow(
        &mut self,
        bank: &RegisterBank,
        di: u16,
        cmd: bool,
        stroke: Duration,
        stuck: bool,
        now: Duration,
    ) {
        if bank.discrete(di) == cmd || stuck {
            self.pending.remove(&di);
            return;
        }
        let since = *self.pending.entry(di).or_insert(now);
        if now.saturating_sub(since) >= stroke {
            bank.set_discrete(di, cmd);
            self.pending.remove(&di);
        }
    }
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.clamp(0.0, 3600.0))
}

/// One tick of the device's own logic. `sig` gives a signal's current value (the
/// scenario's, a pin, or the default); `now` is the time since the runner started.
pub fn step(
    plant: Plant,
    bank: &RegisterBank,
    sig: &dyn Fn(&str) -> f64,
    st: &mut State,
    now: Duration,
) {
    let on = |s: &str| sig(s) >= 0.5;
    match plant {
        Plant::FurnaceSkid => {
            use furnace::*;
            let diff = sig("inlet_flow") - sig("outlet_flow");
            bank.set_mirrored_words(REG_FLOW_DIFF, &f32_abcd(diff));
            // The skid's interlock sets the cut command and leaves it set: power
            // comes back only when someone resets the coil (and the cause is gone,
            // or the interlock sets it again on the next tick).
            let cause = sig("outlet_temp") >= sig("trip_temp") || diff >= sig("trip_diff");
            if on("interlock") && cause {
                bank.set_coil(COIL_CUT, true);
                bank.set_discrete(DI_TRIPPED, true);
            } else if !bank.coil(COIL_CUT) {
                bank.set_discrete(DI_TRIPPED, false);
            }
            let powered = if on("breaker_stuck") {
                bank.discrete(DI_POWER_ON)
            } else {
                on("run") && !bank.coil(COIL_CUT)
            };
            bank.set_discrete(DI_POWER_ON, powered);
            let kw = if powered { sig("power_kw") } else { 0.0 };
            bank.set_mirrored_words(REG_POWER_KW, &f32_abcd(kw));
        }
        Plant::CastingPit => {
            use casting::*;
            let cause = sig("pressure") <= sig("trip_pressure") || sig("flow") <= sig("trip_flow");
            if on("interlock") && cause {
                for c in [COIL_SHUTOFF, COIL_DRAIN, COIL_LAUNDER] {
                    bank.set_coil(c, true);
                }
            }
            let stroke = secs(sig("stroke"));
            for (coil, di, stuck) in [
                (COIL_SHUTOFF, DI_SHUTOFF_CLOSED, "shutoff_stuck"),
                (COIL_DRAIN, DI_DRAIN_OPEN, "drain_stuck"),
                (COIL_LAUNDER, DI_LAUNDER_CUT, "launder_stuck"),
            ] {
                st.follow(bank, di, bank.coil(coil), stroke, on(stuck), now);
            }
        }
        Plant::GasCabinet => {
            use gas::*;
            if on("interlock") && sig("lel") >= sig("trip_lel") {
                bank.set_coil(COIL_VALVE, true);
            }
            st.follow(
                bank,
                DI_VALVE_CLOSED,
                bank.coil(COIL_VALVE),
                secs(sig("stroke")),
                on("valve_stuck"),
                now,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig<'a>(m: &'a HashMap<&'static str, f64>, p: Plant) -> impl Fn(&str) -> f64 + 'a {
        move |s: &str| {
            m.get(s).copied().unwrap_or_else(|| {
                p.signals()
                    .iter()
                    .find(|(n, _)| *n == s)
                    .map(|(_, v)| *v)
                    .unwrap()
            })
        }
    }

    fn f32_at(bank: &RegisterBank, addr: u16) -> f32 {
        let w = bank.holding_words(addr, 2);
        f32::from_bits(((w[0] as u32) << 16) | w[1] as u32)
    }

    #[test]
    fn furnace_interlock_cuts_and_a_welded_breaker_does_not() {
        let bank = RegisterBank::new();
        let mut st = State::default();
        let mut m = HashMap::new();
        let p = Plant::FurnaceSkid;
        step(p, &bank, &sig(&m, p), &mut st, Duration::ZERO);
        assert!(bank.discrete(furnace::DI_POWER_ON));
        assert!((f32_at(&bank, furnace::REG_FLOW_DIFF) - 0.1).abs() < 1e-4);
        m.insert("outlet_temp", 60.0);
        step(p, &bank, &sig(&m, p), &mut st, Duration::from_secs(1));
        assert!(bank.coil(furnace::COIL_CUT) && !bank.discrete(furnace::DI_POWER_ON));
        assert_eq!(f32_at(&bank, furnace::REG_POWER_KW), 0.0);
        // Cause gone: the cut stays until the coil is reset.
        m.insert("outlet_temp", 35.0);
        step(p, &bank, &sig(&m, p), &mut st, Duration::from_secs(2));
        assert!(!bank.discrete(furnace::DI_POWER_ON));
        bank.set_coil(furnace::COIL_CUT, false);
        step(p, &bank, &sig(&m, p), &mut st, Duration::from_secs(3));
        assert!(bank.discrete(furnace::DI_POWER_ON));
        // Bypassed interlock and a welded breaker: a written cut changes nothing.
        m.insert("interlock", 0.0);
        m.insert("breaker_stuck", 1.0);
        bank.set_coil(furnace::COIL_CUT, true);
        step(p, &bank, &sig(&m, p), &mut st, Duration::from_secs(4));
        assert!(bank.discrete(furnace::DI_POWER_ON));
    }

    #[test]
    fn casting_devices_follow_after_the_stroke_unless_stuck() {
        let bank = RegisterBank::new();
        let mut st = State::default();
        let mut m = HashMap::new();
        let p = Plant::CastingPit;
        m.insert("pressure", 0.1);
        m.insert("drain_stuck", 1.0);
        step(p, &bank, &sig(&m, p), &mut st, Duration::ZERO);
        assert!(bank.coil(casting::COIL_SHUTOFF));
        assert!(
            !bank.discrete(casting::DI_SHUTOFF_CLOSED),
            "not before the stroke"
        );
        step(p, &bank, &sig(&m, p), &mut st, Duration::from_millis(1000));
        assert!(bank.discrete(casting::DI_SHUTOFF_CLOSED));
        assert!(bank.discrete(casting::DI_LAUNDER_CUT));
        assert!(!bank.discrete(casting::DI_DRAIN_OPEN), "stuck");
    }

    #[test]
    fn gas_valve_closes_on_a_written_command() {
        let bank = RegisterBank::new();
        let mut st = State::default();
        let m = HashMap::new();
        let p = Plant::GasCabinet;
        bank.set_coil(gas::COIL_VALVE, true);
        step(p, &bank, &sig(&m, p), &mut st, Duration::ZERO);
        assert!(!bank.discrete(gas::DI_VALVE_CLOSED));
        step(p, &bank, &sig(&m, p), &mut st, Duration::from_millis(600));
        assert!(bank.discrete(gas::DI_VALVE_CLOSED));
        assert!(Plant::GasCabinet.write_signal(&bank, "fault", 1.0));
        assert_eq!(bank.holding(gas::REG_STATUS), 1);
        assert!(!Plant::GasCabinet.write_signal(&bank, "ch4", 1.0));
    }
}
