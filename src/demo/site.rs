//! Site configs built from parts, as the TOML an installer would write: the
//! demo, the benches and the integration tests describe their sites with
//! these builders instead of each typing out the same device blocks.
//!
//! The output is plain config text, read by `riskgate::config::load` like
//! any site file, so every check of the loader applies to it. The gas
//! detector's register map is firmware-sim's (`firmware-sim/README.md`,
//! `gas-detector`); a point names one of its channels and the builder
//! writes the register, address and encoding, so a test cannot get an
//! address wrong by copying.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A TOML string literal (quotes and escapes included).
pub fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One channel of firmware-sim's gas detector, with where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GasChannel {
    /// Methane, % CH4: holding 0-1, f32.
    Ch4,
    /// Carbon monoxide, ppm: holding 2-3, f32.
    Co,
    /// Oxygen, % vol: holding 4-5, f32.
    O2,
    /// Temperature, °C: holding 6, i16 × 10.
    Temp,
    /// The status word: holding 7, u16.
    Status,
    /// The sensor-fault bit of the status word: holding 7, bit 0.
    Fault,
    /// The alarm lamp: coil 0, writable by the gateway.
    Lamp,
}

impl GasChannel {
    /// The point fields that place this channel in the register map.
    fn register_fields(self) -> &'static [(&'static str, &'static str)] {
        match self {
            GasChannel::Ch4 => &[
                ("register", "\"holding\""),
                ("address", "0"),
                ("type", "\"f32\""),
            ],
            GasChannel::Co => &[
                ("register", "\"holding\""),
                ("address", "2"),
                ("type", "\"f32\""),
            ],
            GasChannel::O2 => &[
                ("register", "\"holding\""),
                ("address", "4"),
                ("type", "\"f32\""),
            ],
            GasChannel::Temp => &[
                ("register", "\"holding\""),
                ("address", "6"),
                ("type", "\"i16\""),
                ("scale", "0.1"),
            ],
            GasChannel::Status => &[
                ("register", "\"holding\""),
                ("address", "7"),
                ("type", "\"u16\""),
            ],
            GasChannel::Fault => &[
                ("register", "\"holding\""),
                ("address", "7"),
                ("type", "\"bool\""),
                ("bit", "0"),
            ],
            GasChannel::Lamp => &[
                ("register", "\"coil\""),
                ("address", "0"),
                ("writable", "true"),
            ],
        }
    }
}

/// One point of a gas detector: a channel under a point id.
#[derive(Clone, Debug)]
pub struct GasPoint {
    channel: GasChannel,
    id: String,
    name: Option<String>,
    unit: Option<String>,
}

impl GasPoint {
    pub fn new(channel: GasChannel, id: &str) -> GasPoint {
        GasPoint {
            channel,
            id: id.to_string(),
            name: None,
            unit: None,
        }
    }

    pub fn name(mut self, name: &str) -> GasPoint {
        self.name = Some(name.to_string());
        self
    }

    pub fn unit(mut self, unit: &str) -> GasPoint {
        self.unit = Some(unit.to_string());
        self
    }
}

/// A `[[devices]]` block for a firmware-sim gas detector on Modbus TCP.
#[derive(Clone, Debug)]
pub struct GasDetector {
    id: String,
    name: Option<String>,
    host: String,
    port: Option<u16>,
    /// Device settings in the order given, values as TOML literals.
    settings: Vec<(String, String)>,
    points: Vec<GasPoint>,
}

impl GasDetector {
    /// A detector at 127.0.0.1:`port`, with no points yet.
    pub fn new(id: &str, port: u16) -> GasDetector {
        GasDetector {
            port: Some(port),
            ..GasDetector::unplaced(id)
        }
    }

    /// A detector without a port line (the loader's default port): for
    /// configs that are only compiled, never polled.
    pub fn unplaced(id: &str) -> GasDetector {
        GasDetector {
            id: id.to_string(),
            name: None,
            host: "127.0.0.1".into(),
            port: None,
            settings: Vec::new(),
            points: Vec::new(),
        }
    }

    pub fn name(mut self, name: &str) -> GasDetector {
        self.name = Some(name.to_string());
        self
    }

    /// Any device setting, `value` as a TOML literal (e.g. `"\"1h\""`, `3`).
    pub fn set(mut self, key: &str, value: impl ToString) -> GasDetector {
        self.settings.push((key.to_string(), value.to_string()));
        self
    }

    pub fn poll_interval(self, d: &str) -> GasDetector {
        self.set("poll_interval", quoted(d))
    }

    pub fn timeout(self, d: &str) -> GasDetector {
        self.set("timeout", quoted(d))
    }

    pub fn retries(self, n: u32) -> GasDetector {
        self.set("retries", n)
    }

    pub fn offline_after(self, n: u32) -> GasDetector {
        self.set("offline_after", n)
    }

    pub fn stale_after(self, d: &str) -> GasDetector {
        self.set("stale_after", quoted(d))
    }

    pub fn point(mut self, p: GasPoint) -> GasDetector {
        self.points.push(p);
        self
    }

    /// The five measuring channels as `ch4.TAG`, `co.TAG`, `o2.TAG`,
    /// `temp.TAG`, `status.TAG`; only methane named (`NAME 甲烷`) and with a
    /// unit.
    pub fn five_channels(self, tag: &str, name: &str) -> GasDetector {
        self.point(
            GasPoint::new(GasChannel::Ch4, &format!("ch4.{tag}"))
                .name(&format!("{name} 甲烷"))
                .unit("%CH4"),
        )
        .point(GasPoint::new(GasChannel::Co, &format!("co.{tag}")))
        .point(GasPoint::new(GasChannel::O2, &format!("o2.{tag}")))
        .point(GasPoint::new(GasChannel::Temp, &format!("temp.{tag}")))
        .point(GasPoint::new(GasChannel::Status, &format!("status.{tag}")))
    }

    /// Every point of the shipped `gas-detector` profile
    /// (`config/profiles/gas-detector.toml`) as `KEY.TAG`: `ch4.TAG`,
    /// `co.TAG`, `o2.TAG`, `temp.TAG`, `fault.TAG`, `lamp.TAG` and the other
    /// status bits, each named after the device (`NAME 甲烷`) with its unit.
    pub fn full(self, tag: &str) -> GasDetector {
        self.set("profile", quoted("gas-detector"))
            .set("point_ids", quoted(&format!("{{key}}.{tag}")))
    }

    /// The block as config text.
    pub fn toml(&self) -> String {
        let mut t = String::from("\n[[devices]]\n");
        let _ = writeln!(t, "id = {}", quoted(&self.id));
        if let Some(n) = &self.name {
            let _ = writeln!(t, "name = {}", quoted(n));
        }
        t.push_str("protocol = \"modbus_tcp\"\n");
        let _ = writeln!(t, "host = {}", quoted(&self.host));
        if let Some(port) = self.port {
            let _ = writeln!(t, "port = {port}");
        }
        for (k, v) in &self.settings {
            let _ = writeln!(t, "{k} = {v}");
        }
        for p in &self.points {
            t.push_str("  [[devices.points]]\n");
            let _ = writeln!(t, "  id = {}", quoted(&p.id));
            if let Some(n) = &p.name {
                let _ = writeln!(t, "  name = {}", quoted(n));
            }
            for (k, v) in p.channel.register_fields() {
                let _ = writeln!(t, "  {k} = {v}");
            }
            if let Some(u) = &p.unit {
                let _ = writeln!(t, "  unit = {}", quoted(u));
            }
        }
        t
    }
}

/// A whole site file: `[site]`, `[gateway]`, then sections and devices in
/// the order they were added.
#[derive(Clone, Debug)]
pub struct Site {
    site: Vec<(String, String)>,
    gateway_id: String,
    data_dir: PathBuf,
    body: String,
}

impl Site {
    /// `[site] id, kind` and `[gateway] id, data_dir`.
    pub fn new(id: &str, kind: &str, gateway: &str, data_dir: &Path) -> Site {
        Site {
            site: vec![("id".into(), quoted(id)), ("kind".into(), quoted(kind))],
            gateway_id: gateway.to_string(),
            data_dir: data_dir.to_path_buf(),
            body: String::new(),
        }
    }

    /// Another `[site]` field, `value` as a string (e.g. `region_code`).
    pub fn site_field(mut self, key: &str, value: &str) -> Site {
        self.site.push((key.to_string(), quoted(value)));
        self
    }

    /// Config text appended as it is (sections, rules, presets, devices of
    /// other kinds).
    pub fn raw(mut self, text: &str) -> Site {
        self.body.push_str(text);
        if !text.ends_with('\n') {
            self.body.push('\n');
        }
        self
    }

    /// A plain-TCP uplink to a broker at `host`:`port`, with the extra
    /// `[uplink]` lines `more` (e.g. `status_interval = "2s"`).
    pub fn plain_uplink(self, host: &str, port: u16, more: &str) -> Site {
        self.raw(&format!(
            "[uplink]\nhost = {}\nport = {port}\nplain_tcp = true\n{more}\n",
            quoted(host)
        ))
    }

    pub fn device(self, d: &GasDetector) -> Site {
        let t = d.toml();
        self.raw(&t)
    }

    pub fn toml(&self) -> String {
        let mut t = String::from("[site]\n");
        for (k, v) in &self.site {
            let _ = writeln!(t, "{k} = {v}");
        }
        let _ = write!(
            t,
            "\n[gateway]\nid = {}\ndata_dir = {}\n\n",
            quoted(&self.gateway_id),
            quoted(&self.data_dir.display().to_string())
        );
        t.push_str(&self.body);
        t
    }

    /// Writes the file to `dir/site.toml`; its path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let p = dir.join("site.toml");
        std::fs::write(&p, self.toml())?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gas_detector_block_places_each_channel_in_the_register_map() {
        let t = GasDetector::new("gd-1", 1502)
            .poll_interval("1s")
            .point(GasPoint::new(GasChannel::Temp, "temp.1").unit("°C"))
            .toml();
        let v: toml::Table = t.parse().unwrap();
        let d = &v["devices"][0];
        assert_eq!(d["port"].as_integer(), Some(1502));
        assert_eq!(d["poll_interval"].as_str(), Some("1s"));
        let p = &d["points"][0];
        assert_eq!(p["address"].as_integer(), Some(6));
        assert_eq!(p["type"].as_str(), Some("i16"));
        assert_eq!(p["scale"].as_float(), Some(0.1));
        assert_eq!(p["unit"].as_str(), Some("°C"));
    }

    #[test]
    fn a_data_dir_with_backslashes_stays_one_string() {
        let s = Site::new("s", "coal_mine", "gw", Path::new(r"C:\data\x"));
        let v: toml::Table = s.toml().parse().unwrap();
        assert_eq!(v["gateway"]["data_dir"].as_str(), Some(r"C:\data\x"));
    }
}
