//! How an MQTT source reaches its broker: address, TLS, login, keep-alive
//! and client-id prefix, typed once at validation ([`Broker`]), turned into
//! rumqttc options each time the source connects ([`Connection::options`]).
//!
//! Invariants:
//! - `broker = "uplink"` is [`Broker::Uplink`] carrying *every* connection
//!   setting of `[uplink]` (TLS files, login, keep-alive, client-id prefix),
//!   built by [`Connection::of_uplink`]; a source never reaches the county
//!   broker with less than the uplink's own protection.
//! - With TLS the broker's certificate must chain to `ca_file` *and* be
//!   issued for `host` (rustls checks the name; there is no switch to turn
//!   that off). A client certificate and its key come together or not at all.
//! - A password is never in the config file, only where to read it (an
//!   environment variable or a file, e.g. a systemd credential under
//!   `/run/credentials/riskgate.service/`). It is read when connecting, so
//!   it is in neither the typed config nor any log line.
//! - A source's own broker off this machine needs TLS, or `plain_tcp = true`
//!   saying in the file that its flags may travel in clear text and be
//!   spoofed by anyone on the LAN (the uplink's rule, for the same reason).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use crate::config::check::Errs;
use crate::config::raw;

/// The keep-alive of a source on its own broker: a dead link is noticed
/// within about 1.5 of these (the uplink's broker uses the uplink's).
pub const OWN_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Where a site's MQTT device publishes, resolved at validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broker {
    /// `broker = "uplink"`: the county uplink's broker, reached exactly as
    /// the uplink reaches it.
    Uplink(Connection),
    /// `broker = "host:port"` with the device's own `tls`, login and
    /// `plain_tcp` fields.
    Own(Connection),
}

impl Broker {
    pub fn connection(&self) -> &Connection {
        match self {
            Broker::Uplink(c) | Broker::Own(c) => c,
        }
    }

    /// For a test that starts its broker on a free port after the device
    /// was configured.
    pub fn connection_mut(&mut self) -> &mut Connection {
        match self {
            Broker::Uplink(c) | Broker::Own(c) => c,
        }
    }

    pub fn host(&self) -> &str {
        &self.connection().host
    }

    pub fn port(&self) -> u16 {
        self.connection().port
    }
}

/// Everything needed to open one MQTT session, secrets only as references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    /// `None`: plain TCP (loopback, or `plain_tcp = true`).
    pub tls: Option<TlsFiles>,
    pub login: Option<Login>,
    pub keep_alive: Duration,
    /// A source's client id is `{prefix}-src-{device}-{random}`: under the
    /// uplink's prefix on the county broker (whose ACL may key on it), a
    /// random tail so that two sessions never take over each other.
    pub client_id_prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM of the CA the broker's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM certificate and key the broker may require
    /// (`require_certificate true`).
    pub client: Option<(PathBuf, PathBuf)>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    /// `None`: a username alone (a broker that maps it, e.g. to an ACL).
    pub password: Option<Secret>,
}

/// Where a password is read from when connecting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    Env(String),
    /// The file's content without its trailing newline.
    File(PathBuf),
}

impl std::fmt::Debug for Login {
    // Only references are held, but say so rather than rely on it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password_from", &self.password)
            .finish()
    }
}

/// Why the options of a connection could not be built (a file or a
/// variable is missing); the source reports it as its health and retries.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("password: environment variable {0} is not set")]
    Env(String),
}

/// The uplink's client id: `client_id`, or `riskgate-{gateway_id}` as the
/// contract says. One function, so the uplink and the sources that share
/// its broker cannot disagree.
pub fn uplink_client_id(u: &raw::Uplink, gateway_id: &str) -> String {
    u.client_id
        .clone()
        .unwrap_or_else(|| format!("riskgate-{gateway_id}"))
}

impl Connection {
    /// The uplink's connection (validated by `config::sections::check_uplink`).
    pub fn of_uplink(u: &raw::Uplink, gateway_id: &str) -> Connection {
        Connection {
            host: u.host.clone(),
            port: u.port,
            tls: u.tls.as_ref().map(tls_files),
            login: login(&u.username, &u.password_env, &u.password_file),
            keep_alive: u.keep_alive.0,
            client_id_prefix: uplink_client_id(u, gateway_id),
        }
    }

    /// A loopback broker without TLS or login: `broker = "uplink"` with no
    /// `[uplink]` section.
    pub fn local(port: u16) -> Connection {
        Connection {
            host: "127.0.0.1".into(),
            port,
            tls: None,
            login: None,
            keep_alive: OWN_KEEP_ALIVE,
            client_id_prefix: "riskgate".into(),
        }
    }

    /// The client id of `device`'s session.
    pub fn client_id(&self, device: &str) -> String {
        format!(
            "{}-src-{device}-{:08x}",
            self.client_id_prefix,
            rand::random::<u32>()
        )
    }

    /// The rumqttc options of one session: address, keep-alive, login and
    /// TLS. Reads the password and the PEM files now, so a rotated
    /// certificate or password is picked up at the next reconnect.
    pub fn options(&self, client_id: String) -> Result<MqttOptions, ConnectError> {
        let mut opts = MqttOptions::new(client_id, self.host.clone(), self.port);
        opts.set_keep_alive(self.keep_alive);
        if let Some(l) = &self.login {
            let pass = match &l.password {
                None => String::new(),
                Some(Secret::Env(var)) => {
                    std::env::var(var).map_err(|_| ConnectError::Env(var.clone()))?
                }
                Some(Secret::File(f)) => read(f, "password file")
                    .map(|b| String::from_utf8_lossy(&b).trim_end().to_string())?,
            };
            opts.set_credentials(l.username.clone(), pass);
        }
        if let Some(t) = &self.tls {
            let ca = read(&t.ca_file, "CA file")?;
            let client_auth = match &t.client {
                None => None,
                Some((cert, key)) => {
                    Some((read(cert, "client certificate")?, read(key, "client key")?))
                }
            };
            // Simple: webpki's verifier with only `ca` as root, against
            // `host` (name or IP address SAN).
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            }));
        }
        Ok(opts)
    }

    /// `host:port`, for logs and health details.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The scheme a person would type: `mqtts` with TLS.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "mqtts" } else { "mqtt" }
    }
}

fn read(path: &std::path::Path, what: &'static str) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::File {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn tls_files(t: &raw::Tls) -> TlsFiles {
    TlsFiles {
        ca_file: PathBuf::from(&t.ca_file),
        client: t
            .client_cert_file
            .as_ref()
            .zip(t.client_key_file.as_ref())
            .map(|(c, k)| (PathBuf::from(c), PathBuf::from(k))),
    }
}

fn login(
    username: &Option<String>,
    password_env: &Option<String>,
    password_file: &Option<String>,
) -> Option<Login> {
    Some(Login {
        username: username.clone()?,
        password: match (password_env, password_file) {
            (Some(v), _) => Some(Secret::Env(v.clone())),
            (None, Some(f)) => Some(Secret::File(PathBuf::from(f))),
            (None, None) => None,
        },
    })
}

/// Whether traffic to `host` stays on this machine.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The connection fields of a device (`username`, `password_env`,
/// `password_file`, `tls`, `plain_tcp`) that are set, by name.
fn connection_fields(d: &raw::Device) -> Vec<&'static str> {
    [
        ("username", d.username.is_some()),
        ("password_env", d.password_env.is_some()),
        ("password_file", d.password_file.is_some()),
        ("tls", d.tls.is_some()),
        ("plain_tcp", d.plain_tcp),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect()
}

/// A device of another protocol must not carry MQTT connection fields:
/// they would be silently ignored.
pub fn reject_on_other_protocols(d: &raw::Device, p: &str, e: &mut Errs) {
    if d.protocol == raw::Protocol::Mqtt {
        return;
    }
    for f in connection_fields(d) {
        e.push(format!("{p}.{f}"), "only for protocol mqtt");
    }
}

/// `broker = "uplink"`: the uplink's connection as it is; the device may
/// not add settings of its own (they would be a second, diverging copy).
pub fn check_uplink_use(d: &raw::Device, p: &str, e: &mut Errs) {
    for f in connection_fields(d) {
        e.push(
            format!("{p}.{f}"),
            "not with broker = \"uplink\": the source uses the [uplink] section's connection settings",
        );
    }
}

/// `broker = "host:port"`: the device's own connection fields.
pub fn check_own(
    d: &raw::Device,
    p: &str,
    host: &str,
    port: u16,
    e: &mut Errs,
) -> Option<Connection> {
    let before = e.len();
    match (&d.tls, d.plain_tcp) {
        (Some(_), true) => e.push(
            format!("{p}.plain_tcp"),
            format!("plain_tcp = true contradicts {p}.tls"),
        ),
        (None, false) if !is_loopback(host) => e.push(
            format!("{p}.tls"),
            format!(
                "broker {host} is off this machine: add tls = {{ ca_file = \"…\" }} (and a client certificate or login), or set plain_tcp = true to accept flags anyone on the network can spoof"
            ),
        ),
        _ => {}
    }
    if let Some(t) = &d.tls {
        if t.ca_file.is_empty() {
            e.push(format!("{p}.tls.ca_file"), "must not be empty");
        }
        if t.client_cert_file.is_some() != t.client_key_file.is_some() {
            e.push(
                format!("{p}.tls"),
                "client_cert_file and client_key_file go together",
            );
        }
    }
    if d.password_env.is_some() && d.password_file.is_some() {
        e.push(
            format!("{p}.password_file"),
            "give password_env or password_file, not both",
        );
    }
    if (d.password_env.is_some() || d.password_file.is_some()) && d.username.is_none() {
        e.push(format!("{p}.username"), "a password needs a username");
    }
    if d.username.as_deref() == Some("") {
        e.push(format!("{p}.username"), "must not be empty");
    }
    if e.len() > before {
        return None;
    }
    Some(Connection {
        host: host.into(),
        port,
        tls: d.tls.as_ref().map(tls_files),
        login: login(&d.username, &d.password_env, &d.password_file),
        keep_alive: OWN_KEEP_ALIVE,
        client_id_prefix: "riskgate".into(),
    })
}

/// A hint for the TLS failures an installer meets, after rustls's terse
/// name of them; `None` for other errors.
pub fn tls_hint(error: &str, conn: &Connection) -> Option<String> {
    let tls = conn.tls.as_ref()?;
    let ca = tls.ca_file.display();
    // rustls names some failures by their variant and describes others
    // ("certificate not valid for name …"); both spellings are matched.
    let hint = if error.contains("NotValidForName") || error.contains("not valid for name") {
        format!(
            "the broker's certificate is not issued for `{}`: compare the host with its subjectAltName",
            conn.host
        )
    } else if error.contains("UnknownIssuer") || error.contains("BadSignature") {
        format!("the broker's certificate is not signed by the CA in {ca}")
    } else if ["Expired", "expired", "NotValidYet", "not valid yet"]
        .iter()
        .any(|w| error.contains(w))
    {
        "the broker's certificate is outside its validity period (or this clock is wrong)".into()
    } else if error.contains("CertificateRequired") || error.contains("certificate required") {
        "the broker requires a client certificate: set tls.client_cert_file and client_key_file"
            .into()
    } else {
        return None;
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["192.168.10.5", "broker.site", "0.0.0.0", "::"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn debug_shows_where_a_password_comes_from_not_a_value() {
        let l = Login {
            username: "vb".into(),
            password: Some(Secret::Env("RG_PW".into())),
        };
        assert_eq!(
            format!("{l:?}"),
            r#"Login { username: "vb", password_from: Some(Env("RG_PW")) }"#
        );
    }

    #[test]
    fn a_missing_password_variable_is_named() {
        let c = Connection {
            login: Some(Login {
                username: "vb".into(),
                password: Some(Secret::Env("RG_TEST_SURELY_UNSET_PW".into())),
            }),
            ..Connection::local(1883)
        };
        let err = c.options("x".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "password: environment variable RG_TEST_SURELY_UNSET_PW is not set"
        );
    }
}
