//! The site of the fault tests: gas detectors simulated by firmware-sim on
//! Modbus TCP, described with the library's site builder
//! (`riskgate::demo::site`).

use std::path::{Path, PathBuf};

use riskgate::demo::site::{GasDetector, Site};

/// A site config for the fault tests: `devices` gas detectors on Modbus TCP
/// at these ports (`gd-00`, `gd-01`, …, five points each:
/// `ch4.gdNN` `co.gdNN` `o2.gdNN` `temp.gdNN` `status.gdNN`), the methane
/// preset of a coal face on `ch4.gd00` (alarm ≥ 1.0, cut ≥ 1.5, recovery
/// < 1.0: a step to 1.62 raises two alarms, back to 0.8 clears both).
pub struct SiteCfg {
    pub site: String,
    pub gateway: String,
    pub data_dir: PathBuf,
    pub devices: Vec<u16>,
    pub poll: String,
    /// `[uplink]` body without the host line, e.g. `port = 1883\nplain_tcp = true`.
    pub uplink: Option<String>,
    pub influx_url: Option<String>,
    /// Extra `[store]` lines.
    pub store: String,
    /// Extra `[influxdb]` lines (a token, a timeout).
    pub influx: String,
}

impl SiteCfg {
    pub fn new(site: &str, data_dir: &Path, devices: Vec<u16>) -> SiteCfg {
        SiteCfg {
            site: site.to_string(),
            gateway: format!("gw-{site}"),
            data_dir: data_dir.to_path_buf(),
            devices,
            poll: "100ms".into(),
            uplink: None,
            influx_url: None,
            store: String::new(),
            influx: String::new(),
        }
    }

    /// A plain-TCP uplink to a broker on `port`.
    pub fn plain_uplink(mut self, port: u16) -> SiteCfg {
        self.uplink = Some(format!(
            "port = {port}\nplain_tcp = true\nstatus_interval = \"5s\""
        ));
        self
    }

    pub fn toml(&self) -> String {
        let mut site = Site::new(&self.site, "coal_mine", &self.gateway, &self.data_dir)
            .site_field("region_code", "140581")
            .raw(&format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[store]\ncommit_interval = \"100ms\"\n{}",
                self.store
            ));
        if let Some(u) = &self.uplink {
            site = site.raw(&format!("[uplink]\nhost = \"127.0.0.1\"\n{u}\n"));
        }
        if let Some(url) = &self.influx_url {
            site = site.raw(&format!(
                "[influxdb]\nurl = \"{url}\"\norg = \"fault\"\nbucket = \"fault\"\nflush_interval = \"200ms\"\ntimeout = \"3s\"\n{}\n",
                self.influx
            ));
        }
        for (i, port) in self.devices.iter().enumerate() {
            let d = format!("gd{i:02}");
            site = site.device(
                &GasDetector::new(&format!("gd-{i:02}"), *port)
                    .poll_interval(&self.poll)
                    .timeout("500ms")
                    .retries(0)
                    .offline_after(5)
                    .stale_after("10s")
                    .five_channels(&d, &d),
            );
        }
        site.raw(
            r#"
[[presets]]
name = "coal-methane-face"
id_prefix = "gd00-"
bind = { ch4 = "ch4.gd00" }
"#,
        )
        .toml()
    }

    /// Writes the config to `dir/site.toml` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("site.toml");
        std::fs::write(&p, self.toml()).unwrap();
        p
    }

    /// The checked config, for `riskgate::runtime::start`.
    pub fn load(&self, dir: &Path) -> riskgate::config::Config {
        let p = self.write(dir);
        riskgate::config::load(&p).unwrap_or_else(|e| {
            panic!(
                "fault-test config rejected: {}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    }

    /// Every point id of the config.
    pub fn points(&self) -> Vec<String> {
        (0..self.devices.len())
            .flat_map(|i| ["ch4", "co", "o2", "temp", "status"].map(|p| format!("{p}.gd{i:02}")))
            .collect()
    }
}

/// A gas detector's steady scenario: methane 0.30 %, CO 5 ppm, O₂ 20.8 %,
/// 21.5 °C.
pub const STEADY: &str = "[signals.ch4]\ninitial = 0.30\n[signals.co]\ninitial = 5.0\n[signals.o2]\ninitial = 20.8\n[signals.temp]\ninitial = 21.5\n";

/// `n` simulated gas detectors on Modbus TCP, steady values.
pub async fn gas_detectors(n: usize) -> Vec<(firmware_sim::TcpSlave, firmware_sim::DeviceHandle)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let sc = firmware_sim::Scenario::from_toml_str(STEADY).unwrap();
        out.push(
            firmware_sim::devices::gas_detector_tcp("127.0.0.1:0".parse().unwrap(), sc)
                .await
                .unwrap(),
        );
    }
    out
}
