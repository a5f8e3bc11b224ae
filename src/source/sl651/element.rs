//! The elements (要素) a station reports, by identifier and symbol.
//!
//! Source: standards-research.md §4.3 and §8, from the draft's Annex C and
//! Table 58 **[C, draft]**, cross-checked against public parsers **[S]**.
//! Only the elements riskgate has a use for are named; any other
//! identifier is still skipped correctly, because its definition byte
//! gives its length.

/// How an element's bytes are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// BCD digits, the decimals from the definition byte; FF first is a
    /// negative value.
    Bcd,
    /// 12 × 1-byte HEX five-minute rainfalls in 0.1 mm, FF invalid (DRP).
    Rain5m,
    /// 12 × 2-byte HEX five-minute levels in 0.01 m, FFFF invalid
    /// (DRZ1-8). HEX, not BCD, is the public parsers' reading [S].
    Level5m,
    /// 4-byte status and alarm bits (ZT).
    Status,
}

/// One known element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element {
    pub id: u8,
    pub symbol: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub shape: Shape,
}

const fn bcd(id: u8, symbol: &'static str, name: &'static str, unit: &'static str) -> Element {
    Element {
        id,
        symbol,
        name,
        unit,
        shape: Shape::Bcd,
    }
}

/// The element table (docs/sl651.md prints the same).
pub const ELEMENTS: &[Element] = &[
    bcd(0x1A, "P1", "1 小时降水量", "mm"),
    bcd(0x1B, "P2", "2 小时降水量", "mm"),
    bcd(0x1C, "P3", "3 小时降水量", "mm"),
    bcd(0x1D, "P6", "6 小时降水量", "mm"),
    bcd(0x1E, "P12", "12 小时降水量", "mm"),
    bcd(0x1F, "PD", "日降水量", "mm"),
    bcd(0x20, "PJ", "当前降水量", "mm"),
    bcd(0x22, "PN05", "5 分钟时段降水量", "mm"),
    bcd(0x26, "PT", "降水量累计值", "mm"),
    bcd(0x38, "VT", "电源电压", "V"),
    bcd(0x39, "Z", "瞬时河道水位", "m"),
    bcd(0x3A, "ZB", "闸(站)下水位", "m"),
    bcd(0x3B, "ZU", "库(闸、站)上水位", "m"),
    Element {
        id: 0x45,
        symbol: "ZT",
        name: "遥测站状态及报警信息",
        unit: "",
        shape: Shape::Status,
    },
    bcd(0x58, "WP1", "水压 1", "kPa"),
    bcd(0x59, "WP2", "水压 2", "kPa"),
    bcd(0x5A, "WP3", "水压 3", "kPa"),
    bcd(0x5B, "WP4", "水压 4", "kPa"),
    bcd(0x5C, "WP5", "水压 5", "kPa"),
    bcd(0x5D, "WP6", "水压 6", "kPa"),
    bcd(0x5E, "WP7", "水压 7", "kPa"),
    bcd(0x5F, "WP8", "水压 8", "kPa"),
    Element {
        id: 0xF4,
        symbol: "DRP",
        name: "1 小时内每 5 分钟时段雨量",
        unit: "mm",
        shape: Shape::Rain5m,
    },
    level5m(0xF5, "DRZ1"),
    level5m(0xF6, "DRZ2"),
    level5m(0xF7, "DRZ3"),
    level5m(0xF8, "DRZ4"),
    level5m(0xF9, "DRZ5"),
    level5m(0xFA, "DRZ6"),
    level5m(0xFB, "DRZ7"),
    level5m(0xFC, "DRZ8"),
];

const fn level5m(id: u8, symbol: &'static str) -> Element {
    Element {
        id,
        symbol,
        name: "1 小时内 5 分钟间隔相对水位",
        unit: "m",
        shape: Shape::Level5m,
    }
}

/// Guide identifiers inside a body: not elements.
pub const OBSERVATION_TIME: u8 = 0xF0;
pub const STATION_ADDRESS: u8 = 0xF1;

/// The element a config names: its hex identifier (`"39"`, `"0x39"`) or
/// its symbol (`"Z"`, case as in the standard, any case accepted).
pub fn lookup(name: &str) -> Option<&'static Element> {
    let n = name.trim();
    if let Some(e) = ELEMENTS.iter().find(|e| e.symbol.eq_ignore_ascii_case(n)) {
        return Some(e);
    }
    let hex = n.strip_prefix("0x").or(n.strip_prefix("0X")).unwrap_or(n);
    let id = u8::from_str_radix(hex, 16)
        .ok()
        .filter(|_| hex.len() == 2)?;
    by_id(id)
}

pub fn by_id(id: u8) -> Option<&'static Element> {
    ELEMENTS.iter().find(|e| e.id == id)
}

/// ZT bits (draft Table 58) riskgate names as points. `set_means` is the
/// bit value that means the named condition: the cabinet-door bit is 0
/// when the door is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusBit {
    pub name: &'static str,
    pub bit: u8,
    pub set_means: bool,
}

pub const STATUS_BITS: &[StatusBit] = &[
    StatusBit {
        name: "mains_lost",
        bit: 0,
        set_means: true,
    },
    StatusBit {
        name: "battery_low",
        bit: 1,
        set_means: true,
    },
    StatusBit {
        name: "level_over_limit",
        bit: 2,
        set_means: true,
    },
    StatusBit {
        name: "level_sensor_fault",
        bit: 6,
        set_means: true,
    },
    StatusBit {
        name: "door_open",
        bit: 7,
        set_means: false,
    },
];

pub fn status_bit(name: &str) -> Option<&'static StatusBit> {
    STATUS_BITS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_name_the_same_element() {
        for (a, b) in [
            ("39", "Z"),
            ("20", "PJ"),
            ("26", "PT"),
            ("38", "VT"),
            ("3B", "ZU"),
            ("45", "ZT"),
            ("F4", "drp"),
        ] {
            assert_eq!(lookup(a), lookup(b), "{a} {b}");
            assert!(lookup(a).is_some(), "{a}");
        }
        assert_eq!(lookup("0x3b").unwrap().symbol, "ZU");
        assert!(lookup("3").is_none());
        assert!(lookup("ZZ").is_none());
    }
}
