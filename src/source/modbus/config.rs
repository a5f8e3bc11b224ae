//! The Modbus part of the config: the typed device and point, and the checks
//! that build them from the file's `[[devices]]` and `[[serial_lines]]`.
//!
//! Invariant: a [`ModbusPoint`] that exists was checked. Its register,
//! address and type are known, its register range lies inside 0-65535, a
//! bool from a register has its bit, an ascii point its length, and its
//! staleness limit is resolved. Nothing downstream applies a default again.

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::config::check::Errs;
use crate::config::error::positive;
use crate::config::raw::{self, ByteOrder, DataType, PollGroup, RegisterKind, SerialLine};

/// A Modbus TCP device (or a serial server speaking Modbus TCP).
#[derive(Clone, Debug)]
pub struct ModbusTcp {
    pub host: String,
    pub port: u16,
    pub modbus: Modbus,
}

/// A slave on an RS-485 line; the line's task polls it.
#[derive(Clone, Debug)]
pub struct ModbusRtu {
    /// The `[[serial_lines]]` id, known to exist.
    pub line: String,
    pub modbus: Modbus,
}

/// What polling a Modbus device needs, whatever the transport.
#[derive(Clone, Debug)]
pub struct Modbus {
    pub unit_id: u8,
    pub poll_interval: Duration,
    /// How long one request waits: the device's `timeout` on TCP, the
    /// line's `response_timeout` on RTU (set by the checks).
    pub timeout: Duration,
    /// Extra attempts of a failed request inside one poll.
    pub retries: u32,
    /// Device-wide byte/word order; a point may override it.
    pub byte_order: ByteOrder,
    pub max_gap: u16,
    /// 1-125.
    pub max_registers: u16,
    pub groups: Vec<PollGroup>,
    pub points: Vec<ModbusPoint>,
}

/// One checked Modbus point.
#[derive(Clone, Debug)]
pub struct ModbusPoint {
    pub id: String,
    pub name: Option<String>,
    pub unit: Option<String>,
    pub register: RegisterKind,
    pub address: u16,
    /// Resolved: `bool` for coils and discrete inputs, `u16` when unwritten.
    pub data_type: DataType,
    /// The point's own order; `None` takes the device's.
    pub byte_order: Option<ByteOrder>,
    /// For a bool taken from a register: which bit (0 = LSB).
    pub bit: Option<u8>,
    /// For `ascii`: number of registers.
    pub length: Option<u16>,
    pub decimals: Option<u8>,
    pub scale: f64,
    pub offset: f64,
    /// A `groups[].id` of the device, known to exist.
    pub group: Option<String>,
    pub writable: bool,
    /// No good reading for this long makes the point stale: the device's
    /// `stale_after`, else 3 poll intervals of its group plus the time a
    /// poll may take with its retries.
    pub stale_after: Duration,
}

impl Deref for ModbusTcp {
    type Target = Modbus;
    fn deref(&self) -> &Modbus {
        &self.modbus
    }
}

impl DerefMut for ModbusTcp {
    fn deref_mut(&mut self) -> &mut Modbus {
        &mut self.modbus
    }
}

impl Deref for ModbusRtu {
    type Target = Modbus;
    fn deref(&self) -> &Modbus {
        &self.modbus
    }
}

impl DerefMut for ModbusRtu {
    fn deref_mut(&mut self) -> &mut Modbus {
        &mut self.modbus
    }
}

impl ModbusPoint {
    /// A point with the file's defaults for every other field (for tests
    /// and tools that build devices in code).
    pub fn new(id: &str, register: RegisterKind, address: u16, data_type: DataType) -> ModbusPoint {
        ModbusPoint {
            id: id.into(),
            name: None,
            unit: None,
            register,
            address,
            data_type,
            byte_order: None,
            bit: None,
            length: None,
            decimals: None,
            scale: 1.0,
            offset: 0.0,
            group: None,
            writable: false,
            stale_after: Duration::from_secs(10),
        }
    }
}

impl Modbus {
    /// The file's defaults, with these points.
    pub fn with_points(points: Vec<ModbusPoint>) -> Modbus {
        Modbus {
            unit_id: raw::default_unit(),
            poll_interval: raw::default_poll().0,
            timeout: raw::default_timeout().0,
            retries: raw::default_retries(),
            byte_order: ByteOrder::default(),
            max_gap: raw::default_max_gap(),
            max_registers: raw::default_max_regs(),
            groups: Vec::new(),
            points,
        }
    }
}

/// Checks one `[[serial_lines]]` entry (its id is checked with the others).
pub fn check_line(l: &SerialLine, p: &str, e: &mut Errs) {
    if l.path.is_empty() {
        e.push(
            format!("{p}.path"),
            "must name the serial device, e.g. /dev/ttyS1",
        );
    }
    if !(300..=921_600).contains(&l.baud) {
        e.push(
            format!("{p}.baud"),
            format!("{} is not a usable baud rate (300-921600)", l.baud),
        );
    }
    if !(5..=8).contains(&l.data_bits) {
        e.push(format!("{p}.data_bits"), "must be 5, 6, 7 or 8");
    }
    if !(1..=2).contains(&l.stop_bits) {
        e.push(format!("{p}.stop_bits"), "must be 1 or 2");
    }
    if !positive(&l.response_timeout) {
        e.push(format!("{p}.response_timeout"), "must be greater than zero");
    }
    if !(1..=100).contains(&l.silent_probe_every) {
        e.push(
            format!("{p}.silent_probe_every"),
            format!(
                "{} cycles: must be 1-100 (1 asks a silent slave every cycle)",
                l.silent_probe_every
            ),
        );
    }
}

/// Checks a `protocol = "modbus_tcp"` device; `point_paths[j]` names
/// `d.points[j]` as written (an explicit point or a profile's).
pub fn check_tcp(
    d: &raw::Device,
    p: &str,
    point_paths: &[String],
    e: &mut Errs,
) -> Option<ModbusTcp> {
    let host = d.host.clone().unwrap_or_default();
    if host.is_empty() {
        e.push(format!("{p}.host"), "required for protocol modbus_tcp");
    }
    if d.line.is_some() {
        e.push(format!("{p}.line"), "only for protocol modbus_rtu");
    }
    let modbus = check_modbus(d, p, point_paths, d.timeout.0, e)?;
    Some(ModbusTcp {
        host,
        // The Modbus TCP port (IANA 502).
        port: d.port.unwrap_or(502),
        modbus,
    })
}

/// Checks a `protocol = "modbus_rtu"` device against the known lines. A
/// request to the slave waits the line's `response_timeout`, so that is
/// its timeout, also in its default `stale_after`.
pub fn check_rtu(
    d: &raw::Device,
    p: &str,
    point_paths: &[String],
    lines: &HashMap<&str, &SerialLine>,
    e: &mut Errs,
) -> Option<ModbusRtu> {
    if d.unit_id == 0 && d.points.iter().any(|pt| pt.writable) {
        // Unit 0 is the RTU broadcast: every slave on the line would apply
        // the write and none answers, so it could never be read back.
        e.push(
            format!("{p}.unit_id"),
            "0 is the broadcast address on a serial line: a device with writable points needs its own unit id (1-247)",
        );
    }
    let line = match &d.line {
        None => {
            e.push(
                format!("{p}.line"),
                "required for protocol modbus_rtu: the id of a [[serial_lines]] entry",
            );
            None
        }
        Some(l) => match lines.get(l.as_str()) {
            None => {
                e.push(
                    format!("{p}.line"),
                    format!("no serial line `{l}` in [[serial_lines]]"),
                );
                None
            }
            Some(line) => Some(*line),
        },
    };
    let timeout = line.map_or(d.timeout.0, |l| l.response_timeout.0);
    let modbus = check_modbus(d, p, point_paths, timeout, e);
    Some(ModbusRtu {
        line: line?.id.clone(),
        modbus: modbus?,
    })
}

/// `timeout`: how long one request may wait (the device's `timeout` on
/// TCP, the line's `response_timeout` on RTU).
fn check_modbus(
    d: &raw::Device,
    p: &str,
    point_paths: &[String],
    timeout: Duration,
    e: &mut Errs,
) -> Option<Modbus> {
    let before = e.len();
    if d.max_rate.is_some() {
        e.push(
            format!("{p}.max_rate"),
            "only for protocol mqtt: a polled device's pace is its poll_interval",
        );
    }
    if !positive(&d.poll_interval) {
        e.push(format!("{p}.poll_interval"), "must be greater than zero");
    }
    if !positive(&d.timeout) {
        e.push(format!("{p}.timeout"), "must be greater than zero");
    }
    if d.unit_id > 247 {
        e.push(
            format!("{p}.unit_id"),
            format!("{} is outside the Modbus unit range 0-247", d.unit_id),
        );
    }
    if !(1..=125).contains(&d.max_registers) {
        e.push(
            format!("{p}.max_registers"),
            "must be 1-125 (the protocol's limit for one read)",
        );
    }
    let mut gids = HashSet::new();
    for (k, g) in d.groups.iter().enumerate() {
        if !gids.insert(g.id.as_str()) {
            e.push(
                format!("{p}.groups[{k}].id"),
                format!("duplicate poll group `{}`", g.id),
            );
        }
        if !positive(&g.interval) {
            e.push(
                format!("{p}.groups[{k}].interval"),
                "must be greater than zero",
            );
        }
    }
    let points: Vec<Option<ModbusPoint>> = d
        .points
        .iter()
        .zip(point_paths)
        .map(|(pt, pp)| check_point(d, pt, pp, timeout, e))
        .collect();
    check_overlaps(&points, point_paths, e);
    if e.len() > before {
        return None;
    }
    Some(Modbus {
        unit_id: d.unit_id,
        poll_interval: d.poll_interval.0,
        timeout,
        retries: d.retries,
        byte_order: d.byte_order,
        max_gap: d.max_gap,
        max_registers: d.max_registers,
        groups: d.groups.clone(),
        points: points.into_iter().collect::<Option<Vec<_>>>()?,
    })
}

fn check_point(
    d: &raw::Device,
    pt: &raw::Point,
    pp: &str,
    timeout: Duration,
    e: &mut Errs,
) -> Option<ModbusPoint> {
    let before = e.len();
    if pt.path.is_some() {
        e.push(format!("{pp}.path"), "only for MQTT points");
    }
    let interval = match &pt.group {
        None => d.poll_interval.0,
        Some(g) => match d.groups.iter().find(|x| &x.id == g) {
            Some(x) => x.interval.0,
            None => {
                e.push(
                    format!("{pp}.group"),
                    format!("no poll group `{g}` in this device's groups"),
                );
                d.poll_interval.0
            }
        },
    };
    let Some(reg) = pt.register else {
        e.push(
            format!("{pp}.register"),
            "required: coil, discrete, holding or input",
        );
        return None;
    };
    let Some(addr) = pt.address else {
        e.push(
            format!("{pp}.address"),
            "required: the register address (0-65535, as on the wire)",
        );
        return None;
    };
    let ty = pt.data_type.unwrap_or(if reg.is_bit() {
        DataType::Bool
    } else {
        DataType::U16
    });
    if reg.is_bit() && ty != DataType::Bool {
        e.push(
            format!("{pp}.type"),
            format!("a {reg:?} holds one bit: the type must be bool, not {ty:?}"),
        );
    }
    if reg.is_bit() && pt.bit.is_some() {
        e.push(
            format!("{pp}.bit"),
            "only for a bool taken from a holding or input register",
        );
    }
    if let Some(b) = pt.bit {
        if b > 15 {
            e.push(
                format!("{pp}.bit"),
                format!("{b} is not a bit of a 16-bit register (0-15)"),
            );
        }
        if ty != DataType::Bool {
            e.push(format!("{pp}.bit"), "only with type = \"bool\"");
        }
    }
    if !reg.is_bit() && ty == DataType::Bool && pt.bit.is_none() {
        e.push(
            format!("{pp}.bit"),
            "a bool from a register needs bit = 0-15",
        );
    }
    let words = match ty {
        DataType::Ascii => match pt.length {
            Some(n) if (1..=125).contains(&n) => n,
            Some(n) => {
                e.push(
                    format!("{pp}.length"),
                    format!("{n} registers: must be 1-125"),
                );
                1
            }
            None => {
                e.push(
                    format!("{pp}.length"),
                    "an ascii point needs length = number of registers (2 characters each)",
                );
                1
            }
        },
        _ => {
            if pt.length.is_some() {
                e.push(format!("{pp}.length"), "only for type = \"ascii\"");
            }
            ty.words()
        }
    };
    if u32::from(addr) + u32::from(words) > 65536 {
        e.push(
            format!("{pp}.address"),
            format!("{addr} + {words} registers runs past 65535"),
        );
    }
    if let Some(order) = pt.byte_order {
        let fits = match ty.words() {
            _ if reg.is_bit() || ty == DataType::Bool => order == ByteOrder::ABCD,
            1 => matches!(order, ByteOrder::ABCD | ByteOrder::BADC),
            _ => true,
        };
        if !fits {
            e.push(
                format!("{pp}.byte_order"),
                format!("{order:?} does not fit a {ty:?}: one-register values take ABCD or BADC, bits none"),
            );
        }
    }
    if let Some(dec) = pt.decimals {
        if dec > 9 {
            e.push(format!("{pp}.decimals"), "must be 0-9");
        }
        if matches!(
            ty,
            DataType::F32 | DataType::F64 | DataType::Bool | DataType::Ascii
        ) {
            e.push(
                format!("{pp}.decimals"),
                format!("fixed-point needs an integer type, not {ty:?}"),
            );
        }
    }
    if pt.writable && matches!(reg, RegisterKind::Discrete | RegisterKind::Input) {
        e.push(
            format!("{pp}.writable"),
            format!("a {reg:?} register cannot be written"),
        );
    }
    if e.len() > before {
        return None;
    }
    // A point is stale after three missed polls of its own group, plus
    // the time one poll may take with its retries.
    let default_stale = interval * 3 + timeout * (d.retries + 1);
    Some(ModbusPoint {
        id: pt.id.clone(),
        name: pt.name.clone(),
        unit: pt.unit.clone(),
        register: reg,
        address: addr,
        data_type: ty,
        byte_order: pt.byte_order,
        bit: pt.bit,
        length: pt.length,
        decimals: pt.decimals,
        scale: pt.scale,
        offset: pt.offset,
        group: pt.group.clone(),
        writable: pt.writable,
        stale_after: d.stale_after.map_or(default_stale, |s| s.0),
    })
}

/// Two points of one device whose register ranges overlap must read the
/// same registers the same way; a u16 inside an f32 is a map error.
/// Points that failed their own check are left out.
fn check_overlaps(points: &[Option<ModbusPoint>], paths: &[String], e: &mut Errs) {
    let spans: Vec<(RegisterKind, u32, u32, DataType, usize)> = points
        .iter()
        .enumerate()
        .filter_map(|(j, pt)| {
            let pt = pt.as_ref()?;
            let words = pt.length.unwrap_or(pt.data_type.words());
            let start = u32::from(pt.address);
            Some((
                pt.register,
                start,
                start + u32::from(words),
                pt.data_type,
                j,
            ))
        })
        .collect();
    for a in 0..spans.len() {
        for b in a + 1..spans.len() {
            let (ra, sa, ea, ta, ja) = spans[a];
            let (rb, sb, eb, tb, jb) = spans[b];
            if ra != rb || sa >= eb || sb >= ea {
                continue;
            }
            let same_read = ta == tb && sa == sb && ea == eb;
            let bits_of_same = ta == DataType::Bool && tb == DataType::Bool;
            if !(same_read || bits_of_same) {
                e.push(
                    format!("{}.address", paths[jb]),
                    format!(
                        "{rb:?} registers {sb}-{} ({tb:?}) overlap {} at {sa}-{} ({ta:?}) with a different type",
                        eb - 1,
                        short(&paths[ja]),
                        ea - 1
                    ),
                );
            }
        }
    }
}

/// `devices[0].points[3]` → `points[3]`: the other point, named within its
/// device as the message is about that device.
fn short(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(_, last)| last)
}
