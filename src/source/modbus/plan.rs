//! The request planner: which Modbus reads cover a device's points.
//!
//! Field devices (and the RS-485 line they share) pay per request, not per
//! register: a 40-register read costs barely more than a 1-register read.
//! So points of one register kind and one poll group are sorted by address
//! and merged into one read while the hole between them is small
//! (`max_gap`) and the read stays within `max_registers` (2000 bits for
//! coils and discrete inputs, the protocol's limit). Reading through a hole
//! is only safe on devices that answer for unused addresses; `max_gap = 0`
//! turns it off for the ones that answer those with exception 02.

use std::fmt::Write as _;
use std::time::Duration;

use super::config::Modbus;
use crate::config::RegisterKind;

use super::decode::width;

/// Largest number of coils or discrete inputs in one read (FC1/FC2).
pub const MAX_BITS: u16 = 2000;

/// The register kinds in the order their reads are listed.
const KINDS: [RegisterKind; 4] = [
    RegisterKind::Coil,
    RegisterKind::Discrete,
    RegisterKind::Holding,
    RegisterKind::Input,
];

/// One Modbus read request, repeated every `interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRead {
    /// `None`: the device's `poll_interval`; else a `groups[].id`.
    pub group: Option<String>,
    pub interval: Duration,
    pub kind: RegisterKind,
    /// First register (or bit) address.
    pub start: u16,
    /// Number of registers (or bits) read.
    pub count: u16,
    /// The points served by this read: (index in `device.points`, offset of
    /// the point's first register/bit from `start`).
    pub points: Vec<(usize, u16)>,
}

impl PlannedRead {
    /// One past the last address read, as `u32` so 65535 + 1 does not wrap.
    pub fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// The reads that cover every Modbus point of `device`: grouped by poll
/// group (device interval first, then `groups` in config order), then by
/// register kind, then by address.
pub fn plan(device: &Modbus) -> Vec<PlannedRead> {
    let mut groups: Vec<(Option<String>, Duration)> = vec![(None, device.poll_interval)];
    groups.extend(
        device
            .groups
            .iter()
            .map(|g| (Some(g.id.clone()), g.interval.0)),
    );

    let mut out = Vec::new();
    for (group, interval) in &groups {
        for kind in KINDS {
            let mut spans: Vec<Span> = device
                .points
                .iter()
                .enumerate()
                // Validation made every point's group one of the device's.
                .filter(|(_, p)| p.register == kind && p.group == *group)
                .map(|(i, p)| Span {
                    index: i,
                    start: u32::from(p.address),
                    width: u32::from(width(p)),
                })
                .collect();
            spans.sort_by_key(|s| (s.start, s.index));
            for r in merge(&spans, limit(device, kind), u32::from(device.max_gap)) {
                out.push(PlannedRead {
                    group: group.clone(),
                    interval: *interval,
                    kind,
                    // addresses and widths come from u16s and stay ≤ 65536
                    start: r.start as u16,
                    count: (r.end - r.start) as u16,
                    points: r.points,
                });
            }
        }
    }
    out
}

/// One line per read, for the start-up log: what is read, how often, and
/// for which points.
pub fn describe(reads: &[PlannedRead]) -> String {
    let mut s = String::new();
    for (n, r) in reads.iter().enumerate() {
        if n > 0 {
            s.push('\n');
        }
        let kind = format!("{:?}", r.kind).to_lowercase();
        let group = r
            .group
            .as_deref()
            .map(|g| format!(" (group {g})"))
            .unwrap_or_default();
        let _ = write!(
            s,
            "{kind} {}-{} ({} {}) every {}{group}: point(s) {}",
            r.start,
            r.end() - 1,
            r.count,
            if r.kind.is_bit() { "bits" } else { "registers" },
            humantime::format_duration(r.interval),
            r.points
                .iter()
                .map(|(i, off)| format!("#{i}@+{off}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    s
}

#[derive(Clone, Copy, Debug)]
struct Span {
    index: usize,
    start: u32,
    width: u32,
}

/// Largest read of this kind for this device.
fn limit(device: &Modbus, kind: RegisterKind) -> u32 {
    if kind.is_bit() {
        u32::from(MAX_BITS)
    } else {
        u32::from(device.max_registers)
    }
}

/// Registers (or bits) read by one request while merging.
struct Range {
    start: u32,
    end: u32,
    points: Vec<(usize, u16)>,
}

/// Merges address-sorted spans into reads. Overlapping spans (bits of one
/// register) share their registers.
fn merge(spans: &[Span], limit: u32, max_gap: u32) -> Vec<Range> {
    let mut reads: Vec<Range> = Vec::new();
    for s in spans {
        let span_end = s.start + s.width;
        if let Some(r) = reads.last_mut() {
            let hole = s.start.saturating_sub(r.end);
            let merged_end = r.end.max(span_end);
            if hole <= max_gap && merged_end - r.start <= limit {
                r.end = merged_end;
                // < limit ≤ 2000: fits a u16
                r.points.push((s.index, (s.start - r.start) as u16));
                continue;
            }
        }
        // A point wider than the limit is still read, alone.
        reads.push(Range {
            start: s.start,
            end: span_end,
            points: vec![(s.index, 0)],
        });
    }
    reads
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{DataType, Device, Dur, ModbusPoint as Point, PollGroup};

    pub(crate) fn device(points: Vec<Point>) -> Device<Modbus> {
        let mut d = Device::new("dev", Modbus::with_points(points));
        d.timeout = Duration::from_millis(500);
        d
    }

    pub(crate) fn pt(id: &str, kind: RegisterKind, addr: u16, ty: DataType) -> Point {
        Point::new(id, kind, addr, ty)
    }

    fn holding(id: &str, addr: u16, ty: DataType) -> Point {
        pt(id, RegisterKind::Holding, addr, ty)
    }

    fn ranges(reads: &[PlannedRead]) -> Vec<(RegisterKind, u16, u16)> {
        reads.iter().map(|r| (r.kind, r.start, r.count)).collect()
    }

    #[test]
    fn contiguous_points_merge() {
        let d = device(vec![
            holding("c", 4, DataType::F32),
            holding("a", 0, DataType::U16),
            holding("b", 1, DataType::U32),
            holding("d", 6, DataType::F64),
        ]);
        let reads = plan(&d);
        assert_eq!(ranges(&reads), vec![(RegisterKind::Holding, 0, 10)]);
        assert_eq!(reads[0].points, vec![(1, 0), (2, 1), (0, 4), (3, 6)]);
        assert_eq!(reads[0].interval, Duration::from_secs(1));
        assert_eq!(reads[0].group, None);
    }

    #[test]
    fn hole_within_max_gap_is_read_through() {
        // 0..1 and 9..10: a hole of 8 registers (1..=8) = max_gap
        let d = device(vec![
            holding("a", 0, DataType::U16),
            holding("b", 9, DataType::U16),
        ]);
        assert_eq!(ranges(&plan(&d)), vec![(RegisterKind::Holding, 0, 10)]);
        assert_eq!(plan(&d)[0].points, vec![(0, 0), (1, 9)]);
    }

    #[test]
    fn hole_over_max_gap_splits() {
        let d = device(vec![
            holding("a", 0, DataType::U16),
            holding("b", 10, DataType::U16),
        ]);
        assert_eq!(
            ranges(&plan(&d)),
            vec![
                (RegisterKind::Holding, 0, 1),
                (RegisterKind::Holding, 10, 1)
            ]
        );
        let mut d0 = device(vec![
            holding("a", 0, DataType::U16),
            holding("b", 2, DataType::U16),
        ]);
        d0.max_gap = 0;
        assert_eq!(
            plan(&d0).len(),
            2,
            "max_gap = 0 never reads unused registers"
        );
        d0.points[1].address = 1;
        assert_eq!(
            plan(&d0).len(),
            1,
            "adjacent points still merge with max_gap = 0"
        );
    }

    #[test]
    fn max_registers_limit_splits() {
        // 130 consecutive u16: 125 + 5
        let d = device(
            (0..130)
                .map(|a| holding(&format!("p{a}"), a, DataType::U16))
                .collect(),
        );
        let reads = plan(&d);
        assert_eq!(
            ranges(&reads),
            vec![
                (RegisterKind::Holding, 0, 125),
                (RegisterKind::Holding, 125, 5)
            ]
        );
        assert_eq!(reads[1].points[0], (125, 0));
        // an f32 at 124..126 does not straddle the limit: it starts the next read
        let mut d2 = device(vec![
            holding("a", 0, DataType::U16),
            holding("b", 124, DataType::F32),
        ]);
        d2.max_gap = 200;
        assert_eq!(
            ranges(&plan(&d2)),
            vec![
                (RegisterKind::Holding, 0, 1),
                (RegisterKind::Holding, 124, 2)
            ]
        );
        // a smaller configured limit
        let mut d3 = device(
            (0..10)
                .map(|a| holding(&format!("p{a}"), a, DataType::U16))
                .collect(),
        );
        d3.max_registers = 4;
        assert_eq!(
            plan(&d3).iter().map(|r| r.count).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
    }

    #[test]
    fn point_wider_than_limit_is_read_alone() {
        let mut text = holding("sn", 10, DataType::Ascii);
        text.length = Some(20);
        let mut d = device(vec![
            holding("a", 0, DataType::U16),
            text,
            holding("b", 30, DataType::U16),
        ]);
        d.max_registers = 8;
        assert_eq!(
            ranges(&plan(&d)),
            vec![
                (RegisterKind::Holding, 0, 1),
                (RegisterKind::Holding, 10, 20),
                (RegisterKind::Holding, 30, 1)
            ]
        );
    }

    #[test]
    fn poll_groups_are_separate_reads() {
        let mut fast = holding("fast", 1, DataType::U16);
        fast.group = Some("fast".into());
        let mut d = device(vec![
            holding("a", 0, DataType::U16),
            fast,
            holding("b", 2, DataType::U16),
        ]);
        d.groups = vec![PollGroup {
            id: "fast".into(),
            interval: Dur(Duration::from_millis(200)),
        }];
        let reads = plan(&d);
        assert_eq!(reads.len(), 2);
        assert_eq!(
            (reads[0].group.as_deref(), reads[0].start, reads[0].count),
            (None, 0, 3)
        );
        assert_eq!(reads[0].points, vec![(0, 0), (2, 2)]);
        assert_eq!(reads[1].group.as_deref(), Some("fast"));
        assert_eq!(reads[1].interval, Duration::from_millis(200));
        assert_eq!(
            (reads[1].start, reads[1].count, reads[1].points.clone()),
            (1, 1, vec![(1, 0)])
        );
    }

    #[test]
    fn register_kinds_are_separate_reads() {
        let d = device(vec![
            holding("h", 0, DataType::U16),
            pt("i", RegisterKind::Input, 0, DataType::U16),
            pt("c", RegisterKind::Coil, 0, DataType::Bool),
            pt("d", RegisterKind::Discrete, 1, DataType::Bool),
            holding("h2", 1, DataType::U16),
        ]);
        assert_eq!(
            ranges(&plan(&d)),
            vec![
                (RegisterKind::Coil, 0, 1),
                (RegisterKind::Discrete, 1, 1),
                (RegisterKind::Holding, 0, 2),
                (RegisterKind::Input, 0, 1),
            ]
        );
    }

    #[test]
    fn bits_are_packed() {
        let coils: Vec<Point> = [0u16, 1, 2, 3, 9, 10]
            .iter()
            .map(|&a| pt(&format!("c{a}"), RegisterKind::Coil, a, DataType::Bool))
            .collect();
        let reads = plan(&device(coils));
        assert_eq!(ranges(&reads), vec![(RegisterKind::Coil, 0, 11)]);
        assert_eq!(
            reads[0].points.iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 9, 10]
        );
        // 2000 bits per read, whatever max_registers says
        let many: Vec<Point> = (0..2100)
            .map(|a| pt(&format!("d{a}"), RegisterKind::Discrete, a, DataType::Bool))
            .collect();
        assert_eq!(
            plan(&device(many))
                .iter()
                .map(|r| r.count)
                .collect::<Vec<_>>(),
            vec![2000, 100]
        );
    }

    #[test]
    fn bits_of_one_register_share_it() {
        let mut b2 = holding("b2", 140, DataType::Bool);
        b2.bit = Some(2);
        let mut b5 = holding("b5", 140, DataType::Bool);
        b5.bit = Some(5);
        let reads = plan(&device(vec![holding("w", 140, DataType::U16), b2, b5]));
        assert_eq!(ranges(&reads), vec![(RegisterKind::Holding, 140, 1)]);
        assert_eq!(reads[0].points, vec![(0, 0), (1, 0), (2, 0)]);
    }

    #[test]
    fn describe_one_line_per_read() {
        let d = device(vec![
            holding("a", 0, DataType::U16),
            holding("b", 100, DataType::F32),
        ]);
        let text = describe(&plan(&d));
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.starts_with("holding 0-0 (1 registers) every 1s: point(s) #0@+0"),
            "{text}"
        );
        assert!(text.contains("holding 100-101 (2 registers)"), "{text}");
    }
}
