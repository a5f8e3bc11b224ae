//! The sections that belong to no protocol and no rule kind: site, HTTP,
//! store and the two sinks. Each check pushes every problem it finds; the
//! HTTP section comes out typed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::Errs;
use super::error::positive;
use super::raw::{Http, Influx, Site, Store, Uplink};

/// The operator page and API. `Config::http` is `None` when the file says
/// `[http] enabled = false`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpServer {
    /// Port 0 picks a free port; `Running::http_addr` says which.
    pub listen: SocketAddr,
    /// Resolved against the config file's directory.
    pub users_file: PathBuf,
    pub public_read: bool,
    pub allowed_hosts: Vec<String>,
    pub session_idle: Duration,
    pub session_max: Duration,
}

impl Default for HttpServer {
    /// `[http]` as an empty section gives it, on a free loopback port.
    fn default() -> Self {
        HttpServer {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            users_file: PathBuf::from("/etc/riskgate/users.toml"),
            public_read: false,
            allowed_hosts: Vec::new(),
            session_idle: Duration::from_secs(12 * 3600),
            session_max: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

pub fn check_site(site: &Site, e: &mut Errs) {
    if let Some(rc) = &site.region_code
        && (rc.len() != 6 || !rc.chars().all(|c| c.is_ascii_digit()))
    {
        e.push(
            "site.region_code",
            format!("`{rc}` is not a six-digit GB/T 2260 region code"),
        );
    }
    if site.timezone.parse::<chrono_tz::Tz>().is_err() {
        e.push(
            "site.timezone",
            format!(
                "`{}` is not an IANA time zone such as Asia/Shanghai",
                site.timezone
            ),
        );
    }
}

/// `file` is the config file (a relative `users_file` is beside it).
///
/// A listener reachable from the network (not loopback) must have
/// accounts: the users file is read here, so `riskgate validate` says so
/// before the gateway ever serves an unguarded API on the LAN.
pub fn check_http(http: &Http, file: &Path, e: &mut Errs) -> Option<HttpServer> {
    if !http.enabled {
        return None;
    }
    let users_file = match Path::new(&http.users_file) {
        p if p.is_absolute() => p.to_path_buf(),
        p => file.parent().unwrap_or(Path::new(".")).join(p),
    };
    if http.users_file.trim().is_empty() {
        e.push("http.users_file", "must not be empty");
    }
    if http.session_idle.0.is_zero() {
        e.push("http.session_idle", "must be greater than zero");
    }
    if http.session_max.0 < http.session_idle.0 {
        e.push("http.session_max", "must be at least session_idle");
    }
    for (i, h) in http.allowed_hosts.iter().enumerate() {
        if h.is_empty() || h.contains(['/', ' ', '@']) {
            e.push(
                format!("http.allowed_hosts[{i}]"),
                format!("`{h}` is not a host or host:port"),
            );
        }
    }
    let listen = match http.listen.parse::<SocketAddr>() {
        Ok(l) => l,
        Err(_) => {
            e.push(
                "http.listen",
                format!("`{}` is not an address like 127.0.0.1:8080", http.listen),
            );
            return None;
        }
    };
    // `public_read = true` says a read-only page open to the network is
    // meant (e.g. a dashboard inside a container network): with no users
    // nobody can log in, so nothing can be acknowledged over HTTP.
    if !listen.ip().is_loopback() {
        match crate::auth::Users::load(&users_file) {
            Ok(Some(u)) if !u.users.is_empty() => {}
            Ok(_) if http.public_read => {}
            Ok(_) => e.push(
                "http.listen",
                format!(
                    "`{listen}` is reachable from the network but no user is configured in {}: add one with `riskgate user add NAME --role operator --config FILE`, listen on 127.0.0.1, or set public_read = true for a read-only page",
                    users_file.display()
                ),
            ),
            Err(err) => e.push("http.users_file", err.to_string()),
        }
    }
    Some(HttpServer {
        listen,
        users_file,
        public_read: http.public_read,
        allowed_hosts: http.allowed_hosts.clone(),
        session_idle: http.session_idle.0,
        session_max: http.session_max.0,
    })
}

pub fn check_store(store: &Store, e: &mut Errs) {
    if !(store.readings_queue_mb.is_finite() && store.readings_queue_mb >= 1.0) {
        e.push("store.readings_queue_mb", "must be at least 1 (MB)");
    }
    if !(store.history_mb.is_finite() && store.history_mb >= 1.0) {
        e.push("store.history_mb", "must be at least 1 (MB)");
    }
    if store.raw_retention_days == 0 {
        e.push("store.raw_retention_days", "must be at least 1");
    }
    if store.stats_retention_days == 0 {
        e.push("store.stats_retention_days", "must be at least 1");
    }
}

pub fn check_influx(i: &Influx, e: &mut Errs) {
    if !(i.url.starts_with("http://") || i.url.starts_with("https://")) {
        e.push(
            "influxdb.url",
            format!("`{}` must start with http:// or https://", i.url),
        );
    }
    if i.org.is_empty() {
        e.push("influxdb.org", "must not be empty");
    }
    if i.bucket.is_empty() {
        e.push("influxdb.bucket", "must not be empty");
    }
    if i.token_env.is_some() && i.token_file.is_some() {
        e.push(
            "influxdb.token_file",
            "give token_env or token_file, not both",
        );
    }
    if i.batch_size == 0 {
        e.push("influxdb.batch_size", "must be at least 1");
    }
    if !positive(&i.timeout) {
        e.push("influxdb.timeout", "must be greater than zero");
    }
}

pub fn check_uplink(u: &Uplink, e: &mut Errs) {
    if u.host.is_empty() {
        e.push("uplink.host", "must not be empty");
    }
    if u.tls.is_none() && !u.plain_tcp {
        e.push(
            "uplink.tls",
            "the county uplink is TLS by default: add [uplink.tls] with ca_file, or set plain_tcp = true to send in clear text",
        );
    }
    if u.tls.is_some() && u.plain_tcp {
        e.push(
            "uplink.plain_tcp",
            "plain_tcp = true contradicts [uplink.tls]",
        );
    }
    if let Some(t) = &u.tls
        && t.client_cert_file.is_some() != t.client_key_file.is_some()
    {
        e.push(
            "uplink.tls",
            "client_cert_file and client_key_file go together",
        );
    }
    if u.password_env.is_some() && u.password_file.is_some() {
        e.push(
            "uplink.password_file",
            "give password_env or password_file, not both",
        );
    }
    if (u.password_env.is_some() || u.password_file.is_some()) && u.username.is_none() {
        e.push("uplink.username", "a password needs a username");
    }
    if u.topic_prefix.is_empty()
        || u.topic_prefix.contains(['#', '+'])
        || u.topic_prefix.ends_with('/')
    {
        e.push(
            "uplink.topic_prefix",
            "must be a topic without wildcards or a trailing /",
        );
    }
    if u.keep_alive.0.as_secs() < 5 {
        e.push("uplink.keep_alive", "must be at least 5s");
    }
    if !positive(&u.status_interval) {
        e.push("uplink.status_interval", "must be greater than zero");
    }
}
