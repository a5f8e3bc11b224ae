//! The MQTT source secured like the uplink, against a real Mosquitto with a
//! TLS listener and an ACL that lets each identity only its own topics:
//! - a client certificate (`require_certificate true`,
//!   `use_identity_as_username true`): the source reads the video box; an
//!   anonymous client, a client without a certificate and a client with a
//!   valid certificate of another identity cannot speak for the box;
//! - username and password (`password_file`) over TLS: the right password
//!   reads, a wrong one is refused with the broker's answer as the reason;
//! - a broker certificate from another CA, or for another host name: no
//!   session, the points go bad, the health detail says which, and in the
//!   whole gateway the device's `offline` alarm is raised with that reason;
//! - `broker = "uplink"`: the source connects with the uplink's TLS files,
//!   client certificate and client-id prefix, and its readings are stored.
//!
//! Certificates are made with the openssl CLI (`common::certs`). Every wait
//! is on a channel or the store with a limit; no fixed sleeps.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Mosquitto;
use common::certs::{make_ca, make_cert};
use common::wait::{free_port, wait_for, wait_for_async};
use riskgate::config::{Device, DeviceKind, MqttDevice};
use riskgate::model::{BadReason, Input, Quality, Reading, Value};
use riskgate::source::mqtt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);
const TOPIC: &str = "site/vb/flags";
/// The box's real state: camera 1 off, so "no video, no work" holds.
const REAL: &str = r#"{"cameras":[{"online":false,"blocked":false}]}"#;
const REAL_2: &str = r#"{"cameras":[{"online":false,"blocked":true}]}"#;
/// What a spoofer would like the gateway to believe.
const SPOOF: &str = r#"{"cameras":[{"online":true,"blocked":false}]}"#;
const SOURCE_PW: &str = "vb source pass 7";
const BOX_PW: &str = "vb box pass 9";

/// CA `ca` with server certificates `good` (127.0.0.1, localhost) and
/// `wrong` (wrong.example); client certificates `source` (CN
/// riskgate-vb), `box` (CN videobox), `intruder` (CN intruder) and `gw`
/// (CN gw-tls, the gateway's uplink identity); another CA `other-ca`.
fn make_certs(dir: &Path) {
    make_ca(dir, "ca", "/CN=riskgate source-test CA");
    make_ca(dir, "other-ca", "/CN=someone else's CA");
    for (name, cn, san, usage) in [
        (
            "good",
            "localhost",
            "IP:127.0.0.1,DNS:localhost",
            "serverAuth",
        ),
        ("wrong", "wrong.example", "DNS:wrong.example", "serverAuth"),
        ("source", "riskgate-vb", "DNS:riskgate-vb", "clientAuth"),
        ("box", "videobox", "DNS:videobox", "clientAuth"),
        ("intruder", "intruder", "DNS:intruder", "clientAuth"),
        ("gw", "gw-tls", "DNS:gw-tls", "clientAuth"),
    ] {
        make_cert(dir, name, cn, san, "ca", usage);
    }
}

/// Each identity may do only its part: the source (and the gateway)
/// reads the box's topic, the box writes it; anonymous clients and
/// `intruder` get nothing.
const ACL: &str = "\
user riskgate-vb
topic read site/vb/#
user vb-src
topic read site/vb/#
user videobox
topic write site/vb/#
user vb-box
topic write site/vb/#
user gw-tls
topic readwrite riskgate/v1/#
topic read site/vb/#
";

struct Broker {
    certs: tempfile::TempDir,
    mosquitto: Mosquitto,
    tls_port: u16,
}

impl Broker {
    /// A Mosquitto whose TLS listener presents `server_cert` and has
    /// `auth` lines; the ACL above for every listener. Its plain listener
    /// (the fixture's) stays open to anonymous clients, who are allowed
    /// nothing by the ACL.
    fn start(server_cert: &str, auth: &str) -> Broker {
        let certs = tempfile::tempdir().unwrap();
        make_certs(certs.path());
        Self::start_in(certs, server_cert, auth)
    }

    fn start_in(certs: tempfile::TempDir, server_cert: &str, auth: &str) -> Broker {
        let acl = certs.path().join("acl");
        std::fs::write(&acl, ACL).unwrap();
        let tls_port = free_port();
        let c = |f: &str| certs.path().join(f).display().to_string();
        let extra = format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n{auth}\nacl_file {}\nlog_type all\n",
            c("ca.pem"),
            c(&format!("{server_cert}.pem")),
            c(&format!("{server_cert}.key")),
            acl.display(),
        );
        let mosquitto = Mosquitto::start_with(&extra);
        wait_for("the TLS listener", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", tls_port))
                .ok()
                .map(|_| ())
        });
        Broker {
            certs,
            mosquitto,
            tls_port,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.certs.path().join(name)
    }

    fn log(&self) -> String {
        self.mosquitto.log()
    }
}

const CERT_AUTH: &str = "require_certificate true\nuse_identity_as_username true";

/// A broker whose clients log in with a password (`vb-src`, `vb-box`).
fn password_broker() -> Broker {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let file = certs.path().join("passwd");
    for (i, (user, pw)) in [("vb-src", SOURCE_PW), ("vb-box", BOX_PW)]
        .into_iter()
        .enumerate()
    {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let st = cmd
            .arg("-b")
            .arg(&file)
            .args([user, pw])
            .status()
            .expect("mosquitto_passwd");
        assert!(st.success());
    }
    let auth = format!("password_file {}", file.display());
    Broker::start_in(certs, "good", &auth)
}

/// The source's device: the broker's TLS port with `conn` (TOML lines of
/// the device's connection fields).
fn device(port: u16, conn: &str) -> Device<MqttDevice> {
    let d = riskgate::config::device_from_toml(&format!(
        r#"
id = "vb"
protocol = "mqtt"
broker = "127.0.0.1:{port}"
topic = "{TOPIC}"
heartbeat = "2s"
{conn}

[[points]]
id = "vb.c1.online"
path = "cameras[0].online"
type = "bool"

[[points]]
id = "vb.c1.blocked"
path = "cameras[0].blocked"
type = "bool"
"#
    ))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let DeviceKind::Mqtt(m) = &d.kind else {
        unreachable!("protocol = mqtt")
    };
    d.with_kind(m.clone())
}

fn tls_fields(b: &Broker, ca: &str, client: Option<&str>) -> String {
    let mut s = format!(
        "tls = {{ ca_file = \"{}\"",
        b.file(&format!("{ca}.pem")).display()
    );
    if let Some(c) = client {
        s.push_str(&format!(
            ", client_cert_file = \"{}\", client_key_file = \"{}\"",
            b.file(&format!("{c}.pem")).display(),
            b.file(&format!("{c}.key")).display()
        ));
    }
    s.push('}');
    s
}

struct Source {
    rx: mpsc::Receiver<Input>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Source {
    fn start(dev: Device<MqttDevice>) -> Source {
        let (tx, rx) = mpsc::channel(1024);
        let stop = CancellationToken::new();
        let task = tokio::spawn(mqtt::run(dev, tx, stop.clone()));
        Source { rx, stop, task }
    }

    /// Inputs until one satisfies `pred`; returns it and those before it.
    async fn until(&mut self, what: &str, pred: impl Fn(&Input) -> bool) -> (Input, Vec<Input>) {
        let end = Instant::now() + LIMIT;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(i)) if pred(&i) => return (i, seen),
                Ok(Some(i)) => seen.push(i),
                _ => panic!("timed out after {LIMIT:?} waiting for {what}; saw {seen:#?}"),
            }
        }
    }

    /// The first failed health report and its detail.
    async fn failure(&mut self, what: &str) -> String {
        let (i, _) = self
            .until(what, |i| matches!(i, Input::DeviceHealth { ok: false, .. }))
            .await;
        let Input::DeviceHealth { detail, .. } = i else {
            unreachable!()
        };
        detail
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn flags(r: &[Reading]) -> Option<(bool, bool)> {
    let get = |id: &str| {
        r.iter()
            .find(|r| &*r.point == id)
            .and_then(|r| match (&r.quality, &r.value) {
                (Quality::Good, Some(Value::Bool(b))) => Some(*b),
                _ => None,
            })
    };
    Some((get("vb.c1.online")?, get("vb.c1.blocked")?))
}

/// An MQTT client for the test's side, its event loop forwarded to a
/// channel (an `Err` is the last event of a connection attempt).
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Client {
    fn connect(
        id: &str,
        port: u16,
        tls: Option<(&Broker, Option<&str>)>,
        login: Option<(&str, &str)>,
    ) -> Client {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(10));
        if let Some((u, p)) = login {
            opts.set_credentials(u, p);
        }
        if let Some((b, cert)) = tls {
            let ca = std::fs::read(b.file("ca.pem")).unwrap();
            let client_auth = cert.map(|c| {
                (
                    std::fs::read(b.file(&format!("{c}.pem"))).unwrap(),
                    std::fs::read(b.file(&format!("{c}.key"))).unwrap(),
                )
            });
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            }));
        }
        let (client, mut el) = AsyncClient::new(opts, 100);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let ev = el.poll().await.map_err(|e| e.to_string());
                let last = ev.is_err();
                if tx.send(ev).is_err() || last {
                    return;
                }
            }
        });
        Client {
            client,
            events,
            _task: task,
        }
    }

    /// `Ok` at the broker's ConnAck, `Err` with the first error.
    async fn connected(&mut self) -> Result<(), String> {
        let end = Instant::now() + LIMIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(Ok(Event::Incoming(Packet::ConnAck(a))))) => {
                    return match a.code {
                        rumqttc::ConnectReturnCode::Success => Ok(()),
                        c => Err(format!("{c:?}")),
                    };
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) => return Err("event loop ended".into()),
                Err(_) => panic!("no ConnAck nor error within {LIMIT:?}"),
            }
        }
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK: the broker
    /// has then handled (delivered or denied) the message.
    async fn publish_acked(&mut self, payload: &str) {
        self.client
            .publish(TOPIC, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
        let end = Instant::now() + LIMIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(Ok(Event::Incoming(Packet::PubAck(_))))) => return,
                Ok(Some(Ok(_))) => {}
                other => panic!("no PUBACK: {other:?}"),
            }
        }
    }
}

/// Publishes `payload` as the box every 200 ms until the source hands over
/// readings with `want` (it may still be connecting or subscribing).
async fn box_until(src: &mut Source, vb: &mut Client, payload: &str, want: (bool, bool)) {
    let end = Instant::now() + LIMIT;
    loop {
        vb.publish_acked(payload).await;
        let round = Instant::now() + Duration::from_millis(200);
        while let Ok(Some(i)) = tokio::time::timeout(
            round.saturating_duration_since(Instant::now()),
            src.rx.recv(),
        )
        .await
        {
            if let Input::Readings(r) = &i {
                let got = flags(r);
                assert_ne!(
                    got,
                    Some((true, false)),
                    "the spoofed flags got through: {r:?}"
                );
                if got == Some(want) {
                    return;
                }
            }
        }
        assert!(Instant::now() < end, "the source never read {want:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_reads_the_box_and_nobody_else_can_speak_for_it() {
    common::init_tracing();
    let t0 = std::time::Instant::now();
    let broker = Broker::start("good", CERT_AUTH);
    let port = broker.tls_port;
    let mut src = Source::start(device(port, &tls_fields(&broker, "ca", Some("source"))));
    let mut vb = Client::connect("videobox-1", port, Some((&broker, Some("box"))), None);
    vb.connected()
        .await
        .expect("the box connects with its certificate");
    box_until(&mut src, &mut vb, REAL, (false, false)).await;
    assert!(
        broker.log().contains("u'riskgate-vb'"),
        "the source logged in as its certificate's identity:\n{}",
        broker.log()
    );

    // 1. Anonymous on the plain listener: connected, but the ACL drops
    //    its publish.
    let mut anon = Client::connect("spoof-anon", broker.mosquitto.port, None, None);
    anon.connected().await.expect("anonymous plain session");
    anon.publish_acked(SPOOF).await;
    // 2. TLS without a client certificate: no session at all.
    let mut nocert = Client::connect("spoof-nocert", port, Some((&broker, None)), None);
    let refused = nocert.connected().await;
    assert!(
        refused.is_err(),
        "a client without a certificate got a session"
    );
    // 3. A valid certificate of another identity: a session, and its
    //    publish is dropped by the ACL.
    let mut intruder = Client::connect("spoof-cert", port, Some((&broker, Some("intruder"))), None);
    intruder
        .connected()
        .await
        .expect("the intruder's TLS session");
    intruder.publish_acked(SPOOF).await;

    // Every spoof was handled (PUBACK) before the box's next message; the
    // source's next flags are the box's, and no batch ever held the spoof.
    box_until(&mut src, &mut vb, REAL_2, (false, true)).await;
    let log = broker.log();
    assert_eq!(
        log.matches("Denied PUBLISH from spoof-").count(),
        2,
        "both spoofed publishes denied:\n{log}"
    );
    src.stop().await;
    eprintln!(
        "client_certificate_reads_the_box_and_nobody_else_can_speak_for_it: no-cert refused with {:?}; {:.1} s",
        refused.unwrap_err(),
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_over_tls_reads_and_a_wrong_password_is_refused() {
    common::init_tracing();
    let t0 = std::time::Instant::now();
    let broker = password_broker();
    let port = broker.tls_port;
    let pw = broker.file("vb-src.pw");
    std::fs::write(&pw, format!("{SOURCE_PW}\n")).unwrap();
    let conn = format!(
        "{}\nusername = \"vb-src\"\npassword_file = \"{}\"",
        tls_fields(&broker, "ca", None),
        pw.display()
    );
    let mut src = Source::start(device(port, &conn));
    let mut vb = Client::connect(
        "vb-box-1",
        port,
        Some((&broker, None)),
        Some(("vb-box", BOX_PW)),
    );
    vb.connected().await.expect("the box logs in");
    box_until(&mut src, &mut vb, REAL, (false, false)).await;
    assert!(broker.log().contains("u'vb-src'"), "{}", broker.log());
    src.stop().await;

    let bad = broker.file("bad.pw");
    std::fs::write(&bad, "not the password\n").unwrap();
    let conn = format!(
        "{}\nusername = \"vb-src\"\npassword_file = \"{}\"",
        tls_fields(&broker, "ca", None),
        bad.display()
    );
    let mut src = Source::start(device(port, &conn));
    let detail = src.failure("a refused login").await;
    assert!(
        detail.contains("mqtts://127.0.0.1")
            && (detail.contains("NotAuthorized") || detail.contains("BadUserNamePassword")),
        "the broker's refusal is the reason: {detail}"
    );
    assert!(!detail.contains("not the password"), "{detail}");
    // Its points go bad at the heartbeat: never a last good value.
    let (i, _) = src
        .until("bad points", |i| matches!(i, Input::Readings(_)))
        .await;
    let Input::Readings(r) = i else {
        unreachable!()
    };
    assert!(
        r.iter()
            .all(|r| r.quality == Quality::Bad(BadReason::NoData)),
        "{r:?}"
    );
    src.stop().await;
    eprintln!(
        "password_over_tls_reads_and_a_wrong_password_is_refused: refused with {detail:?}; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_from_another_ca_or_for_another_name_is_not_trusted() {
    common::init_tracing();
    let t0 = std::time::Instant::now();
    // The right name, but the source pins another CA.
    let broker = Broker::start("good", CERT_AUTH);
    let mut src = Source::start(device(
        broker.tls_port,
        &tls_fields(&broker, "other-ca", Some("source")),
    ));
    let ca = src.failure("an untrusted CA").await;
    assert!(
        ca.contains("not signed by the CA in") && ca.contains("other-ca.pem"),
        "{ca}"
    );
    src.stop().await;

    // The pinned CA, but a certificate for wrong.example.
    let broker = Broker::start("wrong", CERT_AUTH);
    let mut src = Source::start(device(
        broker.tls_port,
        &tls_fields(&broker, "ca", Some("source")),
    ));
    let name = src.failure("a certificate for another name").await;
    assert!(name.contains("not issued for `127.0.0.1`"), "{name}");
    src.stop().await;
    assert!(
        !broker.log().contains("u'riskgate-vb'"),
        "no MQTT session:\n{}",
        broker.log()
    );
    eprintln!(
        "a_broker_from_another_ca_or_for_another_name_is_not_trusted: {ca:?}; {name:?}; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn site_config(data: &Path, uplink: &str, device: &str) -> String {
    format!(
        r#"
[site]
id = "tls-site"
kind = "coal_mine"
[gateway]
id = "gw-tls"
data_dir = "{data}"
[http]
enabled = false
[store]
commit_interval = "100ms"
{uplink}

[[devices]]
id = "vb"
protocol = "mqtt"
topic = "{TOPIC}"
heartbeat = "5s"
{device}
  [[devices.points]]
  id = "vb.c1.online"
  path = "cameras[0].online"
  type = "bool"
"#,
        data = data.display()
    )
}

async fn start_site(dir: &Path, text: String) -> riskgate::runtime::Running {
    let path = dir.join("riskgate.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = riskgate::config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
    riskgate::runtime::start(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_raises_the_offline_alarm_with_its_reason() {
    common::init_tracing();
    let broker = Broker::start("wrong", CERT_AUTH);
    let dir = tempfile::tempdir().unwrap();
    let dev = format!(
        "broker = \"127.0.0.1:{}\"\n{}",
        broker.tls_port,
        tls_fields(&broker, "ca", Some("source"))
    );
    let running = start_site(dir.path(), site_config(&dir.path().join("data"), "", &dev)).await;
    let store = running.shared.store.clone();
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    let raised = wait_for_async("vb.offline raised", LIMIT, || {
        let store = store.clone();
        async move {
            store
                .alarm_log(since, 100)
                .unwrap()
                .into_iter()
                .find(|a| a["rule_id"] == "vb.offline" && a["state"] == "raised")
        }
    })
    .await;
    let msg = raised["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("not issued for `127.0.0.1`"), "{raised:#}");
    running.stop().await;
    eprintln!("an_untrusted_broker_raises_the_offline_alarm_with_its_reason: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_uplink_reuses_the_uplinks_tls_client_certificate_and_client_id() {
    common::init_tracing();
    let broker = Broker::start("good", CERT_AUTH);
    let dir = tempfile::tempdir().unwrap();
    let uplink = format!(
        "[uplink]\nhost = \"127.0.0.1\"\nport = {}\n[uplink.tls]\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        broker.tls_port,
        broker.file("ca.pem").display(),
        broker.file("gw.pem").display(),
        broker.file("gw.key").display(),
    );
    let text = site_config(&dir.path().join("data"), &uplink, "broker = \"uplink\"");
    let running = start_site(dir.path(), text).await;
    let store = running.shared.store.clone();
    let mut vb = Client::connect(
        "videobox-2",
        broker.tls_port,
        Some((&broker, Some("box"))),
        None,
    );
    vb.connected().await.expect("the box connects");
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    let start = Instant::now();
    loop {
        vb.publish_acked(REAL).await;
        let good = store
            .history("vb.c1.online", since, 10)
            .unwrap()
            .iter()
            .any(|r| r.value == Some(0.0));
        if good {
            break;
        }
        assert!(start.elapsed() < LIMIT, "no reading of vb.c1.online stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = broker.log();
    // The source's session: the uplink's client-id prefix, the uplink's
    // certificate as its identity (the only way through this listener) and
    // the uplink's keep-alive (30 s by default; a source's own is 10 s).
    assert!(
        log.lines().any(|l| l.contains("as riskgate-gw-tls-src-vb-")
            && l.contains("k30")
            && l.contains("u'gw-tls'")),
        "{log}"
    );
    running.stop().await;
}
