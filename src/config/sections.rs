//! The sections that belong to no protocol and no rule kind: site, HTTP,
//! store and the two sinks. Each check pushes every problem it finds; the
//! HTTP section comes out typed.

use std::net::SocketAddr;

use super::check::Errs;
use super::error::positive;
use super::raw::{Http, Influx, Site, Store, Uplink};

/// The operator page and API. `Config::http` is `None` when the file says
/// `[http] enabled = false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpServer {
    /// Port 0 picks a free port; `Running::http_addr` says which.
    pub listen: SocketAddr,
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

pub fn check_http(http: &Http, e: &mut Errs) -> Option<HttpServer> {
    if !http.enabled {
        return None;
    }
    match http.listen.parse::<SocketAddr>() {
        Ok(listen) => Some(HttpServer { listen }),
        Err(_) => {
            e.push(
                "http.listen",
                format!("`{}` is not an address like 127.0.0.1:8080", http.listen),
            );
            None
        }
    }
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
