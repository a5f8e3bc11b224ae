//! The config file as written: serde shapes, their defaults and the names
//! of their values; nothing checked yet. `device.rs` holds the shapes of
//! serial lines and devices, `watch.rs` those of tamper checks,
//! escalation and point quality.
//!
//! Fields that only some protocols or rule kinds use are `Option`s here and
//! are checked by each protocol's `config.rs` (and `validate()`), which can
//! then say *which* field is missing for *which* protocol instead of serde's
//! first-error-only message. What the rest of riskgate reads is the typed
//! model in `config::model`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

mod device;
mod watch;
pub use device::*;
pub use watch::*;

/// A duration written as text: `"500ms"`, `"10s"`, `"2m"`, `"1h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{s}` is not a duration like \"500ms\", \"10s\" or \"2m\" ({e})"
            ))
        })
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct RawConfig {
    pub site: Site,
    pub gateway: Gateway,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub store: Store,
    #[serde(default)]
    pub serial_lines: Vec<SerialLine>,
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Rule sets shipped with riskgate, included by name (`config/presets/`).
    #[serde(default)]
    pub presets: Vec<PresetUse>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Point quality beyond good/bad: sensor ranges and device fault bits.
    #[serde(default)]
    pub quality: Vec<QualityCfg>,
    pub influxdb: Option<Influx>,
    pub uplink: Option<Uplink>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    CoalMine,
    NonCoalMine,
    Reservoir,
    TailingsDam,
    Chemical,
    GasUser,
    /// 工贸 works (metallurgy, nonferrous, building materials, machinery, light
    /// industry …); contract 1.1 `site_kind` "industrial".
    Industrial,
    Other,
}

impl SiteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::CoalMine => "coal_mine",
            SiteKind::NonCoalMine => "non_coal_mine",
            SiteKind::Reservoir => "reservoir",
            SiteKind::TailingsDam => "tailings_dam",
            SiteKind::Chemical => "chemical",
            SiteKind::GasUser => "gas_user",
            SiteKind::Industrial => "industrial",
            SiteKind::Other => "other",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Site {
    pub id: String,
    pub kind: SiteKind,
    #[serde(default)]
    pub name: Option<String>,
    /// GB/T 2260 six-digit administrative region code.
    #[serde(default)]
    pub region_code: Option<String>,
    /// IANA zone (`Asia/Shanghai`); event times carry this zone's offset.
    #[serde(default = "default_tz")]
    pub timezone: String,
}

fn default_tz() -> String {
    "Asia/Shanghai".into()
}

#[derive(Clone, Debug, Deserialize)]
pub struct Gateway {
    pub id: String,
    /// Where the durable queues, `seq` and history live.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
}

fn default_data_dir() -> String {
    "/var/lib/riskgate".into()
}

#[derive(Clone, Debug, Deserialize)]
pub struct Http {
    #[serde(default = "default_http")]
    pub listen: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The operator accounts (`riskgate user add`); a relative path is
    /// taken from the config file's directory.
    #[serde(default = "default_users_file")]
    pub users_file: String,
    /// Reads (page data, points, alarms, history) without logging in.
    /// Writes always need a session.
    #[serde(default)]
    pub public_read: bool,
    /// Host header values accepted besides the listen address itself and
    /// `localhost`/`127.0.0.1` on its port (e.g. `"gw-1301.local:8080"`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// A session ends after this long without a request...
    #[serde(default = "default_session_idle")]
    pub session_idle: Dur,
    /// ...and this long after login in any case.
    #[serde(default = "default_session_max")]
    pub session_max: Dur,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: default_http(),
            enabled: true,
            users_file: default_users_file(),
            public_read: false,
            allowed_hosts: Vec::new(),
            session_idle: default_session_idle(),
            session_max: default_session_max(),
        }
    }
}

fn default_http() -> String {
    "127.0.0.1:8080".into()
}
fn default_users_file() -> String {
    "/etc/riskgate/users.toml".into()
}
fn default_session_idle() -> Dur {
    Dur(Duration::from_secs(12 * 3600))
}
fn default_session_max() -> Dur {
    Dur(Duration::from_secs(7 * 24 * 3600))
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
pub struct Store {
    /// Upper bound of the readings queue on disk, in MB. When it is reached
    /// the oldest readings are dropped (counted, one `fault` alarm raised);
    /// alarms and status are never dropped.
    #[serde(default = "default_queue_mb")]
    pub readings_queue_mb: f64,
    /// Raw readings kept locally for the operator page and `riskgate history`
    /// (AQ 6201-2019: real-time values ≥ 7 days, standards-research.md §2).
    #[serde(default = "default_raw_days")]
    pub raw_retention_days: u32,
    /// 5-minute statistics and alarm events (AQ 6201-2019: ≥ 1 year).
    #[serde(default = "default_stats_days")]
    pub stats_retention_days: u32,
    /// Upper bound of the local raw history, in MB.
    #[serde(default = "default_history_mb")]
    pub history_mb: f64,
    /// How long readings may wait in memory before one batched commit.
    #[serde(default = "default_commit")]
    pub commit_interval: Dur,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            readings_queue_mb: default_queue_mb(),
            raw_retention_days: default_raw_days(),
            stats_retention_days: default_stats_days(),
            history_mb: default_history_mb(),
            commit_interval: default_commit(),
        }
    }
}

fn default_queue_mb() -> f64 {
    512.0
}
fn default_raw_days() -> u32 {
    7
}
fn default_stats_days() -> u32 {
    366
}
fn default_history_mb() -> f64 {
    2048.0
}
fn default_commit() -> Dur {
    Dur(Duration::from_millis(200))
}

#[derive(Clone, Debug, Deserialize)]
pub struct PresetUse {
    /// A file name under `config/presets/` without `.toml`, e.g. `coal-methane`.
    pub name: String,
    /// Binds the preset's placeholders (`{ch4}`) to this site's point ids.
    #[serde(default)]
    pub bind: toml::Table,
    /// Prefix for the generated rule ids, so one preset can be used per face.
    #[serde(default)]
    pub id_prefix: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleKindCfg {
    Threshold,
    Rate,
    Interlock,
    Consistency,
    Escalation,
    Accumulation,
    /// A sensor or cabinet tampered with or its data faked (`check` says
    /// which pattern): `rules::kind::tamper`.
    Tamper,
    /// A calibration's power-cut test (AQ 6201-2019): `rules::kind::cut_test`.
    CutTest,
}

/// What an accumulation (or a counting rate) rule's point reports.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Each reading is an amount on its own (SL 651 PJ current rainfall,
    /// one value of a DRP 5-minute series): the total is their sum.
    Increment,
    /// Each reading is a running total (SL 651 PT, a tipping-bucket
    /// counter): the amount is the difference to the reading before; a
    /// value lower than that is a reset, counted from 0.
    Cumulative,
}

/// One period of a threshold's calendar (`schedule`), both days included,
/// in the site's time zone.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Period {
    /// `MM-DD`, the first day.
    pub from: String,
    /// `MM-DD`, the last day; before `from` for a period over the new year.
    pub to: String,
    pub value: f64,
    /// Shown in the message and the event's `detail`, e.g. `主汛期`.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum Cmp {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
}

impl Cmp {
    pub fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Cmp::Ge => v >= t,
            Cmp::Gt => v > t,
            Cmp::Le => v <= t,
            Cmp::Lt => v < t,
        }
    }
    /// True for a high alarm (value above the threshold is bad).
    pub fn is_high(self) -> bool {
        matches!(self, Cmp::Ge | Cmp::Gt)
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Ge => "≥",
            Cmp::Gt => ">",
            Cmp::Le => "≤",
            Cmp::Lt => "<",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Rule {
    pub id: String,
    pub kind: RuleKindCfg,
    /// 1 red … 4 blue. Escalation rules take theirs from `stages`.
    #[serde(default)]
    pub level: u8,
    /// Free text for the operator; the event message is built from it.
    #[serde(default)]
    pub name: Option<String>,
    /// Stays raised until acknowledged *and* the condition is gone.
    #[serde(default)]
    pub latching: bool,
    // ---- threshold / rate
    #[serde(default)]
    pub point: Option<String>,
    #[serde(default)]
    pub op: Option<Cmp>,
    #[serde(default)]
    pub value: Option<f64>,
    /// The value the reading must come back past before the alarm clears
    /// (e.g. methane cut at ≥1.5 %, recovery <1.0 %).
    #[serde(default)]
    pub recovery: Option<f64>,
    /// Alternative to `recovery`: clears at `value - deadband` (high) or
    /// `value + deadband` (low).
    #[serde(default)]
    pub deadband: Option<f64>,
    #[serde(default)]
    pub on_delay: Option<Dur>,
    #[serde(default)]
    pub off_delay: Option<Dur>,
    /// Threshold only: the limit by calendar instead of `value`, with
    /// `otherwise` outside its periods (e.g. 汛限水位 by flood season).
    #[serde(default)]
    pub schedule: Option<Vec<Period>>,
    #[serde(default)]
    pub otherwise: Option<f64>,
    // ---- rate / accumulation
    #[serde(default)]
    pub window: Option<Dur>,
    /// Accumulation: whether readings are amounts or a running total; rate:
    /// `cumulative` makes a counter's reset count from 0.
    #[serde(default)]
    pub input: Option<InputKind>,
    /// Accumulation: the total of the day that starts at this local time
    /// (`"08:00"`, the rain day) instead of a sliding `window`.
    #[serde(default)]
    pub day_start: Option<String>,
    // ---- interlock / consistency
    /// A condition over points, e.g. `face_1301.working && !video_1301.present`.
    #[serde(default)]
    pub when: Option<String>,
    /// How long `when` must hold before the alarm is raised.
    #[serde(default)]
    pub hold: Option<Dur>,
    // ---- escalation
    /// Rule ids whose alarms are counted.
    #[serde(default)]
    pub members: Vec<String>,
    /// The stages of an escalation rule, least severe first: when `count`
    /// distinct points (or member rules without a point) have an active
    /// alarm at `count_level` or more severe, the rule's one alarm instance
    /// is raised, or escalated, to `level`.
    #[serde(default)]
    pub stages: Vec<Stage>,
    // ---- tamper
    /// Which pattern a tamper rule looks for.
    #[serde(default)]
    pub check: Option<TamperCheck>,
    /// A condition saying the area works (frozen, removed, opened,
    /// blocked); without it the check always applies.
    #[serde(default)]
    pub working: Option<String>,
    /// Frozen: the least change over `window` of a live sensor.
    #[serde(default)]
    pub floor: Option<f64>,
    /// Covered: the point's clean-air value and how near to it counts.
    #[serde(default)]
    pub clean: Option<f64>,
    #[serde(default)]
    pub margin: Option<f64>,
    /// Covered: a point in the same airflow, and the value from which it
    /// counts as high.
    #[serde(default)]
    pub neighbour: Option<String>,
    #[serde(default)]
    pub neighbour_above: Option<f64>,
    /// Removed: the device whose loss while the area works is tamper.
    #[serde(default)]
    pub device: Option<String>,
    /// Test gas: the test-gas value, how near counts, and how long the
    /// step up and back takes at most; cut test: the time the certified
    /// system has to cut.
    #[serde(default)]
    pub test_gas: Option<f64>,
    #[serde(default)]
    pub tolerance: Option<f64>,
    #[serde(default)]
    pub within: Option<Dur>,
    // ---- cut test
    /// The certified system's power-cut state point (断电状态), true when cut.
    #[serde(default)]
    pub cut: Option<String>,
    // ---- any rule
    /// Escalation of an unacknowledged alarm (值班值守).
    #[serde(default)]
    pub escalate: Option<EscalateCfg>,
    // ---- actions
    #[serde(default)]
    pub actions: Vec<ActionCfg>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
pub struct Stage {
    pub count: u32,
    pub count_level: u8,
    pub level: u8,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ActionCfg {
    /// A writable point (`devices[].points[]` with `writable = true`).
    pub write: String,
    /// Value written when the alarm is raised.
    pub value: f64,
    /// Value written when the alarm clears; nothing is written when absent.
    #[serde(default)]
    pub on_clear: Option<f64>,
    /// The read-back must show the value within this time.
    #[serde(default = "default_confirm")]
    pub confirm_within: Dur,
}

fn default_confirm() -> Dur {
    Dur(Duration::from_secs(3))
}

/// Where the InfluxDB token comes from. Never printed.
#[derive(Clone, Debug, Deserialize)]
pub struct Influx {
    pub url: String,
    pub org: String,
    pub bucket: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<String>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_flush")]
    pub flush_interval: Dur,
    #[serde(default = "default_http_timeout")]
    pub timeout: Dur,
    #[serde(default = "default_measurement")]
    pub measurement: String,
}

fn default_batch() -> usize {
    5000
}
fn default_flush() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_http_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_measurement() -> String {
    "reading".into()
}

#[derive(Clone, Debug, Deserialize)]
pub struct Uplink {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Default `riskgate-{gateway_id}` as the contract says.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Dur,
    /// How often the retained status is refreshed.
    #[serde(default = "default_status_every")]
    pub status_interval: Dur,
    /// TLS settings; the uplink refuses to run without them unless
    /// `plain_tcp = true` says so explicitly.
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub plain_tcp: bool,
    /// Accept remote acknowledgements on `{prefix}/{site}/ack`.
    #[serde(default = "yes")]
    pub accept_remote_ack: bool,
    /// Let a remote acknowledgement clear a latching alarm. Off: the
    /// county's acknowledgement of a latching alarm is refused (and kept in
    /// the audit log), so only someone on site can release the latch.
    #[serde(default)]
    pub remote_ack_clears_latching: bool,
}

fn default_mqtt_port() -> u16 {
    1883
}
fn default_prefix() -> String {
    "riskgate/v1".into()
}
fn default_keep_alive() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_status_every() -> Dur {
    Dur(Duration::from_secs(60))
}

#[derive(Clone, Debug, Deserialize)]
pub struct Tls {
    /// PEM file of the CA that signed the broker's certificate. The
    /// certificate is checked against the broker's host (`uplink.host`, or
    /// an MQTT device's `broker`); hostname verification is always on.
    pub ca_file: String,
    #[serde(default)]
    pub client_cert_file: Option<String>,
    #[serde(default)]
    pub client_key_file: Option<String>,
}
