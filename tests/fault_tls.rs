//! The county uplink's security settings against a real Mosquitto:
//! - TLS with the broker's CA pinned by file: events arrive;
//! - a server certificate for another name than `uplink.host`: refused,
//!   nothing delivered, the events stay queued, the gateway keeps running;
//! - username and password (`password_env`) against a Mosquitto
//!   `password_file`: the right one delivers, a wrong one does not.
//! - a server certificate for the right name from another CA: refused;
//! - a broker that requires a client certificate
//!   (`require_certificate true`): the gateway's client certificate works;
//! - the real binary with `password_file` delivers, and its debug log holds
//!   no password.
//!
//! Certificates are made by the test with the openssl CLI. The independent
//! subscriber listens on a second, plain listener of the same broker.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::certs::{make_ca, make_cert};
use common::{
    Mosquitto, SiteCfg, Subscriber, SubscriberOpts, assert_schema_valid, free_port, http_get,
    wait_for_async,
};
use riskgate::queue::{QueueId, Store};

/// One test at a time: the password tests set environment variables.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GOOD_PW: &str = "correct horse battery staple";

/// A CA and two server certificates signed by it: `good` for 127.0.0.1 and
/// localhost, `wrong` for wrong.example only; a client certificate
/// `client`; and another CA (`other-ca`) with a server certificate
/// `stranger` for 127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    make_ca(dir, "ca", "/CN=riskgate fault-test CA");
    make_ca(dir, "other-ca", "/CN=someone else's CA");
    for (name, cn, san, ca, usage) in [
        (
            "good",
            "localhost",
            "IP:127.0.0.1,DNS:localhost",
            "ca",
            "serverAuth",
        ),
        (
            "wrong",
            "wrong.example",
            "DNS:wrong.example",
            "ca",
            "serverAuth",
        ),
        (
            "client",
            "gw-fault-tls",
            "DNS:gw-fault-tls",
            "ca",
            "clientAuth",
        ),
        (
            "stranger",
            "localhost",
            "IP:127.0.0.1,DNS:localhost",
            "other-ca",
            "serverAuth",
        ),
    ] {
        make_cert(dir, name, cn, san, ca, usage);
    }
}

/// A broker with its plain listener (for the subscriber) and a TLS listener
/// presenting `cert` (and with `listener_extra` lines); returns it with the
/// TLS port.
fn tls_broker(certs: &Path, cert: &str, listener_extra: &str) -> (Mosquitto, u16) {
    let port = free_port();
    let extra = format!(
        "listener {port} 127.0.0.1\ncafile {ca}\ncertfile {c}\nkeyfile {k}\n{listener_extra}\n",
        ca = certs.join("ca.pem").display(),
        c = certs.join(format!("{cert}.pem")).display(),
        k = certs.join(format!("{cert}.key")).display(),
    );
    let m = Mosquitto::start_with(&extra);
    common::wait_for("the TLS listener", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    (m, port)
}

struct Site {
    _dir: tempfile::TempDir,
    _devs: Vec<(firmware_sim::TcpSlave, firmware_sim::DeviceHandle)>,
    running: Option<riskgate::runtime::Running>,
    store: std::sync::Arc<Store>,
    alarm_topic: String,
    gateway: String,
}

impl Site {
    async fn start(name: &str, uplink: String) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let devs = common::gas_detectors(1).await;
        let mut site = SiteCfg::new(
            name,
            &dir.path().join("data"),
            vec![devs[0].0.local_addr().port()],
        );
        site.uplink = Some(uplink);
        let running = riskgate::runtime::start(site.load(dir.path()))
            .await
            .unwrap();
        let store = running.shared.store.clone();
        Site {
            _dir: dir,
            _devs: devs,
            running: Some(running),
            store,
            alarm_topic: format!("riskgate/v1/{name}/alarm"),
            gateway: site.gateway,
        }
    }

    fn dev(&self) -> &firmware_sim::DeviceHandle {
        &self._devs[0].1
    }

    /// Methane up and down; returns once the 4 events are committed.
    async fn excursion(&self) -> u64 {
        let before = self.store.last_seq().unwrap();
        self.dev().set_signal("ch4", 1.62);
        wait_for_async(
            "2 raised events committed",
            Duration::from_secs(10),
            || async { (self.store.last_seq().unwrap() >= before + 2).then_some(()) },
        )
        .await;
        self.dev().set_signal("ch4", 0.8);
        wait_for_async(
            "2 cleared events committed",
            Duration::from_secs(10),
            || async { (self.store.last_seq().unwrap() >= before + 4).then_some(()) },
        )
        .await;
        self.store.last_seq().unwrap()
    }

    fn readings(&self) -> usize {
        let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
        self.store
            .history("ch4.gd00", since, 1_000_000)
            .unwrap()
            .len()
    }

    /// Still alive: readings keep being committed and the API answers.
    async fn assert_running(&self) {
        let n = self.readings();
        wait_for_async(
            "readings still committed",
            Duration::from_secs(10),
            || async { (self.readings() > n + 5).then_some(()) },
        )
        .await;
        let addr = self.running.as_ref().unwrap().http_addr.unwrap();
        let (code, body) = tokio::task::spawn_blocking(move || {
            http_get(&format!("http://{addr}/health")).unwrap()
        })
        .await
        .unwrap();
        assert_eq!((code, body.trim()), (200, "ok"));
    }

    async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// Waits until the broker logged `n` more lines with `needle` than `before`.
/// A broker with a TLS listener presenting certificate `cert`, a gateway
/// whose uplink pins the test CA and connects there, and the county's
/// subscriber on the broker's plain listener.
async fn tls_setup(
    cert: &str,
    site: &str,
    county: &str,
) -> (tempfile::TempDir, Mosquitto, Site, Subscriber) {
    tls_setup_with(cert, "", false, site, county).await
}

/// As [`tls_setup`]; with `listener_extra` in the broker's TLS listener,
/// and the gateway's client certificate in its config if `client_cert`.
async fn tls_setup_with(
    cert: &str,
    listener_extra: &str,
    client_cert: bool,
    site: &str,
    county: &str,
) -> (tempfile::TempDir, Mosquitto, Site, Subscriber) {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let (broker, tls_port) = tls_broker(certs.path(), cert, listener_extra);
    let ca = certs.path().join("ca.pem");
    let mut uplink = format!(
        "port = {tls_port}\n[uplink.tls]\nca_file = \"{}\"",
        ca.display()
    );
    if client_cert {
        uplink.push_str(&format!(
            "\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
            certs.path().join("client.pem").display(),
            certs.path().join("client.key").display()
        ));
    }
    let site = Site::start(site, uplink).await;
    let county =
        Subscriber::connect(SubscriberOpts::new(broker.port, county, &site.alarm_topic)).await;
    (certs, broker, site, county)
}

async fn broker_logged(broker: &Mosquitto, needle: &str, before: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while broker.log_count(needle) < before + n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} × `{needle}` in the broker log:\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_over_tls_delivers_events() {
    let _serial = SERIAL.lock().await;
    common::init_tracing();
    let t0 = Instant::now();
    let (_certs, broker, mut site, mut county) =
        tls_setup("good", "fault-tls-ok", "county-tls-ok").await;

    let last = site.excursion().await;
    county
        .until(
            &format!("seq 1..={last} over TLS"),
            Duration::from_secs(20),
            |c| c.has_all(last),
        )
        .await;
    for e in county.alarms() {
        assert_schema_valid("alarm-event.schema.json", e);
    }
    // The gateway's only way in is the TLS listener (`port = tls_port`, and
    // an MQTT client without TLS cannot talk there).
    let log = broker.log();
    assert!(
        log.contains(&format!("as riskgate-{}", site.gateway)),
        "the gateway connected:\n{log}"
    );
    site.stop().await;
    eprintln!(
        "uplink_over_tls_delivers_events: {last} events over TLS; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_for_another_name_is_refused_and_events_stay_queued() {
    let _serial = SERIAL.lock().await;
    common::init_tracing();
    let t0 = Instant::now();
    // Signed by the pinned CA, but for wrong.example while uplink.host is 127.0.0.1.
    let (_certs, broker, mut site, mut county) =
        tls_setup("wrong", "fault-tls-name", "county-tls-name").await;

    let last = site.excursion().await;
    // Two more handshakes after the events were queued, each refused by the
    // gateway (its TLS alert `bad_certificate`, as the broker logs it).
    const REFUSED: &str = "alert bad certificate";
    let tries = broker.log_count(REFUSED);
    broker_logged(&broker, REFUSED, tries, 2).await;
    let refused = broker.log_count(REFUSED);
    assert!(
        !broker
            .log()
            .contains(&format!("as riskgate-{}", site.gateway)),
        "no MQTT session:\n{}",
        broker.log()
    );
    county.pump();
    assert!(
        county.alarms().is_empty(),
        "nothing delivered: {:?}",
        county.alarms()
    );
    let q = site.store.stats(QueueId::Alarms).unwrap();
    assert_eq!(q.depth, last, "every event stays queued: {q:?}");
    site.assert_running().await;
    site.stop().await;
    eprintln!(
        "server_certificate_for_another_name_is_refused_and_events_stay_queued: {refused} handshakes refused, {last} events queued; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn password_broker(dir: &Path) -> Mosquitto {
    let file: PathBuf = dir.join("passwd");
    let st = Command::new("mosquitto_passwd")
        .arg("-c")
        .arg("-b")
        .arg(&file)
        .args(["gw-fault", GOOD_PW])
        .status()
        .expect("mosquitto_passwd");
    assert!(st.success());
    // allow_anonymous stays true (for the subscriber); a client that gives a
    // username must give its password.
    Mosquitto::start_with(&format!("password_file {}\n", file.display()))
}

/// A broker that requires a password, a gateway whose uplink logs in as
/// `gw-fault` with the password in `env`, and the county's subscriber.
async fn password_setup(
    env: &str,
    site: &str,
    county: &str,
) -> (tempfile::TempDir, Mosquitto, Site, Subscriber) {
    let dir = tempfile::tempdir().unwrap();
    let broker = password_broker(dir.path());
    let uplink = format!(
        "port = {}\nplain_tcp = true\nusername = \"gw-fault\"\npassword_env = \"{env}\"",
        broker.port
    );
    let site = Site::start(site, uplink).await;
    let county =
        Subscriber::connect(SubscriberOpts::new(broker.port, county, &site.alarm_topic)).await;
    (dir, broker, site, county)
}

#[allow(unsafe_code)]
fn set_password_env() {
    // SAFETY: the tests of this file run one at a time (SERIAL), and no
    // other thread of this test binary reads the environment meanwhile.
    unsafe {
        std::env::set_var("RG_FAULT_PW_GOOD", GOOD_PW);
        std::env::set_var("RG_FAULT_PW_BAD", "not the password");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_right_password_deliver() {
    let _serial = SERIAL.lock().await;
    common::init_tracing();
    set_password_env();
    let t0 = Instant::now();
    let (_dir, broker, mut site, mut county) =
        password_setup("RG_FAULT_PW_GOOD", "fault-pw-ok", "county-pw-ok").await;
    let last = site.excursion().await;
    county
        .until(&format!("seq 1..={last}"), Duration::from_secs(20), |c| {
            c.has_all(last)
        })
        .await;
    assert!(
        broker.log().contains("u'gw-fault'"),
        "connected with its username:\n{}",
        broker.log()
    );
    site.stop().await;
    eprintln!(
        "username_and_right_password_deliver: {last} events; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_and_events_stay_queued() {
    let _serial = SERIAL.lock().await;
    common::init_tracing();
    set_password_env();
    let t0 = Instant::now();
    let (_dir, broker, mut site, mut county) =
        password_setup("RG_FAULT_PW_BAD", "fault-pw-bad", "county-pw-bad").await;
    let last = site.excursion().await;
    let before = broker.log_count("not authorised");
    broker_logged(&broker, "not authorised", before, 2).await;
    county.pump();
    assert!(
        county.alarms().is_empty(),
        "nothing delivered: {:?}",
        county.alarms()
    );
    assert!(
        !broker
            .log()
            .contains(&format!("as riskgate-{}", site.gateway)),
        "no MQTT session:\n{}",
        broker.log()
    );
    let q = site.store.stats(QueueId::Alarms).unwrap();
    assert_eq!(q.depth, last, "every event stays queued: {q:?}");
    site.assert_running().await;
    site.stop().await;
    eprintln!(
        "wrong_password_is_refused_and_events_stay_queued: {} refusals, {last} events queued; {:.1} s",
        broker.log_count("not authorised"),
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_from_another_ca_is_refused_and_events_stay_queued() {
    let _serial = SERIAL.lock().await;
    common::init_tracing();
    let t0 = Instant::now();
    // The right name (127.0.0.1), but signed by a CA the gateway does not pin.
    let (_certs, broker, mut site, mut county) =
        tls_setup("stranger", "fault-tls-ca", "county-tls-ca").await;
    let last = site.excursion().await;
    // The gateway refuses each handshake with a TLS alert (rustls: unknown
    // CA / bad certificate), as the broker logs it.
    const REFUSED: &str = "alert";
    let tries = broker.log_count(REFUSED);
    broker_logged(&broker, REFUSED, tries, 2).await;
    assert!(
        !broker
            .log()
            .contains(&format!("as riskgate-{}", site.gateway)),
        "no MQTT session:\n{}",
        broker.log()
    );
    county.pump();
    assert!(
        county.alarms().is_empty(),
        "nothing delivered: {:?}",
        county.alarms()
    );
    let q = site.store.stats(QueueId::Alarms).unwrap();
    assert_eq!(q.depth, last, "every event stays queued: {q:?}");
    site.assert_running().await;
    site.stop().await;
    eprintln!(
        "server_certificate_from_another_ca_is_refused_and_events_stay_queued: {} refusals, {last} events queued; {:.1} s",
        broker.log_count(REFUSED),
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_required_by_the_broker_works() {
    let _serial = SERIAL.lock().await;
    common::init_tracing();
    let t0 = Instant::now();
    // `require_certificate true`: a client without a certificate signed by
    // the broker's `cafile` gets no session.
    let (_certs, broker, mut site, mut county) = tls_setup_with(
        "good",
        "require_certificate true",
        true,
        "fault-tls-client",
        "county-tls-client",
    )
    .await;
    let last = site.excursion().await;
    county
        .until(
            &format!("seq 1..={last} with a client certificate"),
            Duration::from_secs(20),
            |c| c.has_all(last),
        )
        .await;
    assert!(
        broker
            .log()
            .contains(&format!("as riskgate-{}", site.gateway)),
        "the gateway connected:\n{}",
        broker.log()
    );
    site.stop().await;
    eprintln!(
        "client_certificate_required_by_the_broker_works: {last} events; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// The real binary, its uplink password from `password_file`, logging at
/// debug level: events arrive, and the password is nowhere in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_file_works_and_the_password_is_never_logged() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let broker = password_broker(dir.path());
    let pw_file = dir.path().join("uplink.pw");
    std::fs::write(&pw_file, format!("{GOOD_PW}\n")).unwrap();
    let devs = common::gas_detectors(1).await;
    let name = "fault-pw-file";
    let mut site = SiteCfg::new(
        name,
        &dir.path().join("data"),
        vec![devs[0].0.local_addr().port()],
    );
    site.uplink = Some(format!(
        "port = {}\nplain_tcp = true\nusername = \"gw-fault\"\npassword_file = \"{}\"",
        broker.port,
        pw_file.display()
    ));
    let cfg = site.write(dir.path());
    let mut county = Subscriber::connect(SubscriberOpts::new(
        broker.port,
        "county-pw-file",
        &format!("riskgate/v1/{name}/alarm"),
    ))
    .await;
    let log = dir.path().join("riskgate.log");
    let mut gw = common::Riskgate::spawn(&cfg, &log, &[("RUST_LOG", "debug")]);
    // Give the methane detector time to be polled before the excursion.
    common::wait_for_async("the gateway logged in", Duration::from_secs(20), || async {
        broker.log().contains("u'gw-fault'").then_some(())
    })
    .await;
    devs[0].1.set_signal("ch4", 1.62);
    county
        .until("the raised events", Duration::from_secs(20), |c| {
            c.has_all(2)
        })
        .await;
    devs[0].1.set_signal("ch4", 0.8);
    county
        .until("the cleared events", Duration::from_secs(20), |c| {
            c.has_all(4)
        })
        .await;
    assert!(gw.terminate().success());
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("county uplink connected"), "{logs}");
    assert!(!logs.contains(GOOD_PW), "the password is in the log");
    eprintln!(
        "password_file_works_and_the_password_is_never_logged: 4 events, {} log lines without the password; {:.1} s",
        logs.lines().count(),
        t0.elapsed().as_secs_f64()
    );
}
